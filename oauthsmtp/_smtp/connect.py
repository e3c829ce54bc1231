"""Opening an SMTP session's connections: connect, greet, EHLO, STARTTLS or TLS, then AUTH.

``_Connector`` is the base class of :class:`~oauthsmtp.SMTPSession` that opens each of its
connections, on first use and again after a drop. TLS fails closed (SECURITY.md rules
21-23): with ``security="starttls"``, STARTTLS not offered, refused, or a certificate that
does not verify ends the attempt before AUTH, and only the EHLO answer given after TLS is
trusted (RFC 3207 §4.2). Credentials never cross an unencrypted connection, except to a
loopback address with ``security="none"``. The AUTH exchange itself is in
:mod:`oauthsmtp._smtp.auth`. :class:`TokenSource` is what a session needs from a token.
"""

from __future__ import annotations

import logging
import ssl
from typing import Any, Literal, Protocol

from oauthsmtp._errors import ConfigurationError, SMTPError

from .auth import authenticate
from .pool import Channel, Gate
from .wire import Connection, command, parse_ehlo

__all__ = ["Security", "TokenSource"]

logger = logging.getLogger("oauthsmtp.smtp")

Security = Literal["starttls", "ssl", "none"]


class TokenSource(Protocol):
    """What SMTPSession needs from a token (an :class:`~oauthsmtp.AuthToken` fits)."""

    @property
    def access_token(self) -> str:
        """A usable access token (refreshed first when near expiry)."""

    def refresh(self) -> Any:
        """Get a new access token now; may raise LoginRequired or TokenError."""


def _address_literal(ip: str) -> str:
    ip = ip.split("%")[0]
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


class _Connector:
    """How :class:`~oauthsmtp.SMTPSession` opens a connection (its base class).

    The attributes below are set by ``SMTPSession.__init__``.
    """

    host: str
    port: int
    security: Security
    timeout: float
    username: str | None
    mechanism: str | None
    local_hostname: str | None
    _token: TokenSource | None
    _password: str | None
    _context: ssl.SSLContext | None

    @property
    def _has_credentials(self) -> bool:
        return self._token is not None or self._password is not None

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = ssl.create_default_context()
        return self._context

    def _connect(self, channel: Channel, gate: Gate | None) -> None:
        """Open, secure and authenticate a connection for ``channel``.

        Args:
            channel: where the connection goes.
            gate: called after TLS and before AUTH; raises to give up.
        """
        conn, extensions = self._open()
        try:
            if gate is not None:
                gate()
            conn, extensions, mechanism = authenticate(
                conn,
                extensions,
                reopen=self._open,
                host=self.host,
                port=self.port,
                username=self.username,
                token=self._token,
                password=self._password,
                mechanism=self.mechanism,
            )
        except BaseException:
            conn.close()
            raise
        channel.attach(conn, extensions, mechanism)
        logger.debug("session ready: %s:%d (AUTH %s)", self.host, self.port, mechanism)

    def _open(self) -> tuple[Connection, dict[str, str]]:
        """Open, greet, EHLO and secure a connection; return it with its trusted extensions."""
        tls = self._tls_context() if self.security == "ssl" else None
        conn = Connection.open(self.host, self.port, timeout=self.timeout, tls=tls)
        try:
            greeting = conn.read_reply()
            if greeting.code != 220:
                raise SMTPError(
                    f"{self.host} refused the session: {greeting}",
                    code=greeting.code,
                    server_message=greeting.text,
                )
            extensions = self._ehlo(conn)
            if self.security == "starttls":
                if "STARTTLS" not in extensions:
                    raise SMTPError(
                        f"{self.host}:{self.port} does not offer STARTTLS; refusing to go on "
                        "without TLS (nothing was sent). Check the port (587 for STARTTLS, "
                        "465 with security='ssl'), or whether something strips STARTTLS"
                    )
                conn.write(b"STARTTLS\r\n", ["STARTTLS"])
                reply = conn.read_reply()
                if reply.code != 220:
                    raise SMTPError(
                        f"{self.host} refused STARTTLS ({reply}); refusing to go on without TLS",
                        code=reply.code,
                        server_message=reply.text,
                    )
                conn.starttls(self._tls_context(), self.host, self.port)
                extensions = self._ehlo(conn)  # RFC 3207 §4.2: forget the pre-TLS answer
            elif self.security == "none" and self._has_credentials and not conn.peer_is_loopback:
                raise ConfigurationError(
                    "credentials are never sent without TLS; security='none' with "
                    "credentials only works with a loopback address"
                )
        except BaseException:
            conn.close()
            raise
        return conn, extensions

    def _ehlo(self, conn: Connection) -> dict[str, str]:
        name = self.local_hostname or _address_literal(conn.local_address)
        conn.write(command("EHLO", name), [f"EHLO {name}"])
        reply = conn.read_reply()
        if reply.code == 250:
            return parse_ehlo(reply)
        if self.security == "none" and not self._has_credentials:
            conn.write(command("HELO", name), [f"HELO {name}"])
            helo = conn.read_reply()
            if helo.code == 250:
                return {}
            reply = helo
        raise SMTPError(
            f"{self.host} refused EHLO: {reply}", code=reply.code, server_message=reply.text
        )
