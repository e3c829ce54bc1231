"""The messages every client sends: a small text message, and one with a 1 MB attachment.

Each kind is built two ways with the same content: as an :class:`oauthsmtp.Email` (what an
oauthsmtp user writes) and as an :class:`email.message.EmailMessage` built with the standard
library (what an smtplib or aiosmtplib user writes). Building happens before the clock
starts; serializing it is part of sending, for every client.
"""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from dataclasses import dataclass
from email.message import EmailMessage

import oauthsmtp

SENDER = "user@example.test"
RECIPIENT = "bob@example.test"
TEXT = "Hello Bob,\n\n" + "This is a small benchmark message from oauthsmtp. " * 14 + "\n\nAlice\n"
ATTACHMENT_BYTES = 1024 * 1024


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
