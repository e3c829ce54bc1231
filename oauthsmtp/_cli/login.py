"""``oauthsmtp login``: a login (browser, device, paste or an imported refresh token),
then the account's settings are recorded.

The client secret comes from ``--client-secret`` (visible to other local users in
the process list), ``--client-secret-file FILE`` or ``--client-secret-file -``
(standard input), or the one saved by an earlier login with the same client id.
A refresh token to import comes only from ``--refresh-token-file FILE`` or ``-``
(standard input), never from an argument, which ``ps`` would show.
"""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

    from oauthsmtp import AuthToken
    from oauthsmtp._accounts import AccountSettings

__all__ = ["read_secret_file", "run_login"]

_MAX_SECRET = 4096
_STDIN = "-"


def read_secret_file(
    path: str, *, stdin: TextIO | None = None, option: str = "--client-secret-file"
) -> str:
    """The client secret from the first line of ``path`` (``-``: standard input).

    Raises:
        CommandError: (exit 2) the file cannot be read, is empty, or its first line holds
            control characters; the message never quotes the file's content.
    """
    where = "standard input" if path == "-" else path
    try:
        if path == "-":
            text = (stdin if stdin is not None else sys.stdin).read(_MAX_SECRET + 2)
        else:
            with open(path, encoding="utf-8") as fh:
                text = fh.read(_MAX_SECRET + 2)
    except OSError as exc:
        raise CommandError(
            f"{option}: cannot read {where}: {exc.strerror}", code=EXIT_USAGE
        ) from None
    except UnicodeDecodeError:
        raise CommandError(f"{option}: {where} is not UTF-8 text", code=EXIT_USAGE) from None
    lines = text.splitlines()
    secret = lines[0].strip() if lines else ""
    if not secret:
        hint = (
            "; to log in without a client secret, leave the option out (or give --client-secret '')"
            if option == "--client-secret-file"
            else ""
        )
        raise CommandError(f"{option}: {where} is empty{hint}", code=EXIT_USAGE)
    if len(secret) > _MAX_SECRET or not secret.isprintable():
        raise CommandError(
            f"{option}: the first line of {where} is not a secret "
            "(control characters, or too long)",
            code=EXIT_USAGE,
        )
    return secret


def _given_secret(args: argparse.Namespace) -> str | None:
    if args.client_secret_file is not None:
        return read_secret_file(args.client_secret_file)
    secret: str | None = args.client_secret
    if secret and not secret.isprintable():
        raise CommandError(
            "--client-secret holds control characters; give it with --client-secret-file",
            code=EXIT_USAGE,
        )
    return secret


def run_login(args: argparse.Namespace, out: TextIO) -> int:
    """Log in (or import a refresh token) and record the account; returns the exit code."""
    from oauthsmtp import auth_identify, providers
    from oauthsmtp._accounts import AccountSettings, secret_key

    accounts = context.registry()
    previous = accounts.get(args.account)
    provider = args.provider or (previous.provider if previous else None)
    if provider in ("microsoft-app", "google-service-account"):
        if args.flow not in (None, "browser") or args.refresh_token_file is not None:
            raise CommandError(
                f"--provider {provider} logs in as the app itself, with no person: --flow and "
                "--refresh-token-file do not apply",
                code=EXIT_USAGE,
            )
        if args.transport == "auto":
            raise CommandError(
                f"--provider {provider} gets one app-only token per scope; --transport auto is "
                "for a person's login (use --transport smtp or api)",
                code=EXIT_USAGE,
            )
        from .applogin import run_app_login

        return run_app_login(args, provider, previous, secret=_given_secret(args))
    if provider is None and args.issuer:
        provider = "custom"  # --issuer alone: discover the endpoints
    flow = args.flow or "browser"
    if args.refresh_token_file is not None and args.flow not in (None, "browser"):
        raise CommandError(
            "--refresh-token-file imports a login made elsewhere; it cannot be combined with "
            "--flow",
            code=EXIT_USAGE,
        )
    stdin_users = [
        name
        for name, used in (
            ("--client-secret-file -", args.client_secret_file == _STDIN),
            ("--refresh-token-file -", args.refresh_token_file == _STDIN),
            ("--flow paste", flow == "paste"),
        )
        if used
    ]
    if len(stdin_users) > 1:
        raise CommandError(
            f"{' and '.join(stdin_users)} both read standard input; give one of them a file",
            code=EXIT_USAGE,
        )
    if provider is None:
        raise CommandError(
            "--provider is needed for a first login (gmail, microsoft or custom; or --issuer "
            "URL to discover a provider's endpoints)",
            code=EXIT_USAGE,
        )
    client_id = args.client_id or (previous.client_id if previous else None)
    if not client_id:
        raise CommandError(
            "--client-id is needed: copy it from the provider's app registration "
            "(see docs/login.md)",
            code=EXIT_USAGE,
        )
    secret = _given_secret(args)
    token_store = context.store()
    if secret is None and previous is not None and previous.client_id == client_id:
        secret = context.client_secret(token_store, previous)
    secret = secret or None  # --client-secret '': log in without one
    redirect = args.redirect_url or (previous.redirect_url if previous else None)
    overrides = {"redirect_url": redirect} if redirect else {}
    same = previous if previous is not None and previous.provider == provider else None
    transport = args.transport or (same.transport if same else "smtp")
    api_url = args.api_url or (same.api_url if same else None)
    if api_url is not None:
        from oauthsmtp._api.http import check_base_url

        api_url = check_base_url(api_url, "--api-url")
    api = transport == "api"
    preset_api: bool | str = "auto" if transport == "auto" else api
    tenant = None
    if provider in ("gmail", "microsoft"):
        info = providers.PROVIDERS[provider]
        if provider == "gmail":
            if secret is None:
                raise CommandError(
                    "--provider gmail needs the client secret that Google issues to desktop "
                    "clients: give --client-secret-file FILE (or --client-secret SECRET)",
                    code=EXIT_USAGE,
                )
            params = providers.gmail(
                client_id=client_id,
                client_secret=secret,
                api=preset_api,  # type: ignore[arg-type]  # True, False or "auto"
                **overrides,
            )
        else:
            tenant = args.tenant or (previous.tenant if previous else None) or "common"
            params = providers.microsoft(
                client_id=client_id,
                client_secret=secret,
                tenant=tenant,
                api=preset_api,  # type: ignore[arg-type]  # True, False or "auto"
                **overrides,
            )
        default_host = info.smtp_host
        if provider == "microsoft" and tenant == "consumers":
            default_host = providers.OUTLOOK_COM_SMTP_HOST
        smtp_host = args.smtp_host or (same.smtp_host if same else default_host)
        security = args.security or (same.security if same else info.security)
        default_port = (
            info.smtp_port if security == info.security else context.DEFAULT_PORTS[security]
        )
    else:
        auth_url = args.auth_url or (same.auth_url if same else None)
        token_url = args.token_url or (same.token_url if same else None)
        device_url = same.device_authorization_url if same else None
        revocation_url = args.revocation_url or (same.revocation_url if same else None)
        if args.issuer and not (args.auth_url and args.token_url):
            from oauthsmtp import OAuth2Parameters

            found = OAuth2Parameters.from_issuer(
                args.issuer, client_id=client_id, scope=args.scope or ()
            )
            auth_url = args.auth_url or found.auth_url
            token_url = args.token_url or found.token_url
            device_url = found.device_authorization_url
            revocation_url = args.revocation_url or found.revocation_url
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
        if transport != "smtp" and not api_url:
            missing.append(f"--api-url (with --transport {transport})")
        if missing:
            raise CommandError(f"--provider custom needs {', '.join(missing)}", code=EXIT_USAGE)
        security = args.security or (same.security if same else "starttls")
        default_port = context.DEFAULT_PORTS[security]
        params = providers.custom(
            client_id=client_id,
            client_secret=secret,
            auth_url=auth_url,
            token_url=token_url,
            scope=scope,
            revocation_url=revocation_url,
            issuer=args.issuer or (same.issuer if same else None),
            device_authorization_url=device_url,
            **overrides,
        )
    if args.smtp_port:
        smtp_port = args.smtp_port
    elif same is not None and args.security in (None, same.security):
        smtp_port = same.smtp_port
    else:
        smtp_port = default_port
    if not smtp_host:  # the presets always have one; custom was checked above
        raise CommandError("--smtp-host is needed", code=EXIT_USAGE)
    if args.refresh_token_file is not None:
        from oauthsmtp import import_token

        refresh = read_secret_file(args.refresh_token_file, option="--refresh-token-file")
        token = import_token(params, refresh_token=refresh, account=args.account, store=token_store)
    else:
        token = auth_identify(
            params,
            account=args.account,
            store=token_store,
            open_browser=not args.no_browser,
            timeout=args.timeout,
            force=True,
            flow=flow,
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
        smtp_port=smtp_port,
        security=security,
        revocation_url=params.revocation_url,
        issuer=params.issuer,
        extra_auth_params=dict(params.extra_auth_params),
        has_client_secret=params.client_secret is not None,
        tenant=tenant,
        transport=transport,
        api_url=api_url,
        device_authorization_url=params.device_authorization_url,
    )
    if params.client_secret is not None:
        token_store.save(secret_key(settings), params.client_secret)
    else:
        token_store.delete(secret_key(settings))
    accounts.put(settings)
    expiry = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "unknown"
    kept = "with a refresh token" if token.refresh_token else "WITHOUT a refresh token"
    api_name = f"the {'Gmail API' if settings.api == 'gmail' else 'Microsoft Graph API'}" + (
        f" at {api_url}" if api_url else ""
    )
    target = api_name if api else f"{smtp_host}:{smtp_port} ({security})"
    if transport == "auto":
        target += f", switching to {api_name} only if SMTP AUTH is refused as disabled"
    print(
        f"oauthsmtp: logged in as {args.account} ({provider}); token saved {kept}, "
        f"access token valid until {expiry}; sending through {target}.",
        file=sys.stderr,
    )
    if transport == "auto":
        _check_api_token(settings, token, api_name)
    return EXIT_OK


def _check_api_token(settings: AccountSettings, token: AuthToken, api_name: str) -> None:
    """``--transport auto``: redeem the API's token now, so that a missing consent shows at
    login rather than on the day SMTP is refused. A warning, not a failure: SMTP works."""
    from oauthsmtp import OAuthSMTPError
    from oauthsmtp._accounts import api_token, grants_api

    if settings.api_scopes is None and not grants_api(settings, token.scope):
        print(
            f"oauthsmtp: warning: this login asked for no scope of {api_name} (granted: "
            f"{' '.join(token.scope) or 'none'}), so transport auto cannot switch to it: log "
            "in again with the API's scope as well (docs/api.md)",
            file=sys.stderr,
        )
        return
    if settings.api_scopes is None:
        print(f"oauthsmtp: the login's token serves {api_name} as well.", file=sys.stderr)
        return
    try:
        api_token(settings, token)
    except OAuthSMTPError as exc:
        print(
            f"oauthsmtp: warning: no token for {api_name} could be obtained from this login "
            f"({exc}); transport auto cannot switch until that works: check the app's API "
            f"permissions (docs/api.md) and log in again with --transport auto",
            file=sys.stderr,
        )
        return
    print(
        f"oauthsmtp: {api_name} accepts this login too (its token was obtained and kept).",
        file=sys.stderr,
    )
