"""Every example in examples/api runs with --dev against the development provider and exits 0.

Each runs in a subprocess as a user would run it, with no browser and no display, and with
OAUTHSMTP_HOME in a temporary folder that must stay empty (a --dev run keeps its token in
memory).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "api"

EXPECTED: dict[str, list[str]] = {
    "send_gmail_api.py": [
        "logged in as user@example.test with scope "
        "https://mail.oauthsmtp.test/gmail.send offline_access",
        "arrived: user@example.test -> friend@example.test: 'Sent through the Gmail API'",
    ],
    "send_graph.py": [
        "#1: sent 202 accepted (202, in a batch)",
        "#3: sent 202 accepted (202, in a batch)",
        "HTTP requests: 1",
        "arrived: 3 messages in the development mailbox",
    ],
}


def run_example(name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")
        and not key.startswith(("GMAIL_", "MS_"))
    }
    env["PYTHONPATH"] = str(ROOT)
    env["OAUTHSMTP_HOME"] = str(tmp_path / "home")
    env["OAUTHSMTP_STORE"] = "file"
    return subprocess.run(
        [sys.executable, str(EXAMPLES / name), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_dev_provider(name: str, tmp_path: Path) -> None:
    proc = run_example(name, tmp_path, "--dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    position = 0
    for expected in EXPECTED[name]:
        assert expected in lines[position:], f"{expected!r} missing, in order:\n{proc.stdout}"
        position = lines.index(expected, position) + 1
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_mode_without_settings_says_what_to_set(name: str, tmp_path: Path) -> None:
    proc = run_example(name, tmp_path)
    assert proc.returncode == 2
    assert "--dev" in proc.stderr
    assert "Traceback" not in proc.stderr
