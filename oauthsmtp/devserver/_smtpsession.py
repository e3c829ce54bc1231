"""The development SMTP server's connections: aiosmtpd's protocol and our hooks.

``SMTPProtocol`` is aiosmtpd's SMTP with room for real-size tokens, our own
AUTH-required check and a session that keeps the console quiet; ``Handler``
holds the aiosmtpd hooks (EHLO, RCPT, DATA, errors) and the XOAUTH2 and
OAUTHBEARER mechanisms, with Gmail's failure dialogue after a bad token
(``334`` challenge, the client's answer, then ``535``). They know the server
that created them only through the narrow :class:`ServerHooks` protocol (its
settings, where to deliver, what to record, how to check a token), so this
module imports nothing of the server's; ``shutdown`` closes every listener and
connection when it stops.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import contextlib
import logging
import socket
import ssl
from collections.abc import Collection
from typing import Any, Protocol

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, Session

from ._smtpsasl import OAuthBearerFields, failure_challenge, parse_oauthbearer, parse_xoauth2

logger = logging.getLogger("oauthsmtp.devserver.smtp")

# Real access tokens are 1-3 KB, so an AUTH line with an initial response is up to ~4 KB of
# base64. RFC 4954 §4: servers must accept AUTH lines of at least 12288 octets.
AUTH_LINE_LIMIT = 12288
# RFC 5321 §4.5.3.1.6: 998 octets + CRLF, plus one for dot-stuffing.
DATA_LINE_LIMIT = 1001

BAD_CREDENTIALS = "535 5.7.8 Username and Password not accepted."
ACCEPTED = "235 2.7.0 Accepted"

AUTH_FAILURES = {
    "tenant": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
    "for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
    "mailbox": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
    "for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
    "basic-auth": "550 5.7.30 Basic authentication is not supported for Client Submission.",
    "bad-token": "535 5.7.3 Authentication unsuccessful",
    "connections": "432 4.3.2 Concurrent connections limit exceeded. Visit "
    "https://aka.ms/concurrent_sending for more information.",
}
"""The refusals ``SMTPServer(auth_failure=...)`` plays, word for word as Microsoft 365 sends
them: SMTP AUTH off for the tenant or the mailbox (5.7.139), basic authentication off
(5.7.30), a token for the wrong audience or account (5.7.3), too many connections (4.3.2)."""


class ValidatorFailedError(Exception):
    """The token validator raised: the client gets a temporary failure (454), not a 535."""


class ServerHooks(Protocol):
    """What a connection needs from the server that accepted it.

    Attributes are the server's settings; the methods are called from the event loop's thread
    (``validate`` runs the validator in a worker thread).
    """

    @property
    def mechanisms(self) -> tuple[str, ...]: ...

    @property
    def pipelining(self) -> bool: ...

    @property
    def reject_recipients(self) -> Collection[str]: ...

    @property
    def scope(self) -> str: ...

    @property
    def auth_failure(self) -> str | None: ...

    def deliver(self, envelope: Envelope, user: str | None) -> None:
        """Keep an accepted message (``user``: who authenticated, if anyone)."""

    def record_auth(
        self,
        mechanism: str,
        user: str | None,
        success: bool,
        fields: OAuthBearerFields | None = None,
    ) -> None:
        """Note one AUTH attempt; never given a token."""

    async def validate(self, token: str, claimed: str | None = None) -> str | None:
        """The token's user (or ``claimed``, for an app token allowed to use that mailbox),
        or None; raises :class:`ValidatorFailedError` if the check broke."""


class _Session(Session):
    # aiosmtpd 1.4 made login_data a property that logs a deprecation warning on every AUTH;
    # a plain attribute keeps the dev server's console quiet.
    login_data: Any = None


class SMTPProtocol(SMTP):
    """aiosmtpd's SMTP with room for real-size tokens and our own AUTH-required check."""

    # The stream limit: what one line may hold before aiosmtpd's own per-command checks.
    line_length_limit = AUTH_LINE_LIMIT

    def __init__(
        self, handler: Handler, *, live: set[SMTPProtocol], require_auth: bool, **kwargs: Any
    ):
        self._live = live
        self._require_auth = require_auth
        self._socket: socket.socket | None = None
        super().__init__(handler, **kwargs)
        # After the reader exists: DATA lines keep the RFC 5321 limit.
        self.line_length_limit = DATA_LINE_LIMIT
        # An instance dict: aiosmtpd's class-level one is shared by every SMTP in the process.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"AUTH": AUTH_LINE_LIMIT}
        )

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def check_auth_needed(self, caller_method: str) -> bool:
        # aiosmtpd's own auth_required warns (an error under pytest) on the implicit-TLS port.
        assert self.session is not None  # noqa: S101 (set in connection_made)
        if self._require_auth and not self.session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return True
        return False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        if self._socket is None:  # the first call; a second one comes after STARTTLS
            self._socket = transport.get_extra_info("socket")
            # Only now: a connection to the implicit-TLS port whose handshake never finishes
            # is never "made", so it is never "lost" either (the event loop drops it).
            self._live.add(self)
        super().connection_made(transport)

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)

    def cut(self) -> None:
        """End the connection now, whatever state its transports are in.

        ``transport.abort()`` is not safe here: aiosmtpd's QUIT closes a TLS transport twice,
        after which CPython 3.11.2's ``abort()`` raises AttributeError (``_ssl_protocol`` is
        None), and a TLS transport that is already closing may wait for the peer's
        close_notify. Shutting the socket down works on every version and in every state: the
        event loop sees the end of the stream and runs each transport's own close path, which
        ends in :meth:`connection_lost`.
        """
        if self._socket is not None:
            with contextlib.suppress(OSError):  # already gone
                self._socket.shutdown(socket.SHUT_RDWR)

    async def read_line(self) -> bytes:
        """Read one client line (a SASL response) without logging it."""
        line: bytes = await self._reader.readline()
        return line


class Handler:
    """aiosmtpd hooks and SASL mechanisms, shared by a server's connections."""

    def __init__(self, server: ServerHooks) -> None:
        self._server = server

    async def handle_EHLO(
        self,
        smtp: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        hostname: str,
        lines: list[str],
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook when there is one
        # lines: "250-<hostname>", one "250-<extension>" each, then "250 HELP".
        out = lines[:1]
        for line in lines[1:-1]:
            if line[4:].upper().startswith("AUTH "):
                if self._server.mechanisms:  # in our order, like the providers' lists
                    out.append("250-AUTH " + " ".join(self._server.mechanisms))
            else:
                out.append(line)
        if self._server.pipelining:
            out.append("250-PIPELINING")
        out.append(lines[-1])
        return out

    async def handle_RCPT(
        self,
        smtp: SMTPProtocol,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if address.casefold() in self._server.reject_recipients:
            return "550 5.1.1 user unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: SMTPProtocol, session: Session, envelope: Envelope) -> str:
        user = session.auth_data if isinstance(session.auth_data, str) else None
        self._server.deliver(envelope, user)
        return "250 2.0.0 OK queued"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
            logger.debug("TLS failed: %s", error.__cause__ or error)
        else:  # a bug here; the validator's errors (which may quote a token) never get here
            logger.error("SMTP session error", exc_info=error)
        return "451 4.3.0 Internal server error"

    async def auth_XOAUTH2(self, smtp: SMTPProtocol, args: list[str]) -> AuthResult:
        """Google's XOAUTH2: ``user=U^Aauth=Bearer T^A^A``, base64."""
        blob = await _sasl_response(smtp, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        parsed = parse_xoauth2(blob)
        if parsed is None:
            self._server.record_auth("XOAUTH2", None, False)
            await smtp.push("501 5.5.2 Malformed XOAUTH2 response")
            return AuthResult(success=False, handled=True)
        user, token = parsed
        return await self._finish("XOAUTH2", smtp, user, token, None)

    async def auth_OAUTHBEARER(self, smtp: SMTPProtocol, args: list[str]) -> AuthResult:
        """RFC 7628 OAUTHBEARER: ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A``, base64."""
        blob = await _sasl_response(smtp, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        parsed = parse_oauthbearer(blob)
        if parsed is None:
            self._server.record_auth("OAUTHBEARER", None, False)
            await smtp.push("501 5.5.2 Malformed OAUTHBEARER response")
            return AuthResult(success=False, handled=True)
        fields, token = parsed
        return await self._finish("OAUTHBEARER", smtp, fields.authzid, token, fields)

    async def _finish(
        self,
        mechanism: str,
        smtp: SMTPProtocol,
        claimed: str | None,
        token: str,
        fields: OAuthBearerFields | None,
    ) -> AuthResult:
        server = self._server
        failure = AUTH_FAILURES.get(server.auth_failure or "")
        if failure is not None:  # playing a provider's refusal, whatever the token
            server.record_auth(mechanism, claimed, False, fields)
            await smtp.push(failure)
            return AuthResult(success=False, handled=True)
        try:
            # An empty token is RFC 7628 §4.3's discovery probe: it gets the error challenge.
            owner = await server.validate(token, claimed) if token else None
        except ValidatorFailedError:
            server.record_auth(mechanism, claimed, False, fields)
            await smtp.push("454 4.7.0 Temporary authentication failure")
            return AuthResult(success=False, handled=True)
        if owner is not None and (claimed is None or claimed.casefold() == owner.casefold()):
            user = claimed or owner
            server.record_auth(mechanism, user, True, fields)
            return AuthResult(success=True, auth_data=user, message=ACCEPTED)
        server.record_auth(mechanism, claimed, False, fields)
        await smtp.push(failure_challenge(mechanism, server.scope))
        reply = (await smtp.read_line()).strip()
        if reply == b"*":  # RFC 4954 §4: the client cancelled
            await smtp.push("501 5.7.0 Authentication aborted")
        elif mechanism == "OAUTHBEARER" and reply != b"AQ==":
            await smtp.push("501 5.5.2 Expected AQ== (%x01) after the error challenge")
        else:  # Gmail answers 535 to whatever follows its XOAUTH2 challenge
            await smtp.push(BAD_CREDENTIALS)
        return AuthResult(success=False, handled=True)


async def shutdown(
    servers: list[asyncio.AbstractServer], live: set[SMTPProtocol], *, timeout: float = 5.0
) -> None:
    """Close the listeners, cut every connection, and wait (at most ``timeout`` s) for them.

    Tasks still running afterwards (a handler waiting on the validator, say) are cancelled.
    """
    for server in servers:
        server.close()
    for protocol in list(live):
        protocol.cut()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while live and loop.time() < deadline:
        await asyncio.sleep(0.01)
    if live:
        logger.warning("%d connection(s) did not close within %s s", len(live), timeout)
    for server in servers:
        # Python 3.12+ also waits here for connections still in their TLS handshake (which
        # have no protocol to cut): briefly, then the loop's closing drops them.
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(server.wait_closed(), 0.5)
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _sasl_response(smtp: SMTPProtocol, args: list[str]) -> bytes | None:
    """The initial response, or the answer to an empty ``334`` challenge; None if answered."""
    if len(args) == 1:
        response = await smtp.challenge_auth("")
        return response if isinstance(response, bytes) else None
    if args[1] == "=":  # RFC 4954 §4: an empty initial response
        return b""
    try:
        return base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        await smtp.push("501 5.5.2 Can't decode base64")
        return None
