"""Where the bytes go: is an address, or a connected peer, on this machine's loopback?

Plain-text connections (SMTP ``security="none"``, a loopback ``http`` token
endpoint, IMAP/POP3 on loopback) are allowed only when the connected peer is a
loopback address, read from the socket, never trusted from a host name
(RFC 8252 §8.3; docs/security.md).
"""

from __future__ import annotations

import ipaddress

__all__ = ["is_loopback_address", "peer_is_loopback"]


def is_loopback_address(address: str) -> bool:
    """True for a loopback IP address (``127.0.0.0/8``, ``::1``, IPv4-mapped ``::ffff:127.x``).

    A zone suffix (``%lo``) is ignored; anything that is not an IP address is False.
    """
    try:
        ip = ipaddress.ip_address(address.split("%", 1)[0])
    except ValueError:
        return False
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        return ip.ipv4_mapped.is_loopback
    return ip.is_loopback


def peer_is_loopback(address: object) -> bool:
    """True when ``address`` (what ``socket.getpeername()`` returned) is a loopback address."""
    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False
    return is_loopback_address(address[0])
