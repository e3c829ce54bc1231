"""Messages to wire bytes: an :class:`~oauthsmtp.Email` directly, others via the email package.

The :mod:`email` package parses every header it is given and parses it again to fold it on
output (and its folder differs between patch releases of one Python version: some fold the
comma between two addresses into an encoded-word); for a small message that is about a
millisecond of CPU, and its generator walks a large base64 body line by line in Python. An
``Email`` is already validated field by field, so :func:`render` writes the bytes for the
wire directly, in one pass, with CRLF line ends (RFC 5322 §2.1, RFC 5321 §2.3.8), every
line within 998 octets (RFC 5322 §2.1.1), and a 7-bit transfer encoding for every text
part (RFC 2045 §6):

* address headers: ``Name <local@domain>``, the name as atoms, quoted (RFC 5322 §3.2.4) or,
  when not printable ASCII or too long for a line, as RFC 2047 encoded-words; folded
  between addresses; a non-ASCII local part as UTF-8 (RFC 6532, the message then needs
  SMTPUTF8);
* unstructured headers (the subject, custom fields) folded at spaces, or as RFC 2047 ``B``
  encoded-words of at most 75 characters (§2) when not ASCII, when they contain ``=?`` (so
  a literal ``=?...?=`` reads as typed), or when a word is too long for a line; structured
  custom fields (``Message-ID``, ``References``, ...) must be printable ASCII;
* text bodies as ``7bit`` when they allow it (ASCII, short lines, no NUL), else
  quoted-printable or base64;
* attachments in base64 lines of 76 characters (RFC 2045 §6.8), split in C; a
  ``message/rfc822`` attachment as it is (RFC 2046 §5.2.1: ``7bit`` or ``8bit``), its lines
  within 998 octets;
* file names as ``filename="..."`` or RFC 2231 ``filename*=utf-8''...``, continued over
  several lines when long (RFC 2231 §3, §4.1).

What cannot be written within these rules is refused with :class:`ConfigurationError`.

:func:`flatten` serializes any other message (an ``EmailMessage`` or a legacy ``Message``)
with the email package, like ``as_bytes``, but converts line ends in C; :func:`wire_policy`
is the policy it uses for an ``EmailMessage``: address and unstructured headers are folded
by this module's rules instead of the email package's folder.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import secrets
import struct
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.headerregistry import AddressHeader, BaseHeader, UnstructuredHeader
from email.policy import EmailPolicy
from io import BytesIO
from typing import TYPE_CHECKING
from urllib.parse import quote

from oauthsmtp._errors import ConfigurationError

from .checks import MAX_LINE, check_line_lengths, excerpt

if TYPE_CHECKING:
    from email.message import Message
    from email.policy import Policy

__all__ = [
    "Attachment",
    "base64_lines",
    "flatten",
    "is_structured",
    "looks_encoded",
    "render",
    "unstructured_words",
    "wire_policy",
]

Attachment = tuple[str, bytes, str, str]
"""``(filename, data, maintype, subtype)`` of one base64 attachment."""

CRLF = "\r\n"
_FOLD_AT = 78  # RFC 5322 §2.1.1: SHOULD
_LONGEST_WORD = MAX_LINE - 100  # a word longer than this is encoded or refused
_LINE = 76  # RFC 2045 §6.8: base64 lines
_LINES_PER_BLOCK = 256
_BLOCK = struct.Struct(f"{_LINE}s" * _LINES_PER_BLOCK)
_SUBJECT_CHUNK = 39  # octets per encoded-word: 64 characters, "Subject: " + 64 < 78
_PHRASE_CHUNK = 45  # octets per encoded-word in a display name: 72 characters
_ATEXT = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
)
_ATTR_SAFE = "!#$&+-.^_`|~"  # RFC 2231 attribute-char besides letters and digits
_PARAM_CHUNK = 50  # characters of a percent-encoded file name per continuation line
# Fields whose syntax RFC 5322 (§3.6.4, §3.6.1), RFC 2369 and RFC 2919 define: no
# encoded-words there (RFC 2047 §5), so their values go on the wire as given.
_STRUCTURED = frozenset(
    {
        "date",
        "message-id",
        "in-reply-to",
        "references",
        "content-id",
        "list-id",
        "list-archive",
        "list-help",
        "list-owner",
        "list-post",
        "list-subscribe",
        "list-unsubscribe",
        "list-unsubscribe-post",
    }
)


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
    """True for text that can go into a header as it is: printable ASCII or TAB, no ``=?``."""
    return value.isascii() and value.replace("\t", " ").isprintable() and "=?" not in value


def looks_encoded(value: str) -> bool:
    """True if a reader could take part of ``value`` for an RFC 2047 encoded-word."""
    return "=?" in value


def is_structured(name: str) -> bool:
    """True for a field with a syntax of its own (``Message-ID``...): no encoded-words there."""
    return name.lower() in _STRUCTURED


def unstructured_words(value: str) -> list[str]:
    """``value`` as RFC 2047 encoded-words, which any reader decodes back to ``value``."""
    return _encoded_words(value, _SUBJECT_CHUNK)


def _fold(name: str, tokens: Sequence[str]) -> str:
    """``name: token token ...``, folded before tokens to keep lines within 78 characters.

    Returns the field without its final CRLF.

    Raises:
        ConfigurationError: a token is too long for a line of 998 octets (callers give
            only tokens that fit, so this is a last guard).
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
    for line in lines:
        if len(line.encode("utf-8")) > MAX_LINE:
            raise ConfigurationError(
                f"header {name}: a word of {len(line)} characters cannot fit the 998 octets "
                "allowed on one line (RFC 5322 §2.1.1); shorten it"
            )
    return CRLF.join(lines)


def _short_words(value: str) -> list[str] | None:
    """The words of a plain value to fold between, or None if one is too long for a line.

    Folding next to other white space could leave a line of blanks: fold only at single
    spaces between words, else keep the value as one word.
    """
    single = "  " not in value and value == value.strip(" ") and "\t" not in value
    words = value.split(" ") if single else [value]
    return words if all(len(word) <= _LONGEST_WORD for word in words) else None


def unstructured_field(name: str, value: str) -> str:
    """A header field: unstructured (RFC 5322 §3.2.5) unless its name is a structured one.

    Raises:
        ConfigurationError: a structured field that is not printable ASCII, or that has a
            word too long for a line.
    """
    # Leading or trailing white space would be lost to a reader's parser unless encoded.
    plain = _plain(value) and value == value.strip(" \t")
    words = _short_words(value) if plain else None
    if is_structured(name):
        if not (value.isascii() and value.replace("\t", " ").isprintable()):
            raise ConfigurationError(
                f"header {name} must be printable ASCII ({excerpt(value)}); RFC 5322 gives "
                "it a structure that encoded-words cannot carry"
            )
        return _fold(name, _short_words(value) or [value])
    return _fold(name, words if words is not None else _encoded_words(value, _SUBJECT_CHUNK))


def _mailbox(display_name: str, addr_spec: str) -> list[str]:
    """One mailbox (RFC 5322 §3.4) as the words it may be folded between.

    The addr-spec is validated (at most 254 octets). A display name is written as atoms,
    as a quoted string, or (not printable ASCII, looking like an encoded-word, or too long
    for a line) as RFC 2047 encoded-words (§5(3)).
    """
    if not display_name:
        return [addr_spec]
    if _plain(display_name) and "\t" not in display_name:
        words = display_name.split(" ")
        if all(w and _ATEXT.issuperset(w) and len(w) <= _LONGEST_WORD for w in words):
            return [*words, f"<{addr_spec}>"]
        escaped = display_name.replace("\\", "\\\\").replace('"', '\\"')
        if len(escaped) < _LONGEST_WORD:
            return [f'"{escaped}"', f"<{addr_spec}>"]
    return [*_encoded_words(display_name, _PHRASE_CHUNK), f"<{addr_spec}>"]


def address_field(name: str, mailboxes: Sequence[tuple[str, str]]) -> str:
    """An address field: ``(display name, addr-spec)`` mailboxes, folded between words."""
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
    short = max((len(line) for line in lines), default=0) <= _FOLD_AT
    if raw.isascii() and short and b"\x00" not in raw:  # RFC 2045 §2.7: no NUL in 7bit
        cte, body = "7bit", [b"\r\n".join(lines)]
    elif raw.isascii() or (len(raw) - len(text)) * 4 <= len(text):
        cte = "quoted-printable"
        body = [binascii.b2a_qp(b"\r\n".join(lines) + b"\r\n", istext=True)[:-2]]
    else:  # mostly non-ASCII (CJK...): base64 is smaller than quoted-printable
        cte, body = "base64", base64_lines(b"\r\n".join(lines) + b"\r\n")
    head = f'Content-Type: text/{subtype}; charset="utf-8"{CRLF}Content-Transfer-Encoding: {cte}'
    return [head.encode("ascii"), b"", *body]


def _disposition(filename: str) -> str:
    """``Content-Disposition`` for an attachment, with RFC 2231 continuations when long."""
    if filename.isascii() and filename.isprintable() and not any(c in filename for c in '"\\'):
        line = f'Content-Disposition: attachment; filename="{filename}"'
        if len(line) <= _FOLD_AT:
            return line
    encoded = quote(filename.encode("utf-8"), safe=_ATTR_SAFE)
    param = f"filename*=utf-8''{encoded}"
    if len(param) < _FOLD_AT:
        return f"Content-Disposition: attachment;{CRLF} {param}"
    chunks: list[str] = []
    start = 0
    while start < len(encoded):
        end = min(start + _PARAM_CHUNK, len(encoded))
        percent = encoded.rfind("%", end - 2, end)  # never split a %XX escape
        if percent != -1 and end < len(encoded):
            end = percent
        chunks.append(encoded[start:end])
        start = end
    params = [
        f"filename*{i}*={'utf-8' + chr(39) * 2 if i == 0 else ''}{chunk}"
        for i, chunk in enumerate(chunks)
    ]
    return f"Content-Disposition: attachment;{CRLF} " + f";{CRLF} ".join(params)


def _attachment_part(attachment: Attachment) -> list[bytes]:
    filename, data, maintype, subtype = attachment
    disposition = _disposition(filename)
    if (maintype, subtype) == ("message", "rfc822"):
        return _message_part(filename, data, disposition)
    head = (
        f"Content-Type: {maintype}/{subtype}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{disposition}"
    )
    return [head.encode("ascii"), b"", *(base64_lines(data) if data else ())]


def _message_part(filename: str, data: bytes, disposition: str) -> list[bytes]:
    """A ``message/rfc822`` part: the attached message as it is, line ends made CRLF.

    RFC 2046 §5.2.1 allows only 7bit, 8bit or binary for it, so a message with a NUL or a
    line over 998 octets cannot be attached as such (it could as application/octet-stream).
    """
    if b"\r" in data:
        data = data.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
    lines = data.split(b"\n")
    if lines and not lines[-1]:
        lines.pop()  # the last line's break is written by the enclosing multipart
    content = b"\r\n".join(lines)
    try:
        check_line_lengths(content)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"attachment {excerpt(filename)}: a message/rfc822 attachment is sent as it is "
            f"(RFC 2046 §5.2.1), and this one cannot be: {exc}; attach it as "
            "(filename, data, 'application/octet-stream') instead"
        ) from None
    cte = "7bit" if data.isascii() else "8bit"
    head = f"Content-Type: message/rfc822{CRLF}Content-Transfer-Encoding: {cte}{CRLF}{disposition}"
    return [head.encode("ascii"), b"", content]


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
) -> bytes:
    """Serialize a validated message.

    Args:
        sender: ``(display name, addr-spec)`` of From.
        to: To mailboxes.
        cc: Cc mailboxes.
        reply_to: Reply-To mailboxes.
        subject: the subject.
        headers: extra ``(name, value)`` fields, already checked for control characters.
        text: the plain-text body.
        html: the HTML body.
        attachments: base64 attachments, or ``message/rfc822`` ones (written as they are).
        date: the Date value, or ``""`` when ``headers`` has one.
        message_id: the Message-ID value, or ``""`` when ``headers`` has one.

    Returns:
        The message with CRLF line ends; ASCII unless an addr-spec or an attached message
        is not (then the message needs SMTPUTF8 or 8BITMIME).

    Raises:
        ConfigurationError: a field or an attached message cannot be written within the
            line limits, or a structured custom field is not ASCII.
    """
    fields = [address_field("From", [sender])]
    for name, mailboxes in (("To", to), ("Cc", cc), ("Reply-To", reply_to)):
        if mailboxes:
            fields.append(address_field(name, mailboxes))
    fields.append(unstructured_field("Subject", subject))
    if date:
        fields.append(f"Date: {date}")
    if message_id:
        fields.append(f"Message-ID: {message_id}")
    fields.extend(unstructured_field(name, value) for name, value in headers)
    fields.append("MIME-Version: 1.0")

    if html is not None and text is not None:
        body = _multipart("alternative", [_text_part(text, "plain"), _text_part(html, "html")])
    elif html is not None:
        body = _text_part(html, "html")
    else:
        body = _text_part(text or "", "plain")
    if attachments:
        body = _multipart("mixed", [body, *(_attachment_part(a) for a in attachments)])
    head = CRLF.join(fields).encode("utf-8")
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


class _WirePolicy(EmailPolicy):
    """``email.policy.SMTP`` (or ``SMTPUTF8``), with address and unstructured headers folded
    by :func:`address_field` and :func:`unstructured_field`.

    The email package's own folder varies between patch releases of one Python version
    (some fold the comma between two addresses into an encoded-word, so the field reads
    as one address fewer). A header it parsed with a defect, a group, or any other field
    is left to it. Raw header text from a parsed message is written as it came, as the
    stock policy does, unless a line of it is too long.
    """

    def fold_binary(self, name: str, value: str) -> bytes:
        header: object = value
        if not isinstance(value, BaseHeader):  # raw text from a parsed message
            if all(len(line) + len(name) + 2 <= _FOLD_AT for line in value.splitlines()):
                return super().fold_binary(name, value)
            header = self.header_factory(name, "".join(value.splitlines()))
        folded = _fold_header(name, header)
        if folded is None:
            return super().fold_binary(name, value)
        return (folded + self.linesep).encode("utf-8" if self.utf8 else "ascii")


def _fold_header(name: str, header: object) -> str | None:
    if getattr(header, "defects", ()):
        return None
    if isinstance(header, AddressHeader):
        if any(group.display_name is not None for group in header.groups):
            return None
        return address_field(name, [(a.display_name, a.addr_spec) for a in header.addresses])
    if isinstance(header, UnstructuredHeader):
        return unstructured_field(name, str(header))
    return None


def wire_policy(*, utf8: bool) -> Policy:
    """The policy for serializing an ``EmailMessage`` for SMTP (CRLF line ends).

    Args:
        utf8: the message needs SMTPUTF8: headers may carry UTF-8 (RFC 6532).
    """
    return _WirePolicy(linesep="\r\n", utf8=utf8)


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
