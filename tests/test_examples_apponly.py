"""The app-only examples run with --dev, check their own outcome, and exit 0; without
settings they say what to set."""

from __future__ import annotations

import subprocess
from pathlib import Path

import example_runner
import pytest
from example_runner import assert_lines_in_order

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
    return example_runner.run_example(EXAMPLES / name, tmp_path, *args)


def test_every_app_only_example_is_tested() -> None:
    assert {p.name for p in EXAMPLES.glob("*.py")} == set(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_dev_provider(name: str, tmp_path: Path) -> None:
    proc = run(name, tmp_path, "--dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert_lines_in_order(proc.stdout, EXPECTED[name])
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
