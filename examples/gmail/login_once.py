"""Log in to Gmail once through the browser, then reuse the saved token.

Run it with your own Google "Desktop app" OAuth client (see README.md):

    export GMAIL_CLIENT_ID="1234-abc.apps.googleusercontent.com"
    export GMAIL_CLIENT_SECRET="GOCSPX-..."
    export GMAIL_ACCOUNT="me@gmail.com"
    python examples/gmail/login_once.py

The first run opens your browser; later runs find the token in the OS keyring
and open nothing. Or try the whole flow offline, against oauthsmtp's local
development provider, with a built-in stand-in for the browser:

    python examples/gmail/login_once.py --dev

The script prints when the access token expires and whether a refresh token is
held. It never prints a token. With --dev it also checks that the development
authorization server knows the token it got.
"""

from __future__ import annotations

import sys

from _common import DevBrowser, Mailbox, check, example_parser, run

import oauthsmtp


def report(token: oauthsmtp.AuthToken) -> None:
    """Print what is safe to print: expiry, refresh token held or not, scopes."""
    expires = token.expires_at.isoformat() if token.expires_at else "unknown"
    print(f"access token expires at: {expires}")
    print(f"refresh token held:      {'yes' if token.refresh_token else 'no'}")
    print(f"granted scopes:          {' '.join(token.scope)}")


def login_once(mailbox: Mailbox, *, open_browser: bool) -> None:
    """Log in (browser only if no token is saved), then show the second call needs none."""
    token = oauthsmtp.auth_identify(
        mailbox.params, account=mailbox.account, store=mailbox.store, open_browser=open_browser
    )
    print(f"logged in as {mailbox.account}")
    report(token)
    # interactive=False: never open a browser; LoginRequired if nothing is saved.
    again = oauthsmtp.auth_identify(
        mailbox.params, account=mailbox.account, store=mailbox.store, interactive=False
    )
    print(f"second call, no browser: token found, valid={again.valid}")

    if mailbox.provider is not None:
        # The authorization server is on this machine: ask it about the token we hold.
        info = mailbox.provider.auth.validate_access_token(again.access_token)
        check(info is not None and info.user == mailbox.account, "a live token for the account")
        check(DevBrowser.visits == 1, "one browser visit, for the first call only")
        print(f"dev check passed: the server issued the token to {mailbox.account}")


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__, recipients=False)
    parser.add_argument(
        "--no-browser",
        action="store_true",
        help="print the login URL instead of opening a browser (remote machines)",
    )
    args = parser.parse_args(argv)
    # --dev always uses its stand-in browser: nobody would open the printed URL.
    open_browser = args.dev or not args.no_browser
    return run(parser.prog, args, lambda mailbox: login_once(mailbox, open_browser=open_browser))


if __name__ == "__main__":
    sys.exit(main())
