"""``oauthsmtp doctor``: each outcome, its line, its fix (from the explain table) and exit code.

Against real servers on loopback: the development SMTP server (which plays Microsoft 365's
refusals with ``auth_failure=``) and, for what it cannot play (an implicit-TLS port, an
untrusted certificate, no OAuth mechanism), the scripted servers of ``hostile_smtp``.
Run in-process with a recorded account in a private home (``cli_support``).
"""

from __future__ import annotations

import dataclasses
import json
import os
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from cli_support import ACCOUNT, make_home, run
from conftest import FakeBrowser
from hostile_smtp import HostileServer

import oauthsmtp
from oauthsmtp import FileStore
from oauthsmtp._accounts import AccountRegistry, AccountSettings
from oauthsmtp._cli.diagnosis import check_identity, check_scopes, check_token
from oauthsmtp._explain import by_key
from oauthsmtp.devserver import AuthServer, CertificateSet, SMTPServer

SECRETS = ("AT-secret", "RT-secret")


@pytest.fixture
def home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, certs: CertificateSet) -> Path:
    """A recorded account (token AT-secret / RT-secret); the dev CA trusted via SSL_CERT_FILE."""
    home = make_home(tmp_path, monkeypatch)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    return home


@pytest.fixture
def dev(certs: CertificateSet) -> Iterator[SMTPServer]:
    with SMTPServer({"AT-secret": SimpleNamespace(user=ACCOUNT)}.get, certificates=certs) as s:
        yield s


@pytest.fixture
def hostile(certs: CertificateSet) -> Iterator[Callable[..., HostileServer]]:
    started: list[HostileServer] = []

    def start(**kwargs: Any) -> HostileServer:
        kwargs.setdefault("tls_context", certs.server_context())
        kwargs.setdefault("tokens", ("AT-secret",))
        server = HostileServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        assert not server.errors, server.errors


def settings_of(home: Path) -> AccountSettings:
    settings = AccountRegistry(home).get(ACCOUNT)
    assert settings is not None
    return settings


def point(home: Path, **changes: Any) -> AccountSettings:
    """Change the recorded settings (SMTP server, provider, ...)."""
    settings = dataclasses.replace(settings_of(home), **changes)
    AccountRegistry(home).put(settings)
    return settings


def edit_token(home: Path, **fields: Any) -> None:
    settings = settings_of(home)
    store = FileStore(home / "tokens")
    raw = store.load(settings.token_key)
    assert raw is not None
    store.save(settings.token_key, json.dumps({**json.loads(raw), **fields}))


def doctor(
    capsys: pytest.CaptureFixture[str], *extra: str, account: str = ACCOUNT
) -> tuple[int, dict[str, str], str]:
    """Run doctor; (exit code, {check: its line}, whole output). Asserts no secret shows."""
    code, out, err = run(capsys, "doctor", "--account", account, *extra)
    for secret in SECRETS:
        assert secret not in out + err
    lines = {line[6:20].strip(): line for line in out.splitlines() if line[:1].strip()}
    return code, lines, out


def fix_of(out: str, check: str) -> str:
    """The Fix text under ``check``'s line, unwrapped."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line[6:20].strip() == check)
    fix: list[str] = []
    for line in lines[start + 1 :]:
        if line[:1].strip():
            break
        fix.append(line.strip())
    text = " ".join(fix)
    assert text.startswith("Fix: "), text
    return text[len("Fix: ") :]


def normalized(text: str) -> str:
    return " ".join(text.split())


# -- everything passes ------------------------------------------------------------------------
def test_all_checks_pass_against_the_dev_server(
    home: Path, dev: SMTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Ten lines, in order, all passing; exit 0; AUTH tried, nothing sent."""
    point(home, smtp_host="localhost", smtp_port=dev.port, security="starttls")
    code, lines, out = doctor(capsys)
    assert code == 0, out
    assert list(lines) == [
        "settings", "token store", "token", "identity", "scopes",
        "dns", "tcp", "tls", "ehlo", "smtp auth",
    ]  # fmt: skip
    assert lines["settings"].startswith("ok    settings      custom, localhost:")
    assert "file store" in lines["token store"]
    assert "token present" in lines["token store"]
    assert "access token valid for" in lines["token"]
    assert lines["identity"].startswith("skip  ")
    assert "localhost resolves to 127.0.0.1" in lines["dns"]
    assert "TLSv1." in lines["tls"]
    assert "CN=localhost" in lines["tls"]
    assert "AUTH XOAUTH2 OAUTHBEARER" in lines["ehlo"]
    assert lines["smtp auth"].startswith("ok    smtp auth     ")
    assert f"accepted for {ACCOUNT} (no message sent)" in lines["smtp auth"]
    assert "Fix:" not in out
    assert dev.messages == []
    assert dev.auth_log[-1][1:] == (ACCOUNT, True)


def test_json_lists_every_check(
    home: Path, dev: SMTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    point(home, smtp_host="localhost", smtp_port=dev.port, security="ssl")
    point(home, smtp_port=dev.tls_port)
    code, _, out = doctor(capsys, "--json")
    assert code == 0
    checks = json.loads(out)
    assert [set(c) for c in checks] == [{"check", "status", "detail", "fix"}] * len(checks)
    assert checks[-1]["check"] == "smtp auth"
    assert checks[-1]["status"] == "ok"
    assert all(c["fix"] is None for c in checks if c["status"] == "ok")


# -- settings, store, token -------------------------------------------------------------------
def test_unknown_account_needs_a_login(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor", "--account", "other@example.org")
    assert code == 3
    assert out.splitlines()[0].startswith("FAIL  settings      no account other@example.org")
    assert "oauthsmtp login --account other@example.org" in normalized(out)
    assert len([line for line in out.splitlines() if line[:1].strip()]) == 1  # stops here


def test_no_account_at_all(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    monkeypatch.setenv("OAUTHSMTP_HOME", str(tmp_path / "empty"))
    monkeypatch.setenv("OAUTHSMTP_STORE", "file")
    code, out, _ = run(capsys, "doctor")
    assert code == 3
    assert out.startswith("FAIL  settings      no account is recorded")


def test_several_accounts_without_account_is_a_usage_error(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    AccountRegistry(home).put(dataclasses.replace(settings_of(home), account="b@example.org"))
    code, _, err = run(capsys, "doctor")
    assert code == 2
    assert "several accounts are recorded" in err


def test_the_only_account_is_the_default(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "doctor")
    assert out.startswith("ok    settings      custom, 127.0.0.1:")
    assert code == 1  # the recorded SMTP port is closed


def test_no_saved_token_needs_a_login(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    FileStore(home / "tokens").delete(settings_of(home).token_key)
    code, lines, out = doctor(capsys)
    assert code == 3
    assert lines["token store"].startswith("FAIL  token store   file store")
    assert "no saved login for me@example.org" in lines["token store"]
    assert f"oauthsmtp login --account {ACCOUNT}" in fix_of(out, "token store")
    assert "smtp auth" not in lines


def test_expired_token_without_refresh_token_needs_a_login(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    make_home(tmp_path, monkeypatch, expires_in=-60, refresh=False)
    code, lines, out = doctor(capsys)
    assert code == 3
    assert lines["token"].startswith("FAIL  token         the saved login cannot be renewed")
    assert "no refresh token is held" in lines["token"]
    assert normalized(fix_of(out, "token")) == normalized(
        by_key("token-no-refresh").fix.replace("{account}", ACCOUNT)
    )
    assert "identity" not in lines
    assert "dns" in lines  # the network checks still mean something


def test_refresh_token_lapsing_soon_is_a_warning(
    home: Path, dev: SMTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    """Within 3 days: warn (with the invalid_grant fix: publish a Testing app); still exit 0."""
    point(home, smtp_host="localhost", smtp_port=dev.port, security="starttls")
    soon = datetime.now(timezone.utc) + timedelta(days=2)
    edit_token(home, refresh_expires_at=soon.isoformat())
    code, lines, out = doctor(capsys)
    assert code == 0
    assert lines["token"].startswith("warn  token         ")
    assert "the refresh token lapses in" in lines["token"]
    assert "publish it" in fix_of(out, "token")
    assert lines["smtp auth"].startswith("ok")


def test_graph_scope_for_smtp_needs_a_login(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    edit_token(home, scope="https://graph.microsoft.com/Mail.Send offline_access")
    point(home, provider="microsoft")
    code, lines, out = doctor(capsys)
    assert code == 3
    assert lines["scopes"] == (
        "FAIL  scopes        granted https://graph.microsoft.com/Mail.Send: a Microsoft Graph "
        "scope, not SMTP.Send"
    )
    assert "https://outlook.office.com/SMTP.Send" in fix_of(out, "scopes")
    assert "smtp auth" not in lines


def test_api_transport_skips_the_smtp_checks(
    home: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    """An account that sends through Graph: a Graph scope is right, SMTP is not checked."""
    edit_token(home, scope="https://graph.microsoft.com/Mail.Send offline_access")
    point(home, provider="microsoft", transport="api")
    code, lines, _ = doctor(capsys)
    assert code == 0
    assert lines["scopes"].startswith("ok    scopes        granted: https://graph.microsoft.com")
    assert lines["smtp"].startswith("skip  smtp          not used: me@example.org sends through")
    assert "dns" not in lines


# -- the network ------------------------------------------------------------------------------
def test_name_that_does_not_resolve(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    point(home, smtp_host="nowhere.invalid", security="starttls")
    code, lines, out = doctor(capsys)
    assert code == 1
    assert lines["dns"].startswith("FAIL  dns           nowhere.invalid does not resolve")
    assert "--smtp-host" in fix_of(out, "dns")
    assert "tcp" not in lines


def test_closed_port(home: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, lines, out = doctor(capsys)
    assert code == 1
    assert lines["tcp"].startswith("FAIL  tcp           cannot connect to 127.0.0.1:")
    assert "587 with starttls, 465 with ssl" in fix_of(out, "tcp")
    assert "tls" not in lines


def test_starttls_on_an_implicit_tls_port(
    home: Path, hostile: Callable[..., HostileServer], capsys: pytest.CaptureFixture[str]
) -> None:
    """Found within seconds (not a 20 s timeout), with the port/security fix."""
    server = hostile(implicit_tls=True)
    point(home, smtp_host="localhost", smtp_port=server.port, security="starttls")
    code, lines, out = doctor(capsys)
    assert code == 1
    assert lines["tls"].startswith("FAIL  tls           ")
    assert "expects implicit TLS" in lines["tls"]
    assert normalized(fix_of(out, "tls")) == normalized(
        by_key("tls-wrong-version").fix.replace("{account}", ACCOUNT)
    )
    assert server.auth_attempts == []


def test_implicit_tls_on_a_starttls_port(
    home: Path, dev: SMTPServer, capsys: pytest.CaptureFixture[str]
) -> None:
    point(home, smtp_host="localhost", smtp_port=dev.port, security="ssl")
    code, lines, out = doctor(capsys)
    assert code == 1
    assert "answered in plain text, not TLS" in lines["tls"]
    assert "security='starttls' with port 587" in fix_of(out, "tls")


def test_untrusted_certificate_names_ssl_cert_file(
    home: Path,
    hostile: Callable[..., HostileServer],
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("SSL_CERT_FILE")
    server = hostile()
    point(home, smtp_host="localhost", smtp_port=server.port, security="starttls")
    code, lines, out = doctor(capsys)
    assert code == 1
    assert lines["tls"].startswith("FAIL  tls           the TLS certificate of localhost:")
    assert "SSL_CERT_FILE" in fix_of(out, "tls")
    assert server.auth_attempts == []


def test_no_oauth_mechanism(
    home: Path, hostile: Callable[..., HostileServer], capsys: pytest.CaptureFixture[str]
) -> None:
    server = hostile(auth=("LOGIN", "PLAIN"))
    point(home, smtp_host="localhost", smtp_port=server.port, security="starttls")
    code, lines, out = doctor(capsys)
    assert code == 1
    assert lines["ehlo"] == (
        "FAIL  ehlo          localhost offers no OAuth2 mechanism after TLS (AUTH LOGIN PLAIN)"
    )
    assert "oauthsmtp providers" in fix_of(out, "ehlo")
    assert "smtp auth" not in lines
    assert server.auth_attempts == []


# -- AUTH refusals the dev server plays -------------------------------------------------------
REFUSALS = {
    "tenant": ("535 5.7.139: SMTP AUTH is disabled for the whole Microsoft 365 tenant.",
               "Set-TransportConfig -SmtpClientAuthenticationDisabled $false"),
    "mailbox": ("535 5.7.139: SMTP AUTH is disabled for this mailbox.",
                f"Set-CASMailbox -Identity {ACCOUNT} -SmtpClientAuthenticationDisabled $false"),
    "basic-auth": ("550 5.7.30: Microsoft 365 no longer accepts a password for SMTP (basic auth).",
                   f"oauthsmtp login --account {ACCOUNT} --provider microsoft"),
    "connections": ("432 4.3.2: too many concurrent connections for this mailbox.",
                    "connections=1"),
}  # fmt: skip


@pytest.mark.parametrize("failure", list(REFUSALS))
def test_auth_refusals(
    home: Path, certs: CertificateSet, capsys: pytest.CaptureFixture[str], failure: str
) -> None:
    line, fix = REFUSALS[failure]
    validator = {"AT-secret": SimpleNamespace(user=ACCOUNT)}.get
    with SMTPServer(validator, certificates=certs, auth_failure=failure) as server:
        point(home, smtp_host="localhost", smtp_port=server.port, security="starttls")
        code, lines, out = doctor(capsys)
        assert server.messages == []
    assert code == 1
    assert lines["smtp auth"] == f"FAIL  smtp auth     {line}"
    assert fix in fix_of(out, "smtp auth")
    assert all(status.startswith("ok") or "identity" in name for name, status in lines.items()
               if name != "smtp auth")  # fmt: skip


def test_rejected_token_is_refreshed_once_then_reported(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certs: CertificateSet,
    fake_browser: FakeBrowser,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """535 5.7.3 with a real token endpoint: one refresh, AUTH again, then the 5.7.3 fix."""
    browser = os.environ["BROWSER"]  # the fake browser's, which make_home replaces
    home = make_home(tmp_path, monkeypatch)
    monkeypatch.setenv("BROWSER", browser)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    with AuthServer(mode="auto", user=ACCOUNT) as auth:
        params = auth.parameters(
            auth.register_client(public=True), redirect_url="http://127.0.0.1:0/cb"
        )
        with SMTPServer(
            auth.validate_access_token, certificates=certs, auth_failure="bad-token"
        ) as server:
            point(
                home,
                token_url=params.token_url,
                auth_url=params.auth_url,
                client_id=params.client_id,
                scope=params.scopes,
                smtp_host="localhost",
                smtp_port=server.port,
                security="starttls",
            )
            store = FileStore(home / "tokens")
            oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, timeout=20)
            before = auth.token_requests
            code, lines, out = doctor(capsys)
            assert auth.token_requests == before + 1
            assert len(server.auth_log) == 2
    assert code == 1
    assert lines["smtp auth"] == "FAIL  smtp auth     535 5.7.3: Microsoft 365 refused the token."
    assert "https://outlook.office.com/SMTP.Send" in fix_of(out, "smtp auth")


@pytest.mark.parametrize("refresh", [True, False], ids=["refreshed", "as-stored"])
@pytest.mark.parametrize("logged_in_as", [ACCOUNT, "other@example.org"], ids=["same", "other"])
def test_identity_from_the_id_token(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certs: CertificateSet,
    fake_browser: FakeBrowser,
    capsys: pytest.CaptureFixture[str],
    logged_in_as: str,
    refresh: bool,
) -> None:
    """Whose token it is comes from the id_token: the one a refresh answer carries, or the
    login's, kept in the store with the token (a later process that does not refresh).

    A token of another account saved under this one (copied by hand, say) is caught before
    AUTH, and needs a login (exit 3).
    """
    browser = os.environ["BROWSER"]
    home = make_home(tmp_path, monkeypatch)
    monkeypatch.setenv("BROWSER", browser)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    with AuthServer(mode="auto", user=logged_in_as) as auth:
        params = auth.parameters(
            auth.register_client(public=True),
            redirect_url="http://127.0.0.1:0/cb",
            scope=f"{auth.scope} openid email",
        )
        with SMTPServer(auth.validate_access_token, certificates=certs) as server:
            settings = point(
                home,
                token_url=params.token_url,
                auth_url=params.auth_url,
                client_id=params.client_id,
                scope=params.scopes,
                smtp_host="localhost",
                smtp_port=server.port,
                security="starttls",
            )
            store = FileStore(home / "tokens")
            token = oauthsmtp.auth_identify(params, account=logged_in_as, store=store, timeout=20)
            assert token.identity == (logged_in_as,)
            if refresh:
                token.expire()
            store.save(settings.token_key, token.to_json())
            code, lines, out = doctor(capsys)
            assert server.messages == []
    assert ("refreshed just now" in lines["token"]) is refresh
    if logged_in_as == ACCOUNT:
        assert code == 0, out
        assert lines["identity"] == f"ok    identity      token is for {ACCOUNT}"
        assert lines["smtp auth"].startswith("ok")
    else:
        assert code == 3
        assert lines["identity"] == (
            f"FAIL  identity      the token is for other@example.org, not {ACCOUNT}"
        )
        assert f"choose {ACCOUNT} on the provider's page" in fix_of(out, "identity")
        assert "smtp auth" not in lines


def test_app_only_account(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    certs: CertificateSet,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """A microsoft-app account: the app's grant instead of a refresh token; all checks pass."""
    mailbox = "shared@example.org"
    monkeypatch.setenv("OAUTHSMTP_HOME", str(tmp_path / "home"))
    monkeypatch.setenv("OAUTHSMTP_STORE", "file")
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    with (
        AuthServer() as auth,
        SMTPServer(auth.validate_access_token, certificates=certs) as smtp,
    ):
        app = auth.register_app(mailboxes=[mailbox])
        assert app.client_secret is not None
        secret = tmp_path / "secret.txt"
        secret.write_text(app.client_secret + "\n")
        secret.chmod(0o600)
        code, _, err = run(capsys, "login", "--account", mailbox, "--provider", "microsoft-app",
                           "--client-id", app.client_id, "--tenant", "dev.test",
                           "--client-secret-file", str(secret), "--token-url",
                           auth.token_endpoint, "--scope", auth.scope, "--smtp-host", "localhost",
                           "--smtp-port", str(smtp.port), "--security", "starttls")  # fmt: skip
        assert code == 0, err
        code, lines, out = doctor(capsys, account=mailbox)
        assert app.client_secret not in out
        assert smtp.messages == []
    assert code == 0, out
    assert "app-only token obtained by the app's grant" in lines["token"]
    assert lines["smtp auth"].startswith("ok")


# -- the judgements, without servers ----------------------------------------------------------
def test_identity_mismatch_and_match() -> None:
    mismatch = check_identity(("other@example.org",), ACCOUNT)
    assert (mismatch.status, mismatch.login) == ("FAIL", True)
    assert mismatch.detail == f"the token is for other@example.org, not {ACCOUNT}"
    assert mismatch.fix == by_key("identity-mismatch").fix.replace("{account}", ACCOUNT)
    assert check_identity((ACCOUNT.upper(),), ACCOUNT).status == "ok"
    assert check_identity((), ACCOUNT).status == "skip"


@pytest.mark.parametrize(
    ("provider", "granted", "status", "key"),
    [
        ("gmail", ("https://mail.google.com/", "openid"), "ok", None),
        ("gmail", ("https://www.googleapis.com/auth/gmail.send",), "FAIL", "scope-missing"),
        ("microsoft", ("https://outlook.office.com/SMTP.Send", "offline_access"), "ok", None),
        ("microsoft", ("https://graph.microsoft.com/Mail.Send",), "FAIL", "scope-graph-for-smtp"),
        ("microsoft", ("openid", "offline_access"), "FAIL", "scope-missing"),
        ("custom", ("smtp",), "ok", None),
    ],
)
def test_scopes(provider: str, granted: tuple[str, ...], status: str, key: str | None) -> None:
    check = check_scopes(provider, granted, account=ACCOUNT)
    assert check.status == status
    if key is not None:
        assert check.fix == by_key(key).fix.replace("{account}", ACCOUNT)
        assert check.login


def test_token_forecasts() -> None:
    now = datetime(2026, 1, 10, 12, tzinfo=timezone.utc)
    common: dict[str, Any] = {
        "account": ACCOUNT, "now": now, "expires_at": now + timedelta(minutes=54),
        "obtained_at": now - timedelta(minutes=6), "has_refresh_token": True,
        "refresh_expires_at": None, "refreshed": False, "warn_days": 3,
    }  # fmt: skip
    ms = check_token(provider="microsoft", **common)
    assert ms.status == "ok"
    assert ms.detail == (
        "access token valid for 54 min; refresh token lapses after 90 days unused (last used today)"
    )
    told = check_token(
        provider="gmail", **{**common, "refresh_expires_at": now + timedelta(days=6)}
    )
    assert told.status == "ok"
    assert "the refresh token lapses at 2026-01-16" in told.detail
    none = check_token(provider="custom", **{**common, "has_refresh_token": False})
    assert none.status == "warn"
    assert none.fix is not None
