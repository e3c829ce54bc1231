"""Addresses and header fields: parsing them, and refusing what could inject or mislead.

:func:`parse_address` reads one mailbox (the common shapes without the :mod:`email`
package's general parser, the rest with it); :func:`check_header` refuses a field name or
value that could inject a line (CR, LF or NUL: RFC 5322 §2.2). An address the general parser
reads with a defect it had to guess at (e.g. ``alice@example.org)<bob@example.org>``), or
cannot read at all, is refused with :class:`ConfigurationError`: the library never guesses
which address was meant. :func:`envelope_address` turns a parsed address into what goes on
the wire: an internationalized domain as IDNA 2008 A-labels (RFC 5890, UTS #46), within the
RFC 5321 §4.5.3.1 size limits. Used by :class:`~oauthsmtp.Email` as it is built and by
:func:`~oauthsmtp._message.prepare.prepare_message` for any other message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.headerregistry import Address, AddressHeader
from typing import cast

from oauthsmtp._errors import ConfigurationError

from .checks import check_header_text, check_no_breaks, excerpt

__all__ = [
    "check_header",
    "domain_to_ascii",
    "envelope_address",
    "format_address",
    "header_addresses",
    "mailboxes",
    "parse_address",
    "parse_address_list",
    "simple_address",
    "unfold",
]

# Obsolete syntax (e.g. "John Q. Public <jqp@example.org>", a period in a phrase) and an
# internationalized local part (RFC 6531, sent with SMTPUTF8) are fine; any other defect
# means the parser had to guess, and guessing is how a recipient gets swapped.
_TOLERATED_DEFECTS = ("ObsoleteHeaderDefect", "NonASCIILocalPartDefect")
_MAX_LOCAL_PART = 64  # RFC 5321 §4.5.3.1.1, octets
_MAX_DOMAIN = 255  # RFC 5321 §4.5.3.1.2, octets
_MAX_PATH = 256  # RFC 5321 §4.5.3.1.3, octets with the angle brackets
_MAX_LABEL = 63  # RFC 1035 §2.3.4
_ATEXT_CHARS = frozenset(
    "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
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


def simple_address(value: str) -> Address | None:
    """The address, if ``value`` has one of the common unambiguous shapes; else None."""
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match is None or "=?" in value:
        return None
    if match["local"] is not None:
        return Address(username=match["local"], domain=match["domain"])
    return Address(match["name"], match["bracketed"], match["bdomain"])


def format_address(address: Address) -> str:
    """``address`` as text that :func:`parse_address` reads back as the same address.

    ``str(Address)`` quotes a display name only when it holds specials, so white space at
    its ends or doubled inside is lost on the way back; this quotes whenever the name is
    not a run of atoms separated by single spaces (RFC 5322 §3.2.3, §3.2.4).
    """
    name = address.display_name
    if not name:
        return address.addr_spec
    words = name.split(" ")
    if not all(word and _ATEXT_CHARS.issuperset(word) for word in words):
        name = '"' + name.replace("\\", "\\\\").replace('"', '\\"') + '"'
    return f"{name} <{address.addr_spec}>"


def check_header(name: str, value: str) -> None:
    """Refuse a header that could inject lines (RFC 5322 §2.2, §3.6.8).

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
        raise ConfigurationError(f"invalid header name {excerpt(name)}")
    if not isinstance(value, str):
        raise ConfigurationError(f"header {name} must be a string, not {type(value).__name__}")
    check_no_breaks(f"header {name}", value)


def parse_address(field_name: str, value: str | Address) -> Address:
    """Parse one mailbox (``alice@example.org`` or ``Alice <alice@example.org>``).

    Args:
        field_name: used in error messages ("to", "sender", ...).
        value: the text of one address, or an :class:`~email.headerregistry.Address`.

    Returns:
        The parsed address.

    Raises:
        ConfigurationError: not a string; CR, LF, NUL or another control character; not
            exactly one mailbox; or a parse defect other than obsolete syntax or a
            non-ASCII local part.
    """
    if isinstance(value, Address):
        value = format_address(value)
    text = check_header_text(f"{field_name}: an address", value)
    simple = simple_address(text)
    if simple is not None:
        return simple
    header = _parse_header(field_name, text)
    if any(group.display_name is not None for group in header.groups):
        raise ConfigurationError(
            f"{field_name}: {excerpt(text)} is a group (name: addresses;), not one address"
        )
    addresses = _clean_addresses(field_name, text, header)
    if len(addresses) != 1:
        raise ConfigurationError(
            f"{field_name}: expected one address, found {len(addresses)} in {excerpt(text)}"
        )
    return addresses[0]


def parse_address_list(field_name: str, value: str) -> tuple[Address, ...]:
    """Parse an address-list (RFC 5322 §3.4) with the email package's general parser.

    Raises:
        ConfigurationError: the parser failed, recorded a defect it had to guess at, or
            found an incomplete address.
    """
    return _clean_addresses(field_name, value, _parse_header(field_name, value))


def _parse_header(field_name: str, value: str) -> AddressHeader:
    from email import policy

    try:
        header: AddressHeader = policy.default.header_factory("To", value)  # any address list
    except Exception as exc:  # the parser raises IndexError, AttributeError... on bad input
        raise ConfigurationError(
            f"{field_name}: {excerpt(value)} is not a valid address list "
            f"(the email package's parser failed: {type(exc).__name__}); refused"
        ) from exc
    return header


def header_addresses(field_name: str, value: object) -> tuple[Address, ...]:
    """The addresses of a header of a message: its own parse for an EmailMessage's header
    objects (no second parse), else a parse of its unfolded text.

    Raises:
        ConfigurationError: as :func:`parse_address_list`.
    """
    if isinstance(value, AddressHeader):
        return _clean_addresses(field_name, str(value), value)
    return parse_address_list(field_name, unfold(str(value)))


def _clean_addresses(field_name: str, value: str, header: AddressHeader) -> tuple[Address, ...]:
    """The header's addresses, refused if the parser recorded a defect it had to guess at."""
    recorded: Sequence[object] = getattr(header, "defects", ())  # BaseHeader.defects
    defects = [d for d in recorded if type(d).__name__ not in _TOLERATED_DEFECTS]
    if defects:
        raise ConfigurationError(
            f"{field_name}: the address {excerpt(value)} does not parse cleanly ({defects[0]}); "
            "refused rather than guessed at"
        )
    addresses: tuple[Address, ...] = header.addresses
    for address in addresses:
        if not address.username or not address.domain:
            raise ConfigurationError(f"{field_name}: {excerpt(value)} is not a complete address")
    return addresses


def domain_to_ascii(domain: str, *, what: str = "the domain") -> str:
    """``domain`` as IDNA 2008 A-labels (UTS #46 mapping, nontransitional); ASCII unchanged.

    The standard library's ``"idna"`` codec (also used by :mod:`socket` and :mod:`ssl` for a
    ``str`` host name) implements IDNA 2003, which maps ``ß`` to ``ss`` and drops joiners:
    ``straße.de`` would become ``strasse.de``, another domain. An ASCII name with an
    ``xn--`` label is checked too.

    Args:
        domain: a domain name, ASCII or not.
        what: how to name it in an error message.

    Raises:
        ConfigurationError: IDNA 2008 refuses the name.
    """
    if domain.isascii() and "xn--" not in domain.lower():
        return domain
    import idna  # only for an internationalized name: `import oauthsmtp` stays cheap

    try:
        return idna.encode(domain, uts46=True, transitional=False).decode("ascii")
    except (idna.IDNAError, UnicodeError) as exc:
        raise ConfigurationError(
            f"{what} is not a valid internationalized domain name (IDNA 2008: {exc}); refused"
        ) from None


def envelope_address(field_name: str, address: Address) -> Address:
    """``address`` ready for the envelope and the headers: domain in A-labels, sizes checked.

    Raises:
        ConfigurationError: an invalid internationalized domain, or a local part, domain,
            label or path over the limits of RFC 5321 §4.5.3.1 (64, 255, 63 and 256
            octets), which servers may refuse and which would make an SMTP command line
            longer than 512 octets.
    """
    domain = domain_to_ascii(
        address.domain, what=f"{field_name}: the domain of {excerpt(str(address))}"
    )
    local = len(address.username.encode("utf-8", "surrogateescape"))
    shown = excerpt(str(address))
    if local > _MAX_LOCAL_PART:
        raise ConfigurationError(
            f"{field_name}: the local part of {shown} is {local} octets; "
            f"RFC 5321 §4.5.3.1.1 allows {_MAX_LOCAL_PART}"
        )
    if len(domain) > _MAX_DOMAIN or any(len(label) > _MAX_LABEL for label in domain.split(".")):
        raise ConfigurationError(
            f"{field_name}: the domain of {shown} is too long (RFC 5321 §4.5.3.1.2: "
            f"{_MAX_DOMAIN} octets, {_MAX_LABEL} per label)"
        )
    if domain != address.domain:
        address = Address(address.display_name, address.username, domain)
    if len(address.addr_spec.encode("utf-8", "surrogateescape")) + 2 > _MAX_PATH:
        raise ConfigurationError(
            f"{field_name}: {shown} is longer than RFC 5321 §4.5.3.1.3 allows "
            f"({_MAX_PATH} octets with the angle brackets)"
        )
    return address


def mailboxes(field_name: str, values: object) -> tuple[Address, ...]:
    """Parse one address or a sequence of them (one mailbox each) for an Email field.

    Raises:
        ConfigurationError: ``values`` is not a string, an Address or an iterable of them,
            or one of them is refused by :func:`parse_address` or :func:`envelope_address`.
    """
    if isinstance(values, (str, Address)):
        values = [values]
    elif isinstance(values, (bytes, bytearray, memoryview)) or not isinstance(values, Iterable):
        raise ConfigurationError(
            f"{field_name} must be an address or a list of addresses, not {type(values).__name__}"
        )
    return tuple(
        envelope_address(field_name, parse_address(field_name, cast("str", v))) for v in values
    )


def unfold(value: str) -> str:
    """Remove RFC 5322 §2.2.3 folding (CRLF followed by white space) from a raw value."""
    if "\n" not in value and "\r" not in value:
        return value
    for fold in ("\r\n ", "\r\n\t", "\n ", "\n\t"):
        value = value.replace(fold, " ")
    return value
