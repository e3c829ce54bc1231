"""Checking a session's settings without sending: connect, TLS, EHLO, AUTH, RSET, QUIT.

:func:`verify` opens one connection of its own through the session's
:class:`~oauthsmtp._smtp.connect.Connector` (so it fails exactly where and how sending
would), resets it (RSET, RFC 5321 §4.1.1.5), says goodbye (QUIT) and returns what it
learnt as a :class:`VerifyResult`. No MAIL command is ever sent. :func:`describe` and
:func:`check_rset` are the pure halves the asyncio session's ``verify()`` shares.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import TYPE_CHECKING, Protocol

from oauthsmtp._errors import OAuthSMTPError, SMTPError

from .pool import Channel, quit_all
from .wire import Reply, parse_size

if TYPE_CHECKING:
    from .connect import Connector

__all__ = ["Described", "VerifyResult", "check_rset", "describe", "verify"]


@dataclass(frozen=True)
class VerifyResult:
    """What :meth:`SMTPSession.verify() <oauthsmtp.SMTPSession.verify>` learnt.

    Attributes:
        host: the server, as the session was given it.
        port: the server's port.
        security: ``"starttls"``, ``"ssl"`` or ``"none"``.
        greeting: the text of the server's ``220`` greeting.
        extensions: the EHLO keywords after TLS (upper case) and their parameters.
        mechanism: the SASL mechanism that authenticated, or None without credentials.
        size_limit: the ``SIZE`` the server announced (RFC 1870), or None when none.
        tls_version: e.g. ``"TLSv1.3"``, or None without TLS.
        certificate_subject: the server certificate's subject (``"CN=smtp.example.org"``),
            or None without TLS.
        certificate_issuer: the certificate's issuer, or None without TLS.
    """

    host: str
    port: int
    security: str
    greeting: str
    extensions: Mapping[str, str]
    mechanism: str | None
    size_limit: int | None
    tls_version: str | None
    certificate_subject: str | None
    certificate_issuer: str | None

    @property
    def mechanisms(self) -> tuple[str, ...]:
        """The SASL mechanisms the server offered after TLS (``AUTH``), upper case."""
        return tuple(self.extensions.get("AUTH", "").upper().split())


def _name(certificate: Mapping[str, object] | None, field: str) -> str | None:
    """``getpeercert()``'s nested RDN tuples as ``"CN=..., O=..."``."""
    if not certificate:
        return None
    parts: list[str] = []
    rdns = certificate.get(field)
    if isinstance(rdns, tuple):
        for rdn in rdns:
            for pair in rdn if isinstance(rdn, tuple) else ():
                if isinstance(pair, tuple) and len(pair) == 2:
                    key, value = pair
                    short = _SHORT.get(str(key), str(key))
                    parts.append(f"{short}={value}")
    return ", ".join(parts) or None


_SHORT = {
    "commonName": "CN",
    "organizationName": "O",
    "organizationalUnitName": "OU",
    "countryName": "C",
    "stateOrProvinceName": "ST",
    "localityName": "L",
}


class Described(Protocol):
    """What :func:`describe` reads from an open connection (blocking or asyncio)."""

    @property
    def greeting(self) -> str: ...

    @property
    def tls_version(self) -> str | None: ...

    @property
    def peer_certificate(self) -> Mapping[str, object] | None: ...


def check_rset(reply: Reply, *, host: str) -> None:
    """Raise SMTPError unless the reply to RSET is ``250`` (pure)."""
    if reply.code != 250:
        raise SMTPError(f"{host} refused RSET: {reply}", code=reply.code, server_message=reply.text)


def describe(
    conn: Described,
    *,
    host: str,
    port: int,
    security: str,
    extensions: Mapping[str, str],
    mechanism: str | None,
) -> VerifyResult:
    """The :class:`VerifyResult` for an open, authenticated connection (no I/O)."""
    size = extensions.get("SIZE")
    certificate = conn.peer_certificate
    return VerifyResult(
        host=host,
        port=port,
        security=security,
        greeting=conn.greeting,
        extensions=MappingProxyType(dict(extensions)),
        mechanism=mechanism,
        size_limit=None if size is None else parse_size(size),
        tls_version=conn.tls_version,
        certificate_subject=_name(certificate, "subject"),
        certificate_issuer=_name(certificate, "issuer"),
    )


def verify(connector: Connector, *, host: str) -> VerifyResult:
    """Open, secure and authenticate one connection, then RSET and QUIT it.

    Args:
        connector: the session's connector (its settings and credentials).
        host: the server's name as the session was given it.

    Returns:
        What the server said about itself.

    Raises:
        The errors :meth:`SMTPSession.send` raises when it cannot open a connection:
        SMTPError (TLS, STARTTLS, EHLO; with a hint), SMTPAuthError, SMTPTimeoutError,
        SMTPConnectionError, LoginRequired, TokenError; SMTPError when RSET is refused.
    """
    channel = Channel()
    try:
        connector.connect(channel, None)
        conn = channel.conn
        assert conn is not None  # noqa: S101 - connect sets it or raises
        conn.write(b"RSET\r\n", ["RSET"])
        reply = conn.read_reply()
        check_rset(reply, host=host)
        return describe(
            conn,
            host=host,
            port=connector.port,
            security=connector.security,
            extensions=channel.extensions,
            mechanism=channel.mechanism,
        )
    except OAuthSMTPError:
        raise
    except Exception as exc:  # as SMTPSession.send: only oauthsmtp's errors come out
        raise SMTPError(f"verifying failed unexpectedly: {type(exc).__name__}: {exc}") from exc
    finally:
        quit_all([channel])
