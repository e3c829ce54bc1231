"""Send asynchronously: submit() returns a future at once, a background thread sends.

``session.submit(message)`` queues the message and returns a
``concurrent.futures.Future[SendResult]`` at once; one background thread sends the
queued messages in order, over one connection, pipelining whatever has queued up.
``close()`` (here: leaving the ``with`` block) waits for every queued message. Each
future then holds the message's ``SendResult``, or the error that stopped it: even a
malformed message does not raise in ``submit()``, its future does. The script queues
a few messages and one without a recipient to show that.

``SMTPSession(..., asynchronous=True)`` is WinDev's ``.Asynchronous = True``: the
background thread starts with the session, and ``send()`` still returns a
``SendResult`` (it waits behind the queued messages); ``submit()`` is the call that
returns at once.

With Gmail (the first run opens the browser to log in, later runs do not):

    export GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ACCOUNT=me@gmail.com
    python examples/gmail/send_async.py --to you@example.com

Offline, against oauthsmtp's local development provider, which checks what arrived:

    python examples/gmail/send_async.py --dev
"""

from __future__ import annotations

import sys
from concurrent.futures import Future
from email.message import EmailMessage

from _common import ExampleFailed, Mailbox, arrival, check, describe, example_parser, positive, run

import oauthsmtp


def send_async(mailbox: Mailbox, *, count: int) -> None:
    token = oauthsmtp.auth_identify(mailbox.params, account=mailbox.account, store=mailbox.store)
    messages: list[oauthsmtp.Email | EmailMessage] = [
        oauthsmtp.Email(
            sender=mailbox.account,
            to=list(mailbox.to),
            subject=f"Asynchronous message {n} of {count}",
            text=f"Message {n} of {count}, queued with submit() and sent in the background.\n",
        )
        for n in range(1, count + 1)
    ]
    # A malformed message: no recipient. submit() does not raise, its future does.
    broken = EmailMessage()
    broken["From"] = mailbox.account
    broken["Subject"] = "No recipient"
    broken.set_content("This one is refused before anything is sent.\n")
    messages.append(broken)

    futures: list[Future[oauthsmtp.SendResult]] = []
    with mailbox.session(token, asynchronous=True) as session:  # connects now
        for message in messages:
            futures.append(session.submit(message))  # returns at once
        print(f"queued {len(futures)} messages; submit() returned a future for each at once")
        # The program is free to do other work here while the background thread sends.
    # Leaving the block called close(), which waited for every queued message.
    print(f"close() returned; futures done: {sum(f.done() for f in futures)} of {len(futures)}")

    results: list[oauthsmtp.SendResult | None] = []
    for n, future in enumerate(futures, 1):
        try:
            result = future.result()  # the SendResult; or the error is raised here
        except oauthsmtp.OAuthSMTPError as exc:
            print(f"#{n}: {type(exc).__name__}: {exc}")
            results.append(None)
        else:
            print(f"#{n}: {describe(result)}")
            results.append(result)
    *results, refused = results
    check(refused is None, "an error in the future of the message without a recipient")
    not_sent = [str(n) for n, result in enumerate(results, 1) if not (result and result.ok)]
    if not_sent:
        raise ExampleFailed(f"message(s) {', '.join(not_sent)} did not go out (see above)")

    if mailbox.provider is not None:
        arrived = mailbox.received(count)
        for received in arrived:
            print(arrival(received))
        subjects = [m.subject for m in arrived]
        check(
            subjects == [f"Asynchronous message {n} of {count}" for n in range(1, count + 1)],
            "the messages in the order they were queued",
        )
        check(mailbox.provider.smtp.connections == 1, "1 SMTP connection")
        print(f"dev check passed: {count} arrived in order over 1 connection")


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    parser.add_argument("--count", type=positive, default=5, help="how many messages (5)")
    args = parser.parse_args(argv)
    return run(parser.prog, args, lambda mailbox: send_async(mailbox, count=args.count))


if __name__ == "__main__":
    sys.exit(main())
