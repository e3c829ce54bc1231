"""Send as a Google Workspace user with a service account (domain-wide delegation).

The service account signs a JWT bearer grant (RFC 7523 §2.1) whose ``sub`` is the
user to act for; Google answers with a token for that user's mailbox. No person
logs in, and the token is renewed by the same grant. Set-up (service account,
JSON key, delegation of https://mail.google.com/ in the Admin console):
docs/google-service-account.md.

With Google Workspace:

    export GOOGLE_SA_KEY=service-account.json GOOGLE_SUBJECT=user@example.com
    python examples/app_only/google_service_account.py --to you@example.com

Offline, against oauthsmtp's local development provider (it plays Google: the
service account is created there, with delegation for one user):

    python examples/app_only/google_service_account.py --dev
"""

from __future__ import annotations

import argparse
import os
import sys

import oauthsmtp

SUBJECT = "Sent by a service account, as a user"


def send(creds: oauthsmtp.ClientCredentials, to: list[str], session: oauthsmtp.SMTPSession) -> None:
    """Send one message as the service account's subject, with ``session``'s token."""
    user = creds.subject or ""
    with session as smtp:
        result = smtp.send(
            oauthsmtp.Email(sender=user, to=to, subject=SUBJECT, text="Sent with delegation.")
        )
    print(f"sent {result.code} {result.message}")
    if not result.ok:
        raise SystemExit(1)


def dev() -> None:
    import tempfile
    from pathlib import Path

    from oauthsmtp.devserver import DevProvider, make_certificates

    user = "user@example.test"
    with (
        tempfile.TemporaryDirectory() as folder,
        DevProvider(certificates=make_certificates(Path(folder))) as provider,
    ):
        # A service account with delegation for `user`: its JSON key is shaped as Google's,
        # with token_uri pointing at the dev provider.
        key = provider.auth.register_service_account(delegated=[user])
        key_file = Path(folder) / "service-account.json"
        key_file.write_text(__import__("json").dumps(key))
        key_file.chmod(0o600)  # a key others can read gets a warning
        creds = oauthsmtp.providers.google_service_account(
            key_file,
            subject=user,
            scope=provider.auth.scope,  # instead of https://mail.google.com/
        )
        print(creds)
        token = oauthsmtp.app_token(creds, store=oauthsmtp.MemoryStore())
        print(
            f"token for {token.account}: refresh token {token.refresh_token}, valid={token.valid}"
        )
        send(creds, ["friend@example.test"], provider.session(auth_token=token, username=user))
        message = provider.smtp.wait_for_messages(1)[0]
        print(f"arrived: {message.user} -> {', '.join(message.rcpt_tos)}: {message.subject!r}")
        if message.user != user or message.subject != SUBJECT:
            raise SystemExit("dev check FAILED: not the message sent")
        print("dev check passed: the service account sent as its delegated user")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="run against the dev provider")
    parser.add_argument("--to", action="append", default=[], help="a recipient")
    args = parser.parse_args()
    if args.dev:
        dev()
        return 0
    if not (os.environ.get("GOOGLE_SA_KEY") and os.environ.get("GOOGLE_SUBJECT")) or not args.to:
        print("set GOOGLE_SA_KEY and GOOGLE_SUBJECT and give --to; or run with --dev",
              file=sys.stderr)  # fmt: skip
        return 2
    creds = oauthsmtp.providers.google_service_account(
        os.environ["GOOGLE_SA_KEY"], subject=os.environ["GOOGLE_SUBJECT"]
    )
    token = oauthsmtp.app_token(creds)
    session = oauthsmtp.SMTPSession(
        "smtp.gmail.com", port=587, username=creds.subject, auth_token=token
    )
    send(creds, args.to, session)
    return 0


if __name__ == "__main__":
    sys.exit(main())
