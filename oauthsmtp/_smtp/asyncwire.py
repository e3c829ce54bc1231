"""One SMTP connection on an asyncio event loop: the asyncio twin of :class:`~.wire.Connection`.

:class:`AsyncConnection` has the blocking connection's contract (the same replies, caps,
errors and log lines) with ``await``: every wait is bounded by the timeout (connecting,
the TLS handshake, each complete reply, each write: ``timeout`` plus one second per
:data:`~oauthsmtp._smtp.wire.MIN_WRITE_RATE` octets). Replies are parsed by the same
:class:`~oauthsmtp._smtp.wire.ReplyParser`; the errors say the same things, built by the
same functions (:func:`~oauthsmtp._smtp.wire.connect_error`,
:func:`~oauthsmtp._smtp.wire.tls_error`). STARTTLS upgrades the same transport with
``loop.start_tls`` (RFC 3207 §4) and refuses to go on when the server sent anything after
its ``220`` (the client-side form of CVE-2011-0411).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import socket
import ssl
import weakref
from collections import deque
from collections.abc import Iterable, Sequence

from oauthsmtp._errors import SMTPError
from oauthsmtp._util.net import peer_is_loopback

from .wire import (
    MIN_WRITE_RATE,
    SEND_BLOCK,
    Buffer,
    Reply,
    ReplyParser,
    SMTPConnectionError,
    SMTPTimeoutError,
    buffers_and_size,
    coalesce,
    connect_error,
    tls_error,
)

__all__ = ["AsyncConnection"]

logger = logging.getLogger("oauthsmtp.smtp")

_CLOSE_PATIENCE = 5.0

_LIVE: weakref.WeakSet[_Receiver] = weakref.WeakSet()
"""Connections whose transport has not reported ``connection_lost`` yet."""


async def settle_closed(timeout: float = 1.0) -> None:
    """Wait (at most ``timeout``) until every connection already closing on this loop is gone.

    ``close()``/``abort()`` finish on a later turn of the event loop; a loop that ends
    first (``asyncio.run`` returning) leaves the socket open until garbage collection.
    """
    loop = asyncio.get_running_loop()
    pending = [
        r._closed
        for r in list(_LIVE)
        if r._closed is not None
        and r._closed.get_loop() is loop
        and not r._closed.done()
        and r.transport is not None
        and r.transport.is_closing()
    ]
    if pending:
        with contextlib.suppress(asyncio.TimeoutError):
            await asyncio.wait_for(asyncio.gather(*pending), timeout)


class _Receiver(asyncio.Protocol):
    """Feeds what the server sends to a ReplyParser and wakes the reader; tracks write flow."""

    def __init__(self) -> None:
        self.parser = ReplyParser()
        self.replies: deque[Reply] = deque()
        self.error: SMTPError | None = None
        self.lost = False
        self.transport: asyncio.Transport | None = None
        self._wake: asyncio.Future[None] | None = None
        self._paused = False
        self._drained: asyncio.Future[None] | None = None
        self._closed: asyncio.Future[None] | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)  # noqa: S101 - a stream transport
        self.transport = transport
        self._closed = asyncio.get_running_loop().create_future()
        _LIVE.add(self)

    def data_received(self, data: bytes) -> None:
        try:
            self.replies.extend(self.parser.feed(data))
        except SMTPError as exc:  # malformed or over a cap: the connection is done
            self.error = exc
            if self.transport is not None:
                self.transport.abort()
        self._notify()

    def eof_received(self) -> bool:
        self.lost = True
        self._notify()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self.lost = True
        self._notify()
        _LIVE.discard(self)
        if self._closed is not None and not self._closed.done():
            self._closed.set_result(None)
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    @property
    def paused(self) -> bool:
        """True while the transport asks its writer to wait."""
        return self._paused

    def pause_writing(self) -> None:
        self._paused = True

    def resume_writing(self) -> None:
        self._paused = False
        if self._drained is not None and not self._drained.done():
            self._drained.set_result(None)

    def _notify(self) -> None:
        if self._wake is not None and not self._wake.done():
            self._wake.set_result(None)

    async def data(self) -> None:
        """Wait until something arrives (or the connection ends)."""
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None

    async def drain(self) -> None:
        """Wait until the transport's write buffer is below its high-water mark."""
        while self._paused and not self.lost:
            self._drained = asyncio.get_running_loop().create_future()
            try:
                await self._drained
            finally:
                self._drained = None


class AsyncConnection:
    """One SMTP connection on the running event loop.

    Use :meth:`open`; the attributes mirror :class:`~oauthsmtp._smtp.wire.Connection`.

    Attributes:
        timeout: seconds allowed for each write and each complete reply.
        closed: True once the connection was closed (by either side).
        peer_is_loopback: the server's address is a loopback address.
        local_address: the local IP address (for the EHLO address literal).
    """

    def __init__(self, transport: asyncio.Transport, receiver: _Receiver, *, timeout: float):
        self._transport = transport
        self._receiver = receiver
        self.timeout = timeout
        self.closed = False
        peer = transport.get_extra_info("peername")
        sockname = transport.get_extra_info("sockname")
        self.peer_is_loopback = peer is not None and peer_is_loopback(peer)
        self.local_address: str = sockname[0] if sockname else "127.0.0.1"
        self.greeting: str = ""  # the text of the server's 220, once read

    @property
    def tls_version(self) -> str | None:
        """The TLS protocol version (e.g. ``"TLSv1.3"``), or None without TLS."""
        tls = self._transport.get_extra_info("ssl_object")
        return tls.version() if isinstance(tls, ssl.SSLObject) else None

    @property
    def peer_certificate(self) -> dict[str, object] | None:
        """The server's verified certificate (:meth:`ssl.SSLObject.getpeercert`), or None."""
        tls = self._transport.get_extra_info("ssl_object")
        if not isinstance(tls, ssl.SSLObject):
            return None
        try:
            return dict(tls.getpeercert() or {}) or None
        except (ValueError, OSError):
            return None

    @classmethod
    async def open(
        cls, host: str, port: int, *, timeout: float, tls: ssl.SSLContext | None = None
    ) -> AsyncConnection:
        """Connect to ``host:port``; with ``tls``, start implicit TLS (RFC 8314 §3.3).

        Raises:
            SMTPTimeoutError: connecting or the TLS handshake took too long.
            SMTPConnectionError: the host cannot be resolved or reached.
            SMTPError: the TLS handshake failed (a certificate that does not verify, ...).
        """
        loop = asyncio.get_running_loop()
        name = host.strip("[]")
        receiver = _Receiver()
        try:
            transport, _ = await asyncio.wait_for(
                loop.create_connection(lambda: receiver, name, port), timeout
            )
        except (OSError, UnicodeError, asyncio.TimeoutError) as exc:
            error = TimeoutError() if isinstance(exc, asyncio.TimeoutError) else exc
            raise connect_error(error, host, port, timeout) from exc
        sock = transport.get_extra_info("socket")
        if sock is not None:  # writes are coalesced already: Nagle could only delay them
            with contextlib.suppress(OSError):
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn = cls(transport, receiver, timeout=timeout)
        if tls is not None:
            await conn._upgrade(tls, host, port)
        return conn

    async def wait_for_data(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the server to send something; nothing is consumed.

        Returns:
            True when data (or the end of the connection) arrived, False on silence.
        """
        try:
            await asyncio.wait_for(self._wait_data(), seconds)
        except asyncio.TimeoutError:
            return False
        return True

    async def _wait_data(self) -> None:
        # The check runs in the waiting task itself, so data that arrives before the task
        # starts is not missed.
        receiver = self._receiver
        while not (receiver.replies or receiver.parser.pending or receiver.lost or receiver.error):
            await receiver.data()

    async def starttls(self, context: ssl.SSLContext, host: str, port: int) -> None:
        """Start TLS after the server's ``220`` to STARTTLS (RFC 3207 §4).

        Raises:
            SMTPError: the server sent bytes after its ``220`` (they would be read as if
                protected; CVE-2011-0411), or the handshake failed.
        """
        if self._receiver.parser.pending or self._receiver.replies:
            self.close()
            raise SMTPError(
                "the server sent data after its STARTTLS reply (possible injection, "
                "CVE-2011-0411); connection closed"
            )
        await self._upgrade(context, host, port)
        self._receiver.parser = ReplyParser()

    async def _upgrade(self, context: ssl.SSLContext, host: str, port: int) -> None:
        loop = asyncio.get_running_loop()
        try:
            transport = await asyncio.wait_for(
                loop.start_tls(
                    self._transport,
                    self._receiver,
                    context,
                    server_hostname=host.strip("[]"),
                    ssl_handshake_timeout=self.timeout,
                ),
                self.timeout,
            )
        except (OSError, asyncio.TimeoutError) as exc:
            self.close()
            error = TimeoutError() if isinstance(exc, asyncio.TimeoutError) else exc
            raise tls_error(error, host, port) from exc
        except Exception as exc:  # e.g. RuntimeError on a transport closed meanwhile
            self.close()
            raise SMTPConnectionError(
                f"the connection to {host}:{port} was lost during the TLS handshake: {exc}"
            ) from exc
        if transport is None:  # pragma: no cover - the loop closed the transport
            self.close()
            raise SMTPConnectionError(f"the connection to {host}:{port} was lost")
        self._transport = transport
        self._receiver.transport = transport

    async def write(self, data: bytes | Iterable[Buffer], log: Sequence[str]) -> None:
        """Send ``data`` (bytes, or buffers sent in turn); ``log`` is what DEBUG shows.

        Large buffers are handed to the transport :data:`~.wire.SEND_BLOCK` octets at a
        time, waiting while it holds more than its high-water mark, so the transport never
        buffers a copy of a whole message; ``data`` may be :class:`~.wire.Blocks`, made
        while they are sent. The whole write may take the timeout plus one second per
        :data:`~oauthsmtp._smtp.wire.MIN_WRITE_RATE` octets.

        Raises:
            SMTPTimeoutError, SMTPConnectionError: the connection is then closed.
        """
        if self.closed or self._gone():
            self.close()
            raise SMTPConnectionError("the connection is closed")
        if logger.isEnabledFor(logging.DEBUG):
            for line in log:
                logger.debug("C: %s", line)
        buffers, size = buffers_and_size(data)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + self.timeout + size / MIN_WRITE_RATE
        for buffer in coalesce(buffers):
            view = memoryview(buffer)
            for start in range(0, len(view), SEND_BLOCK):
                if self._gone():
                    return  # reported by the next read, as with a socket
                self._transport.write(view[start : start + SEND_BLOCK])
                if self._receiver.paused:  # the transport holds more than its high-water mark
                    await self._drain(deadline - loop.time())
        # A connection lost meanwhile is reported by the next read, as with a socket.

    async def _drain(self, remaining: float) -> None:
        try:
            await asyncio.wait_for(self._receiver.drain(), max(remaining, 0.0))
        except asyncio.TimeoutError as exc:
            self.close()
            raise SMTPTimeoutError(
                f"sending to the server timed out (timeout={self.timeout} s; the server "
                "stopped reading, or reads too slowly)"
            ) from exc

    async def read_reply(self, *, mask: bool = False) -> Reply:
        """Return the next reply; the whole reply must arrive within the timeout.

        Args:
            mask: log the text of a ``334`` reply (a SASL challenge) as ``[masked]``.

        Raises:
            SMTPTimeoutError, SMTPConnectionError: the connection is then closed.
            SMTPError: the reply is malformed or over a cap; the connection is then closed.
        """
        receiver = self._receiver
        if not receiver.replies:
            try:
                await asyncio.wait_for(self._wait_reply(), self.timeout)
            except asyncio.TimeoutError as exc:
                self.close()
                raise SMTPTimeoutError(
                    f"no complete reply from the server within {self.timeout} s"
                ) from exc
        reply = receiver.replies.popleft()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("S: %s", "334 [masked]" if mask and reply.code == 334 else reply)
        return reply

    async def _wait_reply(self) -> None:
        receiver = self._receiver
        while not receiver.replies:
            if receiver.error is not None:
                self.close()
                raise receiver.error
            if self.closed:
                raise SMTPConnectionError("the connection is closed")
            if receiver.lost:
                self.close()
                raise SMTPConnectionError("the server closed the connection")
            await receiver.data()

    def _gone(self) -> bool:
        return self._receiver.lost

    def close(self) -> None:
        """Close the transport at once (idempotent)."""
        self.closed = True
        if not self._transport.is_closing():  # some Pythons fail a second abort()
            self._transport.abort()

    async def quit(self) -> None:
        """Say QUIT and close, politely but within a few seconds; never raises."""
        if self.closed:
            return
        patience = min(self.timeout, _CLOSE_PATIENCE)
        try:
            self._transport.write(b"QUIT\r\n")
            logger.debug("C: QUIT")
            await asyncio.wait_for(self._wait_reply(), patience)
        except (SMTPError, asyncio.TimeoutError, OSError):
            pass
        self.closed = True
        if not self._transport.is_closing():
            self._transport.close()
