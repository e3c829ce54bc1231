"""Build OAuth2Parameters from a provider's published metadata (discovery), then log in.

    python examples/identities/discover.py https://login.example.com CLIENT_ID "SCOPES"
    python examples/identities/discover.py --dev

OAuth2Parameters.from_issuer() reads the provider's RFC 8414 metadata (or its OpenID Connect
discovery document), uses it only if its issuer is exactly the one asked for, and fills in the
endpoints: authorization, token, revocation and, when published, the device login's.

With --dev the issuer is oauthsmtp's development provider on this machine; the example logs in
with the device flow it discovered and sends a message.
"""

from __future__ import annotations

import argparse
import re
import sys
import threading
import urllib.request

import oauthsmtp


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("issuer", nargs="?")
    parser.add_argument("client_id", nargs="?")
    parser.add_argument("scope", nargs="?", default="openid email")
    parser.add_argument("--dev", action="store_true", help="run against the dev provider")
    args = parser.parse_args()
    if not args.dev:
        if not args.issuer or not args.client_id:
            parser.error("give ISSUER and CLIENT_ID (or --dev)")
        params = oauthsmtp.OAuth2Parameters.from_issuer(
            args.issuer, client_id=args.client_id, scope=args.scope
        )
        show(params)
        return 0

    from oauthsmtp.devserver import DevProvider

    with DevProvider() as dev:
        dev.auth.device_interval = 0.2
        params = oauthsmtp.OAuth2Parameters.from_issuer(
            dev.issuer,
            client_id=dev.client.client_id,
            client_secret=dev.client.client_secret,
            scope=[dev.auth.scope, "openid", "email"],
        )
        show(params)

        def on_prompt(text: str) -> None:  # the user opens the page on another device
            page = re.search(r"(http://\S+/device\?user_code=\S+)", text)
            if page is None:
                raise SystemExit("the prompt names no page")
            threading.Thread(target=urllib.request.urlopen, args=(page.group(1),)).start()

        token = oauthsmtp.auth_identify(
            params,
            account=dev.user,
            flow="device",
            on_prompt=on_prompt,
            store=oauthsmtp.MemoryStore(),
        )
        with dev.session(auth_token=token) as session:
            result = session.send(
                oauthsmtp.Email(sender=dev.user, to=[dev.user], subject="Discovered", text="hi")
            )
        print(f"sent {result.code} {result.message}")
        return 0 if result.ok else 1


def show(params: oauthsmtp.OAuth2Parameters) -> None:
    print(f"issuer:           {params.issuer}")
    print(f"authorization:    {params.auth_url}")
    print(f"token:            {params.token_url}")
    print(f"revocation:       {params.revocation_url or '(none published)'}")
    print(f"device login:     {params.device_authorization_url or '(none published)'}")


if __name__ == "__main__":
    sys.exit(main())
