"""Every example in examples/gmail runs with --dev, checks its own outcome, and exits 0.

Each runs in a subprocess as a user would run it (``python examples/gmail/NAME.py --dev``),
with no browser and no display, and with OAUTHSMTP_HOME in a temporary folder and
OAUTHSMTP_STORE=file: a --dev run keeps its tokens in memory, so that folder must stay empty.
"""

from __future__ import annotations

import subprocess
from pathlib import Path

import example_runner
import pytest
from example_runner import assert_lines_in_order

ROOT = Path(__file__).resolve().parent.parent
EXAMPLES = ROOT / "examples" / "gmail"

# Lines each example must print (whole lines, in this order, among others).
EXPECTED: dict[str, list[str]] = {
    "login_once.py": [
        "logged in as user@example.test",
        "refresh token held:      yes",
        "granted scopes:          https://mail.oauthsmtp.test/smtp",
        "second call, no browser: token found, valid=True",
        "dev check passed: the server issued the token to user@example.test",
    ],
    "send_cached.py": [
        "logged in once as user@example.test (what login_once.py does)",
        "saved token found for user@example.test: no browser (valid=True)",
        "sent 250 2.0.0 OK queued",
        "arrived: user@example.test -> friend@example.test: 'Sent with a saved token'",
        "dev check passed: 1 message arrived; the browser opened for the first login only",
    ],
    "send_html_attachments.py": [
        "sent 250 2.0.0 OK queued",
        "arrived: user@example.test -> friend@example.test: "
        "'Monthly report (HTML, with attachments)'",
        "  multipart/mixed",
        "    multipart/alternative",
        "      text/plain",
        "      text/html",
        "    text/plain  attachment notes.txt (52 bytes)",
        "    text/csv  attachment report.csv (47 bytes)",
        "dev check passed: HTML and text bodies, 2 attachments byte for byte",
    ],
    "send_batch.py": [
        "#01 reader01@example.test: sent 250 2.0.0 OK queued",
        "#07 nobody@example.test: failed 550 5.1.1 user unknown; "
        "refused: nobody@example.test (550 5.1.1 user unknown)",
        "#20 reader20@example.test: sent 250 2.0.0 OK queued",
        "summary: 19 sent, 1 failed, 0 unknown",
        "... 19 messages arrived",
        "dev check passed: 19 arrived over 1 connection, 1 refused",
    ],
    "send_async.py": [
        "queued 6 messages; submit() returned a future for each at once",
        "close() returned; futures done: 6 of 6",
        "#1: sent 250 2.0.0 OK queued",
        "#5: sent 250 2.0.0 OK queued",
        "#6: ConfigurationError: the message has no recipient (To, Cc or Bcc)",
        "arrived: user@example.test -> friend@example.test: 'Asynchronous message 5 of 5'",
        "dev check passed: 5 arrived in order over 1 connection",
    ],
}


# Examples that cannot run with --dev, and where they are tested instead.
NOT_RUN_WITH_DEV: dict[str, str] = {
    "read_imap.py": "the dev provider has no IMAP server; tests/test_mailbox.py runs its "
    "read_inbox() against a real Dovecot",
}


def run_example(name: str, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return example_runner.run_example(EXAMPLES / name, tmp_path, *args)


def test_every_example_is_tested() -> None:
    examples = {p.name for p in EXAMPLES.glob("*.py") if not p.name.startswith("_")}
    assert examples == set(EXPECTED) | set(NOT_RUN_WITH_DEV)
    assert not set(EXPECTED) & set(NOT_RUN_WITH_DEV)


@pytest.mark.parametrize("name", sorted(NOT_RUN_WITH_DEV))
def test_example_without_dev_mode_says_so(name: str, tmp_path: Path) -> None:
    proc = run_example(name, tmp_path, "--dev")
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "--dev is not available" in proc.stderr
    assert "Traceback" not in proc.stderr


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_against_the_dev_provider(name: str, tmp_path: Path) -> None:
    proc = run_example(name, tmp_path, "--dev")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr
    assert_lines_in_order(proc.stdout, EXPECTED[name])
    assert not (tmp_path / "home").exists()  # --dev keeps nothing on disk


def test_gmail_mode_without_settings_says_what_to_set(tmp_path: Path) -> None:
    proc = run_example("send_cached.py", tmp_path)
    assert proc.returncode == 2
    assert proc.stdout == ""
    assert "set GMAIL_CLIENT_ID, GMAIL_CLIENT_SECRET, GMAIL_ACCOUNT" in proc.stderr
    assert "--dev" in proc.stderr
