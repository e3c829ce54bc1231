"""The commands of the ``oauthsmtp`` command line (parsing and exit codes are in ``_cli``).

Each ``_cmd_*`` function takes the parsed arguments and the stream for results
(stdout), writes human messages to stderr, and returns an exit code or raises
an :class:`~oauthsmtp.OAuthSMTPError` that ``_cli.main`` turns into one line on
stderr. Heavy modules are imported inside the commands that need them.
"""

from __future__ import annotations

import argparse
import json
import sys
from typing import Any, TextIO

from .main import EXIT_LOGIN_REQUIRED, EXIT_OK, EXIT_USAGE, CommandError

__all__ = ["COMMANDS"]


def _settings_registry() -> Any:
    from oauthsmtp._accounts import AccountRegistry
    from oauthsmtp._tokens.stores.choose import oauthsmtp_home

    return AccountRegistry(oauthsmtp_home())


def _require_settings(account: str) -> Any:
    settings = _settings_registry().get(account)
    if settings is None:
        raise CommandError(
            f"no account {account!r} is recorded; log in first: "
            f"oauthsmtp login --account {account} --provider gmail|microsoft|custom ...",
            code=EXIT_LOGIN_REQUIRED,
        )
    return settings


def _client_secret(store: Any, settings: Any) -> str | None:
    if not settings.has_client_secret:
        return None
    from oauthsmtp._accounts import secret_key

    value: str | None = store.load(secret_key(settings))
    return value


def _token_for(account: str, *, interactive: bool = False) -> tuple[Any, Any, Any]:
    """(settings, params, token) for a recorded account, without a browser."""
    from oauthsmtp._tokens.identify import auth_identify
    from oauthsmtp._tokens.stores.choose import default_store

    settings = _require_settings(account)
    store = default_store()
    params = settings.parameters(_client_secret(store, settings))
    token = auth_identify(params, account=account, store=store, interactive=interactive)
    return settings, params, token


# -- commands -------------------------------------------------------------------------


def _cmd_login(args: argparse.Namespace, out: TextIO) -> int:
    from oauthsmtp import providers
    from oauthsmtp._accounts import AccountSettings, secret_key
    from oauthsmtp._tokens.identify import auth_identify
    from oauthsmtp._tokens.stores.choose import default_store

    registry = _settings_registry()
    previous = registry.get(args.account)
    provider = args.provider or (previous.provider if previous else None)
    if provider is None:
        raise CommandError(
            "--provider is needed for a first login (gmail, microsoft or custom)",
            code=EXIT_USAGE,
        )
    store = default_store()
    client_id = args.client_id or (previous.client_id if previous else None)
    if not client_id:
        raise CommandError(
            "--client-id is needed: copy it from the provider's app registration "
            "(see docs/login.md)",
            code=EXIT_USAGE,
        )
    secret = args.client_secret
    if secret is None and previous is not None and previous.client_id == client_id:
        secret = _client_secret(store, previous)
    redirect = args.redirect_url or (previous.redirect_url if previous else None)
    overrides: dict[str, Any] = {}
    if redirect:
        overrides["redirect_url"] = redirect
    tenant = None
    if provider in ("gmail", "microsoft"):
        info = providers.PROVIDERS[provider]
        if provider == "gmail":
            params = providers.gmail(client_id=client_id, client_secret=secret, **overrides)
        else:
            tenant = args.tenant or (previous.tenant if previous else None) or "common"
            params = providers.microsoft(
                client_id=client_id, client_secret=secret, tenant=tenant, **overrides
            )
        default_host = info.smtp_host
        if provider == "microsoft" and tenant == "consumers":
            default_host = providers.OUTLOOK_COM_SMTP_HOST
        same = previous if previous is not None and previous.provider == provider else None
        smtp_host = args.smtp_host or (same.smtp_host if same else default_host)
        smtp_port = args.smtp_port or (same.smtp_port if same else info.smtp_port)
        security = args.security or (same.security if same else info.security)
    else:
        same = previous if previous is not None and previous.provider == "custom" else None
        auth_url = args.auth_url or (same.auth_url if same else None)
        token_url = args.token_url or (same.token_url if same else None)
        scope = args.scope or (" ".join(same.scope) if same else None)
        smtp_host = args.smtp_host or (same.smtp_host if same else None)
        missing = [
            name
            for name, value in (
                ("--auth-url", auth_url),
                ("--token-url", token_url),
                ("--scope", scope),
                ("--smtp-host", smtp_host),
            )
            if not value
        ]
        if missing:
            raise CommandError(f"--provider custom needs {', '.join(missing)}", code=EXIT_USAGE)
        security = args.security or (same.security if same else "starttls")
        default_port = {"starttls": 587, "ssl": 465, "none": 25}[security]
        smtp_port = args.smtp_port or (same.smtp_port if same else default_port)
        params = providers.custom(
            client_id=client_id,
            client_secret=secret,
            auth_url=auth_url,
            token_url=token_url,
            scope=scope,
            revocation_url=args.revocation_url or (same.revocation_url if same else None),
            issuer=args.issuer or (same.issuer if same else None),
            **overrides,
        )
    token = auth_identify(
        params,
        account=args.account,
        store=store,
        open_browser=not args.no_browser,
        timeout=args.timeout,
        force=True,
    )
    settings = AccountSettings(
        account=args.account,
        provider=provider,
        client_id=params.client_id,
        auth_url=params.auth_url,
        token_url=params.token_url,
        scope=params.scopes,
        redirect_url=params.redirect_url,
        smtp_host=smtp_host,
        smtp_port=int(smtp_port),
        security=security,
        revocation_url=params.revocation_url,
        issuer=params.issuer,
        extra_auth_params=dict(params.extra_auth_params),
        has_client_secret=params.client_secret is not None,
        tenant=tenant,
    )
    if params.client_secret is not None:
        store.save(secret_key(settings), params.client_secret)
    else:
        store.delete(secret_key(settings))
    registry.put(settings)
    expiry = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "unknown"
    refresh = "with a refresh token" if token.refresh_token else "WITHOUT a refresh token"
    print(
        f"oauthsmtp: logged in as {args.account} ({provider}); token saved {refresh}, "
        f"access token valid until {expiry}.",
        file=sys.stderr,
    )
    return EXIT_OK


def _cmd_token(args: argparse.Namespace, out: TextIO) -> int:
    settings, _, token = _token_for(args.account)
    access = token.access_token
    fmt = args.format
    if fmt == "raw":
        out.write(access + "\n")
    elif fmt in ("xoauth2", "oauthbearer"):
        from oauthsmtp._smtp import sasl as _sasl

        if fmt == "xoauth2":
            blob = _sasl.xoauth2_initial(args.account, access)
        else:
            blob = _sasl.oauthbearer_initial(
                args.account, access, settings.smtp_host, settings.smtp_port
            )
        out.write(blob.decode("ascii") + "\n")
    else:
        data = {
            "account": args.account,
            "access_token": access,
            "token_type": token.token_type,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "scope": list(token.scope),
            "has_refresh_token": token.refresh_token is not None,
        }
        out.write(json.dumps(data, indent=2) + "\n")
    out.flush()
    return EXIT_OK


def _read_text(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CommandError(f"cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{path} is not UTF-8 text") from None


def _cmd_send(args: argparse.Namespace, out: TextIO) -> int:
    from oauthsmtp._message.prepare import Email
    from oauthsmtp._smtp.session import SMTPSession

    settings, _, token = _token_for(args.account)
    if args.body_file:
        body = _read_text(args.body_file)
    else:
        if sys.stdin.isatty():
            print(
                "oauthsmtp: reading the body from standard input (end with Ctrl-D)...",
                file=sys.stderr,
            )
        body = sys.stdin.read()
    html = _read_text(args.html_file) if args.html_file else None
    for path in args.attach:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise CommandError(f"cannot read attachment {path}: {exc.strerror}") from None
    email = Email(
        sender=args.sender or args.account,
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        subject=args.subject,
        text=body,
        html=html,
        attachments=args.attach,
    )
    with SMTPSession(
        settings.smtp_host,
        port=settings.smtp_port,
        security=settings.security,
        username=args.account,
        auth_token=token,
    ) as session:
        result = session.send(email)
    if result.status == "unknown":
        raise CommandError(
            "the connection was lost before the server confirmed the message: it may or may "
            "not have been delivered; check the recipient's mailbox before sending it again"
        )
    if not result.ok:
        raise CommandError(f"the server refused the message: {result.code} {result.message}")
    refused = getattr(result, "refused", {}) or {}
    for rcpt, (code, text) in refused.items():
        print(f"oauthsmtp: warning: {rcpt} refused: {code} {text}", file=sys.stderr)
    print(f"oauthsmtp: sent ({result.code} {result.message})", file=sys.stderr)
    return EXIT_OK


def _token_summary(store: Any, settings: Any) -> dict[str, Any]:
    from oauthsmtp._tokens.token import AuthToken

    summary: dict[str, Any] = {
        "account": settings.account,
        "provider": settings.provider,
        "client_id": settings.client_id,
        "scopes": list(settings.scope),
        "smtp": f"{settings.smtp_host}:{settings.smtp_port} ({settings.security})",
        "logged_in": False,
        "expires_at": None,
        "access_token_valid": False,
        "has_refresh_token": False,
    }
    raw = store.load(settings.token_key)
    if raw is None:
        return summary
    try:
        token = AuthToken.from_json(raw)
    except ValueError:
        return summary
    summary.update(
        logged_in=True,
        scopes=list(token.scope) or list(settings.scope),
        expires_at=token.expires_at.isoformat(timespec="seconds") if token.expires_at else None,
        access_token_valid=token.valid,
        has_refresh_token=token.refresh_token is not None,
    )
    return summary


def _cmd_status(args: argparse.Namespace, out: TextIO) -> int:
    from oauthsmtp._tokens.stores.choose import default_store

    registry = _settings_registry()
    accounts = registry.load_all()
    if args.account:
        if args.account not in accounts:
            raise CommandError(f"no account {args.account!r} is recorded", code=EXIT_LOGIN_REQUIRED)
        accounts = {args.account: accounts[args.account]}
    store = default_store() if accounts else None
    rows = [_token_summary(store, s) for _, s in sorted(accounts.items())]
    if args.json:
        out.write(json.dumps({"accounts": rows}, indent=2) + "\n")
        return EXIT_OK
    if not rows:
        out.write("No accounts. Log in with: oauthsmtp login --account EMAIL --provider ...\n")
        return EXIT_OK
    for row in rows:
        if not row["logged_in"]:
            state = "not logged in (run: oauthsmtp login --account " + row["account"] + ")"
        else:
            validity = "valid" if row["access_token_valid"] else "expired (refreshed on next use)"
            refresh = "refresh token held" if row["has_refresh_token"] else "NO refresh token"
            state = f"access token {validity} until {row['expires_at']}; {refresh}"
        out.write(
            f"{row['account']}\n"
            f"  provider: {row['provider']}   client: {row['client_id']}\n"
            f"  scopes:   {' '.join(row['scopes'])}\n"
            f"  smtp:     {row['smtp']}\n"
            f"  token:    {state}\n"
        )
    return EXIT_OK


def _cmd_logout(args: argparse.Namespace, out: TextIO) -> int:
    from oauthsmtp._accounts import secret_key
    from oauthsmtp._tokens.identify import logout
    from oauthsmtp._tokens.stores.choose import default_store

    registry = _settings_registry()
    settings = _require_settings(args.account)
    store = default_store()
    params = settings.parameters(_client_secret(store, settings)) if args.revoke else None
    # Revocation and deletion happen under the store's lock: a refresh in flight in
    # another process cannot save its token back after this.
    result = logout(store, settings.token_key, revoke_with=params)
    revoked_note = ""
    if result.revoke_error is not None:
        revoked_note = (
            f" (revocation failed: {result.revoke_error}; the local copy is deleted anyway)"
        )
    elif result.revoked is True:
        revoked_note = " and revoked at the provider"
    elif result.revoked is False:
        revoked_note = (
            " (the provider has no revocation endpoint: remove the app's access "
            "in the account's security settings)"
        )
    if args.forget:
        logout(store, secret_key(settings))
        registry.remove(args.account)
    print(f"oauthsmtp: logged out {args.account}{revoked_note}.", file=sys.stderr)
    return EXIT_OK


def _cmd_providers(args: argparse.Namespace, out: TextIO) -> int:
    from oauthsmtp.providers import PROVIDERS

    for info in PROVIDERS.values():
        out.write(
            f"{info.name}\n"
            f"  authorize:  {info.auth_url}\n"
            f"  token:      {info.token_url}\n"
            f"  revocation: {info.revocation_url or '(none)'}\n"
            f"  scope:      {info.scope}\n"
            f"  smtp:       {info.smtp_host}:{info.smtp_port} ({info.security})\n"
        )
    out.write(
        "custom\n  any OAuth2 provider: give --auth-url, --token-url, --scope and --smtp-host\n"
    )
    return EXIT_OK


def _cmd_dev_server(args: argparse.Namespace, out: TextIO) -> int:
    from oauthsmtp.devserver._run import run_dev_server

    return run_dev_server(
        smtp_port=args.smtp_port,
        http_port=args.http_port,
        maildir=args.maildir,
        consent=args.consent,
        out=out,
    )


def _cmd_demo(args: argparse.Namespace, out: TextIO) -> int:
    from .demo import run_demo

    return run_demo(out=out)


COMMANDS = {
    "login": _cmd_login,
    "token": _cmd_token,
    "send": _cmd_send,
    "status": _cmd_status,
    "logout": _cmd_logout,
    "providers": _cmd_providers,
    "dev-server": _cmd_dev_server,
    "demo": _cmd_demo,
}
