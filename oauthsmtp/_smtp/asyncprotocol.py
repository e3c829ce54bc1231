"""The SMTP exchanges of the asyncio session: open, secure, authenticate, send.

The asyncio twins of :mod:`~oauthsmtp._smtp.connect`, :mod:`~oauthsmtp._smtp.auth` and
:mod:`~oauthsmtp._smtp.transact`, with the same rules, built from the same pure pieces:

* **TLS fails closed** (RFC 3207 §6; docs/security.md): ``security="starttls"`` requires
  STARTTLS; certificates are verified (default context:
  :func:`oauthsmtp._util.tls.tls_context`); EHLO is sent again after TLS and only that
  answer is trusted (RFC 3207 §4.2); credentials never cross an unencrypted connection
  except to a loopback address with ``security="none"``.
* **AUTH**: XOAUTH2 or OAUTHBEARER chosen from the post-TLS EHLO
  (:func:`~oauthsmtp._smtp.auth.choose_mechanism`), the exchange driven by
  :class:`~oauthsmtp._smtp.auth.SASLExchange`; after a refusal that a fresh token may cure
  (classified by :func:`~oauthsmtp._smtp.sasl.classify_auth_failure`), the token is
  refreshed once and AUTH retried once. The token is read and refreshed off the event loop
  (``asyncio.to_thread``): :meth:`AuthToken.refresh` blocks, and it is single-flight across
  threads and processes, so sync and async users of one token share one refresh.
* **Transactions**: with PIPELINING (RFC 2920 §3.1) a message's MAIL, RCPT... and DATA go
  out in one write, its body with the next envelope, so a batch costs about one round trip
  per message; without it, one command at a time. Results come from
  :func:`~oauthsmtp._smtp.transact.outcome`; a connection lost after a body and before its
  end-of-data reply makes that message ``"unknown"`` (:meth:`Lane.recover`).
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Awaitable, Callable, Mapping

from oauthsmtp._errors import OAuthSMTPError, SMTPAuthError, SMTPError
from oauthsmtp._util.tls import tls_context

from .asyncwire import AsyncConnection
from .auth import SASLExchange, TokenSource, choose_mechanism, oauth_exchange, password_exchange
from .connect import (
    address_literal,
    greeting_patience,
    implicit_tls_port,
    no_greeting,
    no_starttls,
    plain_text_credentials,
    probes_for_tls,
    refused_ehlo,
    refused_greeting,
    refused_starttls,
)
from .pool import close_then_release
from .settings import SessionSettings
from .transact import (
    ConnectionLost,
    Job,
    JobQueue,
    Lane,
    SendResult,
    after_envelope,
    body_chunks,
    envelope,
    is_connection_limit,
    mail_command,
    outcome,
)
from .wire import (
    Reply,
    SMTPConnectionError,
    SMTPTimeoutError,
    command,
    parse_ehlo,
    rcpt_to,
    speaks_tls,
)

__all__ = ["AsyncAdmit", "AsyncChannel", "TokenGate", "open_channel", "transact"]

logger = logging.getLogger("oauthsmtp.smtp")

AsyncAdmit = Callable[[Job, bool], Awaitable["SendResult | bool"]]
"""The asyncio form of :attr:`Lane.admit <oauthsmtp._smtp.transact.Lane.admit>` (sending
limits: it may wait for a message slot, on the loop)."""


class TokenGate:
    """A session's access to its token from the event loop: reads and one refresh at a time.

    Reading ``access_token`` may refresh, and ``refresh()`` blocks on the network and on the
    token's own lock: both run in a worker thread (``asyncio.to_thread``), never on the loop.
    Connections of one session that are refused together refresh once: a refresh is skipped
    when the token already changed since the refused one was read.
    """

    def __init__(self, token: TokenSource) -> None:
        self._token = token
        self._lock = asyncio.Lock()

    async def read(self) -> str:
        """The access token (refreshed first when near expiry), read off the loop."""
        return await asyncio.to_thread(_read_token, self._token)

    async def refresh(self, refused: str) -> None:
        """Refresh, unless the token changed since ``refused`` was read."""
        async with self._lock:
            if await self.read() != refused:
                return
            await asyncio.to_thread(self._token.refresh)


def _read_token(token: TokenSource) -> str:
    return token.access_token


class AsyncChannel:
    """One connection slot of an asyncio session.

    Attributes:
        conn: the open connection, or None.
        extensions: its EHLO keywords after TLS, upper case.
        mechanism: the SASL mechanism it authenticated with, or None.
    """

    def __init__(self) -> None:
        self.conn: AsyncConnection | None = None
        self.extensions: dict[str, str] = {}
        self.mechanism: str | None = None
        self._release: Callable[[], None] | None = None

    def hold(self, release: Callable[[], None]) -> None:
        """Call ``release`` once, when this connection is dropped (a budget's slot)."""
        self._release = release

    @property
    def connected(self) -> bool:
        """True while a connection is open (the server may have dropped it meanwhile)."""
        return self.conn is not None and not self.conn.closed

    def drop(self) -> None:
        """Forget the connection, closing it (and give its budget slot back)."""
        conn, self.conn = self.conn, None
        self.extensions = {}
        self.mechanism = None
        release, self._release = self._release, None
        close_then_release(conn, release)


# -- opening ------------------------------------------------------------------------------
async def open_channel(
    channel: AsyncChannel, settings: SessionSettings, gate: TokenGate | None
) -> None:
    """Open, secure and authenticate a connection for ``channel``.

    Raises:
        SMTPError: the server refused or failed (with a hint what to change);
            SMTPAuthError when AUTH was refused. Never an exception that is not oauthsmtp's.
        LoginRequired, TokenError: the token could not be refreshed.
    """
    try:
        conn, extensions = await _open(settings)
        try:
            conn, extensions, mechanism = await _authenticate(conn, extensions, settings, gate)
        except BaseException:
            conn.close()
            raise
    except OAuthSMTPError:
        raise
    except Exception as exc:  # a defect must not leave the public API as a foreign error
        raise SMTPError(
            f"unexpected failure while connecting to {settings.host}:{settings.port}: "
            f"{type(exc).__name__}: {exc}"
        ) from exc
    channel.conn, channel.extensions, channel.mechanism = conn, extensions, mechanism
    logger.debug("session ready: %s:%d (AUTH %s)", settings.host, settings.port, mechanism)


def _context(settings: SessionSettings) -> ssl.SSLContext:
    return settings.ssl_context if settings.ssl_context is not None else tls_context()


async def _open(settings: SessionSettings) -> tuple[AsyncConnection, dict[str, str]]:
    host, port = settings.host, settings.port
    tls = _context(settings) if settings.security == "ssl" else None
    conn = await AsyncConnection.open(settings.address, port, timeout=settings.timeout, tls=tls)
    try:
        if probes_for_tls(settings.security, port):
            patience = greeting_patience(settings.timeout)
            if not await conn.wait_for_data(patience) and await asyncio.to_thread(
                speaks_tls, host, port, timeout=patience
            ):
                raise implicit_tls_port(host, port)
        try:
            greeting = await conn.read_reply()
        except SMTPTimeoutError as exc:
            raise no_greeting(host, port, settings.timeout, settings.security) from exc
        if greeting.code != 220:
            raise refused_greeting(host, greeting)
        conn.greeting = greeting.text
        extensions = await _ehlo(conn, settings)
        if settings.security == "starttls":
            if "STARTTLS" not in extensions:
                raise no_starttls(host, port)
            await conn.write(b"STARTTLS\r\n", ["STARTTLS"])
            reply = await conn.read_reply()
            if reply.code != 220:
                raise refused_starttls(host, reply)
            await conn.starttls(_context(settings), host, port)
            extensions = await _ehlo(conn, settings)  # RFC 3207 §4.2: forget the pre-TLS answer
        elif (
            settings.security == "none" and _has_credentials(settings) and not conn.peer_is_loopback
        ):
            raise plain_text_credentials()
    except BaseException:
        conn.close()
        raise
    return conn, extensions


def _has_credentials(settings: SessionSettings) -> bool:
    return settings.token is not None or settings.password is not None


async def _ehlo(conn: AsyncConnection, settings: SessionSettings) -> dict[str, str]:
    name = settings.local_hostname or address_literal(conn.local_address)
    await conn.write(command("EHLO", name), [f"EHLO {name}"])
    reply = await conn.read_reply()
    if reply.code == 250:
        return parse_ehlo(reply)
    if settings.security == "none" and not _has_credentials(settings):
        await conn.write(command("HELO", name), [f"HELO {name}"])
        helo = await conn.read_reply()
        if helo.code == 250:
            return {}
        reply = helo
    raise refused_ehlo(settings.host, reply)


# -- AUTH ---------------------------------------------------------------------------------
async def _authenticate(
    conn: AsyncConnection,
    extensions: dict[str, str],
    settings: SessionSettings,
    gate: TokenGate | None,
) -> tuple[AsyncConnection, dict[str, str], str | None]:
    """The asyncio form of :func:`oauthsmtp._smtp.auth.authenticate` (same rules)."""
    host, port, username = settings.host, settings.port, settings.username
    if gate is None and settings.password is None:
        return conn, extensions, None
    assert username is not None  # noqa: S101 - check_settings requires it with credentials
    offered = extensions.get("AUTH", "")
    forced = settings.mechanism
    if gate is None:
        assert settings.password is not None  # noqa: S101
        name = choose_mechanism(offered, forced=forced, oauth=False, host=host)
        await _run(conn, password_exchange(name, username, settings.password, host=host))
        return conn, extensions, name

    name = choose_mechanism(offered, forced=forced, oauth=True, host=host)
    access = await gate.read()
    try:
        await _run(conn, oauth_exchange(name, username, access, host, port, retried=False))
        return conn, extensions, name
    except SMTPAuthError as exc:
        if not exc.retryable:
            raise
        logger.info("AUTH %s refused (%s); refreshing the token once and retrying", name, exc.code)
    await gate.refresh(access)
    if not conn.closed:
        try:
            access = await gate.read()
            await _run(conn, oauth_exchange(name, username, access, host, port, retried=True))
            return conn, extensions, name
        except SMTPConnectionError:
            logger.info("the server closed the connection after the refusal; reconnecting")
    new_conn, new_extensions = await _open(settings)
    try:
        name = choose_mechanism(
            new_extensions.get("AUTH", ""), forced=forced, oauth=True, host=host
        )
        access = await gate.read()
        await _run(new_conn, oauth_exchange(name, username, access, host, port, retried=True))
    except BaseException:
        new_conn.close()
        raise
    conn.close()
    return new_conn, new_extensions, name


async def _run(conn: AsyncConnection, exchange: SASLExchange) -> None:
    await conn.write(*exchange.opening())
    while True:
        reply = await conn.read_reply(mask=True)
        try:
            following = exchange.step(reply)
        except SMTPAuthError:
            if exchange.abandoned:
                conn.close()
            raise
        if following is None:
            return
        await conn.write(*following)


# -- transactions -------------------------------------------------------------------------
async def transact(
    conn: AsyncConnection,
    extensions: Mapping[str, str],
    queue: JobQueue,
    lane: Lane,
    admit: AsyncAdmit | None = None,
) -> None:
    """Send jobs from ``queue`` on ``conn`` until the queue is empty.

    The asyncio form of :func:`oauthsmtp._smtp.transact.transact` (same contract);
    ``admit`` stands for the lane's own ``admit`` (which must be None) and is awaited.

    Raises:
        ConnectionLost: a timeout, a drop, a ``421``, a ``432 4.3.2`` or a malformed reply;
            the connection is closed and ``lane.inflight`` holds the jobs under way.
    """
    try:
        if "PIPELINING" in extensions:
            await _pipelined(conn, extensions, queue, lane, admit)
        else:
            await _lockstep(conn, extensions, queue, lane, admit)
    except (SMTPTimeoutError, SMTPConnectionError) as exc:
        conn.close()
        raise ConnectionLost(exc) from exc
    except OAuthSMTPError as exc:
        conn.close()  # a malformed reply: the server's state is unknown
        raise ConnectionLost(exc) from exc
    except Exception as exc:  # a defect: the connection's state is unknown; ours to report
        conn.close()
        error = SMTPError(f"sending failed unexpectedly: {type(exc).__name__}: {exc}")
        raise ConnectionLost(error) from exc


async def _take(
    lane: Lane, queue: JobQueue, ext: Mapping[str, str], admit: AsyncAdmit | None
) -> Job | None:
    """:meth:`Lane.take`, with ``admit`` awaited."""
    if admit is None:
        return lane.take(queue, ext)
    while (job := lane.candidate(queue, ext)) is not None:
        try:
            verdict = await admit(job, bool(lane.inflight))
        except BaseException:
            queue.give_back([job])  # cancelled while waiting: not lost
            raise
        if lane.place(job, verdict, queue):
            return job if verdict is True else None
    return None


async def _pipelined(
    conn: AsyncConnection,
    ext: Mapping[str, str],
    queue: JobQueue,
    lane: Lane,
    admit: AsyncAdmit | None,
) -> None:
    job = await _take(lane, queue, ext, admit)
    if job is None:
        return
    assert job.outgoing is not None  # noqa: S101
    await conn.write(*envelope(job.outgoing, ext))
    while True:
        out = job.outgoing
        assert out is not None  # noqa: S101
        mail = await _read(conn)
        lane.mail_answered(job)
        rcpts = [await _read(conn) for _ in out.recipients]
        data_reply = await _read(conn)
        nxt = await _take(lane, queue, ext, admit)
        following, follow_log = (
            envelope(nxt.outgoing, ext) if nxt is not None and nxt.outgoing else (b"", [])
        )
        buffers, log, body = after_envelope(out, mail, rcpts, data_reply, following, follow_log)
        if body:
            job.body_sent = True
            await conn.write(buffers, log)
            end = await _read_end(conn, job)
            lane.finish(job, outcome(out, mail, rcpts, data_reply, end))
        else:
            # Final before RSET: a drop now must not send it again.
            lane.finish(job, outcome(out, mail, rcpts, data_reply, None))
            await conn.write(buffers, log)
            reset = await _read(conn)
            if reset.code != 250:
                raise SMTPError(f"RSET refused: {reset}", code=reset.code)
        if nxt is None:
            return
        job = nxt


async def _lockstep(
    conn: AsyncConnection,
    ext: Mapping[str, str],
    queue: JobQueue,
    lane: Lane,
    admit: AsyncAdmit | None,
) -> None:
    while (job := await _take(lane, queue, ext, admit)) is not None:
        out = job.outgoing
        assert out is not None  # noqa: S101
        mail = await _call(conn, mail_command(out, ext))
        lane.mail_answered(job)
        rcpts: list[Reply] = []
        if mail.code < 300:
            rcpts = [await _call(conn, rcpt_to(r, utf8=out.smtputf8)) for r in out.recipients]
        data_reply = await _call(conn, b"DATA\r\n") if any(r.code < 300 for r in rcpts) else None
        if data_reply is not None and data_reply.code == 354:
            job.body_sent = True
            chunks, size = body_chunks(out)
            await conn.write(chunks, [f"[message, {size} bytes]"])
            end = await _read_end(conn, job)
            lane.finish(job, outcome(out, mail, rcpts, data_reply, end))
        else:
            lane.finish(job, outcome(out, mail, rcpts, data_reply, None))
            await _call(conn, b"RSET\r\n")


async def _call(conn: AsyncConnection, line: bytes) -> Reply:
    await conn.write(line, [line.decode("utf-8").rstrip()])
    return await _read(conn)


async def _read_end(conn: AsyncConnection, job: Job) -> Reply:
    """The end-of-data reply; a 421 or 432 refused the message: it may be sent again."""
    reply = await conn.read_reply()
    if reply.code == 421 or is_connection_limit(reply.code, reply.text):
        job.body_sent = False  # not accepted (RFC 5321 §4.1.1.4): resend on a new connection
    return _closing(conn, reply)


async def _read(conn: AsyncConnection) -> Reply:
    return _closing(conn, await conn.read_reply())


def _closing(conn: AsyncConnection, reply: Reply) -> Reply:
    if reply.code == 421 or is_connection_limit(reply.code, reply.text):
        conn.close()  # RFC 5321 §3.8, or one connection too many
        what = "is closing the connection" if reply.code == 421 else "refuses this connection"
        raise SMTPConnectionError(
            f"the server {what}: {reply}", code=reply.code, server_message=reply.text
        )
    return reply
