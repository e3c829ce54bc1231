"""The app-only examples run with --dev, check their own outcome, and exit 0; without
settings they say what to set."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "app_only"

EXPECTED = {
    "microsoft_app.py": [
        "app-only token for shared@example.test: refresh token None, valid=True",
        "sent 250 2.0.0 OK queued",
        "arrived: shared@example.test -> friend@example.test: "
        "'Sent by an app, as a shared mailbox'",
        "dev check passed: the app sent as the mailbox it was given, with no login",
    ],
    "google_service_account.py": [
        "token for user@example.test: refresh token None, valid=True",
        "sent 250 2.0.0 OK queued",
        "arrived: user@example.test -> friend@example.test: 'Sent by a service account, as a user'",
        "dev check passed: the service account sent as its delegated user",
    ],
}


def run(name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MS_", "GOOGLE_"))}
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


def test_every_app_only_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_dev_provider(name: str, tmp_path: Path) -> None:
    proc = run(name, tmp_path, "--dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    lines = proc.stdout.splitlines()
    position = 0
    for expected in EXPECTED[name]:
        assert expected in lines[position:], f"{expected!r} missing, in order:\n{proc.stdout}"
        position = lines.index(expected, position) + 1
    assert "PRIVATE KEY" not in proc.stdout + proc.stderr
    assert "warning" not in proc.stderr.lower()  # the key files it writes are 0600
    assert not (tmp_path / "home").exists()  # --dev keeps nothing on disk


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_without_settings_says_what_to_set(name: str, tmp_path: Path) -> None:
    proc = run(name, tmp_path, "--to", "you@example.com")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "set " in proc.stderr
    assert "--dev" in proc.stderr
