"""The ``Email`` builder: a frozen, validated description of a message to send.

:class:`Email` (WinDev ``Email``) holds the sender, the recipients, the subject, a text body
and/or an HTML alternative, attachments and extra headers. It is validated when it is built
(addresses and headers through :mod:`oauthsmtp._message.addresses`, attachments here);
:meth:`Email.to_message` turns it into an :class:`email.message.EmailMessage`. Sending it
goes through :func:`~oauthsmtp._message.prepare.prepare_message`, which usually renders it without
the :mod:`email` package (:mod:`oauthsmtp._message.mime`) and uses the attachment helpers here.
"""

from __future__ import annotations

import base64
import os
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Union, cast

from oauthsmtp._errors import ConfigurationError

from .addresses import check_header, has_forbidden, mailboxes
from .mime import base64_lines

__all__ = ["AttachmentSpec", "Email"]

AttachmentSpec = Union[str, "os.PathLike[str]", tuple[str, bytes], tuple[str, bytes, str]]
"""An attachment: a file path, or ``(filename, data)`` / ``(filename, data, mime_type)``."""

_RESERVED_HEADERS = frozenset(
    {
        "from",
        "sender",
        "to",
        "cc",
        "bcc",
        "reply-to",
        "subject",
        "mime-version",
        "content-type",
        "content-transfer-encoding",
        "content-disposition",
    }
)


@dataclass(frozen=True)
class _Parsed:
    """The parsed addresses of an :class:`Email`, kept so they are parsed once."""

    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]


def _attachment(spec: AttachmentSpec) -> AttachmentSpec:
    if isinstance(spec, tuple):
        if len(spec) not in (2, 3) or not isinstance(spec[0], str):
            raise ConfigurationError(
                "an attachment tuple is (filename, data) or (filename, data, mime_type)"
            )
        if not isinstance(spec[1], (bytes, bytearray, memoryview)):
            raise ConfigurationError(f"attachment {spec[0]!r}: data must be bytes")
        if len(spec) == 3:
            _split_mime(spec[2])
        _check_filename(spec[0])
        return spec
    if isinstance(spec, (str, os.PathLike)):
        _check_filename(os.fspath(spec))
        return spec
    raise ConfigurationError(
        f"an attachment is a path or a (filename, data[, mime_type]) tuple, not "
        f"{type(spec).__name__}"
    )


def _check_filename(name: str) -> None:
    if not name or has_forbidden(name):
        raise ConfigurationError(f"invalid attachment name {name!r}")


def _split_mime(mime: str) -> tuple[str, str]:
    maintype, sep, subtype = mime.partition("/")
    token_ok = all(
        part
        and part.isascii()
        and part.isprintable()
        and not any(c in part for c in ' ()<>@,;:\\"/[]?=')
        for part in (maintype, subtype)
    )
    if not sep or not token_ok:
        raise ConfigurationError(f"invalid MIME type {mime!r} (expected type/subtype)")
    return maintype.lower(), subtype.lower()


def _text_cte(text: str) -> str | None:
    """Pick a 7-bit transfer encoding for a text body, so no server needs 8BITMIME."""
    extra = len(text.encode("utf-8")) - len(text)
    if extra == 0:
        return None  # ASCII: the email package picks 7bit (or quoted-printable for long lines)
    return "base64" if extra * 4 > len(text) else "quoted-printable"


@dataclass(frozen=True, kw_only=True)
class Email:
    """A message to send, validated on construction (WinDev ``Email``).

    Sequences are stored as tuples and ``headers`` as a tuple of ``(name, value)`` pairs,
    so an ``Email`` is immutable and hashable. Addresses may carry a display name
    (``"Zoë <zoe@example.org>"``); an internationalized domain is converted to IDNA
    A-labels; a non-ASCII local part needs a server offering SMTPUTF8 (RFC 6531).

    Attributes:
        sender: the From address, also the envelope sender (``MAIL FROM``).
        to: recipients shown in To.
        cc: recipients shown in Cc.
        bcc: recipients who receive the message but appear in no header (envelope only).
        reply_to: addresses for Reply-To.
        subject: the subject; non-ASCII text is encoded per RFC 2047 (or sent as UTF-8 when
            the message needs SMTPUTF8).
        text: the plain-text body.
        html: the HTML body; with ``text`` it becomes a multipart/alternative.
        attachments: file paths (read when the message is built) or ``(filename, data)`` /
            ``(filename, data, mime_type)`` tuples.
        headers: extra header fields (e.g. ``{"X-Mailer": "..."}``); the structural and
            address fields above cannot be set this way. A ``Date`` or ``Message-ID`` given
            here replaces the generated one.

    Raises:
        ConfigurationError: an address is malformed or contains CR/LF/NUL, a header or the
            subject contains CR/LF/NUL, there is no recipient, or an attachment is malformed.
    """

    sender: str
    to: Sequence[str] = ()
    cc: Sequence[str] = ()
    bcc: Sequence[str] = ()
    reply_to: Sequence[str] = ()
    subject: str = ""
    text: str | None = None
    html: str | None = None
    attachments: Sequence[AttachmentSpec] = ()
    headers: Mapping[str, str] | Sequence[tuple[str, str]] = field(default=())
    _parsed: _Parsed = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        sender = mailboxes("sender", self.sender)[0]
        lists = {n: mailboxes(n, getattr(self, n)) for n in ("to", "cc", "bcc", "reply_to")}
        put(self, "_parsed", _Parsed(sender=sender, **lists))
        put(self, "sender", str(sender))
        for name, addresses in lists.items():
            put(self, name, tuple(str(a) for a in addresses))
        if not (self.to or self.cc or self.bcc):
            raise ConfigurationError("an Email needs at least one recipient (to, cc or bcc)")
        check_header("Subject", self.subject)
        for name in ("text", "html"):
            value = getattr(self, name)
            if value is not None and not isinstance(value, str):
                raise ConfigurationError(f"{name} must be a string")
        put(self, "attachments", tuple(_attachment(a) for a in self.attachments))
        pairs = self.headers.items() if isinstance(self.headers, Mapping) else self.headers
        headers = tuple((str(n), v) for n, v in pairs)
        for name, value in headers:
            check_header(name, value)
            lowered = name.lower()
            if lowered in _RESERVED_HEADERS or lowered.startswith("resent-"):
                raise ConfigurationError(
                    f"header {name} cannot be set through headers=; use the Email field"
                )
        put(self, "headers", headers)

    @property
    def envelope_sender(self) -> str:
        """The address for ``MAIL FROM`` (the sender's addr-spec)."""
        return self._parsed.sender.addr_spec

    @property
    def envelope_recipients(self) -> tuple[str, ...]:
        """Every recipient for ``RCPT TO``: to, cc and bcc, de-duplicated, in order."""
        parsed = self._parsed
        return tuple(dict.fromkeys(a.addr_spec for a in (*parsed.to, *parsed.cc, *parsed.bcc)))

    def to_message(self) -> EmailMessage:
        """Build the :class:`~email.message.EmailMessage` (Bcc is never a header).

        Adds ``Date`` and ``Message-ID`` (RFC 5322 §3.6.1, §3.6.4) unless ``headers`` has
        them. Bodies are given a 7-bit transfer encoding, so no server needs 8BITMIME.

        Raises:
            OSError: an attachment file cannot be read.
        """
        return self._build(None)

    def _build(self, deferred: list[tuple[bytes, bytes]] | None) -> EmailMessage:
        """Build the message; with ``deferred``, attachments hold placeholders (see below)."""
        from email.utils import formatdate, make_msgid

        msg = EmailMessage()
        msg["From"] = self.sender
        for name, values in (("To", self.to), ("Cc", self.cc), ("Reply-To", self.reply_to)):
            if values:
                msg[name] = ", ".join(values)
        msg["Subject"] = self.subject
        headers = cast("tuple[tuple[str, str], ...]", self.headers)  # see __post_init__
        given = {name.lower() for name, _ in headers}
        if "date" not in given:
            msg["Date"] = formatdate(localtime=True)
        if "message-id" not in given:
            msg["Message-ID"] = make_msgid(domain=self._parsed.sender.domain)
        for name, value in headers:
            msg[name] = value
        if self.html is not None and self.text is not None:
            msg.set_content(self.text, cte=_text_cte(self.text))
            msg.add_alternative(self.html, subtype="html", cte=_text_cte(self.html))
        elif self.html is not None:
            msg.set_content(self.html, subtype="html", cte=_text_cte(self.html))
        else:
            text = self.text or ""
            msg.set_content(text, cte=_text_cte(text))
        for spec in self.attachments:
            _add_attachment(msg, spec, deferred)
        return msg


def describe_attachment(spec: AttachmentSpec) -> tuple[str, str, str]:
    """``(filename, maintype, subtype)`` of an attachment; the type is guessed from the name."""
    if isinstance(spec, tuple):
        filename, mime = spec[0], spec[2] if len(spec) == 3 else None
    else:
        filename, mime = Path(spec).name, None
    if mime is None:
        import mimetypes

        mime = mimetypes.guess_type(filename)[0] or "application/octet-stream"
    maintype, subtype = _split_mime(mime)
    return filename, maintype, subtype


def read_attachment(spec: AttachmentSpec) -> bytes:
    """The attachment's content (a file is read now)."""
    if isinstance(spec, tuple):
        return bytes(spec[1])
    return Path(spec).read_bytes()


def _add_attachment(
    msg: EmailMessage, spec: AttachmentSpec, deferred: list[tuple[bytes, bytes]] | None
) -> None:
    """Attach ``spec``; with ``deferred``, attach a placeholder and record its real content.

    The :mod:`email` generator writes a large base64 body line by line in Python (about
    25 ms per MB); :func:`prepare_message` instead serializes a message whose attachment
    is a 24-byte random placeholder and then swaps in the encoded content in one pass.
    """
    filename, maintype, subtype = describe_attachment(spec)
    data = read_attachment(spec)
    if (maintype, subtype) == ("message", "rfc822"):
        from email import policy
        from email.parser import BytesParser

        attached = BytesParser(policy=policy.default).parsebytes(data)
        msg.add_attachment(attached, filename=filename)
        return
    if maintype in ("message", "multipart"):
        maintype, subtype = "application", "octet-stream"  # RFC 2046 forbids base64 for these
    if deferred is not None and data:
        placeholder = secrets.token_bytes(24)  # base64: one 32-character line, no padding
        deferred.append((base64.b64encode(placeholder), b"\r\n".join(base64_lines(data))))
        data = placeholder
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename, cte="base64")
