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
* attachments in base64 lines of 76 characters (RFC 2045 §6.8), encoded and split in C
  a block of 1,024 lines at a time, straight into the message (a file given as a path is
  read a block at a time, never whole); a ``message/rfc822`` attachment as it is (RFC 2046
  §5.2.1: ``7bit`` or ``8bit``), its lines within 998 octets;
* file names as ``filename="..."`` or RFC 2231 ``filename*=utf-8''...``, continued over
  several lines when long (RFC 2231 §3, §4.1).

What cannot be written within these rules is refused with :class:`ConfigurationError`.
The message is written into one buffer of its final size: besides the finished bytes, only
one block of the encoding is held at any time (no list of lines, no joined copy).

:func:`flatten` serializes any other message (an ``EmailMessage`` or a legacy ``Message``)
with the email package, like ``as_bytes``, but converts line ends in C a block at a time and
writes every part straight into the output (the stock generator renders each part into a
buffer of its own and copies it into its parent's, once per level); :func:`wire_policy`
is the policy it uses for an ``EmailMessage``: address and unstructured headers are folded
by this module's rules instead of the email package's folder. :func:`to_crlf` makes every
line end CRLF, a block at a time.
"""

from __future__ import annotations

import base64
import binascii
import itertools
import os
import secrets
import struct
from collections.abc import Sequence
from dataclasses import dataclass
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
    "AttachmentFile",
    "Content",
    "flatten",
    "is_structured",
    "looks_encoded",
    "render",
    "to_crlf",
    "unstructured_words",
    "wire_policy",
]

CRLF = "\r\n"
_FOLD_AT = 78  # RFC 5322 §2.1.1: SHOULD
_LONGEST_WORD = MAX_LINE - 100  # a word longer than this is encoded or refused
_LINE = 76  # RFC 2045 §6.8: base64 lines
_LINES_PER_BLOCK = 256
_BLOCK = struct.Struct(f"{_LINE}s" * _LINES_PER_BLOCK)
_STEP = 57 * 4 * _LINES_PER_BLOCK  # octets encoded at a time: 1,024 lines of 76 characters
_CRLF_STEP = 1 << 20  # octets converted to CRLF line ends at a time
_TEXT_STEP = 1 << 18  # characters of a body the generator converts and writes at a time
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


@dataclass(frozen=True)
class AttachmentFile:
    """An attachment given as a path: read a block at a time while the message is written.

    Attributes:
        path: the file's path, as the caller gave it (``os.fspath``).
    """

    path: str

    def error(self, exc: OSError) -> ConfigurationError:
        """The error for a file that cannot be read (the message says why)."""
        return ConfigurationError(
            f"the attachment {excerpt(self.path, 200)} cannot be read "
            f"({exc.strerror or type(exc).__name__}); nothing was sent"
        )

    def size(self) -> int:
        """The file's size now (0 for what is not a regular file)."""
        try:
            return os.stat(self.path).st_size
        except OSError as exc:
            raise self.error(exc) from exc

    def read(self) -> bytes:
        """The whole content (for a ``message/rfc822`` attachment, which is sent as it is)."""
        try:
            with open(self.path, "rb") as file:
                return file.read()
        except OSError as exc:
            raise self.error(exc) from exc


Content = bytes | memoryview | AttachmentFile
"""An attachment's content: in memory (not copied), or a file to read while writing."""

Attachment = tuple[str, Content, str, str]
"""``(filename, content, maintype, subtype)`` of one attachment."""


def _lines(encoded: bytes) -> list[bytes]:
    """``encoded`` (base64 without line breaks) cut into lines of 76 characters, in C.

    A precompiled :class:`struct.Struct` cuts 256 lines at a time, about twice as fast as
    slicing line by line in Python.
    """
    step = _LINE * _LINES_PER_BLOCK
    full = len(encoded) // step * step
    lines: list[bytes] = list(
        itertools.chain.from_iterable(_BLOCK.iter_unpack(memoryview(encoded)[:full]))
    )
    lines.extend(encoded[i : i + _LINE] for i in range(full, len(encoded), _LINE))
    return lines


def _base64_size(octets: int) -> int:
    """Octets of the base64 lines of ``octets`` octets of data, each line with its CRLF."""
    chars = 4 * ((octets + 2) // 3)
    return chars + 2 * ((chars + _LINE - 1) // _LINE)


def _write_block(out: BytesIO, block: bytes | memoryview) -> None:
    """Write the base64 lines of ``block`` (a multiple of 57 octets unless it is the last),
    each followed by CRLF (RFC 2045 §6.8)."""
    out.write(b"\r\n".join(_lines(binascii.b2a_base64(block, newline=False))))
    out.write(b"\r\n")


def _write_base64(out: BytesIO, content: Content) -> None:
    """Write the base64 lines of ``content``, encoding :data:`_STEP` octets at a time.

    Only one block of the input and of its encoding is held besides ``out``; a file is read
    in blocks into one reused buffer.

    Raises:
        ConfigurationError: the file cannot be read.
    """
    if not isinstance(content, AttachmentFile):
        view = memoryview(content).cast("B")  # octets, whatever the item format
        for start in range(0, len(view), _STEP):
            _write_block(out, view[start : start + _STEP])
        return
    buffer = bytearray(_STEP)
    block = memoryview(buffer)
    try:
        with open(content.path, "rb", buffering=0) as file:
            while True:
                got = 0
                while got < _STEP and (n := file.readinto(block[got:])):
                    got += n
                if got:
                    _write_block(out, block[:got])
                if got < _STEP:  # the end of the file
                    return
    except OSError as exc:
        raise content.error(exc) from exc


@dataclass(frozen=True)
class _Base64:
    """A base64 body in an entity: its lines are encoded as the message is written."""

    content: Content

    def size(self) -> int:
        """Octets it takes, CRLFs included (a file's size as it is now)."""
        octets = (
            self.content.size()
            if isinstance(self.content, AttachmentFile)
            else memoryview(self.content).nbytes
        )
        return _base64_size(octets) if octets else 0


_Item = bytes | memoryview | _Base64
"""One item of an entity: lines without their final CRLF, or a base64 body."""


def _sized_buffer(size: int) -> BytesIO:
    """An empty BytesIO whose storage already has ``size`` octets: written up to ``size``,
    it neither grows nor copies, and ``getvalue()`` hands over its storage as it is."""
    out = BytesIO()
    if size:
        out.seek(size - 1)
        out.write(b"\0")
        out.seek(0)
    return out


def _finish(out: BytesIO) -> bytes:
    """The bytes written to ``out`` (from :func:`_sized_buffer`), without a copy."""
    out.truncate()  # at the position: more room was kept than written (a file shrank)
    return out.getvalue()


def _assemble(items: Sequence[_Item]) -> bytes:
    """Every item followed by CRLF (a base64 body: every line), in one bytes object.

    The size is known before the first octet is written (a file's at this moment; a file
    that changes meanwhile still gives the right bytes, with one more copy), so the
    message is written into storage of its final size and never copied.
    """
    out = _sized_buffer(
        sum(item.size() if isinstance(item, _Base64) else len(item) + 2 for item in items)
    )
    run: list[bytes | memoryview] = []
    for item in items:
        if not isinstance(item, _Base64):
            run.append(item)
            continue
        if run:
            out.write(b"\r\n".join(run))
            out.write(b"\r\n")
            run = []
        _write_base64(out, item.content)
    if run:
        out.write(b"\r\n".join(run))
        out.write(b"\r\n")
    return _finish(out)


def to_crlf(data: bytes, *, block: int = _CRLF_STEP) -> bytes:
    """``data`` with every CRLF, lone CR and lone LF made CRLF (RFC 5321 §2.3.8).

    ``data`` itself when every line end is CRLF already; otherwise converted ``block``
    octets at a time (a block never ends between a CR and what follows it) into storage of
    the final size, so that only the result and one block are held beside ``data``.
    """
    crlf = data.count(b"\r\n")
    lf, cr = data.count(b"\n"), data.count(b"\r")
    if lf == crlf and cr == crlf:
        return data
    out = _sized_buffer(len(data) + lf + cr - 2 * crlf)
    start = 0
    while start < len(data):
        end = start + block
        while end < len(data) and data[end - 1] == 0x0D:  # never split a CR from its LF
            end += 1
        piece = data[start:end]
        if b"\r" in piece:
            piece = piece.replace(b"\r\n", b"\n").replace(b"\r", b"\n")
        out.write(piece.replace(b"\n", b"\r\n"))
        start = end
    return _finish(out)


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


# Entities are built as lists of items: lines without their final CRLF (an item may hold
# several lines), or a base64 body that is encoded only when the message is written
# (_assemble), straight into the message's storage.


def _text_part(text: str, subtype: str) -> list[_Item]:
    """A text part: ``7bit`` when ASCII with short lines, else quoted-printable or base64."""
    raw = text.encode("utf-8")
    lines = raw.splitlines()
    body: list[_Item]
    short = max((len(line) for line in lines), default=0) <= _FOLD_AT
    if raw.isascii() and short and b"\x00" not in raw:  # RFC 2045 §2.7: no NUL in 7bit
        cte, body = "7bit", [b"\r\n".join(lines)]
    elif raw.isascii() or (len(raw) - len(text)) * 4 <= len(text):
        cte = "quoted-printable"
        body = [binascii.b2a_qp(b"\r\n".join(lines) + b"\r\n", istext=True)[:-2]]
    else:  # mostly non-ASCII (CJK...): base64 is smaller than quoted-printable
        cte, body = "base64", [_Base64(b"\r\n".join(lines) + b"\r\n")]
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


def _attachment_part(attachment: Attachment) -> list[_Item]:
    filename, content, maintype, subtype = attachment
    disposition = _disposition(filename)
    if (maintype, subtype) == ("message", "rfc822"):
        if isinstance(content, AttachmentFile):
            content = content.read()
        return _message_part(filename, bytes(content), disposition)
    head = (
        f"Content-Type: {maintype}/{subtype}{CRLF}"
        f"Content-Transfer-Encoding: base64{CRLF}{disposition}"
    )
    return [head.encode("ascii"), b"", _Base64(content)]  # no line at all when empty


def _message_part(filename: str, data: bytes, disposition: str) -> list[_Item]:
    """A ``message/rfc822`` part: the attached message as it is, line ends made CRLF.

    RFC 2046 §5.2.1 allows only 7bit, 8bit or binary for it, so a message with a NUL or a
    line over 998 octets cannot be attached as such (it could as application/octet-stream).
    """
    converted = to_crlf(data)
    content = memoryview(converted)
    if converted.endswith(b"\r\n"):
        content = content[:-2]  # the last line's break is written by the enclosing multipart
    try:
        check_line_lengths(converted)
    except ConfigurationError as exc:
        raise ConfigurationError(
            f"attachment {excerpt(filename)}: a message/rfc822 attachment is sent as it is "
            f"(RFC 2046 §5.2.1), and this one cannot be: {exc}; attach it as "
            "(filename, data, 'application/octet-stream') instead"
        ) from None
    cte = "7bit" if data.isascii() else "8bit"
    head = f"Content-Type: message/rfc822{CRLF}Content-Transfer-Encoding: {cte}{CRLF}{disposition}"
    return [head.encode("ascii"), b"", content]


def _multipart(subtype: str, parts: Sequence[list[_Item]]) -> list[_Item]:
    """A multipart entity (RFC 2046 §5.1.1).

    The boundary is 128 random bits after ``=_``, which no quoted-printable or base64 text
    can contain, and 7-bit text only by a 2**-128 chance.
    """
    boundary = f"=_{secrets.token_hex(16)}"
    delimiter = f"--{boundary}".encode("ascii")
    out: list[_Item] = [
        f'Content-Type: multipart/{subtype};{CRLF} boundary="{boundary}"'.encode("ascii"),
        b"",
    ]
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
        attachments: base64 attachments (their content bytes or a file, encoded a block at a
            time into the result), or ``message/rfc822`` ones (written as they are).
        date: the Date value, or ``""`` when ``headers`` has one.
        message_id: the Message-ID value, or ``""`` when ``headers`` has one.

    Returns:
        The message with CRLF line ends; ASCII unless an addr-spec or an attached message
        is not (then the message needs SMTPUTF8 or 8BITMIME).

    Raises:
        ConfigurationError: a field or an attached message cannot be written within the
            line limits, a structured custom field is not ASCII, or an attachment file
            cannot be read.
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

    body: list[_Item]
    if html is not None and text is not None:
        body = _multipart("alternative", [_text_part(text, "plain"), _text_part(html, "html")])
    elif html is not None:
        body = _text_part(html, "html")
    else:
        body = _text_part(text or "", "plain")
    if attachments:
        body = _multipart("mixed", [body, *(_attachment_part(a) for a in attachments)])
    return _assemble([CRLF.join(fields).encode("utf-8"), *body])


# -- messages built with the email package ---------------------------------------------
class _Generator(BytesGenerator):
    """A BytesGenerator that converts line ends in C and writes every part straight out.

    The stock generator (the same in Python 3.10 to 3.13) differs in three costly ways,
    none of which changes a byte of its output here:

    * ``_write_lines`` splits a body into lines with a regular expression and writes them
      one by one: about 25 ms per MB of base64. Three replacements give the same text
      (every CRLF, lone CR or lone LF becomes the policy's line separator), done here a
      block of :data:`_TEXT_STEP` characters at a time, never splitting a CRLF.
    * ``_write`` renders each part's body into a buffer of its own (its headers could
      still change: a boundary chosen, a transfer encoding rewritten for 8-bit data) and
      then copies it into its parent's, and ``_handle_multipart`` keeps every subpart's
      bytes in a list before copying them: a large attachment is held two or three times
      over. Boundaries are set before flattening (:func:`flatten`), so here a part's
      headers are written first and its body straight after them into the same output,
      unless its payload holds surrogate-escaped binary data (the stock path may then
      rewrite its headers, and is taken).
    * ``_handle_text`` encodes a body three times over to look for surrogates; an ASCII
      ``str`` has none, which Python knows without looking.
    """

    # Set by the email package's Generator (its own names, read as the stock code reads them).
    _fp: BytesIO
    _NL: str
    _mangle_from_: bool

    def _write_lines(self, lines: str) -> None:
        linesep: str = getattr(self, "_NL", "\n")
        start = 0
        while start < len(lines):
            end = start + _TEXT_STEP
            while end < len(lines) and lines[end - 1] == "\r":  # never split a CRLF
                end += 1
            block = lines[start:end]
            if "\r" in block:
                block = block.replace("\r\n", "\n").replace("\r", "\n")
            self.write(block.replace("\n", linesep) if linesep != "\n" else block)
            start = end

    def _write(self, msg: Message) -> None:
        if not _streamable(msg):
            super()._write(msg)  # type: ignore[misc]
            return
        write_headers = getattr(msg, "_write_headers", None)
        if write_headers is None:
            self._write_headers(msg)  # type: ignore[attr-defined]
        else:
            write_headers(self)
        self._dispatch(msg)  # type: ignore[attr-defined]

    def _handle_text(self, msg: Message) -> None:
        payload = msg._payload  # type: ignore[attr-defined]  # what the stock handler reads
        if isinstance(payload, str) and payload.isascii() and not self._mangle_from_:
            self._write_lines(payload)  # what the stock handler writes for it
            return
        super()._handle_text(msg)  # type: ignore[misc]

    _writeBody = _handle_text

    def _handle_multipart(self, msg: Message) -> None:
        subparts = msg.get_payload()
        boundary = msg.get_boundary()
        if not boundary or not isinstance(subparts, list) or self._mangle_from_:
            super()._handle_multipart(msg)  # type: ignore[misc]
            return
        # RFC 2046 §5.1.1, as the stock handler writes it, each subpart straight out.
        newline: str = self._NL
        if msg.preamble is not None:
            self._write_lines(msg.preamble)
            self.write(newline)
        self.write(f"--{boundary}{newline}")
        for i, part in enumerate(subparts):
            if i:
                self.write(f"{newline}--{boundary}{newline}")
            writer = self.clone(self._fp)  # type: ignore[arg-type]  # typeshed: a str writer
            writer.flatten(part, unixfrom=False, linesep=newline)
        self.write(f"{newline}--{boundary}--{newline}")
        if msg.epilogue is not None:
            self._write_lines(msg.epilogue)

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


def _streamable(msg: Message) -> bool:
    """True when the stock generator would not change ``msg``'s headers while writing its body.

    It does for a multipart part without a boundary (it chooses one) and for a body with
    surrogate-escaped binary data (it may rewrite the transfer encoding); the email package
    looks for those by encoding the text as UTF-8, which only they make fail.
    """
    payload = msg._payload  # type: ignore[attr-defined]  # what the stock generator reads
    if isinstance(payload, str):
        if payload.isascii():
            return True
        try:
            payload.encode("utf-8")
        except UnicodeEncodeError:
            return False
        return True
    return msg.get_content_maintype() != "multipart" or bool(msg.get_boundary())


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
    first spares the generator joining every part's text to check its own choice, and
    lets it write every part straight into the output (see :class:`_Generator`): besides
    the message object, only the result (grown as it is written) and one block are held.

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
