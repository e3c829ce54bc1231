"""Text checks for message fields: one function per rule, shared by the whole package.

Every check raises :class:`~oauthsmtp.ConfigurationError` with a message that names the
field and says what is wrong; none returns a half-valid value. The rules:

* :func:`require_str`: the value is a ``str`` (not bytes, None, a number...).
* :func:`has_breaks` / :func:`check_no_breaks`: no CR, LF or NUL, which could end a header
  or an SMTP command line and start another (RFC 5322 §2.2, RFC 5321 §2.3.8).
* :func:`check_encodable`: no lone surrogate (U+D800-U+DFFF), which UTF-8 cannot encode.
* :func:`check_header_text`: all three, and no other control character but TAB (RFC 5322
  §3.2.5: a field body is visible characters and white space).
* :func:`check_line_lengths`: no line of a rendered message over 998 octets (RFC 5322
  §2.1.1) and no NUL octet (RFC 5322 §2.3, RFC 2045 §2.7).

:func:`excerpt` shortens a value for an error message, so a 1 MB field does not make a
1 MB message.
"""

from __future__ import annotations

import re

from oauthsmtp._errors import ConfigurationError

__all__ = [
    "MAX_LINE",
    "check_encodable",
    "check_header_text",
    "check_line_lengths",
    "check_no_breaks",
    "excerpt",
    "has_breaks",
    "require_str",
]

MAX_LINE = 998
"""RFC 5322 §2.1.1: a line MUST be at most 998 octets, without its CRLF."""

_BREAKS = frozenset("\r\n\x00")
_CONTROLS = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")


def excerpt(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to about ``limit`` characters for an error message."""
    if isinstance(value, str) and len(value) > limit:
        return f"{value[:limit]!r}... ({len(value)} characters)"
    text = repr(value)
    return text if len(text) <= limit + 20 else f"{text[: limit + 20]}..."


def require_str(field: str, value: object) -> str:
    """Return ``value`` if it is a ``str``, else refuse it naming ``field``."""
    if not isinstance(value, str):
        raise ConfigurationError(f"{field} must be a string, not {type(value).__name__}")
    return value


def has_breaks(value: str) -> bool:
    """True if ``value`` contains CR, LF or NUL."""
    return not _BREAKS.isdisjoint(value)


def check_no_breaks(field: str, value: str) -> None:
    """Refuse CR, LF or NUL: they could start a new header or command line."""
    if has_breaks(value):
        raise ConfigurationError(
            f"{field} contains CR, LF or NUL ({excerpt(value)}); refused: it could start "
            "a new header or command line"
        )


def check_encodable(field: str, value: str) -> None:
    """Refuse a lone surrogate, which no UTF-8 encoder accepts."""
    if value.isascii():
        return
    try:
        value.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"{field} contains a lone surrogate (U+{ord(value[exc.start]):04X}) that cannot "
            "be encoded as UTF-8; decode the text it came from correctly"
        ) from None


def check_header_text(field: str, value: object) -> str:
    """A header field body or a part of one (display name, subject, custom header).

    Returns:
        ``value``, checked.

    Raises:
        ConfigurationError: not a string; CR, LF or NUL; another control character than
            TAB; a lone surrogate.
    """
    text = require_str(field, value)
    check_no_breaks(field, text)
    control = _CONTROLS.search(text)
    if control is not None:
        raise ConfigurationError(
            f"{field} contains the control character U+{ord(control.group()):04X} "
            f"({excerpt(text)}); only printable text and TAB may go in a header"
        )
    check_encodable(field, text)
    return text


def _has_long_line(data: bytes) -> bool:
    """True if a line of ``data`` is over 998 octets, in about one step per 1,000 octets.

    From the start of a line, the next LF must come within 1,000 octets (998, CR, LF);
    jumping to the last LF in that window skips every line in between, all shorter.
    """
    start, size = 0, len(data)
    while size - start > MAX_LINE:
        newline = data.rfind(b"\n", start, start + MAX_LINE + 2)
        if newline == -1:
            return True
        start = newline + 1
    return False


def check_line_lengths(data: bytes) -> None:
    """Refuse a rendered message with a line over 998 octets or a NUL octet.

    Raises:
        ConfigurationError: naming the header field, or saying it is in a body.
    """
    if b"\x00" in data:
        raise ConfigurationError(
            "the message contains a NUL octet outside a base64 or quoted-printable part "
            "(RFC 5322 §2.3); give text bodies as str, binary data as attachments"
        )
    if not _has_long_line(data):
        return
    head_end = data.find(b"\r\n\r\n")
    offset = 0
    for line in data.split(b"\r\n"):
        if len(line) > MAX_LINE:
            where = "a body line"
            if head_end < 0 or offset < head_end:
                name, colon, _ = line.partition(b":")
                where = f"the header {name.decode('ascii', 'replace')}" if colon else "a header"
            raise ConfigurationError(
                f"{where} has a line of {len(line)} octets, over the 998 allowed "
                "(RFC 5322 §2.1.1), that cannot be folded; shorten it"
            )
        offset += len(line) + 2
