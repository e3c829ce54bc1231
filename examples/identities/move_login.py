"""Move a login to another machine: import a refresh token, checked by one refresh.

On the machine with a browser, log in once; on the server, import the refresh token:

    MS_CLIENT_ID=... python examples/identities/move_login.py me@contoso.com < refresh-token.txt
    python examples/identities/move_login.py --dev

import_token() refreshes once with the token before saving anything, so a dead, revoked or
mistyped token is refused (LoginRequired) and nothing is kept. The token is read from stdin
(or a file): never put it on a command line, where `ps` shows it to every local user.

With --dev, "the other machine" is a login against oauthsmtp's development provider in this
same process; the imported login then sends a message.
"""

from __future__ import annotations

import argparse
import os
import sys

import oauthsmtp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("account", nargs="?")
    parser.add_argument("--dev", action="store_true", help="run against the dev provider")
    args = parser.parse_args()
    if not args.dev:
        client_id = os.environ.get("MS_CLIENT_ID")
        if not client_id or not args.account:
            parser.error("set MS_CLIENT_ID and give ACCOUNT (or use --dev)")
        params = oauthsmtp.providers.microsoft(client_id=client_id, tenant="organizations")
        refresh = sys.stdin.readline().strip()
        token = oauthsmtp.import_token(params, refresh_token=refresh, account=args.account)
        print(f"imported: {args.account}, access token valid={token.valid}")
        return 0

    from oauthsmtp.devserver import DevProvider

    with DevProvider() as dev:
        params = dev.parameters(scope=[dev.auth.scope, "openid", "email"])
        # "The laptop": a normal login, whose refresh token the user copies.
        laptop = dev.login(store=oauthsmtp.MemoryStore(), scope=params.scopes)
        refresh = laptop.refresh_token
        if refresh is None:
            raise SystemExit("the provider gave no refresh token")
        # "The server": import it into its own store, then use it like any login.
        server_store = oauthsmtp.MemoryStore()
        oauthsmtp.import_token(params, refresh_token=refresh, account=dev.user, store=server_store)
        token = oauthsmtp.auth_identify(
            params, account=dev.user, store=server_store, interactive=False
        )
        print(f"imported: {dev.user}, found again without a login: valid={token.valid}")
        with dev.session(auth_token=token) as session:
            result = session.send(
                oauthsmtp.Email(sender=dev.user, to=[dev.user], subject="Moved", text="hi")
            )
        print(f"sent {result.code} {result.message}")
        return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
