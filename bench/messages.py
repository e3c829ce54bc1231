"""The messages the clients send.

**As objects** (the send tables): a small text message and one with a 1 MB attachment, each
built two ways with the same content: as an :class:`oauthsmtp.Email` (what an oauthsmtp
user writes) and as an :class:`email.message.EmailMessage` built with the standard library
(what an smtplib or aiosmtplib user writes), both with a Date and a Message-ID (oauthsmtp
adds them to an ``Email``; the ``EmailMessage`` is given them, so no client writes less).
Building happens before the clock starts; serializing is part of sending, for every client.

**As wire bytes** (the equal-width and scaling rows): :func:`wire` renders message ``i``
once, with Date, Message-ID and MIME headers, CRLF line endings, and every client is given
those same bytes with the same envelope (:data:`SENDER` to :data:`RECIPIENT`): smtplib's and
aiosmtplib's ``sendmail``, oauthsmtp's prepared message. The sink hashes what it receives,
so the benchmark checks that every client put the same octets on the wire.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from datetime import datetime, timezone
from email import policy
from email.message import EmailMessage
from email.utils import format_datetime

import oauthsmtp

SENDER = "user@example.test"
RECIPIENT = "bob@example.test"
TEXT = "Hello Bob,\n\n" + "This is a small benchmark message from oauthsmtp. " * 14 + "\n\nAlice\n"
ATTACHMENT_BYTES = 1024 * 1024
DATE = format_datetime(datetime(2026, 1, 2, 3, 4, 5, tzinfo=timezone.utc))
_INDEX = "INDEX-PLACEHOLDER"


@functools.cache
def attachment() -> bytes:
    """1 MiB of random bytes (incompressible, like a PDF or a photo)."""
    return os.urandom(ATTACHMENT_BYTES)


def _email(index: int, *, large: bool) -> oauthsmtp.Email:
    files = [("report.bin", attachment(), "application/octet-stream")] if large else []
    return oauthsmtp.Email(
        sender=SENDER,
        to=[RECIPIENT],
        subject=f"Benchmark message {index}",
        text=TEXT,
        attachments=files,
    )


def _message(index: int, *, large: bool) -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = SENDER
    msg["To"] = RECIPIENT
    msg["Subject"] = f"Benchmark message {index}"
    msg["Date"] = DATE
    msg["Message-ID"] = f"<bench-{index}@example.test>"
    msg.set_content(TEXT)
    if large:
        msg.add_attachment(
            attachment(), maintype="application", subtype="octet-stream", filename="report.bin"
        )
    return msg


@dataclass(frozen=True)
class Kind:
    """One kind of message and its two builders."""

    name: str
    large: bool

    @property
    def email(self) -> Callable[[int], oauthsmtp.Email]:
        """``email(i)``: message ``i`` as an :class:`oauthsmtp.Email`."""
        return functools.partial(_email, large=self.large)

    @property
    def message(self) -> Callable[[int], EmailMessage]:
        """``message(i)``: message ``i`` as a standard-library :class:`EmailMessage`."""
        return functools.partial(_message, large=self.large)


SMALL = Kind("small (1 KB)", large=False)
LARGE = Kind("1 MB attachment", large=True)


# --------------------------------------------------------------------------- wire bytes


@functools.cache
def _wire_pieces() -> list[bytes]:
    """The small message rendered once, split where its index goes."""
    rendered = EmailMessage()
    rendered["From"] = SENDER
    rendered["To"] = RECIPIENT
    rendered["Subject"] = f"Benchmark message {_INDEX}"
    rendered["Date"] = DATE
    rendered["Message-ID"] = f"<bench-{_INDEX}@example.test>"
    rendered.set_content(TEXT)
    data = rendered.as_bytes(policy=policy.SMTP)
    return data.split(_INDEX.encode())


def wire(index: int) -> bytes:
    """Message ``index`` as RFC 5322 wire bytes (CRLF), about 1 KB: the same for every client.

    It has From, To, Subject, Date, Message-ID and MIME headers and a text/plain body; only
    the Subject and the Message-ID differ from one index to the next.
    """
    return str(index).encode().join(_wire_pieces())


def wire_stream(count: int, start: int = 0) -> Iterator[bytes]:
    """Messages ``start`` .. ``start + count - 1`` as wire bytes, made one at a time."""
    return (wire(i) for i in range(start, start + count))
