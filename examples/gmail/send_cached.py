"""Send one message with the token saved at login: no browser, ever.

A program that runs unattended (a cron job, a service, a CI step) must never
open a browser. It asks for the saved token with ``interactive=False``: the
token comes from the store (refreshed first if it is about to expire), and
when there is none, or the refresh token was revoked or has expired,
``auth_identify`` raises ``LoginRequired`` instead of starting a login. This
script then says what to do and exits with code 3.

With Gmail: log in once with login_once.py (same environment), then:

    export GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ACCOUNT=me@gmail.com
    python examples/gmail/send_cached.py --to you@example.com

Offline, against oauthsmtp's local development provider (the first login is
done by the script, because that provider starts afresh on every run):

    python examples/gmail/send_cached.py --dev
"""

from __future__ import annotations

import sys

from _common import (
    EXIT_LOGIN_REQUIRED,
    DevBrowser,
    ExampleFailed,
    Mailbox,
    arrival,
    check,
    describe,
    example_parser,
    run,
)

import oauthsmtp

SUBJECT = "Sent with a saved token"


def saved_token(mailbox: Mailbox, account: str) -> oauthsmtp.AuthToken:
    """The saved token for ``account``; never a browser (ExampleFailed, exit 3, if none)."""
    try:
        return oauthsmtp.auth_identify(
            mailbox.params, account=account, store=mailbox.store, interactive=False
        )
    except oauthsmtp.LoginRequired as exc:
        # exc says why: no saved login, or the provider refused the refresh token.
        raise ExampleFailed(
            f"LoginRequired: {exc}\n"
            "With this example's client, log in once (where a browser can open) with: "
            "python examples/gmail/login_once.py",
            EXIT_LOGIN_REQUIRED,
        ) from None


def send_cached(mailbox: Mailbox) -> None:
    if mailbox.provider is not None:
        # What login_once.py does with Gmail: the one login through a browser (here the
        # stand-in). With Gmail this script relies on a login from an earlier run.
        oauthsmtp.auth_identify(mailbox.params, account=mailbox.account, store=mailbox.store)
        print(f"logged in once as {mailbox.account} (what login_once.py does)")

    token = saved_token(mailbox, mailbox.account)
    print(f"saved token found for {mailbox.account}: no browser (valid={token.valid})")

    with mailbox.session(token) as session:
        result = session.send(
            oauthsmtp.Email(
                sender=mailbox.account,
                to=list(mailbox.to),
                subject=SUBJECT,
                text="This message was sent with the token saved at login; no browser opened.",
            )
        )
    print(describe(result))
    result.raise_for_status()  # SMTPError (exit 1) if the server refused the message

    if mailbox.provider is not None:
        [message] = mailbox.received(1)
        print(arrival(message))
        check(message.subject == SUBJECT, f"the subject {SUBJECT!r}")
        check(message.user == mailbox.account, f"a session authenticated as {mailbox.account}")
        check(DevBrowser.visits == 1, "one browser visit, for the first login only")
        # An account that never logged in gets LoginRequired, not a browser.
        try:
            saved_token(mailbox, "stranger@example.test")
        except ExampleFailed as exc:
            check(exc.exit_code == EXIT_LOGIN_REQUIRED, "exit code 3 for a missing login")
            print(f"never logged in: {str(exc).splitlines()[0]}")
        check(DevBrowser.visits == 1, "no browser for the account that never logged in")
        print("dev check passed: 1 message arrived; the browser opened for the first login only")


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    return run(parser.prog, parser.parse_args(argv), send_cached)


if __name__ == "__main__":
    sys.exit(main())
