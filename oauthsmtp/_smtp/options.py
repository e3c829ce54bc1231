"""Checking SMTPSession's arguments (pure): each bad value is a clear ConfigurationError.

Every check takes a value and returns it (normalized) or raises
:class:`~oauthsmtp.ConfigurationError` saying what is wrong and what is expected, before any
connection is made: a timeout must be a finite number of seconds (sockets overflow on
``inf``), a port 1-65535, a host a host name or IP address without spaces or control
characters (a non-ASCII name becomes its IDNA 2008 A-label, RFC 5891; the standard
library's IDNA 2003 would map ``straße`` to another domain), a password is never echoed.
"""

from __future__ import annotations

from oauthsmtp._errors import ConfigurationError

__all__ = [
    "DEFAULT_PORTS",
    "MAX_CONNECTIONS",
    "MAX_TIMEOUT",
    "check_connections",
    "check_host",
    "check_password",
    "check_port",
    "check_text",
    "check_timeout",
]

DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}
MAX_TIMEOUT = 86400.0
"""Longest ``timeout=`` accepted (one day; sockets refuse much longer ones)."""
MAX_CONNECTIONS = 100
"""Most ``connections=`` accepted (providers allow a handful)."""


def check_connections(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= MAX_CONNECTIONS:
        raise ConfigurationError(
            f"connections must be a whole number from 1 to {MAX_CONNECTIONS}, not {value!r}"
        )
    return value


def _printable(value: str) -> bool:
    return value.isprintable() and not any(c.isspace() for c in value)


def check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or not _printable(value):
        raise ConfigurationError(
            f"{name} must be a non-empty string without spaces or control characters"
        )
    return value


def check_host(value: object) -> str:
    """The host to connect to, in ASCII (an IDN becomes its A-label, IDNA 2008).

    Raises:
        ConfigurationError: not a host name or IP address.
    """
    import ipaddress

    if not isinstance(value, str) or not value or not _printable(value):
        raise ConfigurationError(
            f"host must be a host name or an IP address (for example 'smtp.gmail.com'), "
            f"without spaces or control characters, not {value!r}"
        )
    inner = value[1:-1] if value.startswith("[") and value.endswith("]") else value
    try:
        ipaddress.ip_address(inner)
        return value
    except ValueError:
        pass
    name = value
    if not value.isascii():
        name = _a_label(value)
    labels = name.rstrip(".").split(".")
    if (
        len(name) > 253
        or any(not 0 < len(label) <= 63 for label in labels)
        or any(not (c.isalnum() or c in "-_.") for c in name)
    ):
        raise ConfigurationError(
            f"host {value!r} is not a valid host name (letters, digits, '-' and '.', labels "
            "of 1-63 characters, 253 in all); for example 'smtp.gmail.com'"
        )
    return name


def _a_label(host: str) -> str:
    """IDNA 2008 (UTS 46) A-label form of a non-ASCII host name."""
    try:
        import idna

        return str(idna.encode(host, uts46=True).decode("ascii"))
    except ImportError:  # pragma: no cover - idna comes with requests
        raise ConfigurationError(
            f"host {host!r} is not ASCII: give its xn-- (A-label) form"
        ) from None
    except (idna.IDNAError, UnicodeError, ValueError) as exc:
        raise ConfigurationError(f"host {host!r} is not a valid domain name (IDNA 2008)") from exc


def check_timeout(value: object) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not 0 < value <= MAX_TIMEOUT  # also refuses NaN and infinity
    ):
        raise ConfigurationError(
            f"timeout must be a number of seconds above 0 and at most {MAX_TIMEOUT:.0f}, "
            f"not {value!r}"
        )
    return float(value)


def check_port(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 < value < 65536:
        raise ConfigurationError(f"port must be a whole number from 1 to 65535, not {value!r}")
    return value


def check_password(value: object) -> str | None:
    if value is None:
        return None
    if not isinstance(value, str) or not value or any(c in value for c in "\x00\r\n"):
        raise ConfigurationError(
            "password must be a non-empty string without NUL, CR or LF (not shown)"
        )
    return value
