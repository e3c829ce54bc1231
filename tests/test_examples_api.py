"""Every example in examples/api runs with --dev against the development provider and exits 0.

Each runs in a subprocess as a user would run it, with no browser and no display, and with
OAUTHSMTP_HOME in a temporary folder that must stay empty (a --dev run keeps its token in
memory).
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import example_runner
import pytest
from example_runner import assert_lines_in_order

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "api"

EXPECTED: dict[str, list[str]] = {
    "send_auto.py": [
        "logged in; the token is for: https://mail.oauthsmtp.test/smtp offline_access",
        "#1: sent through api (202)",
        "#2: sent through api (202)",
        "switched because SMTP said: 535 5.7.139 Authentication unsuccessful",
        "arrived: 2 messages in the development mailbox",
    ],
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
    return example_runner.run_example(EXAMPLES / name, tmp_path, *args)


def test_every_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_dev_provider(name: str, tmp_path: Path) -> None:
    proc = run_example(name, tmp_path, "--dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_lines_in_order(proc.stdout, EXPECTED[name])
    assert not (tmp_path / "home").exists()


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_real_mode_without_settings_says_what_to_set(name: str, tmp_path: Path) -> None:
    proc = run_example(name, tmp_path)
    assert proc.returncode == 2
    assert "--dev" in proc.stderr
    assert "Traceback" not in proc.stderr
