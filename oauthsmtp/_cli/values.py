"""Checks for command-line values (pure): each takes the text of one flag and returns the value.

They are used as argparse ``type=`` functions, so a bad value ends the command with
exit code 2 and one line naming the flag, before anything is read, stored or sent.
Each raises :class:`argparse.ArgumentTypeError` with what is wrong and what is
expected. Nothing here does I/O.
"""

from __future__ import annotations

import argparse
import math
import re

__all__ = [
    "MAX_TIMEOUT",
    "MIN_TIMEOUT",
    "account",
    "client_id",
    "hostname",
    "listen_address",
    "listen_port",
    "one_address",
    "port",
    "positive_int",
    "printable",
    "scope",
    "seconds",
    "tenant",
    "url",
]

MIN_TIMEOUT = 1.0
"""The shortest --timeout accepted: nobody finishes a browser login sooner."""
MAX_TIMEOUT = 86_400.0
"""The longest --timeout accepted (one day): longer is a typo, not a plan."""

_MAX_ACCOUNT = 320  # RFC 5321 §4.5.3.1: 64-octet local part, "@", 255-octet domain
_MAX_HOST = 253  # RFC 1035 §2.3.4, as text
_MAX_TEXT = 2048
_SCOPE_TOKEN = re.compile(r"[\x21\x23-\x5b\x5d-\x7e]+")  # RFC 6749 §3.3 scope-token
_TENANT = re.compile(r"[A-Za-z0-9][A-Za-z0-9.-]{0,252}")  # GUID, domain or common/...


def _bad(message: str) -> argparse.ArgumentTypeError:
    return argparse.ArgumentTypeError(message)


def _has_control(text: str) -> bool:
    import unicodedata

    return any(unicodedata.category(ch) in ("Cc", "Cf", "Zl", "Zp") for ch in text)


def printable(text: str, *, what: str = "the value", limit: int = _MAX_TEXT) -> str:
    """Non-empty text without control characters, at most ``limit`` characters."""
    if not text.strip():
        raise _bad(f"{what} is empty")
    if _has_control(text):
        raise _bad(f"{what} contains a control character (a line break, tab or similar)")
    if len(text) > limit:
        raise _bad(f"{what} is too long ({len(text)} characters; at most {limit})")
    return text


def _word(text: str, *, what: str, limit: int) -> str:
    printable(text, what=what, limit=limit)
    if any(ch.isspace() for ch in text):
        raise _bad(f"{what} must not contain spaces: {text!r}")
    return text


def account(text: str) -> str:
    """A mailbox address (the account name and SMTP user): one word, no control characters."""
    return _word(text, what="the account", limit=_MAX_ACCOUNT)


def client_id(text: str) -> str:
    """An OAuth client id: one word (RFC 6749 §2.2), as the provider's registration shows it."""
    return _word(text, what="the client id", limit=_MAX_TEXT)


def hostname(text: str) -> str:
    """A host name or IP address literal, without scheme, port or path."""
    _word(text, what="the host", limit=_MAX_HOST)
    if any(ch in text for ch in "/@?#") or text.count(":") == 1:
        raise _bad(f"give a host name only (no scheme, port or path): {text!r}")
    return text


def tenant(text: str) -> str:
    """A Microsoft tenant: common, organizations, consumers, a tenant ID or domain."""
    if not _TENANT.fullmatch(text) or ".." in text:
        raise _bad(
            f"not a tenant: {text!r}; use common, organizations, consumers, "
            "a tenant ID (a GUID) or a domain such as contoso.onmicrosoft.com"
        )
    return text


def scope(text: str) -> str:
    """Space-separated scopes, each an RFC 6749 §3.3 scope-token."""
    printable(text, what="the scope")
    for item in text.split():
        if not _SCOPE_TOKEN.fullmatch(item):
            raise _bad(f"the scope {item!r} has characters RFC 6749 §3.3 does not allow")
    return text


def url(text: str) -> str:
    """An absolute http(s) URL with a host (the provider's own checks come later)."""
    from urllib.parse import urlsplit

    _word(text, what="the URL", limit=_MAX_TEXT)
    try:
        parts = urlsplit(text)
        parts.port  # noqa: B018 - a port out of range raises ValueError here
    except ValueError as exc:
        raise _bad(f"not a valid URL ({exc}): {text!r}") from None
    if parts.scheme.lower() not in ("http", "https") or not parts.hostname:
        raise _bad(f"give an absolute http:// or https:// URL with a host, not {text!r}")
    return text


def _integer(text: str, *, what: str) -> int:
    try:
        if not text.strip().isascii():
            raise ValueError
        return int(text, 10)
    except ValueError:
        raise _bad(f"{what} must be a whole number, not {text[:40]!r}") from None


def port(text: str) -> int:
    """A TCP port, 1-65535."""
    value = _integer(text, what="the port")
    if not 1 <= value <= 65535:
        raise _bad(f"the port must be between 1 and 65535, not {value}")
    return value


def listen_port(text: str) -> int:
    """A TCP port to listen on, 0 (any free port) to 65535."""
    value = _integer(text, what="the port")
    if not 0 <= value <= 65535:
        raise _bad(f"the port must be between 0 (any free port) and 65535, not {value}")
    return value


def seconds(text: str) -> float:
    """A finite number of seconds from :data:`MIN_TIMEOUT` to :data:`MAX_TIMEOUT`."""
    try:
        if not text.strip().isascii():
            raise ValueError
        value = float(text)
    except ValueError:
        raise _bad(f"give a number of seconds, not {text[:40]!r}") from None
    if not math.isfinite(value) or not MIN_TIMEOUT <= value <= MAX_TIMEOUT:
        raise _bad(
            f"give a number of seconds from {MIN_TIMEOUT:.0f} to {MAX_TIMEOUT:.0f}, not {text!r}"
        )
    return value


def one_address(text: str) -> str:
    """One email address (with an optional display name); a list gets "repeat the flag".

    Whether the address is acceptable is decided when the message is built; this
    only refuses what is not one address at all.
    """
    from email.utils import getaddresses

    printable(text, what="the address", limit=_MAX_TEXT)
    pieces = [piece.strip() for piece in re.split(r"[,;]", text)]
    if len(pieces) > 1 and all("@" in piece for piece in pieces):
        raise _bad(
            f"{text!r} is a list of {len(pieces)} addresses: give one address per flag and "
            f"repeat the flag for each (e.g. --to {pieces[0]} --to {pieces[1]})"
        )
    try:
        found = [addr for _, addr in getaddresses([text])]
    except Exception:  # the email package raises IndexError and others on junk
        found = []
    if not any("@" in addr for addr in found):
        raise _bad(f"not an email address: {text[:80]!r} (expected name@domain)")
    return text


def listen_address(text: str) -> tuple[str, int]:
    """``HOST:PORT`` to listen on (``[::1]:PORT`` for IPv6): an IP literal and a port 0-65535.

    Host names are refused: what a name resolves to can change, and ``localhost`` may be
    IPv4, IPv6 or both (bind the literal ``127.0.0.1`` or ``::1``).
    """
    import ipaddress

    host, colon, port_text = text.rpartition(":")
    if not colon or not host:
        raise _bad(f"give HOST:PORT (e.g. 127.0.0.1:2525 or [::1]:2525), not {text[:80]!r}")
    if host.startswith("[") and host.endswith("]"):
        host = host[1:-1]
    try:
        address = ipaddress.ip_address(host)
    except ValueError:
        raise _bad(
            f"the listen host must be an IP address such as 127.0.0.1 or ::1, not {host[:80]!r}"
        ) from None
    return str(address), listen_port(port_text)


def positive_int(text: str) -> int:
    """A whole number above 0."""
    value = _integer(text, what="the value")
    if value < 1:
        raise _bad(f"give a whole number above 0, not {value}")
    return value
