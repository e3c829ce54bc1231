"""Log in on a machine without a browser: the device login (RFC 8628), then send.

    MS_CLIENT_ID=... MS_ACCOUNT=me@contoso.com python examples/identities/device_login.py
    python examples/identities/device_login.py --dev

The program prints a web address and a short code; open the address on any device (a phone,
another computer), enter the code, sign in. The program notices by itself and goes on. With
Microsoft 365 / Outlook.com only: Google refuses mail scopes in this flow (see
docs/device-login.md for the paste-back login, which works with Gmail too).

With --dev everything runs on this machine against oauthsmtp's development provider, and a
small thread plays the user who opens the page on their phone.
"""

from __future__ import annotations

import argparse
import os
import re
import ssl
import sys
import threading
import urllib.request
from collections.abc import Callable

import oauthsmtp


def send_with_device_login(
    params: oauthsmtp.OAuth2Parameters,
    account: str,
    *,
    host: str,
    port: int,
    on_prompt: Callable[[str], None] | None = None,
    store: oauthsmtp.TokenStore | None = None,
    ssl_context: ssl.SSLContext | None = None,
) -> oauthsmtp.SendResult:
    # flow="device": prints where to go and the code (or calls on_prompt with that text),
    # then waits, polling as the provider asks; the token is saved like a browser login's,
    # so later runs (and `oauthsmtp token`) find it without logging in again.
    token = oauthsmtp.auth_identify(
        params, account=account, flow="device", on_prompt=on_prompt, store=store
    )
    with oauthsmtp.SMTPSession(
        host, port, username=account, auth_token=token, ssl_context=ssl_context
    ) as session:
        message = oauthsmtp.Email(
            sender=account,
            to=[account],
            subject="Sent after a device login",
            text="Logged in with a code typed on another device.",
        )
        return session.send(message)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dev", action="store_true", help="run against the dev provider")
    args = parser.parse_args()
    if not args.dev:
        client_id, account = os.environ.get("MS_CLIENT_ID"), os.environ.get("MS_ACCOUNT")
        if not client_id or not account:
            print("set MS_CLIENT_ID and MS_ACCOUNT (or use --dev)", file=sys.stderr)
            return 2
        params = oauthsmtp.providers.microsoft(client_id=client_id, tenant="organizations")
        result = send_with_device_login(params, account, host="smtp.office365.com", port=587)
        print(f"sent {result.code} {result.message}")
        return 0 if result.ok else 1

    from oauthsmtp.devserver import DevProvider

    with DevProvider() as dev:
        dev.auth.device_interval = 0.2  # the provider's polling interval (5 s by default)

        def on_prompt(text: str) -> None:
            print(text)
            page = re.search(r"(http://\S+/device\?user_code=\S+)", text)
            if page is None:
                raise SystemExit("the prompt names no page")
            # The user, on their phone, opens the page (the dev provider approves at once).
            threading.Thread(target=urllib.request.urlopen, args=(page.group(1),)).start()

        params = dev.parameters(scope=[dev.auth.scope, "openid", "email"])
        result = send_with_device_login(
            params,
            dev.user,
            host="127.0.0.1",
            port=dev.smtp_port,
            on_prompt=on_prompt,
            store=oauthsmtp.MemoryStore(),  # a --dev run keeps nothing
            ssl_context=dev.ssl_context(),
        )
        print(f"sent {result.code} {result.message}")
        arrived = dev.wait_for_messages(1)[0]
        print(f"arrived: {arrived.user} -> {', '.join(arrived.rcpt_tos)}: {arrived.subject!r}")
        return 0 if result.ok else 1


if __name__ == "__main__":
    sys.exit(main())
