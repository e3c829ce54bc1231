"""The connections of a session, and a batch shared between several of them.

A session owns a :class:`Pool`: a list of :class:`Channel` objects, one per connection it
may open (``N``, the ``connections=`` setting), and never more: each channel holds at most
one connection at a time. The pool serializes its users (a lock), opens connections
through the session's connector, remembers how many connections the server accepts, and
hands a batch to :func:`deliver`:

* **One channel**: in the caller's thread, exactly as a single connection does: a drop
  reconnects and carries on, and two connections in a row without progress end the batch.
* **Several channels**: each runs in a thread (the first in the caller's; the others in a
  fixed set of threads the pool starts when first needed and keeps until it is closed)
  and takes the next message from a shared
  :class:`~oauthsmtp._smtp.transact.JobQueue` when it is ready for one, so fast and slow
  connections balance themselves; results stay on the jobs, in the caller's order. When
  no channel is connected yet, the first one authenticates before the others send AUTH
  (they connect and start TLS meanwhile), so a token that must be refreshed is refreshed
  once, and a refused token is reported once.
* **A connection limit** (``432 4.3.2``, see
  :func:`~oauthsmtp._smtp.transact.is_connection_limit`): the refused connection is
  closed and its messages go back to the queue for the others; the session is told how
  many connections the server did accept and never opens more from then on. A message
  the server refused that way is sent again; nothing is lost or sent twice.
"""

from __future__ import annotations

import contextlib
import logging
import threading
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import Executor, Future, ThreadPoolExecutor
from typing import Protocol

from oauthsmtp._errors import OAuthSMTPError, SMTPError

from .transact import ConnectionLost, Job, JobQueue, Lane, is_connection_limit, transact
from .wire import Connection

__all__ = [
    "Channel",
    "Connect",
    "Gate",
    "NoFreeSlot",
    "Pool",
    "close_then_release",
    "deliver",
    "quit_all",
]

logger = logging.getLogger("oauthsmtp.smtp")

_QUIT_TIMEOUT = 5.0

Gate = Callable[[], None]
"""Called between TLS and AUTH; raises to give up the connection."""

Connect = Callable[["Channel", "Gate | None"], None]
"""Opens, secures and authenticates a channel's connection (calling the gate before AUTH)."""


class NoFreeSlot(SMTPError):
    """A session's further connection found no free slot in the mailbox's budget now
    (sending limits): that channel sits this batch out, the others carry on."""


class Channel:
    """One connection slot of a session: the connection, its EHLO keywords and mechanism."""

    def __init__(self) -> None:
        self.conn: Connection | None = None
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

    def attach(self, conn: Connection, extensions: dict[str, str], mechanism: str | None) -> None:
        """Hold a new, authenticated connection."""
        self.conn, self.extensions, self.mechanism = conn, extensions, mechanism

    def drop(self) -> None:
        """Close the connection without QUIT (it failed, or its state is unknown)."""
        conn, self.conn = self.conn, None
        self.extensions, self.mechanism = {}, None
        release, self._release = self._release, None
        close_then_release(conn, release)


class _Closable(Protocol):
    def close(self) -> None: ...


def close_then_release(conn: _Closable | None, release: Callable[[], None] | None) -> None:
    """Close a dropped channel's connection, then give its budget slot back (``release``),
    even when closing fails; either may be None. Both sessions' channels use it."""
    try:
        if conn is not None:
            conn.close()
    finally:
        if release is not None:
            release()


def quit_all(channels: Sequence[Channel]) -> None:
    """Send QUIT on every open connection, then read the answers and close (RFC 5321 §4.1.1.10).

    The QUITs go out together, so closing N connections costs one round trip, not N.
    """
    sent: list[Connection] = []
    for channel in channels:
        conn = channel.conn
        if conn is None or conn.closed:
            channel.drop()
            continue
        try:
            conn.timeout = min(conn.timeout, _QUIT_TIMEOUT)
            conn.write(b"QUIT\r\n", ["QUIT"])
            sent.append(conn)
        except SMTPError:
            pass
    for conn in sent:
        with contextlib.suppress(SMTPError):
            conn.read_reply()
    for channel in channels:
        channel.drop()


class Pool:
    """The connections of one session: at most N open at once, reused across calls.

    Args:
        connect: opens, secures and authenticates a channel's connection.
        host: the server's name, for log messages.

    Starting, sending and closing take the pool's lock, so a batch, a ``send()`` and the
    background sender never use the connections at the same time.
    """

    def __init__(self, connect: Connect, *, host: str, lane: Callable[[], Lane] = Lane) -> None:
        self._connect = connect
        self._host = host
        self._lane = lane
        self._channels: list[Channel] = [Channel()]
        self._limit: int | None = None  # connections the server accepted when it refused more
        self._lock = threading.RLock()
        self._workers: ThreadPoolExecutor | None = None
        self._worker_count = 0

    @property
    def connected(self) -> bool:
        """True while a connection is open (the server may have dropped it meanwhile)."""
        return any(channel.connected for channel in self._channels)

    @property
    def open_connections(self) -> int:
        """How many connections are open now."""
        return sum(1 for channel in self._channels if channel.connected)

    @property
    def main(self) -> Channel:
        """The first connected channel (or the first channel)."""
        return next((c for c in self._channels if c.connected), self._channels[0])

    def start(self) -> None:
        """Open the first connection unless one is open.

        Raises:
            OAuthSMTPError: as the connector raises.
        """
        with self._lock:
            if not self.connected:
                self._connect(self._channels[0], None)

    def send(self, jobs: Iterable[Job], allowed: int) -> None:
        """Send every job that has a prepared message and no result, over up to ``allowed``
        connections (fewer when the server accepted fewer).

        ``jobs`` is read lazily, as connections are ready for the next message (a
        generator is not consumed ahead of the sending).

        Open connections beyond ``allowed`` are closed first (QUIT), so never more than
        that are open at once; the list of channels is replaced, never changed in place.

        Raises:
            OAuthSMTPError: the error that stopped the batch; some jobs may have results.
        """
        with self._lock:
            if self._limit is not None:
                allowed = min(allowed, self._limit)
            self._trim(allowed)
            queue = JobQueue(jobs)
            pending = queue.fill(allowed)
            if not pending:
                return
            width = min(allowed, pending)
            self._channels = self._channels + [
                Channel() for _ in range(width - len(self._channels))
            ]
            deliver(
                queue,
                self._channels[:width],
                connect=self._connect,
                host=self._host,
                on_limit=self._learn_limit,
                workers=self._workers_for(width - 1) if width > 1 else None,
                lane=self._lane,
            )

    def close(self) -> None:
        """QUIT and close every connection; the pool can be used again afterwards."""
        with self._lock:
            quit_all(self._channels)
            self._channels = self._channels[:1]
            workers, self._workers = self._workers, None
        if workers is not None:
            workers.shutdown(wait=True)

    def _workers_for(self, count: int) -> Executor:
        """The pool's connection threads: at most ``count`` (one per channel beyond the
        first), started when a batch first needs them and kept until :meth:`close`, so a
        session runs a fixed set of threads however many batches it sends."""
        if self._workers is None or self._worker_count < count:
            if self._workers is not None:
                self._workers.shutdown(wait=True)
            self._workers = ThreadPoolExecutor(
                max_workers=count, thread_name_prefix="oauthsmtp-send"
            )
            self._worker_count = count
        return self._workers

    def _learn_limit(self, accepted: int) -> None:
        if self._limit is None or accepted < self._limit:
            logger.info(
                "%s refused a connection as one too many (432 4.3.2); using at most %d",
                self._host,
                accepted,
            )
            self._limit = accepted

    def _trim(self, allowed: int) -> None:
        """Close connections beyond ``allowed`` (QUIT); open ones are kept, and put first."""
        channels = sorted(self._channels, key=lambda channel: not channel.connected)
        keep = max(allowed, 1)
        self._channels = channels[:keep]
        if channels[keep:]:
            quit_all(channels[keep:])


class _Limited(Exception):
    """The server refused a connection as one too many (``error`` has its reply)."""

    def __init__(self, error: SMTPError) -> None:
        super().__init__(str(error))
        self.error = error


class _Skipped(Exception):
    """The first connection failed to authenticate, so this one did not try."""


def deliver(
    queue: JobQueue,
    channels: Sequence[Channel],
    *,
    connect: Connect,
    host: str,
    on_limit: Callable[[int], None],
    workers: Executor | None = None,
    lane: Callable[[], Lane] = Lane,
) -> None:
    """Send every job of ``queue``, over ``channels``.

    Args:
        queue: the batch (read lazily); results are set on the jobs.
        channels: the channels to use (connected ones first); one means no thread.
        connect: opens and authenticates a channel.
        host: the server's name, for log messages.
        on_limit: called with the number of connections the server accepted at once,
            when it refused one more.
        workers: runs the channels beyond the first (the pool's threads, kept for the
            session's life); required with several channels.
        lane: makes each connection's :class:`Lane` (with a session's sending-limit hooks).

    Raises:
        OAuthSMTPError: the error that stopped the batch; some jobs may have results.
    """
    if len(channels) == 1:
        _drive(channels[0], queue, lane(), connect=connect, gate=None, pooled=False, host=host)
        return
    if workers is None:
        raise ValueError("deliver() needs workers= for several channels")
    active = list(channels)
    while len(queue):
        active.sort(key=lambda channel: not channel.connected)
        used = active[: queue.fill(len(active))]
        lanes, errors = _round(used, queue, connect=connect, host=host, workers=workers, lane=lane)
        for error in errors:
            if error is not None and not isinstance(error, _Skipped):
                logger.info("a connection to %s stopped: %s", host, error)
        expected = (OAuthSMTPError, _Limited, _Skipped)
        unexpected = [e for e in errors if e is not None and not isinstance(e, expected)]
        if unexpected:
            raise unexpected[0]
        accepted = sum(1 for channel in used if channel.connected)
        if accepted and any(isinstance(e, _Limited) for e in errors):
            # The refused connections were opened while these were open: the server takes
            # this many at once (for this account, from this client and its neighbours).
            on_limit(accepted)
            active = sorted(active, key=lambda channel: not channel.connected)[:accepted]
        if len(queue) and not any(lane.finished for lane in lanes):
            raise _most_relevant(errors)


def _most_relevant(errors: Sequence[BaseException | None]) -> BaseException:
    for error in errors:
        if isinstance(error, OAuthSMTPError):
            return error
    for error in errors:
        if isinstance(error, _Limited):
            return error.error
    return SMTPError("no connection could send the batch")  # pragma: no cover - defensive


def _round(
    channels: Sequence[Channel],
    queue: JobQueue,
    *,
    connect: Connect,
    host: str,
    workers: Executor,
    lane: Callable[[], Lane],
) -> tuple[list[Lane], list[BaseException | None]]:
    """Run one worker per channel until the queue is empty or every worker stopped: the
    first in this thread, the others on ``workers`` (threads kept between rounds)."""
    lanes = [lane() for _ in channels]
    errors: list[BaseException | None] = [None] * len(channels)
    first_done = threading.Event()
    first_ok: list[bool] = []
    gated = not any(channel.connected for channel in channels)

    def gate() -> None:
        first_done.wait()
        if not first_ok:
            raise _Skipped

    def connect_first(channel: Channel, _gate: Gate | None) -> None:
        connect(channel, None)
        first_ok.append(True)
        first_done.set()

    def run(index: int) -> None:
        try:
            _drive(
                channels[index],
                queue,
                lanes[index],
                connect=connect_first if index == 0 and gated else connect,
                gate=gate if index and gated else None,
                pooled=True,
                host=host,
            )
        except BaseException as exc:  # reported to the caller after the round
            errors[index] = exc
        finally:
            if index == 0:
                first_done.set()

    started: list[Future[None]] = []
    for i in range(1, len(channels)):
        try:
            started.append(workers.submit(run, i))
        except RuntimeError as exc:  # no more threads: carry on with those that started
            logger.info("cannot start another connection thread: %s", exc)
            lanes, errors = lanes[: len(started) + 1], errors[: len(started) + 1]
            break
    run(0)
    for future in started:
        future.result()  # run() keeps its errors; this only waits
    return lanes, errors


def _drive(
    channel: Channel,
    queue: JobQueue,
    lane: Lane,
    *,
    connect: Connect,
    gate: Gate | None,
    pooled: bool,
    host: str,
) -> None:
    """Send jobs from the queue on one channel, reconnecting after drops.

    In a pool, a connection the server refuses as one too many stops this worker (its
    messages go back to the queue for the others); alone, it counts as a drop.

    Raises:
        _Limited: in a pool, the server refused this connection as one too many.
        _Skipped: the first connection failed, so this one gave up before AUTH.
        OAuthSMTPError: connecting failed, or two connections in a row made no progress.
    """
    futile = 0
    while len(queue):
        if not channel.connected:
            channel.drop()
            try:
                connect(channel, gate)
            except NoFreeSlot:
                if pooled:
                    raise _Skipped from None
                raise
            except SMTPError as exc:
                if pooled and is_connection_limit(exc.code, exc.server_message):
                    raise _Limited(exc) from exc
                raise
            gate = None
        assert channel.conn is not None  # noqa: S101 - connect sets it or raises
        before = lane.finished
        try:
            transact(channel.conn, channel.extensions, queue, lane)
        except ConnectionLost as lost:
            channel.drop()
            lane.recover(queue)
            if pooled and lost.limit and isinstance(lost.error, SMTPError):
                raise _Limited(lost.error) from lost.error
            futile = 0 if lane.finished > before else futile + 1
            if futile > 1:
                raise lost.error from lost.error.__cause__
            if len(queue) or lane.inflight:
                logger.info("connection to %s lost (%s); reconnecting", host, lost)
        except BaseException:
            channel.drop()
            lane.recover(queue)
            raise
