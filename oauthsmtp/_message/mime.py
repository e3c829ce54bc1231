"""Messages to wire bytes: an :class:`~oauthsmtp.Email` directly, others via the email package.

The :mod:`email` package parses every header it is given and parses it again to fold it on
output; for a small message that is about a millisecond of CPU, and its generator walks a
large base64 body line by line in Python. An ``Email`` is already validated field by field,
so :func:`render` writes the bytes for the wire directly, in one pass, with CRLF line ends
(RFC 5322 §2.1, RFC 5321 §2.3.8) and a 7-bit transfer encoding for every part (RFC 2045
§6), so the result never needs 8BITMIME:

* address headers: ``Name <local@domain>``, the name quoted (RFC 5322 §3.2.4) or, when not
  ASCII, as RFC 2047 encoded-words; folded between addresses;
* unstructured ASCII headers folded at spaces; a non-ASCII subject as RFC 2047 ``B``
  encoded-words of at most 75 characters (§2), lines within 78 characters;
* text bodies as ``7bit`` when they allow it, else quoted-printable or base64;
* attachments in base64 lines of 76 characters (RFC 2045 §6.8), split in C;
* file names as ``filename="..."`` or RFC 2231 ``filename*=utf-8''...``.

Anything this module does not handle simply (a non-ASCII or encoded-word-like custom header,
a very long file name, a line that cannot be folded within 998 octets) makes :func:`render`
return None, and the caller falls back to the email package: the fast path never guesses.

:func:`flatten` serializes any other message (an ``EmailMessage`` or a legacy ``Message``)
with the email package, like ``as_bytes``, but converts line ends in C.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
import struct
from collections.abc import Sequence
from email.generator import BytesGenerator
from io import BytesIO
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from email.message import Message
    from email.policy import Policy

__all__ = ["Attachment", "base64_lines", "flatten", "render"]

Attachment = tuple[str, bytes, str, str]
"""``(filename, data, maintype, subtype)`` of one base64 attachment."""

CRLF = "\r\n"
_FOLD_AT = 78  # RFC 5322 §2.1.1: SHOULD
_MAX_LINE = 998  # RFC 5322 §2.1.1: MUST
_LINE = 76  # RFC 2045 §6.8: base64 lines
_LINES_PER_BLOCK = 256
_BLOCK = struct.Struct(f"{_LINE}s" * _LINES_PER_BLOCK)
_SUBJECT_CHUNK = 39  # octets per encoded-word: 64 characters, "Subject: " + 64 < 78
_PHRASE_CHUNK = 45  # octets per encoded-word in a display name: 72 characters
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_ATTR_SAFE = "!#$&+-.^_`|~"  # RFC 2231 attribute-char besides letters and digits


def base64_lines(data: bytes) -> list[bytes]:
    """The lines of the base64 encoding of ``data``, 76 characters each (RFC 2045 §6.8).

    The encoding and the split run in C (a precompiled :class:`struct.Struct` cuts 256
    lines at a time), about twice as fast as slicing line by line in Python.
    """
    encoded = binascii.b2a_base64(data, newline=False)
    step = _LINE * _LINES_PER_BLOCK
    full = len(encoded) // step * step
    lines: list[bytes] = list(
        itertools.chain.from_iterable(_BLOCK.iter_unpack(memoryview(encoded)[:full]))
    )
    lines.extend(encoded[i : i + _LINE] for i in range(full, len(encoded), _LINE))
    return lines


def _encoded_words(text: str, chunk: int) -> list[str]:
    """RFC 2047 ``B`` encoded-words, never splitting a UTF-8 character (§5, §6.3)."""
    raw = text.encode("utf-8")
    words: list[str] = []
    start = 0
    while start < len(raw):
        end = min(start + chunk, len(raw))
        while end < len(raw) and raw[end] & 0xC0 == 0x80:  # a continuation octet
            end -= 1
        words.append(f"=?utf-8?b?{base64.b64encode(raw[start:end]).decode('ascii')}?=")
        start = end
    return words


def _plain(value: str) -> bool:
    """True for text that can go into a header as it is: printable ASCII, no ``=?``."""
    return value.isascii() and value.isprintable() and "=?" not in value


def _fold(name: str, tokens: Sequence[str]) -> str | None:
    """``name: token token ...``, folded before tokens to keep lines within 78 characters.

    Returns the field without its final CRLF, or None when a line would still exceed 998
    octets.
    """
    lines: list[str] = []
    line = f"{name}:"
    for token in tokens:
        if len(line) + 1 + len(token) > _FOLD_AT and line != f"{name}:":
            lines.append(line)
            line = " " + token
        else:
            line += " " + token
    lines.append(line)
    if any(len(line) > _MAX_LINE for line in lines):
        return None
    return CRLF.join(lines)


def _unstructured(name: str, value: str, *, chunk: int = _SUBJECT_CHUNK) -> str | None:
    """An unstructured field (RFC 5322 §3.2.5): folded at single spaces, or encoded-words."""
    if _plain(value):
        # Folding next to other white space could leave a line of blanks: fold only at
        # single spaces between words.
        single = "  " not in value and value == value.strip(" ")
        return _fold(name, value.split(" ") if single else [value])
    if name.lower() != "subject":
        return None  # custom fields may be structured: let the email package decide
    return _fold(name, _encoded_words(value, chunk))


def _mailbox(display_name: str, addr_spec: str) -> list[str]:
    """One mailbox (RFC 5322 §3.4) as the words it may be folded between.

    The addr-spec is ASCII and already validated. A display name is written as atoms,
    as a quoted string, or (not ASCII, or looking like an encoded-word) as RFC 2047
    encoded-words (§5(3)).
    """
    if not display_name:
        return [addr_spec]
    if _plain(display_name):
        words = display_name.split(" ")
        if all(words) and all(_ATEXT.issuperset(w) for w in words):
            return [*words, f"<{addr_spec}>"]
        escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
        return [f'"{escaped}"', f"<{addr_spec}>"]
    return [*_encoded_words(display_name, _PHRASE_CHUNK), f"<{addr_spec}>"]


def _address_field(name: str, mailboxes: Sequence[tuple[str, str]]) -> str | None:
    tokens: list[str] = []
    for display_name, addr_spec in mailboxes:
        if tokens:
            tokens[-1] += ","
        tokens.extend(_mailbox(display_name, addr_spec))
    return _fold(name, tokens)


# Entities are built as lists of lines without their CRLF (an item may hold several lines),
# so that the whole message is joined once, however many base64 lines it has.


def _text_part(text: str, subtype: str) -> list[bytes]:
    """A text part: ``7bit`` when ASCII with short lines, else quoted-printable or base64."""
    raw = text.encode("utf-8")
    lines = raw.splitlines()
    body: list[bytes]
    if raw.isascii() and max((len(line) for line in lines), default=0) <= _FOLD_AT:
        cte, body = "7bit", [b"\r\n".join(lines)]
    elif raw.isascii() or (len(raw) - len(text)) * 4 <= len(text):
        cte = "quoted-printable"
        body = [binascii.b2a_qp(b"\r\n".join(lines) + b"\r\n", istext=True)[:-2]]
    else:  # mostly non-ASCII (CJK...): base64 is smaller than quoted-printable
        cte, body = "base64", base64_lines(b"\r\n".join(lines) + b"\r\n")
    head = f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: {cte}'
    return [head.encode("ascii"), b"", *body]


def _disposition(filename: str) -> str | None:
    if filename.isascii() and filename.isprintable() and not any(c in filename for c in '"\\'):
        param = f'filename="{filename}"'
    else:  # RFC 2231 §4: charset and percent-encoded octets
        param = "filename*=utf-8''" + quote(filename.encode("utf-8"), safe=_ATTR_SAFE)
    line = f"Content-Disposition: attachment; {param}"
    if len(line) <= _FOLD_AT:
        return line
    if len(param) < _FOLD_AT:
        return f"Content-Disposition: attachment;{CRLF} {param}"
    return None  # long names need RFC 2231 continuations: the email package writes them


def _attachment_part(attachment: Attachment) -> list[bytes] | None:
    filename, data, maintype, subtype = attachment
    disposition = _disposition(filename)
    if disposition is None:
        return None
    head = (
        f"Content-Type: {maintype}/{subtype}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{disposition}"
    )
    return [head.encode("ascii"), b"", *(base64_lines(data) if data else ())]


def _multipart(subtype: str, parts: Sequence[list[bytes]]) -> list[bytes]:
    """A multipart entity (RFC 2046 §5.1.1).

    The boundary is 128 random bits after ``=_``, which no quoted-printable or base64 text
    can contain, and 7-bit text only by a 2**-128 chance.
    """
    boundary = f"=_{secrets.token_hex(16)}"
    delimiter = f"--{boundary}".encode("ascii")
    out = [f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"'.encode("ascii"), b""]
    for i, part in enumerate(parts):
        if i:
            out.append(b"")  # the part's last line break belongs to its content
        out.append(delimiter)
        out.extend(part)
    out.extend((b"", f"--{boundary}--".encode("ascii")))
    return out


def render(
    *,
    sender: tuple[str, str],
    to: Sequence[tuple[str, str]],
    cc: Sequence[tuple[str, str]],
    reply_to: Sequence[tuple[str, str]],
    subject: str,
    headers: Sequence[tuple[str, str]],
    text: str | None,
    html: str | None,
    attachments: Sequence[Attachment],
    date: str,
    message_id: str,
) -> bytes | None:
    """Serialize a validated message; None when the email package should do it instead.

    Args:
        sender: ``(display name, addr-spec)`` of From; addr-specs must be ASCII.
        to: To mailboxes.
        cc: Cc mailboxes.
        reply_to: Reply-To mailboxes.
        subject: the subject.
        headers: extra ``(name, value)`` fields, already checked for CR/LF/NUL.
        text: the plain-text body.
        html: the HTML body.
        attachments: base64 attachments.
        date: the Date value, or ``""`` when ``headers`` has one.
        message_id: the Message-ID value, or ``""`` when ``headers`` has one.

    Returns:
        The message with CRLF line ends, ASCII only, or None.
    """
    fields: list[str | None] = [_address_field("From", [sender])]
    for name, mailboxes in (("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if mailboxes:
            fields.append(_address_field(name, mailboxes))
    fields.append(_unstructured("Subject", subject))
    if date:
        fields.append(f"Date: {date}")
    if message_id:
        fields.append(f"Message-ID: {message_id}")
    fields.extend(_unstructured(name, value) for name, value in headers)
    fields.append("MIME-Version: 1.0")
    if any(field is None for field in fields):
        return None

    if html is not None and text is not None:
        body = _multipart("alternative", [_text_part(text, "plain"), _text_part(html, "html")])
    elif html is not None:
        body = _text_part(html, "html")
    else:
        body = _text_part(text or "", "plain")
    if attachments:
        parts = [_attachment_part(a) for a in attachments]
        if any(part is None for part in parts):
            return None
        body = _multipart("mixed", [body, *(p for p in parts if p is not None)])
    head = CRLF.join(f for f in fields if f is not None).encode("ascii")
    return b"\r\n".join([head, *body, b""])


# -- messages built with the email package ---------------------------------------------
class _Generator(BytesGenerator):
    """A BytesGenerator that converts line ends in C.

    The stock ``_write_lines`` (the same in Python 3.10 to 3.13) splits a body into lines
    with a regular expression and writes them one by one: about 25 ms per MB of base64.
    Three replacements give the same text: every CRLF, lone CR or lone LF becomes the
    policy's line separator.
    """

    def _write_lines(self, lines: str) -> None:
        if lines:
            linesep: str = getattr(self, "_NL", "\n")
            if "\r" in lines:
                lines = lines.replace("\r\n", "\n").replace("\r", "\n")
            self.write(lines.replace("\n", linesep) if linesep != "\n" else lines)

    @classmethod
    def _make_boundary(cls, text: bytes | str | None = None) -> str:
        # The stock one searches the whole text with a multi-line regular expression (about
        # 5 ms per MB); 128 random bits after "=_" (which neither base64 nor
        # quoted-printable can contain) need only a substring check.
        while True:
            boundary = f"=_{secrets.token_hex(16)}"
            if text is None:
                return boundary
            if isinstance(text, str):
                if boundary not in text:
                    return boundary
            elif boundary.encode("ascii") not in text:  # BytesGenerator passes bytes
                return boundary


def flatten(message: Message, policy: Policy) -> bytes:
    """``message.as_bytes(policy=policy)``, with bodies converted to CRLF in C.

    Like ``as_bytes``, this sets a boundary on multipart parts that have none; doing it
    first spares the generator joining every part's text to check its own choice.

    Args:
        message: any message of the email package.
        policy: the output policy (its ``linesep`` is used for every line end it writes).

    Returns:
        The serialized message.
    """
    for part in message.walk():
        if part.get_content_maintype() == "multipart" and not part.get_boundary():
            part.set_boundary(_Generator._make_boundary())
    buffer = BytesIO()
    _Generator(buffer, mangle_from_=False, policy=policy).flatten(message, unixfrom=False)
    return buffer.getvalue()
