"""The command line with --transport auto, end to end and offline.

Runs ``python -m oauthsmtp`` for real against the development provider, which plays
Microsoft: a login for its SMTP scope and its Graph emulation's gets an SMTP token, Graph's
is redeemed from the same refresh token (rotating it), and its SMTP server can refuse AUTH
word for word as Microsoft 365 does with SMTP AUTH off. Every command is a new process, so
what one saves the next one must find.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oauthsmtp import AuthToken, FileStore, TokenKey
from oauthsmtp.devserver import DevProvider

HERE = Path(__file__).parent
ACCOUNT = "user@example.test"


@pytest.fixture(scope="module")
def provider() -> Iterator[DevProvider]:
    with DevProvider(smtps_port=None, user=ACCOUNT) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(provider: DevProvider) -> Iterator[None]:
    provider.clear()
    provider.smtp.auth_failure = None
    yield
    provider.smtp.auth_failure = None


def cli(
    home: Path, provider: DevProvider, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OAUTHSMTP_HOME": str(home),
        "OAUTHSMTP_STORE": "file",
        "BROWSER": f"{sys.executable} {HERE / 'fake_browser.py'} %s",
        "FAKE_BROWSER_LOG": str(home / "browser.json"),
        "SSL_CERT_FILE": str(provider.ca_path),
        "PYTHONPATH": str(HERE.parent),
    }
    env.pop("CI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", *args],
        capture_output=True,
        text=True,
        env=env,
        input="",
        timeout=60,
        check=False,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def both(provider: DevProvider) -> str:
    """What `login --provider microsoft --transport auto` asks for, in the dev scopes."""
    return f"{provider.auth.scope} offline_access openid email {provider.GRAPH_API_SCOPE}"


def login(home: Path, provider: DevProvider, scope: str, *extra: str) -> str:
    client = provider.auth.register_client()
    auth = provider.auth
    proc = cli(
        home, provider,
        "login", "--account", ACCOUNT, "--provider", "custom",
        f"--client-id={client.client_id}", f"--client-secret={client.client_secret}",
        "--auth-url", auth.authorization_endpoint, "--token-url", auth.token_endpoint,
        "--issuer", auth.issuer, "--scope", scope,
        "--redirect-url", "http://127.0.0.1:0/callback",
        "--smtp-host", "127.0.0.1", "--smtp-port", str(provider.smtp_port),
        "--api-url", provider.graph_api_url, "--timeout", "30", *extra,
    )  # fmt: skip
    return proc.stderr


def send(home: Path, provider: DevProvider, subject: str, check: int = 0) -> str:
    body = home.parent / "body.txt"
    body.write_text("Hello\n")
    proc = cli(
        home, provider,
        "send", "--account", ACCOUNT, "--to", "you@example.test",
        "--subject", subject, "--body-file", str(body),
        check=check,
    )  # fmt: skip
    return proc.stderr


def stored_refresh_token(home: Path) -> str | None:
    settings = json.loads((home / "accounts.json").read_text())["accounts"][ACCOUNT]
    key = TokenKey(settings["token_url"], settings["client_id"], ACCOUNT)
    raw = FileStore(home / "tokens").load(key)
    return AuthToken.from_json(raw).refresh_token if raw is not None else None


def test_login_auto_then_send_over_smtp_then_through_graph_when_refused(
    tmp_path: Path, provider: DevProvider
) -> None:
    """login --transport auto records it and proves Graph's token; send goes over SMTP while
    SMTP works, through Graph (saying so, with the fix) once AUTH is refused with 5.7.139;
    each run is a new process that finds the refresh token the previous one rotated."""
    home = tmp_path / "home"
    said = login(home, provider, both(provider), "--transport", "auto")
    assert "switching to the Microsoft Graph API" in said
    assert "accepts this login too" in said  # Graph's token redeemed at login
    recorded = json.loads((home / "accounts.json").read_text())["accounts"][ACCOUNT]
    assert recorded["transport"] == "auto"
    status = cli(home, provider, "status").stdout
    assert "transport auto" in status

    out = send(home, provider, "over smtp")
    assert "sent over SMTP (transport auto)" in out
    assert provider.api.requests == []

    provider.smtp.auth_failure = "mailbox"
    before = stored_refresh_token(home)
    provider.auth.expire_access_tokens()  # the Graph token must be redeemed again
    out = send(home, provider, "through graph")
    lines = out.strip().splitlines()
    assert lines[0].startswith("oauthsmtp: warning: ")
    assert "5.7.139" in lines[0]
    assert "--transport api" in lines[0]
    assert lines[-1].startswith("oauthsmtp: sent through Microsoft Graph (202")
    assert [m.subject for m in provider.messages] == ["over smtp", "through graph"]
    after = stored_refresh_token(home)
    assert after is not None
    assert after != before  # the Graph redemption rotated it, and it was saved

    # The next process still logs in (its refresh token is the rotated one).
    provider.auth.expire_access_tokens()
    provider.smtp.auth_failure = None
    assert "sent over SMTP" in send(home, provider, "smtp again")
    assert len(provider.messages) == 3

    doctor = cli(home, provider, "doctor", "--account", ACCOUNT).stdout
    assert "api token" in doctor
    provider.smtp.auth_failure = "tenant"
    proc = cli(home, provider, "doctor", "--account", ACCOUNT, check=0)  # a warning: exit 0
    assert "transport auto sends through Microsoft Graph instead" in proc.stdout
    assert "--transport api" in proc.stdout


def test_auto_does_not_switch_on_a_refused_token(tmp_path: Path, provider: DevProvider) -> None:
    """535 5.7.3 (the token refused): exit 1, SMTP's error, nothing through Graph."""
    home = tmp_path / "home"
    login(home, provider, both(provider), "--transport", "auto")
    provider.clear()
    provider.smtp.auth_failure = "bad-token"
    out = send(home, provider, "never", check=1)
    assert "5.7.3" in out
    assert "sent through" not in out
    assert provider.messages == []
    assert provider.api.requests == []


def test_smtp_account_refused_names_the_api_transport(
    tmp_path: Path, provider: DevProvider
) -> None:
    """transport smtp never switches: the 5.7.139 error names --transport api and auto;
    doctor fails with the same fix; account set --transport auto on a login of one resource
    says to log in again."""
    home = tmp_path / "home"
    login(home, provider, f"{provider.auth.scope} offline_access")
    provider.smtp.auth_failure = "tenant"
    out = send(home, provider, "refused", check=1)
    assert out.count("\n") == 1
    assert "5.7.139" in out
    assert "--transport api" in out
    assert "--transport auto" in out
    assert provider.api.requests == []
    doctor = cli(home, provider, "doctor", "--account", ACCOUNT, check=1).stdout
    assert "--transport api" in doctor
    proc = cli(home, provider, "account", "set", "--account", ACCOUNT, "--transport", "auto")
    assert "log in again" in proc.stderr
    assert "--transport auto" in proc.stderr


def test_auto_login_without_the_api_scope_is_told_at_login_and_by_doctor(
    tmp_path: Path, provider: DevProvider
) -> None:
    """login --transport auto whose scopes name no Graph scope: warned at login, doctor
    fails the api token check with the fix (exit 3: log in again)."""
    home = tmp_path / "home"
    said = login(home, provider, f"{provider.auth.scope} offline_access", "--transport", "auto")
    assert "transport auto cannot switch" in said
    proc = cli(home, provider, "doctor", "--account", ACCOUNT, check=3)
    assert "api token" in proc.stdout
    assert "--transport auto" in proc.stdout


def test_demo_transport_auto_switches_to_graph(tmp_path: Path) -> None:
    """`oauthsmtp demo --transport auto`: both messages through Graph after the 5.7.139."""
    env = {k: v for k, v in os.environ.items() if k not in ("BROWSER", "DISPLAY", "CI")}
    env["OAUTHSMTP_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(HERE.parent)
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", "demo", "--transport", "auto"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert proc.stdout.count("sent through: api") == 2
    assert "5.7.139" in proc.stderr


def test_dev_server_refuses_smtp_auth_when_told(tmp_path: Path) -> None:
    """`oauthsmtp dev-server --smtp-auth-failure mailbox` says so in its information block
    and answers every AUTH with Microsoft's 535 5.7.139."""
    import signal
    import ssl

    from oauthsmtp import SMTPAuthError, SMTPSession

    env = {k: v for k, v in os.environ.items() if k not in ("BROWSER", "DISPLAY", "CI")}
    env["OAUTHSMTP_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(HERE.parent)
    proc = subprocess.Popen(
        [sys.executable, "-m", "oauthsmtp", "dev-server", "--smtp-auth-failure", "mailbox",
         "--maildir", str(tmp_path / "mail")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=env,
    )  # fmt: skip
    try:
        assert proc.stdout is not None
        seen: dict[str, str] = {}
        for line in proc.stdout:  # the block is printed at once; the server then waits
            name, _, value = line.strip().partition(":")
            seen.setdefault(name.strip(), value.strip())
            if name.strip() == "refuses AUTH" or len(seen) > 60:
                break
        assert "5.7.139" in seen.get("refuses AUTH", "")
        context = ssl.create_default_context(cafile=seen["CA certificate"])
        session = SMTPSession(
            "127.0.0.1",
            int(seen["STARTTLS port"]),
            auth_token=BadToken(),
            username=ACCOUNT,
            ssl_context=context,
            timeout=20,
        )
        with pytest.raises(SMTPAuthError) as caught:
            session.verify()
        assert caught.value.code == 535
        assert "5.7.139" in (caught.value.server_message or "")
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.communicate(timeout=30)


class BadToken:
    """Any token: the server refuses AUTH whatever it is."""

    account = ACCOUNT
    access_token = "whatever"

    def refresh(self) -> BadToken:
        return self
