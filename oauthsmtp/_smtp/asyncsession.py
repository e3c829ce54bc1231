"""AsyncSMTPSession: SMTPSession for asyncio programs (FastAPI, aiohttp, ...).

The same constructor arguments and checks (:func:`~oauthsmtp._smtp.settings.check_settings`),
the same TLS rules, AUTH, pipelining and results as :class:`~oauthsmtp.SMTPSession`
(:mod:`oauthsmtp._smtp.asyncprotocol`), on the running event loop:

* every ``send()`` and ``send_many()`` puts its messages on one queue; up to
  ``connections`` worker tasks, each owning one connection, take messages from it as
  they are ready for one. Many concurrent ``send()`` calls therefore share the open
  connections and are pipelined together (RFC 2920): no thread and no connection per
  message;
* a connection lost mid-batch is reopened and the batch carries on: a message whose
  body was sent but whose end-of-data reply never came is ``"unknown"`` and not sent
  again; two connections in a row without progress give up;
* with ``limits=``, connections and messages draw on the mailbox's budget exactly as
  :class:`~oauthsmtp.SMTPSession`'s do (the same budget objects, so blocking and asyncio
  sessions of one mailbox share it; :mod:`oauthsmtp._smtp.asynclimited`), waiting on the
  loop (``asyncio.sleep``) or, where the budget itself waits or talks to Redis, in a
  worker thread;
* the token is read and refreshed in a worker thread (``asyncio.to_thread``), since
  :meth:`AuthToken.refresh` blocks; it is single-flight across threads and processes, so
  blocking and asyncio sessions sharing one token refresh it once.

Nothing but oauthsmtp's own errors leaves the session, and ``send_many`` returns one
:class:`SendResult` per message, in order.
"""

from __future__ import annotations

import asyncio
import logging
import ssl
from collections.abc import Iterable, Mapping
from email.message import Message
from types import MappingProxyType

from oauthsmtp._errors import ConfigurationError, OAuthSMTPError, SMTPError
from oauthsmtp._limits.budget import LimitReached
from oauthsmtp._limits.rules import SendLimits
from oauthsmtp._message.prepare import Email, OutgoingMessage

from .asynclimited import AsyncLimiter
from .asyncprotocol import AsyncChannel, TokenGate, open_channel, transact
from .asyncwire import settle_closed
from .auth import TokenSource
from .batch import check_messages, prepare_job, settle
from .connect import Security
from .limited import limiter_for
from .options import check_connections
from .pool import NoFreeSlot
from .settings import check_settings
from .transact import (
    ConnectionLost,
    Job,
    JobQueue,
    Lane,
    SendResult,
    deferred,
    failed,
    is_connection_limit,
)
from .verify import VerifyResult, check_rset, describe

__all__ = ["AsyncSMTPSession"]

logger = logging.getLogger("oauthsmtp.smtp")


class AsyncSMTPSession:
    """An SMTP session for asyncio: ``async with``, ``await send()``, ``await send_many()``.

    Args:
        host, port, security, username, auth_token, password, mechanism, timeout,
        ssl_context, local_hostname, connections, limits, limits_store: as for
            :class:`~oauthsmtp.SMTPSession` (checked the same way). ``timeout`` bounds every
            wait: connecting, the TLS handshake, each reply, each write. With ``limits``,
            waiting for a connection or message slot never blocks the event loop, and the
            budget is the one blocking sessions of the same mailbox and store use
            (docs/limits.md).

    The session belongs to the event loop it is used on until :meth:`close`; it is not
    thread-safe (use it from its loop only). ``SMTPSession``'s ``asynchronous=`` and
    ``submit()`` have no counterpart: ``asyncio.create_task(session.send(msg))`` is the
    asyncio form.

    Raises:
        ConfigurationError: a malformed or inconsistent option, before any connection.
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: Security = "starttls",
        username: str | None = None,
        auth_token: TokenSource | None = None,
        password: str | None = None,
        mechanism: str | None = None,
        timeout: float = 60,
        ssl_context: ssl.SSLContext | None = None,
        local_hostname: str | None = None,
        connections: int = 1,
        limits: SendLimits | None = None,
        limits_store: object | None = None,
    ) -> None:
        self._settings = check_settings(
            host,
            port,
            security=security,
            username=username,
            auth_token=auth_token,
            password=password,
            mechanism=mechanism,
            timeout=timeout,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
        )
        self.connections = check_connections(connections)
        limiter = limiter_for(limits, limits_store, self._settings)
        self._limiter = None if limiter is None else AsyncLimiter(limiter)
        self._channels: list[AsyncChannel] = []
        self._queue = JobQueue()
        self._waiters: dict[Job, asyncio.Future[SendResult]] = {}
        self._workers: dict[int, asyncio.Task[None]] = {}
        self._loop: asyncio.AbstractEventLoop | None = None
        self._gate: TokenGate | None = None
        self._first: asyncio.Lock | None = None
        self._authenticated = False
        self._first_error: OAuthSMTPError | None = None
        self._accepted: int | None = None  # connections the server accepted, once it refused one

    # -- settings -------------------------------------------------------------------------
    @property
    def host(self) -> str:
        """The server, as given."""
        return self._settings.host

    @property
    def port(self) -> int:
        """The server's port."""
        return self._settings.port

    @property
    def security(self) -> Security:
        """``"starttls"``, ``"ssl"`` or ``"none"``."""
        return self._settings.security

    @property
    def timeout(self) -> float:
        """Seconds allowed for connecting, for each write and for each reply."""
        return self._settings.timeout

    @property
    def username(self) -> str | None:
        """The SASL user, or None without credentials."""
        return self._settings.username

    @property
    def mechanism(self) -> str | None:
        """The forced SASL mechanism, upper case, or None (chosen from EHLO)."""
        return self._settings.mechanism

    @property
    def local_hostname(self) -> str | None:
        """The EHLO name, or None for the local address literal."""
        return self._settings.local_hostname

    @property
    def limits(self) -> SendLimits | None:
        """The sending limits this session keeps, or None."""
        return None if self._limiter is None else self._limiter.limiter.limits

    # -- state ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still have been dropped by the server)."""
        return any(channel.connected for channel in self._channels)

    @property
    def open_connections(self) -> int:
        """How many connections are open now (at most ``connections``)."""
        return sum(channel.connected for channel in self._channels)

    @property
    def extensions(self) -> Mapping[str, str]:
        """The EHLO keywords of the first connection (after TLS), upper case."""
        return MappingProxyType(self._channels[0].extensions if self._channels else {})

    @property
    def auth_mechanism(self) -> str | None:
        """The SASL mechanism the first connection authenticated with, or None."""
        return self._channels[0].mechanism if self._channels else None

    # -- life cycle -----------------------------------------------------------------------
    async def start(self) -> AsyncSMTPSession:
        """Connect, secure and authenticate one connection now; returns self.

        Raises:
            SMTPError: the server refused or failed (TLS, EHLO, STARTTLS, ...), with a hint;
                :class:`SMTPAuthError` when AUTH was refused.
            SMTPTimeoutError, SMTPConnectionError: the server did not answer or dropped.
            LoginRequired, TokenError: the token could not be refreshed.
        """
        self._bind()
        channel = self._channels[0]
        if not channel.connected and 0 not in self._workers:
            channel.drop()
            if not self._workers:
                self._first_error = None
            try:
                await self._connect(channel)
            except BaseException:
                if not self._workers and not self.connected:
                    self._loop = None  # nothing runs: free to start again on any loop
                raise
        return self

    async def close(self) -> None:
        """Wait for the queued messages, then QUIT and close every connection.

        Idempotent; the session can be started again afterwards (on any loop).
        """
        if self._loop is None:
            return
        if self._loop.is_closed():  # its loop ended (asyncio.run returned): nothing to say
            self._forget()
            return
        self._bind()
        while self._workers:
            await asyncio.gather(*self._workers.values(), return_exceptions=True)
        channels, self._channels = self._channels, []
        for channel in channels:
            if channel.conn is not None:
                await channel.conn.quit()
            channel.drop()
        await settle_closed()  # closed transports finish on a later turn of the loop
        self._forget()

    def _forget(self) -> None:
        """Unbind from the loop; connections of a closed loop are dead and just dropped."""
        for channel in self._channels:
            channel.conn = None  # died with its loop: not closed there
            channel.drop()  # gives its budget slot back
        self._channels = []
        self._workers.clear()
        self._waiters.clear()
        self._queue = JobQueue()
        self._loop = None
        self._gate = None
        self._first = None

    async def __aenter__(self) -> AsyncSMTPSession:
        return await self.start()

    async def __aexit__(self, *exc_info: object) -> None:
        await self.close()

    async def verify(self) -> VerifyResult:
        """Check the settings without sending: connect, TLS, EHLO, AUTH, RSET, QUIT.

        The asyncio form of :meth:`SMTPSession.verify() <oauthsmtp.SMTPSession.verify>`:
        one connection of its own, opened exactly as sending would open one (the token is
        refreshed if it must be), reset and closed; no MAIL command is ever sent and the
        session's own connections are left as they are.

        Returns:
            A :class:`~oauthsmtp.VerifyResult`: greeting, extensions, SASL mechanism, SIZE,
            TLS version and the server certificate's subject and issuer.

        Raises:
            The errors :meth:`start` raises; SMTPError when RSET is refused.
        """
        self._bind()
        channel = AsyncChannel()
        try:
            await self._open(channel)  # outside the sending budget, as SMTPSession.verify
            conn = channel.conn
            assert conn is not None  # noqa: S101 - _connect sets it or raises
            await conn.write(b"RSET\r\n", ["RSET"])
            check_rset(await conn.read_reply(), host=self.host)
            return describe(
                conn,
                host=self.host,
                port=self.port,
                security=self.security,
                extensions=channel.extensions,
                mechanism=channel.mechanism,
            )
        except OAuthSMTPError:
            raise
        except Exception as exc:  # as send(): only oauthsmtp's errors come out
            raise SMTPError(f"verifying failed unexpectedly: {type(exc).__name__}: {exc}") from exc
        finally:
            if channel.conn is not None:
                await channel.conn.quit()
            channel.drop()
            if not self._workers and not self.connected:
                await settle_closed()

    # -- sending --------------------------------------------------------------------------
    async def send(self, message: Email | Message | OutgoingMessage) -> SendResult:
        """Send one message and return its result.

        Concurrent calls share the session's connections: their messages go out pipelined
        over up to ``connections`` connections, in the order the calls were made.
        Cancelling the call does not withdraw a message already handed to a connection.

        Returns:
            The :class:`SendResult`; a message the server refuses is a ``"failed"``
            result, not an exception.

        Raises:
            ConfigurationError: the message is malformed, before anything is sent.
            SMTPError, LoginRequired, TokenError: the session could not be (re)established.
        """
        job = prepare_job(message)
        if job.error is not None:
            raise job.error
        (waiter,) = self._enqueue([job])
        return await waiter

    async def send_many(self, messages: Iterable[Email | Message]) -> list[SendResult]:
        """Send messages, pipelined when the server allows it; one result per message, in order.

        One bad message does not stop the batch: a malformed one gets a ``"failed"`` result
        without reaching the server, a refused one the server's code and text.

        Raises:
            ConfigurationError: ``messages`` is not an iterable of messages.
            SMTPError, LoginRequired, TokenError: only when the session could not be
                established before any message of the batch got an answer (nothing was
                sent); after that, the messages left are ``"failed"`` (or ``"unknown"``).
        """
        jobs = [prepare_job(m) for m in check_messages(messages)]
        waiters = self._enqueue([job for job in jobs if job.error is None])
        answers = await asyncio.gather(*waiters, return_exceptions=True)
        errors = [answer for answer in answers if isinstance(answer, BaseException)]
        if errors:
            error = errors[0]
            if not isinstance(error, OAuthSMTPError):  # pragma: no cover - workers send ours
                raise error
            settle(jobs, error)
        return [job.result or failed("not sent") for job in jobs]

    def __repr__(self) -> str:
        settings = self._settings
        auth = "token" if settings.token else "password" if settings.password else None
        return (
            f"AsyncSMTPSession(host={self.host!r}, port={self.port}, "
            f"security={self.security!r}, username={self.username!r}, auth={auth!r}, "
            f"connected={self.connected})"
        )

    # -- internals ------------------------------------------------------------------------
    def _bind(self) -> None:
        """Tie the session to the running loop (until close)."""
        loop = asyncio.get_running_loop()
        if self._loop is not None and self._loop is not loop and self._loop.is_closed():
            self._forget()  # the previous loop ended without close(): its connections died
        if self._loop is None:
            self._loop = loop
            self._channels = [AsyncChannel() for _ in range(self.connections)]
            token = self._settings.token
            self._gate = TokenGate(token) if token is not None else None
            self._first = asyncio.Lock()
            self._authenticated = False
        elif self._loop is not loop:
            raise ConfigurationError(
                "this AsyncSMTPSession is in use on another event loop; close() it there "
                "first, or make one session per event loop"
            )

    def _enqueue(self, jobs: list[Job]) -> list[asyncio.Future[SendResult]]:
        self._bind()
        assert self._loop is not None  # noqa: S101 - _bind sets it
        waiters = [self._loop.create_future() for _ in jobs]
        self._waiters.update(zip(jobs, waiters, strict=True))
        self._queue.put(jobs)
        self._kick()
        return waiters

    def _kick(self) -> None:
        """Start workers on idle channels while messages wait: connected channels first."""
        idle = [i for i in range(len(self._channels)) if i not in self._workers]
        idle.sort(key=lambda i: not self._channels[i].connected)
        width = self.connections if self._accepted is None else self._accepted
        if self._limiter is not None:
            width = self._limiter.limiter.width(width)
        if not self._workers:
            self._first_error = None  # a new round: an earlier refusal is tried again
        for index in idle:
            if len(self._queue) <= len(self._workers) or len(self._workers) >= width:
                break
            self._workers[index] = asyncio.ensure_future(self._work(index))

    async def _connect(self, channel: AsyncChannel) -> None:
        """Open a channel (with limits: once it holds a connection slot)."""
        if self._limiter is None:
            await self._open(channel)
            return
        for other in self._channels:
            if other.conn is not None and other.conn.closed:
                other.drop()  # lost: its slot goes back before this one asks for one
        await self._limiter.connect(channel, lambda: self._open(channel))

    async def _open(self, channel: AsyncChannel) -> None:
        """Open a channel; the first AUTH of the session goes alone (one refresh, one error)."""
        assert self._first is not None  # noqa: S101 - _bind sets it
        if self._gate is not None and not self._authenticated:
            async with self._first:
                if self._first_error is not None:  # refused just now: not once per connection
                    raise self._first_error
                if not self._authenticated:
                    try:
                        await open_channel(channel, self._settings, self._gate)
                    except OAuthSMTPError as exc:
                        self._first_error = exc
                        raise
                    self._authenticated = True
                    return
        await open_channel(channel, self._settings, self._gate)

    def _resolve(self, job: Job) -> None:
        waiter = self._waiters.pop(job, None)
        if waiter is not None and not waiter.done() and job.result is not None:
            waiter.set_result(job.result)

    def _fail_waiting(self, error: OAuthSMTPError) -> None:
        """Fail every job still queued (no connection is left to send it)."""
        self._first_error = None  # the next send() tries again
        while (job := self._queue.take()) is not None:
            if isinstance(error, LimitReached):  # no connection slot: not sent, for now
                job.result = deferred(str(error))
                self._resolve(job)
                continue
            waiter = self._waiters.pop(job, None)
            if waiter is not None and not waiter.done():
                waiter.set_exception(error)

    async def _work(self, index: int) -> None:
        """Send queued jobs on channel ``index`` until the queue is empty."""
        channel = self._channels[index]
        limiter = self._limiter
        if limiter is None:
            lane, admit = Lane(on_result=self._resolve), None
        else:
            hooks = limiter.limiter
            lane = Lane(on_result=self._resolve, retry=hooks.retry, answered=hooks.answered)
            admit = limiter.admit
        futile = 0
        try:
            while len(self._queue):
                if not channel.connected:
                    channel.drop()
                    await self._connect(channel)
                assert channel.conn is not None  # noqa: S101 - _connect sets it or raises
                before = lane.finished
                try:
                    await transact(channel.conn, channel.extensions, self._queue, lane, admit)
                except ConnectionLost as lost:
                    channel.drop()
                    lane.recover(self._queue)
                    futile = 0 if lane.finished > before else futile + 1
                    others = len(self._workers) > 1
                    if futile > 1 or (lost.limit and others):
                        raise lost.error from lost.error.__cause__
                    logger.info("connection to %s lost (%s); reconnecting", self.host, lost)
        except NoFreeSlot as exc:  # a further connection: the others send
            if len(self._workers) > 1:
                self._channels[index].drop()
                lane.recover(self._queue)
                del self._workers[index]
            else:  # the others stopped meanwhile: no slot for these messages now
                self._give_up(index, lane, LimitReached(f"not sent: {exc}; it may be sent later"))
        except OAuthSMTPError as exc:
            self._give_up(index, lane, exc)
        except Exception as exc:  # a defect must not lose the batch's results
            error = SMTPError(f"sending failed unexpectedly: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
            self._give_up(index, lane, error)
        except BaseException:  # cancelled: nothing is left waiting forever
            self._give_up(index, lane, SMTPError("sending was cancelled"))
            raise
        else:
            del self._workers[index]

    def _give_up(self, index: int, lane: Lane, error: OAuthSMTPError) -> None:
        """This channel stops; the last one fails what is still queued with ``error``."""
        self._channels[index].drop()
        lane.recover(self._queue)
        del self._workers[index]
        if self._workers:
            code, text = getattr(error, "code", None), getattr(error, "server_message", None)
            if is_connection_limit(code, text):
                self._accepted = len(self._workers)  # never open more than that again
            logger.info("a connection to %s gave up (%s); the others go on", self.host, error)
        else:
            self._fail_waiting(error)
