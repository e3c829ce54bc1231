"""``oauthsmtp doctor``: every check from the settings to AUTH, one line each, with the fix.

The checks run in the order data flows (settings, token store, token, identity, scopes,
DNS, TCP, TLS and certificate, EHLO and mechanisms, AUTH) and stop where a later one
cannot mean anything: no token means no identity, scope or AUTH check; no TCP means no
TLS. AUTH is tried through :meth:`SMTPSession.verify() <oauthsmtp.SMTPSession.verify>`
(RSET and QUIT after it): no message is ever sent. The judgements are pure functions in
:mod:`oauthsmtp._cli.diagnosis`; this module gathers the facts. Nothing printed holds a
secret: the details are oauthsmtp's own messages, which never do.

Exit codes: 0 when every check passes (warnings included), 3 when a failure is cured by
logging in again, 1 otherwise.
"""

from __future__ import annotations

import argparse

from . import context
from .diagnosis import (
    Check,
    check_identity,
    check_mechanisms,
    check_scopes,
    check_token,
    exit_code,
    failed,
    passed,
    render,
    rows,
)
from .exits import EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

    from oauthsmtp import AuthToken, TokenStore
    from oauthsmtp._accounts import AccountSettings
    from oauthsmtp._errors import OAuthSMTPError

__all__ = ["SMTP_TIMEOUT", "diagnose", "run_doctor"]

SMTP_TIMEOUT = 20.0
"""Seconds doctor allows for connecting and for each SMTP reply."""


def run_doctor(args: argparse.Namespace, out: TextIO) -> int:
    """Run every check for one account; print the report (or ``--json``); return the exit code."""
    checks = diagnose(_account(args.account))
    if args.json:
        import json

        out.write(json.dumps(rows(checks), indent=2) + "\n")
    else:
        out.write(render(checks))
    return exit_code(checks)


def _account(given: str | None) -> str | None:
    """The account to check: the one given, else the only one recorded (None: none is)."""
    if given:
        return given
    recorded = sorted(context.registry().load_all())
    if len(recorded) > 1:
        raise CommandError(
            f"several accounts are recorded ({', '.join(recorded)}); name one: "
            f"oauthsmtp doctor --account {recorded[0]}",
            code=EXIT_USAGE,
        )
    return recorded[0] if recorded else None


def diagnose(account: str | None) -> list[Check]:
    """Run the checks in order for ``account``; stop where later ones would mean nothing."""
    checks: list[Check] = []
    settings = _settings(account, checks)
    if settings is None:
        return checks
    account = settings.account
    token = _token(settings, checks)
    if token is not None:
        from oauthsmtp._oauth.tokenresponse import token_identity

        names = token.identity or token_identity(
            token.server_response, client_id=settings.client_id
        )
        checks.append(check_identity(names, account))
        if settings.transport == "api":
            shown = " ".join(token.scope) or "(none)"
            checks.append(passed("scopes", f"granted: {shown} (for the HTTP API)"))
        else:
            checks.append(check_scopes(settings.provider, token.scope, account=account))
        if settings.transport == "auto":
            checks.append(_api_token(settings, token))
    if settings.transport == "api":
        checks.append(
            passed(
                "smtp",
                f"not used: {account} sends through the {settings.api} HTTP API "
                "(transport api); the SMTP checks are skipped",
                status="skip",
            )
        )
        return checks
    if not _network(settings, checks):
        return checks
    if token is None:
        return checks
    if all(c.ok for c in checks):
        checks.append(_auth(settings, token))
    return checks


def _settings(account: str | None, checks: list[Check]) -> AccountSettings | None:
    if account is None:
        checks.append(
            failed(
                "settings",
                "no account is recorded on this machine",
                account="EMAIL",
                default="account-not-recorded",
                login=True,
            )
        )
        return None
    try:
        settings = context.require_settings(account)
    except CommandError as exc:
        checks.append(
            failed(
                "settings",
                f"no account {account} is recorded",
                also=(str(exc),),
                account=account,
                default="account-not-recorded",
                login=True,
            )
        )
        return None
    where = f"{settings.smtp_host}:{settings.smtp_port} {settings.security}"
    provider = settings.provider
    if settings.tenant:
        provider += f" (tenant {settings.tenant})"
    checks.append(passed("settings", f"{provider}, {where}"))
    return settings


def _store_name(store: TokenStore) -> str:
    kind = type(store).__name__
    if kind == "KeyringStore":
        try:
            import keyring

            return f"keyring ({type(keyring.get_keyring()).__name__})"
        except Exception:  # the name only decorates the line
            return "keyring"
    directory = getattr(store, "directory", None)
    if kind == "FileStore":
        return f"file store ({directory})" if directory else "file store"
    return kind


def _token(settings: AccountSettings, checks: list[Check]) -> AuthToken | None:
    """The store check and the token check; returns a usable token, or None."""
    from oauthsmtp import AuthToken, ConfigurationError, LoginRequired, TokenError, TokenStoreError
    from oauthsmtp._accounts import APP_PROVIDERS, saved_login

    from .status import REFRESH_WARNING_DAYS

    account = settings.account
    app_only = settings.provider in APP_PROVIDERS
    try:
        store = context.store()
        raw = store.load(settings.token_key)
    except TokenStoreError as exc:
        checks.append(
            failed(
                "token store",
                f"the token store cannot be used: {exc}",
                account=account,
                default="token-store-unusable",
            )
        )
        return None
    name = _store_name(store)
    saved: AuthToken | None = None
    if raw is not None:
        try:
            saved = AuthToken.from_json(raw)
        except ValueError:
            saved = None
    if saved is None and not app_only:
        problem = "no saved login" if raw is None else "the saved token cannot be read"
        checks.append(
            failed(
                "token store",
                f"{name}: {problem} for {account}",
                account=account,
                default="token-missing",
                login=True,
            )
        )
        return None
    held = "token present" if saved is not None else "no token yet (the app's grant gets one)"
    checks.append(passed("token store", f"{name}, {held}"))
    try:
        # A refresh when the access token expired; an app-only account makes its grant again.
        _, token = saved_login(settings, store)
    except (LoginRequired, TokenError, TokenStoreError, ConfigurationError) as exc:
        checks.append(
            failed(
                "token",
                f"the saved login cannot be renewed: {exc}",
                account=account,
                default="token-endpoint-failed" if isinstance(exc, TokenError) else "token-missing",
                login=isinstance(exc, LoginRequired),
            )
        )
        return None
    from oauthsmtp._util.clock import utcnow

    if app_only:
        left = "" if token.expires_at is None else f", valid until {token.expires_at:%H:%M} UTC"
        checks.append(passed("token", f"app-only token obtained by the app's grant{left}"))
        return token
    assert saved is not None  # noqa: S101 - only app-only accounts go on without one
    checks.append(
        check_token(
            account=account,
            provider=settings.provider,
            now=utcnow(),
            expires_at=token.expires_at,
            obtained_at=token.state.obtained_at,
            has_refresh_token=token.refresh_token is not None,
            refresh_expires_at=token.refresh_expires_at,
            refreshed=token.state.access_token != saved.state.access_token,
            warn_days=REFRESH_WARNING_DAYS,
        )
    )
    return token


def _network(settings: AccountSettings, checks: list[Check]) -> bool:
    """DNS, TCP, then TLS and EHLO through a session without credentials; True if all pass."""
    import socket

    account, host, port = settings.account, settings.smtp_host, settings.smtp_port
    try:
        infos = socket.getaddrinfo(host.strip("[]"), port, type=socket.SOCK_STREAM)
    except (OSError, UnicodeError) as exc:
        checks.append(
            failed(
                "dns",
                f"{host} does not resolve ({exc})",
                account=account,
                default="dns-unresolved",
            )
        )
        return False
    addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
    checks.append(passed("dns", f"{host} resolves to {', '.join(addresses[:4])}"))
    try:
        with socket.create_connection((host.strip("[]"), port), timeout=SMTP_TIMEOUT) as sock:
            peer = sock.getpeername()[0]
    except OSError as exc:
        why = "timed out connecting" if isinstance(exc, TimeoutError) else str(exc)
        checks.append(
            failed(
                "tcp",
                f"cannot connect to {host}:{port}: {why}",
                account=account,
                default="tcp-unreachable",
            )
        )
        return False
    checks.append(passed("tcp", f"connected to {peer} port {port}"))
    return _probe(settings, checks)


def _probe(settings: AccountSettings, checks: list[Check]) -> bool:
    """TLS and EHLO: SMTPSession.verify() without credentials (no AUTH, nothing sent)."""
    from oauthsmtp import OAuthSMTPError, SMTPSession

    account, security = settings.account, settings.security
    try:
        info = SMTPSession(
            settings.smtp_host,
            settings.smtp_port,
            security=security,  # type: ignore[arg-type]
            timeout=SMTP_TIMEOUT,
        ).verify()
    except OAuthSMTPError as exc:
        name = "tls" if _about_tls(exc) else "ehlo"
        default = "tls-failed" if name == "tls" else "smtp-refused-session"
        checks.append(failed(name, _first_line(exc), account=account, default=default))
        return False
    if info.tls_version is None:
        checks.append(
            passed("tls", "none (security none: loopback test servers only)", status="skip")
        )
    else:
        subject = info.certificate_subject or "(no subject)"
        issuer = info.certificate_issuer or "(no issuer)"
        checks.append(
            passed("tls", f"{info.tls_version}, certificate {subject}, issued by {issuer}")
        )
    mechanisms = check_mechanisms(dict(info.extensions), host=settings.smtp_host, account=account)
    checks.append(mechanisms)
    return mechanisms.ok


def _about_tls(exc: OAuthSMTPError) -> bool:
    import ssl

    text = str(exc)
    return isinstance(exc.__cause__, ssl.SSLError) or "TLS" in text


def _first_line(exc: BaseException, limit: int = 300) -> str:
    text = " ".join(str(exc).split())
    return text if len(text) <= limit else text[: limit - 3] + "..."


def _api_token(settings: AccountSettings, token: AuthToken) -> Check:
    """transport auto: the token the API would take at the switch (redeemed now if needed)."""
    from oauthsmtp import OAuthSMTPError
    from oauthsmtp._accounts import api_token, grants_api

    name = "the Gmail API" if settings.api == "gmail" else "Microsoft Graph"
    if settings.api_scopes is None and not grants_api(settings, token.scope):
        return failed(
            "api token",
            f"no token for {name} from this login: it asked for none of its scopes "
            f"(granted: {' '.join(token.scope) or 'none'}); transport auto cannot switch to it",
            account=settings.account,
            default="api-token-missing",
            login=True,
        )
    try:
        source = api_token(settings, token)
    except OAuthSMTPError as exc:
        return failed(
            "api token",
            f"no token for {name} from this login: {_first_line(exc)}; transport auto cannot "
            "switch to it",
            account=settings.account,
            default="api-token-missing",
            login=True,
        )
    if source is token:
        return passed("api token", f"the login's token serves {name} too (transport auto)")
    return passed(
        "api token",
        f"{name} token obtained from the same login ({' '.join(source.scope)}); "
        "transport auto can switch to it",
    )


def _auth(settings: AccountSettings, token: AuthToken) -> Check:
    """AUTH with the token through SMTPSession.verify(): RSET and QUIT after it, no MAIL."""
    from oauthsmtp import LoginRequired, OAuthSMTPError, SMTPAuthError, SMTPSession

    account = settings.account
    try:
        info = SMTPSession(
            settings.smtp_host,
            settings.smtp_port,
            security=settings.security,  # type: ignore[arg-type]
            username=account,
            auth_token=token,
            timeout=SMTP_TIMEOUT,
        ).verify()
    except OAuthSMTPError as exc:
        check = _auth_failure(
            exc, account, login=isinstance(exc, LoginRequired), auth=isinstance(exc, SMTPAuthError)
        )
        from oauthsmtp._api.auto import refused_for_configuration

        code, server = getattr(exc, "code", None), getattr(exc, "server_message", None)
        if settings.transport == "auto" and refused_for_configuration(code, server):
            # Sending still works: auto switches to the API on exactly this refusal.
            name = "the Gmail API" if settings.api == "gmail" else "Microsoft Graph"
            return Check(
                check.check,
                "warn",
                f"{check.detail}; transport auto sends through {name} instead",
                check.fix,
            )
        return check
    return passed("smtp auth", f"{info.mechanism} accepted for {account} (no message sent)")


def _auth_failure(exc: OAuthSMTPError, account: str, *, login: bool, auth: bool) -> Check:
    code = getattr(exc, "code", None)
    server = getattr(exc, "server_message", None)
    reply = f"{code} {' '.join(str(server).split())}" if code and server else ""
    from oauthsmtp._explain import lookup

    entry = lookup(reply) if reply else None
    if entry is not None:
        detail = entry.title
        if reply and reply[:3] not in detail:
            detail = f"{reply[:3]} {detail}"
    else:
        detail = _first_line(exc)
    return failed(
        "smtp auth",
        detail,
        also=(reply, str(exc)),
        account=account,
        default="smtp-auth-refused" if auth else "smtp-refused-session",
        login=login,
    )
