"""Send over SMTP, and through Microsoft Graph only if SMTP AUTH is refused as disabled.

``providers.microsoft(..., api="auto")`` asks for SMTP.Send and Graph's Mail.Send in one
consent; the login's token is for SMTP. ``AutoSession`` sends over SMTP and, only on
``535 5.7.139`` / ``550 5.7.30`` (SMTP AUTH disabled for the tenant or mailbox), switches to
Graph with a token redeemed from the same login (``token_for_scope``); each result says
which transport sent it. Any other refusal (a bad token, a network error) is raised as is.

With Microsoft 365 (a public client with redirect http://localhost, delegated permissions
Office 365 Exchange Online SMTP.Send and Microsoft Graph Mail.Send):

    export MS_CLIENT_ID=... MS_TENANT=contoso.onmicrosoft.com MS_ACCOUNT=me@contoso.com
    python examples/api/send_auto.py --to you@example.com

Offline, against oauthsmtp's development provider (it plays Microsoft: one token per
resource; its SMTP server is told to refuse AUTH as a tenant with SMTP AUTH off):

    python examples/api/send_auto.py --dev
"""

from __future__ import annotations

import argparse
import os
import sys

import oauthsmtp


def send_two(session: oauthsmtp.AutoSession, sender: str, to: list[str]) -> bool:
    ok = True
    for n in (1, 2):
        result = session.send(
            oauthsmtp.Email(sender=sender, to=to, subject=f"Auto message {n}", text="Hello.")
        )
        print(f"#{n}: {result.status} through {result.transport} ({result.code})")
        ok = ok and result.ok
    if session.switched_because:
        print(f"switched because SMTP said: {session.switched_because.split(',')[0]}")
    return ok


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.partition("\n")[0])
    parser.add_argument("--dev", action="store_true", help="use the local development provider")
    parser.add_argument("--to", action="append", metavar="ADDR", help="a recipient")
    args = parser.parse_args()
    try:
        if args.dev:
            from oauthsmtp.devserver import DevProvider

            with DevProvider() as provider:
                graph = f"{provider.GRAPH_API_SCOPE} offline_access"
                token = provider.login(scope=f"{provider.auth.scope} offline_access {graph}")
                print(f"logged in; the token is for: {' '.join(token.scope)}")
                provider.smtp.auth_failure = "mailbox"  # 535 5.7.139, as Microsoft 365 says it
                session = oauthsmtp.AutoSession(
                    provider.session(auth_token=token),
                    lambda: provider.graph_session(
                        auth_token=oauthsmtp.token_for_scope(token, graph)
                    ),
                )
                with session:
                    ok = send_two(session, provider.user, args.to or ["friend@example.test"])
                arrived = provider.wait_for_messages(2)
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
            api="auto",  # SMTP.Send offline_access openid email, then Graph Mail.Send
        )
        account = os.environ["MS_ACCOUNT"]
        token = oauthsmtp.auth_identify(params, account=account)  # a browser the first time
        graph = f"{oauthsmtp.providers.GRAPH_MAIL_SEND_SCOPE} offline_access"
        session = oauthsmtp.AutoSession(
            oauthsmtp.SMTPSession("smtp.office365.com", auth_token=token),
            lambda: oauthsmtp.GraphSession(auth_token=oauthsmtp.token_for_scope(token, graph)),
        )
        with session:
            ok = send_two(session, account, args.to)
        return 0 if ok else 1
    except oauthsmtp.OAuthSMTPError as exc:
        print(f"{type(exc).__name__}: {exc}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
