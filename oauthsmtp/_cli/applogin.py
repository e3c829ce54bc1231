"""``oauthsmtp login --provider microsoft-app | google-service-account``: app-only accounts.

No browser and no person: the command checks the app's credentials by making
the grant once (client credentials with a secret or a ``private_key_jwt``
assertion; the JWT bearer grant for a service account), saves the token and
records the account, so that ``token``, ``send`` and ``status`` work as after a
browser login (they renew the token by the same grant; there is no refresh token).
"""

from __future__ import annotations

import argparse
import os
import sys

from oauthsmtp._accounts import CERTIFICATE_FILE, KEY_FILE, PRIVATE_KEY_FILE, SUBJECT

from . import context
from .exits import EXIT_OK, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from oauthsmtp._accounts import AccountSettings

__all__ = ["run_app_login"]

_SMTP = {
    "microsoft-app": ("smtp.office365.com", 587, "starttls"),
    "google-service-account": ("smtp.gmail.com", 587, "starttls"),
}


def _path(value: str | None) -> str | None:
    return os.path.abspath(value) if value else None


def run_app_login(
    args: argparse.Namespace,
    provider: str,
    previous: AccountSettings | None,
    *,
    secret: str | None,
) -> int:
    """Get an app-only token for ``args.account`` and record the account; returns the exit code."""
    from oauthsmtp import app_token, providers
    from oauthsmtp._accounts import AccountSettings, secret_key

    same = previous if previous is not None and previous.provider == provider else None
    recorded = dict(same.extra_auth_params) if same is not None else {}
    transport = args.transport or (same.transport if same else "smtp")
    api_url = args.api_url or (same.api_url if same else None)
    if api_url is not None:
        from oauthsmtp._api.http import check_base_url

        api_url = check_base_url(api_url, "--api-url")
    token_store = context.store()
    extra: dict[str, str] = {}
    tenant: str | None = None
    if provider == "microsoft-app":
        if args.key_file or args.subject:
            raise CommandError(
                "--key-file and --subject belong to --provider google-service-account",
                code=EXIT_USAGE,
            )
        client_id = args.client_id or (same.client_id if same else None)
        tenant = args.tenant or (same.tenant if same else None)
        if not client_id or not tenant:
            raise CommandError(
                "--provider microsoft-app needs --client-id and --tenant (your tenant's ID or "
                "domain; see docs/app-only.md)",
                code=EXIT_USAGE,
            )
        key_file = _path(args.private_key_file)
        cert_file = _path(args.certificate_file)
        if secret is not None and (key_file or cert_file):
            raise CommandError(
                "give --client-secret-file, or --private-key-file with --certificate-file, "
                "not both",
                code=EXIT_USAGE,
            )
        if secret is None and key_file is None and cert_file is None and same is not None:
            if same.has_client_secret:
                secret = token_store.load(secret_key(same))
            else:
                key_file = recorded.get(PRIVATE_KEY_FILE)
                cert_file = recorded.get(CERTIFICATE_FILE)
        if secret is None and not (key_file and cert_file):
            raise CommandError(
                "--provider microsoft-app needs --client-secret-file FILE, or "
                "--private-key-file KEY with --certificate-file CERT",
                code=EXIT_USAGE,
            )
        default_scope = (
            providers.GRAPH_APP_SCOPE if transport == "api" else providers.MICROSOFT_APP_SCOPE
        )
        scope = args.scope or (" ".join(same.scope) if same else default_scope)
        from pathlib import Path

        creds = providers.microsoft_app(
            client_id=client_id,
            tenant=tenant,
            client_secret=secret,
            private_key=Path(key_file) if key_file else None,
            certificate=Path(cert_file) if cert_file else None,
            token_url=args.token_url or (same.token_url if same else None),
            scope=scope,
        )
        if key_file and cert_file:
            extra = {PRIVATE_KEY_FILE: key_file, CERTIFICATE_FILE: cert_file}
    else:
        if secret is not None or args.private_key_file or args.certificate_file:
            raise CommandError(
                "--provider google-service-account takes --key-file (the service account's "
                "JSON key), not a client secret, private key or certificate",
                code=EXIT_USAGE,
            )
        if args.token_url:
            raise CommandError(
                "--provider google-service-account takes the token URL from the key file "
                "(token_uri); leave --token-url out",
                code=EXIT_USAGE,
            )
        key_file = _path(args.key_file) or recorded.get(KEY_FILE)
        if not key_file:
            raise CommandError(
                "--provider google-service-account needs --key-file FILE (the service "
                "account's JSON key; see docs/google-service-account.md)",
                code=EXIT_USAGE,
            )
        subject = args.subject or recorded.get(SUBJECT) or args.account
        if subject.casefold() != args.account.casefold():
            raise CommandError(
                f"--subject {subject} differs from --account {args.account}: Gmail takes a "
                "delegated token only for its subject; use the same address for both",
                code=EXIT_USAGE,
            )
        extra = {KEY_FILE: key_file, SUBJECT: subject}
        scope = args.scope or (" ".join(same.scope) if same else providers.GMAIL_SCOPE)
        from pathlib import Path

        creds = providers.google_service_account(Path(key_file), subject=subject, scope=scope)
    default_host, default_port, default_security = _SMTP[provider]
    security = args.security or (same.security if same else default_security)
    smtp_host = args.smtp_host or (same.smtp_host if same else default_host)
    if args.smtp_port:
        smtp_port = args.smtp_port
    elif same is not None and args.security in (None, same.security):
        smtp_port = same.smtp_port
    else:
        smtp_port = (
            default_port if security == default_security else context.DEFAULT_PORTS[security]
        )
    settings = AccountSettings(
        account=args.account,
        provider=provider,
        client_id=creds.client_id,
        auth_url=creds.token_url,  # no authorization endpoint: nobody is sent to a browser
        token_url=creds.token_url,
        scope=creds.scopes,
        redirect_url="http://localhost:9000",
        smtp_host=smtp_host,
        smtp_port=smtp_port,
        security=security,
        extra_auth_params=extra,
        has_client_secret=creds.client_secret is not None,
        tenant=tenant,
        transport=transport,
        api_url=api_url,
    )
    token_store.delete(settings.token_key)  # a login checks the credentials: a new grant
    token = app_token(creds, account=args.account, store=token_store)
    if creds.client_secret is not None:
        token_store.save(secret_key(settings), creds.client_secret)
    else:
        token_store.delete(secret_key(settings))
    context.registry().put(settings)
    expiry = token.expires_at.isoformat(timespec="seconds") if token.expires_at else "unknown"
    how = {
        "microsoft-app": "client secret" if creds.client_secret else "certificate",
        "google-service-account": f"service account {creds.issuer}",
    }[provider]
    print(
        f"oauthsmtp: app-only token for {args.account} ({provider}, {how}); saved, valid until "
        f"{expiry}, renewed by the same grant (no refresh token); sending through "
        f"{smtp_host}:{smtp_port} ({security}).",
        file=sys.stderr,
    )
    return EXIT_OK
