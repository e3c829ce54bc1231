"""Helpers for the in-process command-line tests: a recorded account in a private home."""

from __future__ import annotations

import io
import json
import socket
import sys
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest

from oauthsmtp import FileStore
from oauthsmtp._accounts import AccountRegistry, AccountSettings
from oauthsmtp._cli.main import main

ACCOUNT = "me@example.org"


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def make_home(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    *,
    expires_in: float = 3600,
    refresh: bool = True,
) -> Path:
    """A home with one recorded account holding a token (SMTP on a closed port).

    The environment points the command line at it (file store, no browser, no display).
    """
    home = tmp_path / "home"
    monkeypatch.setenv("OAUTHSMTP_HOME", str(home))
    monkeypatch.setenv("OAUTHSMTP_STORE", "file")
    monkeypatch.setenv("BROWSER", "true")
    monkeypatch.delenv("DISPLAY", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    monkeypatch.setattr(sys, "stdin", io.StringIO(""))
    settings = AccountSettings(
        account=ACCOUNT,
        provider="custom",
        client_id="cid",
        auth_url="https://auth.example/authorize",
        token_url="https://auth.example/token",
        scope=("smtp",),
        redirect_url="http://127.0.0.1:0/cb",
        smtp_host="127.0.0.1",
        smtp_port=_closed_port(),
        security="none",
    )
    AccountRegistry(home).put(settings)
    save_token(home, settings, expires_in=expires_in, refresh=refresh)
    (tmp_path / "dir").mkdir()
    (tmp_path / "binary.txt").write_bytes(b"\xff\xfe\x00garbage")
    return home


def save_token(
    home: Path, settings: AccountSettings, *, expires_in: float = 3600, refresh: bool = True
) -> None:
    """Save a token for ``settings`` in the file store of ``home``."""
    expires = datetime.now(timezone.utc) + timedelta(seconds=expires_in)
    token = {
        "access_token": "AT-secret",
        "token_type": "Bearer",
        "refresh_token": "RT-secret" if refresh else None,
        "expires_at": expires.isoformat(),
        "scope": "smtp",
        "obtained_at": datetime.now(timezone.utc).isoformat(),
    }
    FileStore(home / "tokens").save(settings.token_key, json.dumps(token))


def run(capsys: pytest.CaptureFixture[str], *args: str) -> tuple[int, str, str]:
    """Run the command line in-process; (exit code, stdout, stderr)."""
    out = io.StringIO()
    code = main(list(args), out=out)
    captured = capsys.readouterr()
    return code, out.getvalue() + captured.out, captured.err


def assert_one_line_error(code: int, err: str, *, expected: int, mentions: str) -> None:
    lines = err.strip().splitlines()
    assert code == expected, (code, err)
    assert len(lines) == 1, err
    assert lines[0].startswith("oauthsmtp: error: "), err
    assert mentions in lines[0], (mentions, err)
    for bad in ("Traceback", "unexpected"):
        assert bad not in err
