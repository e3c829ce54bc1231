"""Send through Microsoft Graph (sendMail) for a Microsoft 365 tenant with SMTP AUTH off.

Delegated (a person logs in once): ``providers.microsoft(..., api=True)`` asks for Graph's
``Mail.Send offline_access``; the session posts to ``/me/sendMail``. App-only (a daemon
with the ``Mail.Send`` application permission): pass ``user="mailbox@contoso.com"`` and
the session posts to ``/users/{user}/sendMail``. ``send_many`` sends up to 20 messages in
one JSON batch request (``POST /$batch``), one result each.

With Microsoft 365 (a public client with redirect http://localhost, Graph Mail.Send):

    export MS_CLIENT_ID=... MS_TENANT=contoso.onmicrosoft.com MS_ACCOUNT=me@contoso.com
    python examples/api/send_graph.py --to you@example.com

Offline, against oauthsmtp's development provider (its Graph emulation):

    python examples/api/send_graph.py --dev
"""

from __future__ import annotations

import argparse
import os
import sys

import oauthsmtp


def send_three(session: oauthsmtp.GraphSession, sender: str, to: list[str]) -> bool:
    messages = [
        oauthsmtp.Email(
            sender=sender,
            to=to,
            subject=f"Graph message {n} of 3",
            text="Sent with Microsoft Graph's sendMail, not SMTP.",
        )
        for n in (1, 2, 3)
    ]
    results = session.send_many(messages)
    for n, result in enumerate(results, 1):
        print(f"#{n}: {result.status} {result.code} {result.message}")
    return all(result.ok for result in results)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--dev", action="store_true", help="use the local development provider")
    parser.add_argument("--to", action="append", metavar="ADDR", help="a recipient")
    args = parser.parse_args()
    try:
        if args.dev:
            from oauthsmtp.devserver import DevProvider

            with DevProvider() as provider:
                token = provider.login(scope=f"{provider.GRAPH_API_SCOPE} offline_access")
                with provider.graph_session(auth_token=token) as session:
                    ok = send_three(session, provider.user, args.to or ["friend@example.test"])
                    print(f"HTTP requests: {session.requests_sent}")
                arrived = provider.wait_for_messages(3)
                print(f"arrived: {len(arrived)} messages in the development mailbox")
            return 0 if ok else 1
        missing = [n for n in ("MS_CLIENT_ID", "MS_ACCOUNT") if not os.environ.get(n)]
        if missing or not args.to:
            print(
                f"set {', '.join(missing) or 'nothing else'} and give --to, or run with --dev",
                file=sys.stderr,
            )
            return 2
        params = oauthsmtp.providers.microsoft(
            client_id=os.environ["MS_CLIENT_ID"],
            tenant=os.environ.get("MS_TENANT", "organizations"),
            api=True,  # https://graph.microsoft.com/Mail.Send offline_access openid email
        )
        account = os.environ["MS_ACCOUNT"]
        token = oauthsmtp.auth_identify(params, account=account)  # a browser the first time
        with oauthsmtp.GraphSession(auth_token=token) as session:
            ok = send_three(session, account, args.to)
        return 0 if ok else 1
    except oauthsmtp.OAuthSMTPError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
