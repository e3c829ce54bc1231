"""The ``Email`` builder and the checks every outgoing message passes.

:class:`Email` is a frozen description of a message (WinDev ``Email``): sender, recipients,
subject, a text body and/or an HTML alternative, attachments and extra headers. It is
validated when it is built; :meth:`Email.to_message` turns it into an
:class:`email.message.EmailMessage`.

:func:`prepare_message` takes an ``Email`` or any :class:`email.message.Message` and returns
an :class:`OutgoingMessage`: the explicit envelope (SECURITY.md rule 29) and the serialized
bytes, Bcc removed. Everything that could inject a command or a header (CR, LF or NUL in an
address or a header) and every address header the :mod:`email` package parses with a defect
(e.g. ``alice@example.org)<bob@example.org>``) is refused with :class:`ConfigurationError`
before anything reaches a server: the library never guesses which address was meant.
"""

from __future__ import annotations

import base64
import os
import re
import secrets
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from email.headerregistry import Address, AddressHeader
from email.message import EmailMessage, Message
from pathlib import Path
from typing import TYPE_CHECKING, Union, cast

from ._errors import ConfigurationError
from ._mime import Attachment, base64_lines, flatten, render

if TYPE_CHECKING:
    from email.policy import Policy

__all__ = [
    "AttachmentSpec",
    "Email",
    "OutgoingMessage",
    "check_header",
    "parse_address",
    "prepare_message",
]

AttachmentSpec = Union[str, "os.PathLike[str]", tuple[str, bytes], tuple[str, bytes, str]]
"""An attachment: a file path, or ``(filename, data)`` / ``(filename, data, mime_type)``."""

_FORBIDDEN = frozenset("\r\n\x00")
# Obsolete syntax (e.g. "John Q. Public <jqp@example.org>", a period in a phrase) and an
# internationalized local part (RFC 6531, sent with SMTPUTF8) are fine; any other defect
# means the parser had to guess, and guessing is how a recipient gets swapped.
_TOLERATED_DEFECTS = ("ObsoleteHeaderDefect", "NonASCIILocalPartDefect")
_ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc")
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


# The common, unambiguous shapes "local@domain" and "Display Name <local@domain>" (ASCII
# dot-atoms, a phrase of atoms without "=?"), parsed without the email package's general
# parser, which costs ~0.1 ms per address. Everything else takes the general parser.
_ATOM = r"[A-Za-z0-9!#$%&'*+\-/=?^_`{|}~]+"
_SIMPLE_ADDRESS = re.compile(
    rf"(?:(?P<name>{_ATOM}(?: {_ATOM})*) <(?P<bracketed>{_ATOM}(?:\.{_ATOM})*)"
    r"@(?P<bdomain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*)>"
    rf"|(?P<local>{_ATOM}(?:\.{_ATOM})*)@(?P<domain>[A-Za-z0-9-]+(?:\.[A-Za-z0-9-]+)*))"
)


def _simple_address(value: str) -> Address | None:
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match is None or "=?" in value:
        return None
    if match["local"] is not None:
        return Address(username=match["local"], domain=match["domain"])
    return Address(match["name"], match["bracketed"], match["bdomain"])


def _has_forbidden(value: str) -> bool:
    return not _FORBIDDEN.isdisjoint(value)


def check_header(name: str, value: str) -> None:
    """Refuse a header that could inject lines (RFC 5322 §2.2, §3.6.8; SECURITY.md rule 29).

    Args:
        name: the field name: printable ASCII, no colon or space.
        value: the unfolded field body.

    Raises:
        ConfigurationError: the name is malformed, or the value contains CR, LF or NUL.
    """
    if (
        not isinstance(name, str)
        or not name
        or not name.isascii()
        or not name.isprintable()
        or ":" in name
        or " " in name
    ):
        raise ConfigurationError(f"invalid header name {name!r}")
    if not isinstance(value, str):
        raise ConfigurationError(f"header {name} must be a string, not {type(value).__name__}")
    if _has_forbidden(value):
        raise ConfigurationError(f"header {name} contains CR, LF or NUL; refused")


def parse_address(field_name: str, value: str | Address) -> Address:
    """Parse one mailbox (``alice@example.org`` or ``Alice <alice@example.org>``).

    Args:
        field_name: used in error messages ("to", "sender", ...).
        value: the text of one address, or an :class:`~email.headerregistry.Address`.

    Returns:
        The parsed address.

    Raises:
        ConfigurationError: CR, LF or NUL anywhere; not exactly one mailbox; or a parse
            defect other than obsolete syntax or a non-ASCII local part.
    """
    if isinstance(value, Address):
        value = str(value)
    if not isinstance(value, str):
        raise ConfigurationError(f"{field_name}: an address must be a string")
    if _has_forbidden(value):
        raise ConfigurationError(f"{field_name}: address contains CR, LF or NUL; refused")
    simple = _simple_address(value)
    if simple is not None:
        return simple
    addresses = _parse_address_list(field_name, value)
    if len(addresses) != 1:
        raise ConfigurationError(
            f"{field_name}: expected one address, found {len(addresses)} in {value!r}"
        )
    return addresses[0]


def _parse_address_list(field_name: str, value: str) -> tuple[Address, ...]:
    from email import policy

    header = policy.default.header_factory("To", value)  # any address-list field
    return _clean_addresses(field_name, value, header)


def _header_addresses(field_name: str, value: object) -> tuple[Address, ...]:
    """The addresses of a header of a message: its own parse for an EmailMessage's header
    objects (no second parse), else a parse of its unfolded text."""
    if isinstance(value, AddressHeader):
        return _clean_addresses(field_name, str(value), value)
    return _parse_address_list(field_name, _unfold(str(value)))


def _clean_addresses(field_name: str, value: str, header: AddressHeader) -> tuple[Address, ...]:
    """The header's addresses, refused if the parser recorded a defect it had to guess at."""
    recorded: Sequence[object] = getattr(header, "defects", ())  # BaseHeader.defects
    defects = [d for d in recorded if type(d).__name__ not in _TOLERATED_DEFECTS]
    if defects:
        raise ConfigurationError(
            f"{field_name}: the address {value!r} does not parse cleanly ({defects[0]}); "
            "refused rather than guessed at"
        )
    addresses: tuple[Address, ...] = header.addresses
    for address in addresses:
        if not address.username or not address.domain:
            raise ConfigurationError(f"{field_name}: {value!r} is not a complete address")
    return addresses


def _ascii_domain(address: Address) -> Address:
    """Return ``address`` with an internationalized domain as IDNA A-labels (RFC 5890)."""
    if address.domain.isascii():
        return address
    try:
        domain = address.domain.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise ConfigurationError(f"invalid domain in {str(address)!r}") from exc
    return Address(address.display_name, address.username, domain)


def _mailboxes(
    field_name: str, values: str | Address | Iterable[str | Address]
) -> tuple[Address, ...]:
    if isinstance(values, (str, Address)):
        values = [values]
    return tuple(_ascii_domain(parse_address(field_name, v)) for v in values)


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
    if not name or _has_forbidden(name):
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
        sender = _mailboxes("sender", self.sender)[0]
        lists = {n: _mailboxes(n, getattr(self, n)) for n in ("to", "cc", "bcc", "reply_to")}
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


def _describe(spec: AttachmentSpec) -> tuple[str, str, str]:
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


def _read(spec: AttachmentSpec) -> bytes:
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
    filename, maintype, subtype = _describe(spec)
    data = _read(spec)
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


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for the wire.

    Attributes:
        sender: the envelope sender (``MAIL FROM``).
        recipients: the envelope recipients (``RCPT TO``), de-duplicated, in order.
        data: the RFC 5322 message, CRLF line endings, Bcc removed; not yet dot-stuffed.
        smtputf8: an address is not ASCII, so the server must offer SMTPUTF8 (RFC 6531 §3.4).
        eight_bit: ``data`` has octets above 127 (``BODY=8BITMIME``, RFC 6152).
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes = field(repr=False)
    smtputf8: bool = False
    eight_bit: bool = False


def prepare_message(message: Email | Message) -> OutgoingMessage:
    """Validate a message, take its envelope from its headers and serialize it once.

    For a :class:`~email.message.Message`, the envelope sender is ``Sender`` or else the
    single ``From`` address; the recipients are every address in To, Cc and Bcc. Headers of
    every MIME part are checked for CR/LF/NUL, address headers for parse defects.

    Raises:
        ConfigurationError: injection attempts, malformed or missing addresses, ``Resent-*``
            headers (whose envelope rules this library does not implement), or a message
            that needs SMTPUTF8 but does not use an ``email.policy.EmailPolicy``.
        OSError: an attachment file of an :class:`Email` cannot be read.
    """
    blind: list[Address] = []
    deferred: list[tuple[bytes, bytes]] = []
    if isinstance(message, Email):
        fast = _prepare_email(message)
        if fast is not None:
            return fast
        blind = [parse_address("bcc", value) for value in message.bcc]
        message = message._build(deferred)  # Bcc is envelope-only: never a header
    elif not isinstance(message, Message):
        raise ConfigurationError(
            f"send() takes an oauthsmtp.Email or an email.message.EmailMessage, "
            f"not {type(message).__name__}"
        )
    for part in message.walk():
        for name, value in part.items():
            check_header(name, _unfold(str(value)))
    fields: dict[str, list[Address]] = {}
    for name in message:
        lowered = name.lower()
        if lowered.startswith("resent-"):
            raise ConfigurationError(
                "Resent-* headers are not supported; build a new message to forward one"
            )
        if lowered in _ADDRESS_HEADERS and lowered not in fields:
            fields[lowered] = [
                address
                for value in message.get_all(name, [])
                for address in _header_addresses(name, value)
            ]
    if blind:
        fields.setdefault("bcc", []).extend(blind)
    senders = fields.get("sender") or fields.get("from") or []
    if len(senders) != 1:
        raise ConfigurationError(
            f"the message needs exactly one From address (or a Sender header), found {len(senders)}"
        )
    recipients = dict.fromkeys(
        a.addr_spec for key in ("to", "cc", "bcc") for a in fields.get(key, [])
    )
    if not recipients:
        raise ConfigurationError("the message has no recipient (To, Cc or Bcc)")
    every = [a for addresses in fields.values() for a in addresses]
    smtputf8 = not all(a.addr_spec.isascii() for a in every)
    data = _serialize(message, smtputf8=smtputf8)
    for placeholder, content in deferred:
        if data.count(placeholder) != 1:  # pragma: no cover - 192 random bits
            raise ConfigurationError("attachment placeholder collision; try again")
        data = data.replace(placeholder, content)
    return OutgoingMessage(
        sender=senders[0].addr_spec,
        recipients=tuple(recipients),
        data=data,
        smtputf8=smtputf8,
        eight_bit=not data.isascii(),
    )


def _prepare_email(email: Email) -> OutgoingMessage | None:
    """Serialize an Email without the email package (see :mod:`oauthsmtp._mime`).

    Returns None for what the fast path leaves to the email package: a non-ASCII address
    (SMTPUTF8), a ``message/rfc822`` attachment, or a header it cannot write simply.
    """
    from email.utils import formatdate, make_msgid

    parsed = email._parsed
    mailboxes = (parsed.sender, *parsed.to, *parsed.cc, *parsed.bcc, *parsed.reply_to)
    if not all(a.addr_spec.isascii() for a in mailboxes):
        return None
    described = [_describe(spec) for spec in email.attachments]
    if any(kind[1:] == ("message", "rfc822") for kind in described):
        return None
    attachments: list[Attachment] = []
    for spec, (filename, maintype, subtype) in zip(email.attachments, described, strict=True):
        if maintype in ("message", "multipart"):  # RFC 2046 forbids base64 for these
            maintype, subtype = "application", "octet-stream"
        attachments.append((filename, _read(spec), maintype, subtype))
    headers = cast("tuple[tuple[str, str], ...]", email.headers)  # see Email.__post_init__
    given = {name.lower() for name, _ in headers}
    data = render(
        sender=(parsed.sender.display_name, parsed.sender.addr_spec),
        to=[(a.display_name, a.addr_spec) for a in parsed.to],
        cc=[(a.display_name, a.addr_spec) for a in parsed.cc],
        reply_to=[(a.display_name, a.addr_spec) for a in parsed.reply_to],
        subject=email.subject,
        headers=headers,
        text=email.text,
        html=email.html,
        attachments=attachments,
        date="" if "date" in given else formatdate(localtime=True),
        message_id="" if "message-id" in given else make_msgid(domain=parsed.sender.domain),
    )
    if data is None:
        return None
    return OutgoingMessage(
        sender=parsed.sender.addr_spec, recipients=email.envelope_recipients, data=data
    )


def _unfold(value: str) -> str:
    """Remove RFC 5322 §2.2.3 folding (CRLF followed by white space) from a raw value."""
    if "\n" not in value and "\r" not in value:
        return value
    for fold in ("\r\n ", "\r\n\t", "\n ", "\n\t"):
        value = value.replace(fold, " ")
    return value


def _serialize(message: Message, *, smtputf8: bool) -> bytes:
    import copy
    from email import policy as email_policy

    if "bcc" in message:
        message = copy.copy(message)  # __delitem__ rebinds the header list: no mutation
        del message["bcc"]
    policy: Policy
    if isinstance(message.policy, email_policy.EmailPolicy):
        policy = email_policy.SMTPUTF8 if smtputf8 else email_policy.SMTP
    elif smtputf8:
        raise ConfigurationError(
            "a message with non-ASCII addresses must be an EmailMessage "
            "(policy=email.policy.default) to be sent with SMTPUTF8"
        )
    else:
        policy = message.policy.clone(linesep="\r\n")
    data = flatten(message, policy)
    # RFC 5321 §2.3.8: no bare CR or LF on the wire. With an EmailPolicy, the generator
    # writes every header with the policy's separator and flatten() every body; only a
    # message/* part may carry raw text, and a legacy (compat32) header raw 8-bit lines.
    if not isinstance(policy, email_policy.EmailPolicy) or any(
        part.get_content_maintype() == "message" for part in message.walk()
    ):
        crlf = data.count(b"\r\n")
        if data.count(b"\n") != crlf or data.count(b"\r") != crlf:
            data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n").replace(b"\n", b"\r\n")
    return data
