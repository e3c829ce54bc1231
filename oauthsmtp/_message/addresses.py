"""Addresses and header fields: parsing them, and refusing what could inject or mislead.

:func:`parse_address` reads one mailbox (the common shapes without the :mod:`email`
package's general parser, the rest with it); :func:`check_header` refuses a field name or
value that could inject a line (CR, LF or NUL: RFC 5322 §2.2, SECURITY.md rule 29). An
address the general parser reads with a defect it had to guess at (e.g.
``alice@example.org)<bob@example.org>``) is refused with :class:`ConfigurationError`: the
library never guesses which address was meant. Used by :class:`~oauthsmtp.Email` as it is
built and by :func:`~oauthsmtp._message.prepare.prepare_message` for any other message.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from email.headerregistry import Address, AddressHeader

from oauthsmtp._errors import ConfigurationError

__all__ = ["check_header", "parse_address"]

_FORBIDDEN = frozenset("\r\n\x00")
# Obsolete syntax (e.g. "John Q. Public <jqp@example.org>", a period in a phrase) and an
# internationalized local part (RFC 6531, sent with SMTPUTF8) are fine; any other defect
# means the parser had to guess, and guessing is how a recipient gets swapped.
_TOLERATED_DEFECTS = ("ObsoleteHeaderDefect", "NonASCIILocalPartDefect")


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
    match = _SIMPLE_ADDRESS.fullmatch(value)
    if match is None or "=?" in value:
        return None
    if match["local"] is not None:
        return Address(username=match["local"], domain=match["domain"])
    return Address(match["name"], match["bracketed"], match["bdomain"])


def has_forbidden(value: str) -> bool:
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
    if has_forbidden(value):
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
    if has_forbidden(value):
        raise ConfigurationError(f"{field_name}: address contains CR, LF or NUL; refused")
    simple = simple_address(value)
    if simple is not None:
        return simple
    addresses = parse_address_list(field_name, value)
    if len(addresses) != 1:
        raise ConfigurationError(
            f"{field_name}: expected one address, found {len(addresses)} in {value!r}"
        )
    return addresses[0]


def parse_address_list(field_name: str, value: str) -> tuple[Address, ...]:
    from email import policy

    header = policy.default.header_factory("To", value)  # any address-list field
    return _clean_addresses(field_name, value, header)


def header_addresses(field_name: str, value: object) -> tuple[Address, ...]:
    """The addresses of a header of a message: its own parse for an EmailMessage's header
    objects (no second parse), else a parse of its unfolded text."""
    if isinstance(value, AddressHeader):
        return _clean_addresses(field_name, str(value), value)
    return parse_address_list(field_name, unfold(str(value)))


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


def mailboxes(
    field_name: str, values: str | Address | Iterable[str | Address]
) -> tuple[Address, ...]:
    if isinstance(values, (str, Address)):
        values = [values]
    return tuple(_ascii_domain(parse_address(field_name, v)) for v in values)


def unfold(value: str) -> str:
    """Remove RFC 5322 §2.2.3 folding (CRLF followed by white space) from a raw value."""
    if "\n" not in value and "\r" not in value:
        return value
    for fold in ("\r\n ", "\r\n\t", "\n ", "\n\t"):
        value = value.replace(fold, " ")
    return value
