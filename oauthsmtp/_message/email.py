"""The ``Email`` builder: a frozen, validated description of a message to send.

:class:`Email` (WinDev ``Email``) holds the sender, the recipients, the subject, a text body
and/or an HTML alternative, attachments and extra headers. It is validated when it is built
(addresses and headers through :mod:`oauthsmtp._message.addresses`, attachments here);
:meth:`Email.to_message` turns it into an :class:`email.message.EmailMessage`. Sending it
goes through :func:`~oauthsmtp._message.prepare.prepare_message`, which usually renders it without
the :mod:`email` package (:mod:`oauthsmtp._message.mime`) and uses the attachment helpers here.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import EmailMessage
from pathlib import Path
from typing import Union, cast

from oauthsmtp._errors import ConfigurationError

from .addresses import check_header, format_address, mailboxes
from .checks import check_encodable, check_header_text, excerpt, require_str
from .mime import AttachmentFile, Content, is_structured, looks_encoded, unstructured_words

__all__ = ["AttachmentSpec", "Email", "ParsedAddresses", "parsed_addresses"]

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
class ParsedAddresses:
    """The parsed addresses of an :class:`Email`, kept so they are parsed once."""

    sender: Address
    to: tuple[Address, ...]
    cc: tuple[Address, ...]
    bcc: tuple[Address, ...]
    reply_to: tuple[Address, ...]


def _attachment(spec: object) -> AttachmentSpec:
    if isinstance(spec, tuple):
        if len(spec) not in (2, 3):
            raise ConfigurationError(
                "an attachment tuple is (filename, data) or (filename, data, mime_type)"
            )
        filename = check_header_text("an attachment's file name", spec[0])
        if not filename:
            raise ConfigurationError("an attachment's file name is empty")
        if not isinstance(spec[1], (bytes, bytearray, memoryview)):
            raise ConfigurationError(
                f"attachment {excerpt(filename)}: data must be bytes, not {type(spec[1]).__name__}"
            )
        if len(spec) == 3:
            _split_mime(spec[2])
        return cast("AttachmentSpec", spec)
    if isinstance(spec, (str, os.PathLike)):
        try:
            path = os.fspath(spec)
        except TypeError as exc:  # a PathLike whose __fspath__ returns bytes
            raise ConfigurationError(f"attachment path {excerpt(spec)}: {exc}") from None
        name = Path(require_str("an attachment path", path)).name
        if not name:
            raise ConfigurationError(f"attachment path {excerpt(path)} names no file")
        check_header_text(f"the attachment file name {excerpt(name)}", name)
        return cast("AttachmentSpec", spec)
    raise ConfigurationError(
        f"an attachment is a path or a (filename, data[, mime_type]) tuple, not "
        f"{type(spec).__name__}"
    )


def _split_mime(mime: object) -> tuple[str, str]:
    text = require_str("an attachment's MIME type", mime)
    maintype, sep, subtype = text.partition("/")
    token_ok = all(
        part
        and part.isascii()
        and part.isprintable()
        and not any(c in part for c in ' ()<>@,;:\\"/[]?=')
        for part in (maintype, subtype)
    )
    if not sep or not token_ok:
        raise ConfigurationError(f"invalid MIME type {excerpt(text)} (expected type/subtype)")
    return maintype.lower(), subtype.lower()


def _sequence(field_name: str, value: object) -> tuple[object, ...]:
    """A list-like field as a tuple; a lone string or bytes is refused, not split up."""
    if isinstance(value, (str, bytes, bytearray, memoryview, Mapping)) or not isinstance(
        value, Iterable
    ):
        raise ConfigurationError(
            f"{field_name} must be a list or tuple, not {type(value).__name__}"
        )
    return tuple(value)


def _header_pairs(value: object) -> tuple[tuple[str, str], ...]:
    pairs = value.items() if isinstance(value, Mapping) else _sequence("headers", value)
    out: list[tuple[str, str]] = []
    for pair in pairs:
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ConfigurationError(
                "headers must be a mapping or a sequence of (name, value) pairs, "
                f"not one holding {excerpt(pair)}"
            )
        name, text = pair
        check_header(require_str("a header name", name), require_str(f"header {name}", text))
        check_header_text(f"header {name}", text)
        lowered = name.lower()
        if lowered in _RESERVED_HEADERS or lowered.startswith("resent-"):
            raise ConfigurationError(
                f"header {name} cannot be set through headers=; use the Email field"
            )
        out.append((name, text))
    return tuple(out)


def _text_cte(text: str) -> str | None:
    """Pick a 7-bit transfer encoding for a text body, so no server needs 8BITMIME."""
    extra = len(text.encode("utf-8")) - len(text)
    if extra == 0:
        # ASCII: the email package picks 7bit (or quoted-printable for long lines), but a
        # NUL is not allowed in 7bit data (RFC 2045 §2.7).
        return "quoted-printable" if "\x00" in text else None
    return "base64" if extra * 4 > len(text) else "quoted-printable"


@dataclass(frozen=True, kw_only=True)
class Email:
    """A message to send, validated on construction (WinDev ``Email``).

    Sequences are stored as tuples and ``headers`` as a tuple of ``(name, value)`` pairs,
    so an ``Email`` is immutable and hashable; the address fields hold each address as text
    that parses back to the same display name and address. Addresses may carry a display
    name (``"Zoë <zoe@example.org>"``); an internationalized domain is converted to IDNA
    2008 A-labels (UTS #46: ``straße.de`` is ``xn--strae-oqa.de``); a non-ASCII local part
    needs a server offering SMTPUTF8 (RFC 6531).

    Attributes:
        sender: the From address, also the envelope sender (``MAIL FROM``).
        to: recipients shown in To.
        cc: recipients shown in Cc.
        bcc: recipients who receive the message but appear in no header (envelope only).
        reply_to: addresses for Reply-To.
        subject: the subject; non-ASCII text (or text that looks like an encoded-word) is
            encoded per RFC 2047, so it reads as given.
        text: the plain-text body.
        html: the HTML body; with ``text`` it becomes a multipart/alternative.
        attachments: file paths (read when the message is sent) or ``(filename, data)`` /
            ``(filename, data, mime_type)`` tuples. A ``message/rfc822`` attachment (e.g. an
            ``.eml`` file) is sent as it is, so its lines must be within 998 octets.
        headers: extra header fields (e.g. ``{"X-Mailer": "..."}``); the structural and
            address fields above cannot be set this way. A ``Date`` or ``Message-ID`` given
            here replaces the generated one.

    Raises:
        ConfigurationError: a field has the wrong type; an address is malformed, cannot be
            parsed, is over the RFC 5321 size limits or has a domain IDNA 2008 refuses; a
            header, the subject, a display name or a file name contains CR, LF, NUL or
            another control character (TAB aside); text is not encodable (a lone
            surrogate); there is no recipient; or an attachment is malformed. Never another
            exception: the message names the field and what is wrong.
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
    _parsed: ParsedAddresses = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        put = object.__setattr__
        if not isinstance(self.sender, (str, Address)):
            raise ConfigurationError(
                f"sender must be one address (a string), not {type(self.sender).__name__}"
            )
        sender = mailboxes("sender", self.sender)
        lists = {
            name: mailboxes(name, value if isinstance(value, str) else _sequence(name, value))
            for name, value in (
                ("to", self.to),
                ("cc", self.cc),
                ("bcc", self.bcc),
                ("reply_to", self.reply_to),
            )
        }
        put(self, "_parsed", ParsedAddresses(sender=sender[0], **lists))
        put(self, "sender", format_address(sender[0]))
        for name, addresses in lists.items():
            put(self, name, tuple(format_address(a) for a in addresses))
        if not (self.to or self.cc or self.bcc):
            raise ConfigurationError("an Email needs at least one recipient (to, cc or bcc)")
        check_header_text("subject", self.subject)
        for name in ("text", "html"):
            value = getattr(self, name)
            if value is not None:
                check_encodable(name, require_str(name, value))
        attachments = _sequence("attachments", self.attachments)
        put(self, "attachments", tuple(_attachment(a) for a in attachments))
        put(self, "headers", _header_pairs(self.headers))

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
            ConfigurationError: an attachment file cannot be read.
        """
        from email.utils import formatdate, make_msgid

        parsed = self._parsed
        msg = EmailMessage()
        # Address objects, not text: the email package would decode an encoded-word
        # look-alike inside a quoted display name.
        msg["From"] = parsed.sender
        for name, values in (("To", parsed.to), ("Cc", parsed.cc), ("Reply-To", parsed.reply_to)):
            if values:
                msg[name] = values
        msg["Subject"] = _literal(self.subject)
        headers = cast("tuple[tuple[str, str], ...]", self.headers)  # see __post_init__
        given = {name.lower() for name, _ in headers}
        if "date" not in given:
            msg["Date"] = formatdate(localtime=True)
        if "message-id" not in given:
            msg["Message-ID"] = make_msgid(domain=self._parsed.sender.domain)
        for name, value in headers:
            msg[name] = value if is_structured(name) else _literal(value)
        if self.html is not None and self.text is not None:
            msg.set_content(self.text, cte=_text_cte(self.text))
            msg.add_alternative(self.html, subtype="html", cte=_text_cte(self.html))
        elif self.html is not None:
            msg.set_content(self.html, subtype="html", cte=_text_cte(self.html))
        else:
            text = self.text or ""
            msg.set_content(text, cte=_text_cte(text))
        for spec in self.attachments:
            _add_attachment(msg, spec)
        return msg


def parsed_addresses(email: Email) -> ParsedAddresses:
    """The addresses of ``email`` as it parsed them when it was built (A-label domains)."""
    return email._parsed


def _literal(value: str) -> str:
    """An unstructured value the email package will read back as ``value`` itself.

    It decodes any encoded-word in what it is given (and drops leading white space): such a
    value is given encoded, so it decodes to itself.
    """
    if looks_encoded(value) or value != value.lstrip(" \t"):
        return " ".join(unstructured_words(value))
    return value


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
    """The attachment's content (a file is read now).

    Raises:
        ConfigurationError: the file cannot be read (the message says why).
    """
    if isinstance(spec, tuple):
        return bytes(spec[1])
    return AttachmentFile(os.fspath(spec)).read()


def attachment_content(spec: AttachmentSpec) -> Content:
    """The attachment's content without a copy: its data (bytes, or a view of a bytearray
    or a memoryview, as octets), or the file, to be read a block at a time while the
    message is written.

    An unreadable file is reported (:class:`ConfigurationError`, naming it) when the
    message is written.
    """
    if not isinstance(spec, tuple):
        return AttachmentFile(os.fspath(spec))
    data = cast("bytes | bytearray | memoryview", spec[1])  # any of them (see _attachment)
    if isinstance(data, bytes):
        return data
    view = memoryview(data)
    return view.cast("B") if view.c_contiguous else view.tobytes()


def _add_attachment(msg: EmailMessage, spec: AttachmentSpec) -> None:
    """Attach ``spec`` to ``msg`` (a ``message/rfc822`` file as a parsed message)."""
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
    msg.add_attachment(data, maintype=maintype, subtype=subtype, filename=filename, cte="base64")
