"""What the command line tells the user: command-line advice (not Python), tense, next steps.

In-process, with a recorded account in a private home (see cli_support.py).
"""

from __future__ import annotations

import argparse
import dataclasses
import re
import socket
import subprocess
import sys
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import pytest
from cli_support import ACCOUNT, assert_one_line_error, make_home, run

from oauthsmtp import LoginRequired, LoopbackError, TokenStoreError
from oauthsmtp._accounts import AccountRegistry
from oauthsmtp._cli.hints import message_for
from oauthsmtp._cli.parser import build_parser
from oauthsmtp._cli.status import describe_token

ROOT = Path(__file__).resolve().parent.parent
PYTHON_ADVICE = re.compile(
    r"auth_identify\(|allow_insecure|KeyringStore\(|FileStore\(|store=|\bredirect_url\b|"
    r"ssl_context=|security='"
)


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    return make_home(tmp_path, monkeypatch)


def _settings(home: Path) -> dict[str, object]:
    settings = AccountRegistry(home).get(ACCOUNT)
    assert settings is not None
    return {"host": settings.smtp_host, "port": settings.smtp_port, "security": settings.security}


# -- command-line advice instead of Python advice --------------------------------------------------


def test_expired_token_without_refresh_token_names_the_login_command(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """LoginRequired on the command line: the login command, no Python call."""
    make_home(tmp_path, monkeypatch, expires_in=-3600, refresh=False)
    code, out, err = run(capsys, "token", "--account", ACCOUNT)
    assert_one_line_error(code, err, expected=3, mentions=f"oauthsmtp login --account {ACCOUNT}")
    assert not PYTHON_ADVICE.search(err), err
    assert out == ""


def test_port_in_use_names_the_redirect_url_flag(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """The login port is taken: the advice is --redirect-url, not redirect_url."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen(1)
        port = squatter.getsockname()[1]
        code, _, err = run(
            capsys, "login", "--account", ACCOUNT, "--client-id", "cid", "--no-browser",
            "--redirect-url", f"http://127.0.0.1:{port}/cb", "--timeout", "5",
        )  # fmt: skip
    assert_one_line_error(code, err, expected=1, mentions="--redirect-url http://")
    assert not PYTHON_ADVICE.search(err), err


def test_unusable_keyring_names_the_environment_variable(tmp_path: Path) -> None:
    """No secure keyring: OAUTHSMTP_STORE=file is the advice, not KeyringStore(...)."""
    env = {
        "PATH": "/usr/bin:/bin",
        "HOME": str(tmp_path),
        "OAUTHSMTP_HOME": str(tmp_path / "home"),
        "OAUTHSMTP_STORE": "keyring",
        "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
        "PYTHONPATH": str(ROOT),
    }
    code = (
        "from oauthsmtp._accounts import AccountRegistry, AccountSettings\n"
        "from pathlib import Path\n"
        f"AccountRegistry(Path({str(tmp_path / 'home')!r})).put(AccountSettings(account="
        f"{ACCOUNT!r}, provider='custom', client_id='cid', auth_url='https://a.example/a', "
        "token_url='https://a.example/t', scope=('s',), redirect_url='http://127.0.0.1:0/cb', "
        "smtp_host='127.0.0.1', smtp_port=25, security='none'))\n"
    )
    subprocess.run([sys.executable, "-c", code], env=env, check=True, timeout=60)
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", "token", "--account", ACCOUNT],
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert_one_line_error(proc.returncode, proc.stderr, expected=1, mentions="OAUTHSMTP_STORE=file")
    assert not PYTHON_ADVICE.search(proc.stderr), proc.stderr


@pytest.mark.parametrize(
    ("error", "wanted"),
    [
        (
            LoginRequired("the token is gone", account="a@b.org"),
            "oauthsmtp login --account a@b.org",
        ),
        (
            LoopbackError("cannot listen on 127.0.0.1:9000: in use", port=9000),
            "--redirect-url http://localhost:9001",
        ),
        (TokenStoreError("the token file cannot be read"), "OAUTHSMTP_STORE=file"),
    ],
    ids=["login-required", "loopback", "store"],
)
def test_every_error_class_gets_a_command_line_next_step(error: Exception, wanted: str) -> None:
    """The hint comes from the error's class and fields even when the message has none."""
    assert wanted in message_for(error)


# -- status ----------------------------------------------------------------------------------------


def test_status_says_expired_in_the_past_tense(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """An access token that expired in the past: "expired at", never "until"."""
    make_home(tmp_path, monkeypatch, expires_in=-86400 * 400)
    code, out, _ = run(capsys, "status")
    assert code == 0
    line = next(x for x in out.splitlines() if x.strip().startswith("token:"))
    assert "expired at" in line
    assert "until" not in line
    assert "refreshed on next use" in line


def test_status_line_for_each_state() -> None:
    """describe_token: the right tense and the next step in each state."""
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    row: dict[str, object] = {
        "account": "a@b.org",
        "logged_in": True,
        "expires_at": "2020-01-01T00:00:00+00:00",
        "access_token_valid": False,
        "has_refresh_token": False,
    }
    dead = describe_token(row, now=now)  # type: ignore[arg-type]
    assert "expired at 2020-01-01" in dead
    assert "oauthsmtp login --account a@b.org" in dead
    row.update(access_token_valid=True, expires_at="2026-01-01T01:00:00+00:00")
    assert "valid until 2026-01-01T01:00" in describe_token(row, now=now)  # type: ignore[arg-type]
    row.update(logged_in=False)
    assert "oauthsmtp login --account a@b.org" in describe_token(row, now=now)  # type: ignore[arg-type]


def test_status_for_an_unknown_account_gives_the_next_step(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --account OTHER: exit 3, the recorded accounts and the login command."""
    code, _, err = run(capsys, "status", "--account", "other@example.org")
    assert_one_line_error(
        code, err, expected=3, mentions="oauthsmtp login --account other@example.org"
    )
    assert ACCOUNT in err


# -- logout ----------------------------------------------------------------------------------------


def test_logout_forget_says_what_it_removed(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """logout --forget: the token, the settings file and (when there is one) the client secret."""
    code, _, err = run(capsys, "logout", "--account", ACCOUNT, "--forget")
    assert code == 0
    assert "deleted its token from the file store" in err
    assert f"removed its recorded settings from {home / 'accounts.json'}" in err
    assert AccountRegistry(home).get(ACCOUNT) is None
    assert "No accounts" in run(capsys, "status")[1]


def test_logout_without_a_saved_token_says_so(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A second logout: "no token was saved", and how to log in again."""
    run(capsys, "logout", "--account", ACCOUNT)
    code, _, err = run(capsys, "logout", "--account", ACCOUNT)
    assert code == 0
    assert "no token was saved" in err
    assert f"oauthsmtp login --account {ACCOUNT}" in err


# -- help ------------------------------------------------------------------------------------------


def _subparsers(parser: argparse.ArgumentParser) -> Iterator[argparse.ArgumentParser]:
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                yield sub
                yield from _subparsers(sub)


def test_every_flag_has_help_text() -> None:
    """Every option of every command says what it is for (--provider, --smtp-host, ...)."""
    missing = [
        f"{sub.prog} {action.option_strings[0]}"
        for sub in _subparsers(build_parser())
        for action in sub._actions
        if action.option_strings and not action.help
    ]
    assert missing == []


def test_send_help_says_which_options_repeat(capsys: pytest.CaptureFixture[str]) -> None:
    """send --help: --to, --cc, --bcc and --attach may be repeated."""
    code, out, _ = run(capsys, "send", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--to, --cc, --bcc and --attach take one value each and may be repeated" in text
    for flag in ("--to ADDR", "--cc ADDR", "--bcc ADDR", "--attach FILE"):
        described = text.split(flag, 2)[-1][:120]
        assert "repeat" in described, (flag, described)


# -- SSL_CERT_FILE ---------------------------------------------------------------------------------


def test_help_says_ssl_cert_file_adds_trust_anchors(capsys: pytest.CaptureFixture[str]) -> None:
    """--help: SSL_CERT_FILE is trusted in addition to the system's CAs."""
    _, out, _ = run(capsys, "--help")
    assert "SSL_CERT_FILE" in out
    assert "in addition to the system's" in " ".join(out.split())


@pytest.mark.parametrize("name", ["cli.md", "troubleshooting.md"])
def test_docs_say_the_same_about_ssl_cert_file(name: str) -> None:
    """The docs agree with --help: extra trust anchors, not a replacement bundle."""
    text = (ROOT / "docs" / name).read_text(encoding="utf-8")
    paragraphs = [p for p in re.split(r"\n\s*\n", text) if "SSL_CERT_FILE" in p]
    assert paragraphs
    for paragraph in paragraphs:
        assert "replace" not in paragraph.lower(), paragraph


@pytest.mark.parametrize("command", ["token", "send", "logout"])
def test_missing_ssl_cert_file_is_an_error_that_says_so(
    home: Path,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    command: str,
) -> None:
    """SSL_CERT_FILE naming no file: exit 2 before anything connects, naming the file."""
    missing = tmp_path / "no-such-ca.pem"
    monkeypatch.setenv("SSL_CERT_FILE", str(missing))
    args = ["--account", ACCOUNT]
    if command == "send":
        args += ["--to", "you@example.org", "--subject", "s", "--body-file", "/dev/null"]
    code, _, err = run(capsys, command, *args)
    assert_one_line_error(code, err, expected=2, mentions=f"SSL_CERT_FILE names '{missing}'")
    assert "does not exist" in err


# -- account set -----------------------------------------------------------------------------------


def test_account_set_changes_the_recorded_server(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """account set: host, port and security change without a login; the token stays."""
    code, _, err = run(
        capsys, "account", "set", "--account", ACCOUNT, "--smtp-host", "smtp.example.org",
        "--smtp-port", "2525", "--security", "starttls",
    )  # fmt: skip
    assert code == 0, err
    assert "smtp.example.org:2525 (starttls)" in err
    assert _settings(home) == {"host": "smtp.example.org", "port": 2525, "security": "starttls"}
    code, out, _ = run(capsys, "status")
    assert "smtp.example.org:2525 (starttls)" in out
    assert "access token valid" in out


def test_account_set_security_moves_a_default_port_along(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """--security ssl on an account at 587/starttls moves it to 465; a chosen port stays."""
    run(capsys, "account", "set", "--account", ACCOUNT, "--smtp-port", "587", "--security",
        "starttls")  # fmt: skip
    run(capsys, "account", "set", "--account", ACCOUNT, "--security", "ssl")
    assert _settings(home)["port"] == 465
    run(capsys, "account", "set", "--account", ACCOUNT, "--smtp-port", "2465")
    run(capsys, "account", "set", "--account", ACCOUNT, "--security", "starttls")
    assert _settings(home) == {"host": "127.0.0.1", "port": 2465, "security": "starttls"}


def test_account_set_for_an_unknown_account(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """account set for an account never logged in: exit 3 and the login command."""
    code, _, err = run(capsys, "account", "set", "--account", "x@example.org", "--smtp-port", "1")
    assert_one_line_error(code, err, expected=3, mentions="oauthsmtp login --account x@example.org")


def test_account_set_keeps_other_settings(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """Only the SMTP fields change."""
    before = AccountRegistry(home).get(ACCOUNT)
    run(capsys, "account", "set", "--account", ACCOUNT, "--smtp-host", "mail.example.org")
    after = AccountRegistry(home).get(ACCOUNT)
    assert before is not None
    assert after == dataclasses.replace(before, smtp_host="mail.example.org")


def test_send_override_is_for_one_run_only(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """send --smtp-port: used for this run (the error names it); the recorded one is unchanged."""
    before = _settings(home)
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        port = closed.getsockname()[1]
    code, _, err = run(
        capsys, "send", "--account", ACCOUNT, "--to", "you@example.org", "--subject", "s",
        "--body-file", "/dev/null", "--smtp-port", str(port),
    )  # fmt: skip
    assert code == 1
    assert str(port) in err
    assert _settings(home) == before
