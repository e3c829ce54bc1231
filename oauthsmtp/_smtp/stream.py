"""Batches of any size: messages prepared as the sending needs them, results in order.

:func:`send_stream` serves :meth:`~oauthsmtp.SMTPSession.send_many` and
:meth:`~oauthsmtp.SMTPSession.send_stream`. It reads the caller's iterable lazily: a
message is prepared only when a connection is ready for it (the pipeline's window, see
:mod:`oauthsmtp._smtp.transact`), and each result is handed on, in the input's order, as
soon as it and every earlier one are known; the job is then forgotten. A batch of a
million messages from a generator therefore holds only the few messages under way, not
the batch.

The rule of a batch is kept: it raises only when the session could not be established
before any message got an answer (nothing was sent); after that, the remaining messages
get ``"failed"`` results (``"unknown"`` for one whose body was sent), so every message has
exactly one result.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import Future
from typing import TypeVar

from oauthsmtp._errors import OAuthSMTPError
from oauthsmtp._limits.budget import LimitReached

from .transact import Job, SendResult, deferred, failed, unknown

__all__ = ["CHUNK", "Emit", "send_stream"]

CHUNK = 1000
"""Messages queued at once on the background sender (``submit``) by one batch."""

M = TypeVar("M")

Emit = Callable[[SendResult], object]
"""Receives each message's result, in the order of the messages."""


class _Window:
    """The jobs prepared and not yet handed on, oldest first."""

    def __init__(self, messages: Iterable[M], prepare: Callable[[M], Job], emit: Emit) -> None:
        self._messages: Iterator[object] = iter(messages)
        self._prepare: Callable[[object], Job] = prepare  # type: ignore[assignment]
        self._emit = emit
        self._jobs: deque[Job] = deque()
        self.answered = False
        self.count = 0
        self.error: BaseException | None = None
        self._emit_failed = False

    def jobs(self, limit: int | None = None) -> Iterator[Job]:
        """Prepare the next messages one at a time (at most ``limit``), handing on the
        finished ones first. An error from the caller's iterable (or from ``emit``) ends
        the iteration; it is kept in ``error``, to be raised once the batch is settled."""
        taken = 0
        while self.error is None and (limit is None or taken < limit):
            self.flush()
            try:
                message = next(self._messages)
            except StopIteration:
                return
            except Exception as exc:  # the caller's generator failed: raised after the batch
                self.error = exc
                return
            job = self._prepare(message)
            self._jobs.append(job)
            self.count += 1
            taken += 1
            yield job

    def flush(self) -> None:
        """Hand on every finished job at the head of the window."""
        while self._jobs and self._jobs[0].result is not None and not self._emit_failed:
            job = self._jobs.popleft()
            if job.outgoing is not None:
                self.answered = True
            result = job.result
            assert result is not None  # noqa: S101 - checked above
            try:
                self._emit(result)
            except Exception as exc:  # the caller's callback failed: stop pulling, raise later
                self.error = self.error or exc
                self._emit_failed = True

    def finish(self) -> None:
        """Hand on every remaining job (one without a result, which deliver never leaves
        unless it raised, is ``"failed"``)."""
        for job in self._jobs:
            if job.result is None:  # pragma: no cover - deliver sets every result or raises
                job.result = failed("not sent")
        self.flush()

    def settle(self, error: OAuthSMTPError) -> None:
        """The batch stopped with ``error``: raise it if nothing got an answer; otherwise
        every remaining message gets a result (``"unknown"`` if its body was sent).

        A :class:`~oauthsmtp._limits.budget.LimitReached` (no connection slot within
        ``max_wait``) is not raised: nothing was sent, and every remaining message is
        ``"deferred"``."""
        if isinstance(error, LimitReached):
            rest = deferred(str(error))
            for job in self._jobs:
                if job.result is None:
                    job.result = unknown() if job.body_sent else rest
            for job in self.jobs():
                if job.result is None:
                    job.result = rest
            self.flush()
            return
        if not self.answered and not any(
            job.result is not None and job.outgoing is not None for job in self._jobs
        ):
            raise error
        for job in self._jobs:
            if job.result is None:
                job.result = unknown() if job.body_sent else failed(f"not sent: {error}")
        for job in self.jobs():
            if job.result is None:
                job.result = failed(f"not sent: {error}")
        self.flush()


def send_stream(
    messages: Iterable[M],
    *,
    prepare: Callable[[M], Job],
    deliver: Callable[[Iterable[Job]], None],
    submit: Callable[[Job], Future[SendResult]] | None,
    emit: Emit,
) -> int:
    """Send ``messages``, handing each result to ``emit`` in order; return how many.

    Args:
        messages: any iterable; read only as the sending needs the next message.
        prepare: turns a message into a job (a refused one has its result already).
        deliver: sends jobs over the session's connections (reads them lazily); raises
            the :class:`OAuthSMTPError` that stopped it.
        submit: when the background sender runs, queues a job on it (the batch then goes
            through it, :data:`CHUNK` messages at a time); None sends in this thread.
        emit: receives each result, one call at a time, in the order of ``messages``,
            from the thread that sends (with several connections, one of their threads).

    Raises:
        OAuthSMTPError: the session could not be established before any message got an
            answer; nothing was sent.
        Exception: what the caller's iterable or ``emit`` raised, once the messages
            under way are settled (the rest are not read).
    """
    window = _Window(messages, prepare, emit)
    if submit is None:
        try:
            deliver(window.jobs())
        except OAuthSMTPError as exc:
            window.settle(exc)
    else:
        while window.error is None:
            chunk = list(window.jobs(CHUNK))
            if not chunk:
                break
            futures = [submit(job) for job in chunk if job.error is None]
            errors = [future.exception() for future in futures]
            stop = next((e for e in errors if isinstance(e, OAuthSMTPError)), None)
            if stop is not None:
                window.settle(stop)
                break
    window.finish()
    if window.error is not None:
        raise window.error
    return window.count
