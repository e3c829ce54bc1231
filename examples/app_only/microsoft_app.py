"""Send as a shared mailbox with an app-only token (Microsoft 365, no person, no browser).

The app authenticates as itself: with a certificate (a ``private_key_jwt``
assertion, RFC 7523 §2.2; recommended) or a client secret. Its token is renewed
by the same grant when it nears expiry; there is no refresh token and no login.
Set-up (app registration, SMTP.SendAsApp, New-ServicePrincipal,
Add-MailboxPermission): docs/app-only.md.

With Microsoft 365:

    export MS_CLIENT_ID=... MS_TENANT=contoso.onmicrosoft.com MS_MAILBOX=shared@contoso.com
    export MS_PRIVATE_KEY=app.key MS_CERTIFICATE=app.crt      # or MS_CLIENT_SECRET_FILE=secret.txt
    python examples/app_only/microsoft_app.py --to you@example.com

Offline, against oauthsmtp's local development provider (it plays Entra ID and
Exchange: the app is registered with a new certificate and given the mailbox):

    python examples/app_only/microsoft_app.py --dev
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path

import oauthsmtp

SUBJECT = "Sent by an app, as a shared mailbox"


OpenSession = Callable[[oauthsmtp.AuthToken, str], oauthsmtp.SMTPSession]


def send_as(
    creds: oauthsmtp.ClientCredentials,
    mailbox: str,
    to: list[str],
    open_session: OpenSession,
    store: oauthsmtp.TokenStore | None = None,
) -> None:
    """Get (or reuse) the app token for ``mailbox`` and send one message as it."""
    token = oauthsmtp.app_token(creds, account=mailbox, store=store)
    print(f"app-only token for {mailbox}: refresh token {token.refresh_token}, valid={token.valid}")
    with open_session(token, mailbox) as smtp:
        result = smtp.send(
            oauthsmtp.Email(sender=mailbox, to=to, subject=SUBJECT, text="No person logged in.")
        )
    print(f"sent {result.code} {result.message}")
    if not result.ok:
        raise SystemExit(1)


def dev() -> None:
    import datetime as dt
    import tempfile

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.x509.oid import NameOID

    from oauthsmtp.devserver import DevProvider, make_certificates

    # A key and a self-signed certificate, as `openssl req -x509 -newkey rsa:2048 ...` makes.
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauthsmtp example app")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name)
        .public_key(key.public_key()).serial_number(x509.random_serial_number())
        .not_valid_before(now).not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )  # fmt: skip
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    cert_pem = cert.public_bytes(serialization.Encoding.PEM)
    mailbox = "shared@example.test"
    with (
        tempfile.TemporaryDirectory() as folder,
        DevProvider(certificates=make_certificates(Path(folder))) as provider,
    ):
        # The app registration (certificate uploaded) and Add-MailboxPermission, in one call.
        app = provider.auth.register_app(certificate=cert_pem.decode(), mailboxes=[mailbox])
        creds = oauthsmtp.providers.microsoft_app(
            client_id=app.client_id,
            tenant="contoso.onmicrosoft.com",
            private_key=key_pem,
            certificate=cert_pem,
            token_url=provider.auth.token_endpoint,  # instead of login.microsoftonline.com
            scope=provider.auth.scope,  # instead of https://outlook.office365.com/.default
        )
        print(creds)  # no key in the repr: the certificate's thumbprint only
        send_as(
            creds,
            mailbox,
            ["friend@example.test"],
            # the dev SMTP server, with a TLS context that trusts the dev CA
            lambda token, user: provider.session(auth_token=token, username=user),
            store=oauthsmtp.MemoryStore(),
        )
        message = provider.smtp.wait_for_messages(1)[0]
        print(f"arrived: {message.user} -> {', '.join(message.rcpt_tos)}: {message.subject!r}")
        if message.user != mailbox or message.subject != SUBJECT:
            raise SystemExit("dev check FAILED: not the message sent")
        print("dev check passed: the app sent as the mailbox it was given, with no login")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="run against the dev provider")
    parser.add_argument("--to", action="append", default=[], help="a recipient")
    args = parser.parse_args()
    if args.dev:
        dev()
        return 0
    names = ("MS_CLIENT_ID", "MS_TENANT", "MS_MAILBOX")
    if not all(os.environ.get(n) for n in names) or not args.to:
        need = f"set {', '.join(names)} and MS_PRIVATE_KEY + MS_CERTIFICATE"
        print(f"{need} (or MS_CLIENT_SECRET_FILE), give --to; or run --dev", file=sys.stderr)
        return 2
    secret_file = os.environ.get("MS_CLIENT_SECRET_FILE")
    creds = oauthsmtp.providers.microsoft_app(
        client_id=os.environ["MS_CLIENT_ID"],
        tenant=os.environ["MS_TENANT"],
        client_secret=Path(secret_file).read_text().strip() if secret_file else None,
        private_key=None if secret_file else Path(os.environ["MS_PRIVATE_KEY"]),
        certificate=None if secret_file else Path(os.environ["MS_CERTIFICATE"]),
    )
    send_as(
        creds,
        os.environ["MS_MAILBOX"],
        args.to,
        lambda token, user: oauthsmtp.SMTPSession(
            "smtp.office365.com", port=587, username=user, auth_token=token
        ),
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
