"""Log in to Gmail once through the browser, then reuse the saved token.

Run it with your own Google "Desktop app" OAuth client (see docs/login.md):

    export GMAIL_CLIENT_ID="1234-abc.apps.googleusercontent.com"
    export GMAIL_CLIENT_SECRET="GOCSPX-..."
    export GMAIL_ACCOUNT="me@gmail.com"
    python examples/gmail/login_once.py

The first run opens your browser; later runs find the token in the OS keyring
and open nothing. Or try the whole flow offline, against oauthsmtp's local
development provider, with a built-in stand-in for the browser:

    python examples/gmail/login_once.py --dev

The script prints when the access token expires and whether a refresh token is
held. It never prints a token.
"""

from __future__ import annotations

import argparse
import os
import sys
import threading
import urllib.error
import urllib.request
import webbrowser
from urllib.parse import urlsplit

import oauthsmtp

DEV_BROWSER = "oauthsmtp-dev"


def _follow(url: str) -> None:
    """Do what a browser does when the user clicks "Allow": GET the URL, follow redirects.

    The development provider in auto mode approves at once and redirects to the
    loopback listener, which completes the login.
    """
    # No proxy: both servers are on this machine, and a proxy from http_proxy
    # would not reach them.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    try:
        with opener.open(url, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        print(f"dev browser: the server answered HTTP {exc.code}", file=sys.stderr)
        exc.close()
    except OSError as exc:
        # Only the reason: the URL of a redirect may carry the authorization code.
        print(f"dev browser: {type(exc).__name__}", file=sys.stderr)


class DevBrowser(webbrowser.BaseBrowser):
    """A stand-in browser for --dev: fetches the URL in a background thread.

    ``open`` must return at once, as a real browser launcher does: oauthsmtp
    waits for the redirect on the same thread that asked for the browser.
    """

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            return False  # only ever visit the local development provider
        threading.Thread(target=_follow, args=(url,), daemon=True).start()
        return True


def use_dev_browser() -> None:
    """Make Python's webbrowser module open URLs with :class:`DevBrowser`.

    oauthsmtp opens a browser only when one can start; on Linux without a
    display it checks the BROWSER variable. Naming our browser there passes
    that check, and registering it as preferred makes webbrowser use it first.
    """
    os.environ["BROWSER"] = DEV_BROWSER
    webbrowser.register(DEV_BROWSER, None, DevBrowser(DEV_BROWSER), preferred=True)


def report(token: oauthsmtp.AuthToken) -> None:
    """Print what is safe to print: expiry, refresh token held or not, scopes."""
    expires = token.expires_at.isoformat() if token.expires_at else "unknown"
    print(f"access token expires at: {expires}")
    print(f"refresh token held:      {'yes' if token.refresh_token else 'no'}")
    print(f"granted scopes:          {' '.join(token.scope)}")


def login_twice(
    params: oauthsmtp.OAuth2Parameters,
    account: str,
    *,
    store: oauthsmtp.TokenStore | None,
    open_browser: bool,
) -> None:
    """Log in (browser only if no token is saved), then show the second call needs none."""
    token = oauthsmtp.auth_identify(params, account=account, store=store, open_browser=open_browser)
    print(f"logged in as {account}")
    report(token)
    # interactive=False: never open a browser; LoginRequired if nothing is saved.
    again = oauthsmtp.auth_identify(params, account=account, store=store, interactive=False)
    print(f"second call, no browser: token found, valid={again.valid}")


def run_gmail(*, open_browser: bool) -> int:
    """Log in to the real Gmail with the client from the environment."""
    names = ("GMAIL_CLIENT_ID", "GMAIL_CLIENT_SECRET", "GMAIL_ACCOUNT")
    missing = [name for name in names if not os.environ.get(name)]
    if missing:
        print(f"login_once: set {', '.join(missing)} (see docs/login.md)", file=sys.stderr)
        return 2
    params = oauthsmtp.providers.gmail(
        client_id=os.environ["GMAIL_CLIENT_ID"],
        client_secret=os.environ["GMAIL_CLIENT_SECRET"],
    )
    # store=None: the default store, the OS keyring (or files with OAUTHSMTP_STORE=file).
    login_twice(params, os.environ["GMAIL_ACCOUNT"], store=None, open_browser=open_browser)
    return 0


def run_dev() -> int:
    """Log in against the local development provider, with the stand-in browser."""
    from oauthsmtp.devserver import AuthServer

    use_dev_browser()
    with AuthServer(mode="auto") as server:
        client = server.register_client()
        # Port 0: any free port (the development provider accepts any loopback port).
        params = server.parameters(client, redirect_url="http://127.0.0.1:0/callback")
        account = os.environ.get("GMAIL_ACCOUNT") or server.user
        # A MemoryStore: nothing is written to the keyring, nothing survives the run.
        login_twice(params, account, store=oauthsmtp.MemoryStore(), open_browser=True)
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "--dev",
        action="store_true",
        help="use oauthsmtp's local development provider and a built-in stand-in browser",
    )
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="print the login URL instead of opening a browser (remote machines)",
    )
    args = parser.parse_args(argv)
    try:
        if args.dev:
            return run_dev()
        return run_gmail(open_browser=not args.no_browser)
    except oauthsmtp.OAuthSMTPError as exc:
        # oauthsmtp's messages never contain a token, a code or a secret.
        print(f"login_once: {type(exc).__name__}: {exc}", file=sys.stderr)
        return 3 if isinstance(exc, oauthsmtp.LoginRequired) else 1


if __name__ == "__main__":
    sys.exit(main())
