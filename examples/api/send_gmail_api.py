"""Send through the Gmail API (users.messages.send) with only the gmail.send scope.

Why: Google classes ``https://mail.google.com/`` (what SMTP needs) as a restricted scope;
``gmail.send`` is only "sensitive", so a public app needs no yearly security assessment.
The message, the token and the result are the same as with SMTPSession.

With Gmail (a Desktop-app OAuth client in a project where the Gmail API is enabled):

    export GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ACCOUNT=me@gmail.com
    python examples/api/send_gmail_api.py --to you@example.com

Offline, against oauthsmtp's development provider (its Gmail API emulation):

    python examples/api/send_gmail_api.py --dev
"""

from __future__ import annotations

import argparse
import os
import sys

import oauthsmtp


def send(session: oauthsmtp.GmailAPISession, sender: str, to: list[str]) -> oauthsmtp.SendResult:
    message = oauthsmtp.Email(
        sender=sender,
        to=to,
        subject="Sent through the Gmail API",
        text="This message went through users.messages.send, not SMTP.",
    )
    return session.send(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--dev", action="store_true", help="use the local development provider")
    parser.add_argument("--to", action="append", metavar="ADDR", help="a recipient")
    args = parser.parse_args()
    try:
        if args.dev:
            from oauthsmtp.devserver import DevProvider

            with DevProvider() as provider:
                token = provider.login(scope=f"{provider.GMAIL_API_SCOPE} offline_access")
                print(f"logged in as {token.account} with scope {' '.join(token.scope)}")
                with provider.gmail_api_session(auth_token=token) as session:
                    result = send(session, provider.user, args.to or ["friend@example.test"])
                print(f"{result.status}: {result.code} {result.message}")
                result.raise_for_status()
                [arrived] = provider.wait_for_messages(1)
                print(
                    f"arrived: {arrived.mail_from} -> {', '.join(arrived.rcpt_tos)}: "
                    f"{arrived.subject!r}"
                )
            return 0
        missing = [
            n
            for n in ("GMAIL_CLIENT_ID", "GMAIL_CLIENT_SECRET", "GMAIL_ACCOUNT")
            if not os.environ.get(n)
        ]
        if missing or not args.to:
            print(
                f"set {', '.join(missing) or 'nothing else'} and give --to, or run with --dev",
                file=sys.stderr,
            )
            return 2
        params = oauthsmtp.providers.gmail(
            client_id=os.environ["GMAIL_CLIENT_ID"],
            client_secret=os.environ["GMAIL_CLIENT_SECRET"],
            api=True,  # gmail.send + openid email, not https://mail.google.com/
        )
        account = os.environ["GMAIL_ACCOUNT"]
        token = oauthsmtp.auth_identify(params, account=account)  # a browser the first time
        with oauthsmtp.GmailAPISession(auth_token=token) as session:
            result = send(session, account, args.to)
        print(f"{result.status}: {result.code} {result.message}")
        result.raise_for_status()
        return 0
    except oauthsmtp.OAuthSMTPError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
