"""Opening a session's connections: connect, greet, EHLO, STARTTLS or TLS, then AUTH.

A :class:`Connector` holds what a session needs to open a connection (host, port,
``security``, timeout, credentials, TLS context) and opens one for a
:class:`~oauthsmtp._smtp.pool.Channel`, on first use and again after a drop. The session
owns one; the pool calls its :meth:`Connector.connect`.

TLS fails closed (RFC 3207 §6; docs/security.md): with ``security="starttls"``, STARTTLS
not offered, refused, or a certificate that does not verify ends the attempt before AUTH,
and only the EHLO answer given after TLS is trusted (RFC 3207 §4.2). Credentials never
cross an unencrypted connection, except to a loopback address with ``security="none"``.
The AUTH exchange itself is in :mod:`oauthsmtp._smtp.auth`.

A plain-text session waits for the server's greeting (RFC 5321 §3.1). When none comes
within a few seconds, a second, throw-away connection checks whether the port answers a
TLS hello (an implicit-TLS port, RFC 8314 §3.3, like 465): then the session fails at
once, saying to use ``security="ssl"``, instead of waiting out the whole timeout.
"""

from __future__ import annotations

import logging
import ssl
from typing import Literal

from oauthsmtp._errors import ConfigurationError, OAuthSMTPError, SMTPError
from oauthsmtp._util.tls import tls_context

from .auth import TokenSource, authenticate
from .pool import Channel, Gate
from .wire import Connection, Reply, SMTPTimeoutError, command, parse_ehlo, speaks_tls

__all__ = [
    "GREETING_PATIENCE",
    "Connector",
    "Security",
    "address_literal",
    "greeting_patience",
    "implicit_tls_port",
    "no_greeting",
    "no_starttls",
    "plain_text_credentials",
    "probes_for_tls",
    "refused_ehlo",
    "refused_greeting",
    "refused_starttls",
]

logger = logging.getLogger("oauthsmtp.smtp")

Security = Literal["starttls", "ssl", "none"]
"""How a session secures its connections: STARTTLS (RFC 3207), implicit TLS (RFC 8314), none."""

GREETING_PATIENCE = 3.0
"""Seconds (at most a quarter of the timeout) without a greeting before checking for TLS."""

_NO_PROBE_PORTS = frozenset({25})  # relay port: a greeting may be delayed on purpose


def address_literal(ip: str) -> str:
    """The EHLO address literal of a local IP address (RFC 5321 §4.1.3)."""
    ip = ip.split("%")[0]
    return f"[IPv6:{ip}]" if ":" in ip else f"[{ip}]"


class Connector:
    """Opens, secures and authenticates the connections of one session.

    Args:
        host: the server's name as given (used in messages and for TLS and OAUTHBEARER).
        port: the server's port.
        security: ``"starttls"``, ``"ssl"`` or ``"none"``.
        timeout: seconds for connecting, for each write and for each reply.
        username: the SASL user, required with credentials.
        token: the OAuth token for XOAUTH2/OAUTHBEARER, or None.
        password: the password for PLAIN/LOGIN, or None.
        mechanism: a forced mechanism (already checked), or None.
        local_hostname: the EHLO name, or None for the local address literal.
        context: the TLS context, or None for the system trust store plus ``SSL_CERT_FILE``
            (:func:`oauthsmtp._util.tls.tls_context`).

    The arguments are checked by :class:`~oauthsmtp.SMTPSession`.
    """

    def __init__(
        self,
        host: str,
        port: int,
        *,
        security: Security,
        timeout: float,
        username: str | None,
        token: TokenSource | None,
        password: str | None,
        mechanism: str | None,
        local_hostname: str | None,
        context: ssl.SSLContext | None,
    ) -> None:
        self.host = host
        self.port = port
        self.security: Security = security
        self.timeout = timeout
        self.username = username
        self.token = token
        self.password = password
        self.mechanism = mechanism
        self.local_hostname = local_hostname
        self._context = context

    @property
    def has_credentials(self) -> bool:
        """True when the session authenticates (a token or a password)."""
        return self.token is not None or self.password is not None

    def _tls_context(self) -> ssl.SSLContext:
        if self._context is None:
            self._context = tls_context()
        return self._context

    def connect(self, channel: Channel, gate: Gate | None) -> None:
        """Open, secure and authenticate a connection for ``channel``.

        Args:
            channel: where the connection goes.
            gate: called after TLS and before AUTH; raises to give up.

        Raises:
            SMTPError: the server refused or failed (with a hint what to change);
                SMTPAuthError when AUTH was refused.
            LoginRequired, TokenError: the token could not be refreshed.
        """
        conn, extensions = self.open()
        try:
            if gate is not None:
                gate()
            conn, extensions, mechanism = authenticate(
                conn,
                extensions,
                reopen=self.open,
                host=self.host,
                port=self.port,
                username=self.username,
                token=self.token,
                password=self.password,
                mechanism=self.mechanism,
            )
        except BaseException:
            conn.close()
            raise
        channel.attach(conn, extensions, mechanism)
        logger.debug("session ready: %s:%d (AUTH %s)", self.host, self.port, mechanism)

    def open(self) -> tuple[Connection, dict[str, str]]:
        """Open, greet, EHLO and secure a connection; return it with its trusted extensions.

        Raises:
            SMTPError: as :meth:`connect`; never an exception that is not oauthsmtp's.
        """
        try:
            return self._open()
        except OAuthSMTPError:
            raise
        except Exception as exc:  # a defect must not leave the public API as a foreign error
            raise SMTPError(
                f"unexpected failure while connecting to {self.host}:{self.port}: "
                f"{type(exc).__name__}: {exc}"
            ) from exc

    def _open(self) -> tuple[Connection, dict[str, str]]:
        address = self.host.strip("[]")
        tls = self._tls_context() if self.security == "ssl" else None
        conn = Connection.open(address, self.port, timeout=self.timeout, tls=tls)
        try:
            greeting = self._greeting(conn)
            if greeting.code != 220:
                raise refused_greeting(self.host, greeting)
            conn.greeting = greeting.text
            extensions = self._ehlo(conn)
            if self.security == "starttls":
                if "STARTTLS" not in extensions:
                    raise no_starttls(self.host, self.port)
                conn.write(b"STARTTLS\r\n", ["STARTTLS"])
                reply = conn.read_reply()
                if reply.code != 220:
                    raise refused_starttls(self.host, reply)
                conn.starttls(self._tls_context(), self.host, self.port)
                extensions = self._ehlo(conn)  # RFC 3207 §4.2: forget the pre-TLS answer
            elif self.security == "none" and self.has_credentials and not conn.peer_is_loopback:
                raise plain_text_credentials()
        except BaseException:
            conn.close()
            raise
        return conn, extensions

    def _greeting(self, conn: Connection) -> Reply:
        """Read the greeting; fail fast when a plain-text session meets an implicit-TLS port."""
        if probes_for_tls(self.security, self.port):
            patience = greeting_patience(self.timeout)
            if not conn.wait_for_data(patience) and speaks_tls(
                self.host, self.port, timeout=patience
            ):
                raise implicit_tls_port(self.host, self.port)
        try:
            return conn.read_reply()
        except SMTPTimeoutError as exc:
            raise no_greeting(self.host, self.port, self.timeout, self.security) from exc

    def _ehlo(self, conn: Connection) -> dict[str, str]:
        name = self.local_hostname or address_literal(conn.local_address)
        conn.write(command("EHLO", name), [f"EHLO {name}"])
        reply = conn.read_reply()
        if reply.code == 250:
            return parse_ehlo(reply)
        if self.security == "none" and not self.has_credentials:
            conn.write(command("HELO", name), [f"HELO {name}"])
            helo = conn.read_reply()
            if helo.code == 250:
                return {}
            reply = helo
        raise refused_ehlo(self.host, reply)


# -- the rules and errors of opening a connection (pure: shared with the asyncio session) -------
def probes_for_tls(security: Security, port: int) -> bool:
    """Whether a silent server is checked for implicit TLS (not on the relay port 25)."""
    return security != "ssl" and port not in _NO_PROBE_PORTS


def greeting_patience(timeout: float) -> float:
    """Seconds without a greeting before the implicit-TLS check."""
    return min(GREETING_PATIENCE, timeout / 4)


def implicit_tls_port(host: str, port: int) -> SMTPError:
    """A plain-text session met a port that answers in TLS (RFC 8314 §3.3)."""
    return SMTPError(
        f"{host}:{port} sent no SMTP greeting and answers in TLS: "
        f"port {port} expects implicit TLS: use security='ssl' (or port 587 "
        "with security='starttls')"
    )


def refused_greeting(host: str, reply: Reply) -> SMTPError:
    """The server greeted with something other than ``220`` (RFC 5321 §3.1)."""
    return SMTPError(
        f"{host} refused the session: {reply}", code=reply.code, server_message=reply.text
    )


def no_greeting(host: str, port: int, timeout: float, security: Security) -> SMTPTimeoutError:
    """No greeting arrived within the timeout."""
    hint = (
        "; if this port expects TLS from the first byte (like 465), use security='ssl'"
        if security != "ssl"
        else ""
    )
    return SMTPTimeoutError(f"no greeting from {host}:{port} within {timeout} s{hint}")


def refused_ehlo(host: str, reply: Reply) -> SMTPError:
    """EHLO (and HELO where allowed) was refused."""
    return SMTPError(f"{host} refused EHLO: {reply}", code=reply.code, server_message=reply.text)


def no_starttls(host: str, port: int) -> SMTPError:
    """STARTTLS is required (RFC 3207 §6: fail closed) and the server does not offer it."""
    return SMTPError(
        f"{host}:{port} does not offer STARTTLS; refusing to go on "
        "without TLS (nothing was sent). Check the port (587 for STARTTLS, "
        "465 with security='ssl'), or whether something strips STARTTLS"
    )


def refused_starttls(host: str, reply: Reply) -> SMTPError:
    """The server answered STARTTLS with something other than ``220``."""
    return SMTPError(
        f"{host} refused STARTTLS ({reply}); refusing to go on without TLS",
        code=reply.code,
        server_message=reply.text,
    )


def plain_text_credentials() -> ConfigurationError:
    """Credentials over a connection without TLS to an address that is not loopback."""
    return ConfigurationError(
        "credentials are never sent without TLS; security='none' with "
        "credentials only works with a loopback address"
    )
