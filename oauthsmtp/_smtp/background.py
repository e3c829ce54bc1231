"""Sending in the background: a thread that sends queued messages in batches.

A :class:`BackgroundSender` serves :meth:`~oauthsmtp.SMTPSession.submit` (and
``asynchronous=True``): :meth:`BackgroundSender.submit` puts a job on a bounded queue
(it blocks while :data:`LIMIT` jobs wait) and returns a
:class:`~concurrent.futures.Future`; one worker thread (started on demand) takes
up to :data:`BATCH` queued jobs at a time, hands them to the session's ``deliver``
function (which sends them over the session's pool), then settles every future with its
:class:`~oauthsmtp.SendResult` or the error. :meth:`BackgroundSender.close` stops the
worker once the queue is drained. The session owns one; it knows nothing of SMTP.
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import Future

from oauthsmtp._errors import OAuthSMTPError, SMTPError

from .transact import Job, SendResult

__all__ = ["BATCH", "LIMIT", "BackgroundSender", "Deliver"]

BATCH = 100
"""Most queued jobs handed to ``deliver`` at once."""

LIMIT = 1000
"""Most jobs waiting in the queue: :meth:`BackgroundSender.submit` blocks beyond it."""

Deliver = Callable[[Sequence[Job]], None]
"""Sends jobs, setting their results; raises the error that stopped it (an OAuthSMTPError)."""


class BackgroundSender:
    """A queue and the worker thread that empties it.

    The queue is bounded: when ``limit`` jobs wait, :meth:`submit` blocks until the worker
    takes the next batch (backpressure: a producer faster than the server is slowed down
    to its pace instead of filling memory). Called from the worker itself (a future's
    callback), :meth:`submit` cannot wait: a full queue then fails that job at once.

    Args:
        deliver: sends a batch of jobs (the session's pool, under its lock).
        limit: most jobs waiting (at least 1).
    """

    def __init__(self, deliver: Deliver, *, limit: int = LIMIT) -> None:
        self._deliver = deliver
        self._limit = max(1, limit)
        self._lock = threading.Lock()
        self._queue: queue.Queue[Job | None] | None = None
        self._worker: threading.Thread | None = None

    @property
    def running(self) -> bool:
        """True while the worker thread exists (between the first submit and close)."""
        return self._worker is not None

    @property
    def queueing(self) -> bool:
        """True when a message sent now should queue: the worker runs, and this thread is
        not the worker itself (a future's callback runs there; waiting would deadlock)."""
        worker = self._worker
        return worker is not None and worker is not threading.current_thread()

    def start(self) -> None:
        """Start the worker thread unless it runs.

        Raises:
            SMTPError: no thread can be started (the system's limit is reached).
        """
        try:
            self._ensure_worker()
        except RuntimeError as exc:
            raise SMTPError(f"cannot start the background sender: {exc}") from exc

    def submit(self, job: Job) -> Future[SendResult]:
        """Queue ``job``; its future gets the result, or the error that stopped it.

        A job refused before sending (``job.error``) gets its error at once.
        """
        future: Future[SendResult] = Future()
        job.future = future
        error = job.error
        if error is None:
            try:
                work_queue = self._ensure_worker()
                if self._worker is threading.current_thread():
                    work_queue.put_nowait(job)  # the worker cannot wait for itself
                else:
                    work_queue.put(job)  # blocks while the queue is full
            except queue.Full:
                error = SMTPError(
                    f"the background queue is full ({self._limit} messages) and a callback "
                    "cannot wait for it; submit from another thread"
                )
            except RuntimeError as exc:  # no thread can be started (resources exhausted)
                error = SMTPError(f"cannot start the background sender: {exc}")
                error.__cause__ = exc
        if error is not None:
            future.set_running_or_notify_cancel()
            future.set_exception(error)
        return future

    def close(self) -> None:
        """Wait for every queued job, then stop the worker (idempotent; can start again).

        Called from the worker itself (a future's callback), it stops the worker once the
        queue is drained, without waiting.
        """
        with self._lock:
            worker, work_queue = self._worker, self._queue
            self._worker = self._queue = None
        if worker is not None and work_queue is not None:
            if worker is not threading.current_thread():
                work_queue.put(None)
                worker.join()
                return
            try:
                work_queue.put_nowait(None)
            except queue.Full:  # the worker cannot wait for itself: a helper puts the stop
                threading.Thread(target=work_queue.put, args=(None,), daemon=True).start()

    def _ensure_worker(self) -> queue.Queue[Job | None]:
        with self._lock:
            if self._worker is None or self._queue is None:
                work_queue: queue.Queue[Job | None] = queue.Queue(maxsize=self._limit)
                worker = threading.Thread(
                    target=self._work, args=(work_queue,), name="oauthsmtp-send", daemon=True
                )
                worker.start()  # may raise RuntimeError: then nothing is recorded
                self._queue, self._worker = work_queue, worker
            return self._queue

    def _work(self, work_queue: queue.Queue[Job | None]) -> None:
        stop = False
        while not stop:
            item = work_queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < BATCH:
                try:
                    more = work_queue.get_nowait()
                except queue.Empty:
                    break
                if more is None:
                    stop = True
                    break
                batch.append(more)
            live = [
                j for j in batch if j.future is not None and j.future.set_running_or_notify_cancel()
            ]
            error: OAuthSMTPError | None = None
            try:
                self._deliver(live)
            except OAuthSMTPError as exc:
                error = exc
            except Exception as exc:  # every future must settle, with one of our errors
                error = SMTPError(f"sending failed unexpectedly: {type(exc).__name__}: {exc}")
                error.__cause__ = exc
            for job in live:
                assert job.future is not None  # noqa: S101
                if job.result is not None:
                    job.future.set_result(job.result)
                else:
                    job.future.set_exception(error or SMTPError("not sent"))
