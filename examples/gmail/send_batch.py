"""Send a batch of personalised messages over one connection, with a result per message.

``session.send_many(messages)`` sends every message over the session's one
connection (pipelined when the server allows it: about one round trip per
message) and returns one ``SendResult`` per message, in order. A message the
server refuses does not stop the batch and raises nothing: its result says
``failed`` with the server's code and text, and ``result.refused`` names the
refused recipients (a message with several recipients can be ``sent`` to the
others). The script prints one line per message and a summary, and exits 1
if a message it expected to go out did not.

With Gmail (all messages go to --to, your own address by default; --count
sets how many):

    export GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ACCOUNT=me@gmail.com
    python examples/gmail/send_batch.py --to you@example.com --count 3

Gmail accepts any well-formed recipient while you send and reports unknown
ones later, by a bounce message. To show how a refusal at sending time looks,
the --dev run sends to 20 different addresses and tells the development SMTP
server to refuse one of them (550 5.1.1, as Microsoft 365 does for an unknown
mailbox in its own domain):

    python examples/gmail/send_batch.py --dev
"""

from __future__ import annotations

import sys
from collections import Counter

from _common import ExampleFailed, Mailbox, arrival, check, describe, example_parser, positive, run

import oauthsmtp

REFUSED = "nobody@example.test"  # --dev: the development SMTP server refuses this address
REFUSED_NUMBER = 7  # --dev: message 7 goes to it


def readers(mailbox: Mailbox, count: int) -> list[tuple[str, str]]:
    """(name, address) of the recipient of each message."""
    if mailbox.provider is None:  # Gmail: the --to addresses in turn
        return [(f"Reader {n}", mailbox.to[(n - 1) % len(mailbox.to)]) for n in range(1, count + 1)]
    people = [(f"Reader {n}", f"reader{n:02d}@example.test") for n in range(1, count + 1)]
    if count >= REFUSED_NUMBER:
        people[REFUSED_NUMBER - 1] = ("Nobody", REFUSED)
    return people


def send_batch(mailbox: Mailbox, *, count: int) -> None:
    token = oauthsmtp.auth_identify(mailbox.params, account=mailbox.account, store=mailbox.store)
    if mailbox.provider is not None:
        # Make the development SMTP server refuse one address at RCPT TO, as a server that
        # knows its mailboxes does (its addresses are compared case-insensitively).
        mailbox.provider.smtp.reject_recipients = frozenset({REFUSED.casefold()})
    people = readers(mailbox, count)
    messages = [
        oauthsmtp.Email(
            sender=mailbox.account,
            to=[f"{name} <{address}>"],
            subject=f"Your message {n} of {count}",
            text=f"Hello {name},\n\nthis is message {n} of {count}, just for you.\n",
        )
        for n, (name, address) in enumerate(people, 1)
    ]
    with mailbox.session(token) as session:  # one connection for the whole batch
        results = session.send_many(messages)  # one SendResult per message, in order

    for n, ((_, address), result) in enumerate(zip(people, results, strict=True), 1):
        print(f"#{n:02d} {address}: {describe(result)}")
    tally = Counter(result.status for result in results)
    print(f"summary: {tally['sent']} sent, {tally['failed']} failed, {tally['unknown']} unknown")

    refused = set()  # the messages meant to be refused (--dev only)
    if mailbox.provider is not None:
        refused = {n for n, (_, address) in enumerate(people, 1) if address == REFUSED}
    unexpected = [
        str(n) for n, result in enumerate(results, 1) if not result.ok and n not in refused
    ]
    if unexpected:
        raise ExampleFailed(f"message(s) {', '.join(unexpected)} did not go out (see above)")

    if mailbox.provider is not None:
        for n in refused:
            result = results[n - 1]
            check(result.status == "failed" and result.code == 550, f"message {n} refused")
            check(REFUSED in result.refused, f"{REFUSED} in result.refused")
        arrived = mailbox.received(count - len(refused))
        for message in arrived[:2]:
            print(arrival(message))
        print(f"... {len(arrived)} messages arrived")
        expected = [(a,) for n, (_, a) in enumerate(people, 1) if n not in refused]
        check([m.rcpt_tos for m in arrived] == expected, "each message at its own reader")
        check(all("just for you" in m.message.get_content() for m in arrived), "personal texts")
        connections = mailbox.provider.smtp.connections
        check(connections == 1, f"1 SMTP connection, not {connections}")
        print(f"dev check passed: {len(arrived)} arrived over 1 connection, {len(refused)} refused")


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--count", type=positive, default=20, help="how many messages (20)")
    args = parser.parse_args(argv)
    return run(parser.prog, args, lambda mailbox: send_batch(mailbox, count=args.count))


if __name__ == "__main__":
    sys.exit(main())
