"""Every flag of the command line, given a bad value: exit 2 and one clear line, never a traceback.

The commands run in-process through ``oauthsmtp._cli.main.main`` with a private
``OAUTHSMTP_HOME`` and the file store, against a recorded account whose SMTP
server is a closed loopback port: nothing here reaches a network.
"""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

import pytest
from cli_support import ACCOUNT, assert_one_line_error, make_home, run


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A home with one recorded account holding a valid token (SMTP on a closed port)."""
    return make_home(tmp_path, monkeypatch)


LOGIN = [
    "login", "--account", ACCOUNT, "--provider", "custom", "--client-id", "cid",
    "--auth-url", "https://auth.example/authorize", "--token-url", "https://auth.example/token",
    "--scope", "smtp", "--smtp-host", "smtp.example", "--no-browser",
    "--redirect-url", "http://127.0.0.1:0/cb", "--timeout", "1",
]  # fmt: skip
SEND = ["send", "--account", ACCOUNT, "--to", "you@example.org", "--subject", "s",
        "--body-file", "/dev/null"]  # fmt: skip


def with_flag(base: list[str], flag: str, value: str) -> list[str]:
    """``base`` with ``flag`` set to ``value`` (replaced when present, else appended)."""
    args = list(base)
    if flag in args:
        args[args.index(flag) + 1] = value
    else:
        args += [flag, value]
    return args


BAD_LOGIN_VALUES = [
    *[
        ("--timeout", v)
        for v in ("nan", "inf", "-inf", "1e309", "-1", "0", "1e-9", "0.5", "abc", "", "1e6", "٣")
    ],
    *[("--smtp-port", v) for v in ("-5", "0", "65536", "99999", "abc", "", "5.0", "٣", "1" * 5000)],
    *[(flag, "http://[::1") for flag in ("--auth-url", "--token-url", "--redirect-url")],
    ("--redirect-url", "http://localhost:99999"),
    ("--issuer", "http://[x"),
    ("--revocation-url", "ftp://x/"),
    ("--auth-url", ""),
    ("--auth-url", "auth.example/authorize"),
    ("--token-url", "https://auth.example/token\r\nX: y"),
    ("--scope", ""),
    ("--scope", 'a"b'),
    ("--scope", "a\x00b"),
    ("--client-id", " "),
    ("--client-id", "a\nb"),
    ("--client-id", "x" * 5000),
    ("--account", ""),
    ("--account", "a\rb"),
    ("--account", "a b@example.org"),
    ("--account", "é" * 5000),
    ("--account", "me\u202e@example.org"),
    ("--smtp-host", ""),
    ("--smtp-host", "a b"),
    ("--smtp-host", "smtp.example:587"),
    ("--smtp-host", "smtp://smtp.example"),
    ("--smtp-host", "h" * 300),
    ("--smtp-host", "smtp\x00.example"),
    ("--security", "tls"),
    ("--provider", "yahoo"),
]


@pytest.mark.parametrize(("flag", "value"), BAD_LOGIN_VALUES, ids=lambda v: repr(v)[:30])
def test_login_refuses_bad_values(
    home: Path, capsys: pytest.CaptureFixture[str], flag: str, value: str
) -> None:
    """login: a bad value ends with exit 2 and one line naming the flag; nothing is stored."""
    before = (home / "accounts.json").read_bytes()
    code, out, err = run(capsys, *with_flag(LOGIN, flag, value))
    assert_one_line_error(code, err, expected=2, mentions=flag)
    assert out == ""
    assert (home / "accounts.json").read_bytes() == before


def test_login_refuses_a_bad_tenant(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """login --tenant ../x: exit 2 naming the flag (it would become part of the endpoint URLs)."""
    args = ["login", "--account", ACCOUNT, "--provider", "microsoft", "--client-id", "c",
            "--tenant", "../x", "--no-browser", "--timeout", "1"]  # fmt: skip
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, expected=2, mentions="--tenant")


BAD_SEND_VALUES = [
    ("--to", "<", 2, "--to"),
    ("--to", '"', 2, "--to"),
    ("--to", "a@b.org, c@d.org", 2, "repeat the flag"),
    ("--to", "a@b.org; c@d.org", 2, "repeat the flag"),
    ("--to", "a@b.org\r\nRCPT TO:<x@y.org>", 2, "--to"),
    ("--to", "", 2, "--to"),
    ("--cc", "<", 2, "--cc"),
    ("--cc", "a@b.org,c@d.org", 2, "repeat the flag"),
    ("--bcc", "x\x00@y.org", 2, "--bcc"),
    ("--from", "<", 2, "--from"),
    ("--from", "x", 2, "--from"),
    ("--account", "", 2, "--account"),
    ("--account", "x\x01@y", 2, "--account"),
    ("--smtp-port", "-1", 2, "--smtp-port"),
    ("--smtp-port", "nan", 2, "--smtp-port"),
    ("--smtp-host", "", 2, "--smtp-host"),
    ("--security", "starttls\n", 2, "--security"),
    ("--body-file", "binary.txt", 2, "--body-file"),
    ("--html-file", "binary.txt", 2, "--html-file"),
    ("--body-file", "dir", 1, "--body-file"),
    ("--body-file", "/nonexistent/body", 1, "--body-file"),
    ("--attach", "dir", 1, "--attach"),
    ("--attach", "/nonexistent/file", 1, "--attach"),
    ("--attach", "", 1, "--attach"),
]


@pytest.mark.parametrize(
    ("flag", "value", "expected", "mentions"), BAD_SEND_VALUES, ids=lambda v: repr(v)[:30]
)
def test_send_refuses_bad_values(
    home: Path,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    flag: str,
    value: str,
    expected: int,
    mentions: str,
) -> None:
    """send: a bad flag ends with one line naming it (2 for a bad value, 1 for a missing file)."""
    if value in ("binary.txt", "dir"):
        value = str(tmp_path / value)
    code, out, err = run(capsys, *with_flag(SEND, flag, value))
    assert_one_line_error(code, err, expected=expected, mentions=mentions)
    assert out == ""


def test_send_refuses_a_binary_body_on_stdin(
    home: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A body on stdin that is not UTF-8: exit 2, pointing at --attach."""
    stdin = io.TextIOWrapper(io.BytesIO(b"\xff\xfe\x80binary"), encoding="utf-8")
    monkeypatch.setattr(sys, "stdin", stdin)
    args = [a for a in SEND if a not in ("--body-file", "/dev/null")]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, expected=2, mentions="--attach")


OTHER_BAD = [
    (["token", "--account", ""], "--account"),
    (["token", "--account", ACCOUNT, "--format", "x"], "--format"),
    (["status", "--account", ""], "--account"),
    (["status", "--account", "x\x01"], "--account"),
    (["logout", "--account", "a\rb"], "--account"),
    (["account", "set", "--account", ACCOUNT, "--smtp-port", "0"], "--smtp-port"),
    (["account", "set", "--account", ACCOUNT, "--smtp-host", "a b"], "--smtp-host"),
    (["account", "set", "--account", ACCOUNT], "--smtp-host"),
    (["dev-server", "--smtp-port", "-1"], "--smtp-port"),
    (["dev-server", "--smtp-port", "70000"], "--smtp-port"),
    (["dev-server", "--http-port", "x"], "--http-port"),
]


@pytest.mark.parametrize(("args", "mentions"), OTHER_BAD, ids=lambda v: repr(v)[:40])
def test_other_commands_refuse_bad_values(
    home: Path, capsys: pytest.CaptureFixture[str], args: list[str], mentions: str
) -> None:
    """token, status, logout, account set, dev-server: exit 2 and one line naming the flag."""
    code, out, err = run(capsys, *args)
    assert_one_line_error(code, err, expected=2, mentions=mentions)
    assert out == ""


def test_status_with_an_empty_account_lists_nothing(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """status --account '' is refused rather than taken for "every account"."""
    code, out, _ = run(capsys, "status", "--account", "")
    assert code == 2
    assert ACCOUNT not in out


def test_client_secret_file_and_client_secret_exclude_each_other(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """Only one source for the secret."""
    secret = tmp_path / "secret.txt"
    secret.write_text("s3cret\n")
    args = [*LOGIN, "--client-secret", "x", "--client-secret-file", str(secret)]
    code, _, err = run(capsys, *args)
    assert_one_line_error(code, err, expected=2, mentions="--client-secret")


@pytest.mark.parametrize(
    ("content", "mentions"),
    [(b"", "is empty"), (b"\n\n", "is empty"), (b"a\x00b\n", "control"), (b"\xff\xfe", "UTF-8")],
    ids=["empty", "blank-lines", "nul", "not-utf8"],
)
def test_client_secret_file_refuses_unusable_content(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str], content: bytes, mentions: str
) -> None:
    """A secret file that holds no usable secret: exit 2, and its content is never echoed."""
    secret = tmp_path / "secret.txt"
    secret.write_bytes(content)
    code, _, err = run(capsys, *LOGIN, "--client-secret-file", str(secret))
    assert_one_line_error(code, err, expected=2, mentions=mentions)
    assert "a\x00b" not in err


def test_client_secret_file_that_does_not_exist(
    home: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """A missing secret file: exit 2 naming the flag and the file."""
    code, _, err = run(capsys, *LOGIN, "--client-secret-file", str(tmp_path / "nope"))
    assert_one_line_error(code, err, expected=2, mentions="--client-secret-file")


def test_login_help_explains_the_secret_options(capsys: pytest.CaptureFixture[str]) -> None:
    """login --help: --client-secret is visible to other users; the file and stdin forms exist."""
    code, out, _ = run(capsys, "login", "--help")
    assert code == 0
    text = " ".join(out.split())
    assert "--client-secret-file FILE" in text
    assert "process list" in text
    assert "standard input with '-'" in text


def _subprocess(home: Path, *args: str, stdin: bytes = b"") -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LC_ALL": "C", "LANG": "C", "PYTHONUTF8": "0"}
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", *args],
        input=stdin,
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    return subprocess.CompletedProcess(
        proc.args, proc.returncode, proc.stdout.decode(), proc.stderr.decode("utf-8", "replace")
    )


def test_binary_body_on_stdin_in_the_c_locale(home: Path) -> None:
    """Under LC_ALL=C, undecodable stdin is refused too (not smuggled in as surrogates)."""
    args = [a for a in SEND if a not in ("--body-file", "/dev/null")]
    proc = _subprocess(home, *args, stdin=b"\xff\xfe\x80binary")
    assert_one_line_error(proc.returncode, proc.stderr, expected=2, mentions="not UTF-8")


def test_a_folder_that_cannot_be_made_is_one_line(home: Path) -> None:
    """dev-server --maildir in a place that cannot hold it: exit 1 naming the path."""
    proc = _subprocess(home, "dev-server", "--maildir", "/proc/oauthsmtp-test/x")
    assert_one_line_error(
        proc.returncode, proc.stderr, expected=1, mentions="'/proc/oauthsmtp-test"
    )
