"""What the development SMTP server received: :class:`ReceivedMessage` and its ``.eml`` file.

The value the server records for each accepted message, and ``write_atomically``, which
writes a message into the server's maildir (a private temporary file, then a rename), so that
a reader never sees half a message.
"""

from __future__ import annotations

import email.message
import email.parser
import email.policy
import os
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted.

    Attributes:
        mail_from: The envelope sender (``MAIL FROM``).
        rcpt_tos: The envelope recipients the server accepted, in order.
        data: The message exactly as received, after dot-unstuffing (CRLF line ends).
        user: The identity that authenticated on the connection, or None.
        received_at: When the end of data arrived (UTC).
        path: The ``.eml`` file written for it, when the server has a maildir.
        mail_options: The ``MAIL FROM`` parameters, upper-cased (e.g. ``("SMTPUTF8",)``).
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    user: str | None
    received_at: datetime
    path: Path | None
    mail_options: tuple[str, ...] = ()

    @property
    def message(self) -> email.message.EmailMessage:
        """The message parsed with ``email.policy.default``."""
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.data)

    @property
    def subject(self) -> str:
        """The decoded Subject header, or ``""``."""
        return str(self.message.get("Subject", ""))


def write_atomically(folder: Path, name: str, data: bytes) -> Path:
    """Write ``data`` to ``folder/name`` (mode 0600) through a temporary file; return the path."""
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    temporary = folder / f".{name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return final
