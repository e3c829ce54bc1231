"""A whole RFC 5322 message received as bytes, made ready to send as it is (pure).

``oauthsmtp sendmail`` reads a message from a program (git send-email, mutt, cron) and
``oauthsmtp relay`` receives one from an SMTP client; both pass it on without re-writing it:
the body and every header but ``Bcc`` reach the server byte for byte. What changes:

* line ends become CRLF (RFC 5321 §2.3.8: no bare CR or LF on the wire);
* ``Bcc`` fields are removed (RFC 5322 §3.6.3: their recipients stay blind);
* for ``sendmail``, missing ``From``, ``Date`` and ``Message-ID`` fields are added
  (RFC 5322 §3.6 requires the first two; sendmail(8) adds all three).

Addresses are parsed with the package's own checks (CR, LF or NUL, and any parse defect the
:mod:`email` package had to guess at, are refused with :class:`ConfigurationError`).
"""

from __future__ import annotations

import re
from collections.abc import Callable
from dataclasses import dataclass
from email.headerregistry import Address

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._message.addresses import (
    envelope_address,
    header_addresses,
    parse_address,
    parse_address_list,
)
from oauthsmtp._message.prepare import OutgoingMessage

__all__ = [
    "RawMessage",
    "addresses_of",
    "argument_addresses",
    "envelope_mailbox",
    "normalize_line_ends",
    "outgoing",
    "split_message",
]

# A header field's first line (RFC 5322 §2.2, §3.6.8: printable ASCII but ':' in the name).
_FIELD = re.compile(rb"[!-9;-~]+[ \t]*:")
_NAME = re.compile(rb"([!-9;-~]+)[ \t]*:")


def normalize_line_ends(data: bytes) -> bytes:
    """``data`` with every CRLF, bare CR and bare LF as CRLF."""
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    return data.replace(b"\n", b"\r\n")


@dataclass(frozen=True)
class RawMessage:
    """A message split into its header fields and its body, both as received.

    Attributes:
        fields: each header field as its raw lines (folded lines kept), CRLF line ends.
        body: everything after the header section's empty line (CRLF line ends), or b"".
    """

    fields: tuple[bytes, ...]
    body: bytes

    def names(self) -> list[str]:
        """The field names, lower-cased, in order."""
        return [_name(f) for f in self.fields]

    def values(self, name: str) -> list[str]:
        """The unfolded values of the fields called ``name`` (case-insensitive)."""
        found = []
        for raw in self.fields:
            if _name(raw) == name.lower():
                value = raw.split(b":", 1)[1].decode("utf-8", "surrogateescape")
                found.append(" ".join(value.replace("\r\n", "").split()))
        return found

    def without(self, name: str) -> RawMessage:
        """This message without the fields called ``name``."""
        kept = tuple(f for f in self.fields if _name(f) != name.lower())
        return RawMessage(kept, self.body)

    def with_first(self, *fields: bytes) -> RawMessage:
        """This message with ``fields`` (complete lines, CRLF-ended) before the others."""
        return RawMessage((*fields, *self.fields), self.body)

    def to_bytes(self) -> bytes:
        """The message as wire bytes: fields, the empty line, the body."""
        return b"".join(self.fields) + b"\r\n" + self.body


def _name(field: bytes) -> str:
    match = _NAME.match(field)
    return match.group(1).decode("ascii").lower() if match else ""


def split_message(data: bytes) -> RawMessage:
    """Split CRLF-ended ``data`` into header fields and body.

    The header section ends at the first empty line, or at the first line that is neither a
    field nor a continuation (then all that follows is the body, as sendmail(8) treats a
    message without an empty line after its headers). An mbox ``From `` line first (as
    ``git format-patch`` writes one) is dropped.

    Raises:
        ConfigurationError: a NUL in the header section.
    """
    if data.startswith(b"From "):
        data = data.split(b"\r\n", 1)[1] if b"\r\n" in data else b""
    fields: list[bytes] = []
    position = 0
    while position < len(data):
        end = data.find(b"\r\n", position)
        line_end = len(data) if end < 0 else end + 2
        line = data[position:line_end]
        if line == b"\r\n":
            return RawMessage(tuple(fields), data[line_end:])
        if line[:1] in (b" ", b"\t") and fields:
            fields[-1] += line
        elif _FIELD.match(line):
            fields.append(line)
        else:
            break
        position = line_end
    if fields and not fields[-1].endswith(b"\r\n"):
        fields[-1] += b"\r\n"
    header = b"".join(fields)
    if b"\x00" in header:
        raise ConfigurationError("the message's header section contains a NUL octet")
    return RawMessage(tuple(fields), data[position:])


def addresses_of(field_name: str, values: list[str]) -> list[str]:
    """The addresses (``local@domain``) in the header values of ``field_name``.

    Raises:
        ConfigurationError: an address that does not parse cleanly, or CR/LF/NUL.
    """
    found: list[str] = []
    for value in values:
        if value.strip():
            found.extend(_guarded(field_name, value, lambda v: header_addresses(field_name, v)))
    return found


def argument_addresses(arguments: list[str]) -> list[str]:
    """The addresses in command-line arguments, each one address or a comma-separated list.

    Raises:
        ConfigurationError: an address that does not parse cleanly.
    """
    found: list[str] = []
    for argument in arguments:
        if "," in argument:
            found.extend(_guarded("recipient", argument, _address_list))
        else:
            found.extend(_guarded("recipient", argument, _one_address))
    return found


def envelope_mailbox(what: str, value: str) -> str:
    """The one address (``local@domain``, domain in A-labels) in ``value``.

    Raises:
        ConfigurationError: not exactly one clean address.
    """
    return _guarded(what, value, _one_address)[0]


def _address_list(value: str) -> tuple[Address, ...]:
    return parse_address_list("recipient", value)


def _one_address(value: str) -> tuple[Address, ...]:
    return (parse_address("recipient", value),)


def _guarded(what: str, value: str, parse: Callable[[str], tuple[Address, ...]]) -> list[str]:
    """The addresses ``parse`` finds; whatever it raises on junk is a ConfigurationError.

    (The email package's parser raises IndexError and others on some malformed input.)
    """
    try:
        return [envelope_address(what, a).addr_spec for a in parse(value)]
    except ConfigurationError:
        raise
    except Exception as exc:
        raise ConfigurationError(f"{what}: {value[:80]!r} is not an address") from exc


def outgoing(data: bytes, *, sender: str, recipients: list[str]) -> OutgoingMessage:
    """An :class:`OutgoingMessage` for wire bytes and an explicit envelope.

    Args:
        data: the message, CRLF line ends, Bcc already removed.
        sender: the envelope sender (``""`` for the null reverse-path, RFC 5321 §4.5.5).
        recipients: the envelope recipients (de-duplicated here, order kept).

    Raises:
        ConfigurationError: no recipient, or an address with CR, LF, NUL or a parse defect.
    """
    if sender:
        sender = _guarded("sender", sender, _one_address)[0]
    unique = [_guarded("recipient", r, _one_address)[0] for r in dict.fromkeys(recipients)]
    if not unique:
        raise ConfigurationError("the message has no recipient")
    every = [sender, *unique]
    return OutgoingMessage(
        sender=sender,
        recipients=tuple(dict.fromkeys(unique)),
        data=data,
        smtputf8=not all(a.isascii() for a in every),
        eight_bit=not data.isascii(),
    )
