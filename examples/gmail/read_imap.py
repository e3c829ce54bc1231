"""Read your Gmail inbox over IMAP with the same token that sends (no password anywhere).

The token from oauthsmtp's login (scope https://mail.google.com/) is good for SMTP, IMAP
and POP3 alike. This script logs in to imap.gmail.com:993 with it through
``oauthsmtp.imap_authenticate`` (XOAUTH2 or OAUTHBEARER, whichever Gmail offers; TLS with
the certificate checked) and prints who sent the newest messages in INBOX, and their
subjects. It opens the mailbox read-only: nothing is marked as read.

    export GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ACCOUNT=me@gmail.com
    python examples/gmail/read_imap.py --count 5

The first run logs in through your browser (as login_once.py does); later runs use the
saved token. There is no ``--dev`` run: the development provider has no IMAP server. The
project's tests run :func:`read_inbox` against a real Dovecot instead (tests/test_mailbox.py).
"""

from __future__ import annotations

import contextlib
import email.header
import imaplib
import ssl
import sys
from collections.abc import Callable

from _common import EXIT_USAGE, ExampleFailed, Mailbox, example_parser, positive, run

import oauthsmtp

GMAIL_IMAP_HOST = "imap.gmail.com"
GMAIL_IMAP_PORT = 993  # implicit TLS (RFC 8314)


def read_inbox(
    open_imap: Callable[[], imaplib.IMAP4],
    token: oauthsmtp.AuthToken,
    account: str,
    *,
    limit: int = 10,
) -> list[str]:
    """Log in with ``token``, read the newest ``limit`` headers of INBOX; one line each.

    ``open_imap`` opens the connection (an ``IMAP4_SSL`` with a verifying context); the
    connection is logged out before this returns.
    """
    imap = open_imap()
    try:
        mechanism = oauthsmtp.imap_authenticate(imap, token, account)
        lines = [f"logged in to IMAP as {account} with {mechanism}"]
        typ, data = imap.select("INBOX", readonly=True)
        if typ != "OK":
            raise ExampleFailed(f"cannot open INBOX: {data!r}")
        count = int(data[0] or b"0")
        lines.append(f"INBOX: {count} message(s)")
        first = max(count - limit + 1, 1)
        if count:
            typ, fetched = imap.fetch(
                f"{first}:{count}", "(BODY.PEEK[HEADER.FIELDS (FROM SUBJECT DATE)])"
            )
            if typ != "OK":
                raise ExampleFailed(f"cannot fetch headers: {fetched!r}")
            for item in reversed(fetched):
                if isinstance(item, tuple):
                    lines.append("  " + _summary(item[1]))
        return lines
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()


def _summary(raw: bytes) -> str:
    """``date | from | subject`` from raw header lines, with RFC 2047 words decoded."""
    message = email.message_from_bytes(raw)
    fields = []
    for name in ("Date", "From", "Subject"):
        value = message.get(name, "")
        fields.append(str(email.header.make_header(email.header.decode_header(value))))
    return " | ".join(fields)


def read_gmail(mailbox: Mailbox, count: int) -> None:
    # The first run opens the browser to log in; later runs use the saved token.
    token = oauthsmtp.auth_identify(mailbox.params, account=mailbox.account, store=mailbox.store)

    def open_gmail() -> imaplib.IMAP4:
        # imaplib checks no certificate unless given a context; oauthsmtp refuses to send
        # a token over such a connection, so pass one.
        return imaplib.IMAP4_SSL(
            GMAIL_IMAP_HOST,
            GMAIL_IMAP_PORT,
            ssl_context=ssl.create_default_context(),
            timeout=60,
        )

    try:
        for line in read_inbox(open_gmail, token, mailbox.account, limit=count):
            print(line)
    except imaplib.IMAP4.error as exc:
        raise ExampleFailed(f"IMAP: {exc}") from None


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__, recipients=False)
    parser.add_argument(
        "--count", type=positive, default=10, help="how many messages to list (default 10)"
    )
    args = parser.parse_args(argv)
    if args.dev:
        print(
            f"{parser.prog}: --dev is not available here: the development provider has no "
            "IMAP server (tests/test_mailbox.py runs this example's read_inbox against Dovecot)",
            file=sys.stderr,
        )
        return EXIT_USAGE
    return run(parser.prog, args, lambda mailbox: read_gmail(mailbox, args.count))


if __name__ == "__main__":
    sys.exit(main())
