"""Asynchronous sending: a background thread that sends queued messages in batches.

``_AsyncSender`` is the base class of :class:`~oauthsmtp.SMTPSession` that serves
``asynchronous=True``: :meth:`~oauthsmtp.SMTPSession.send` hands its job to a queue and
returns a :class:`~concurrent.futures.Future` at once; one worker thread (started on
demand) takes up to a batch of queued jobs at a time and delivers them under the
session's lock, over the session's connections, then settles every future with its
:class:`~oauthsmtp.SendResult` or the error. :meth:`~oauthsmtp.SMTPSession.close` queues
``None`` to stop the worker once the queue is drained.
"""

from __future__ import annotations

import queue
import threading
from concurrent.futures import Future
from typing import TYPE_CHECKING

from oauthsmtp._errors import SMTPError

from .transact import Job, SendResult

if TYPE_CHECKING:
    from collections.abc import Sequence

_ASYNC_BATCH = 100


class _AsyncSender:
    """The asynchronous mode of :class:`~oauthsmtp.SMTPSession` (its base class).

    The attributes below are set by ``SMTPSession.__init__``; ``_deliver`` is the session's.
    """

    connections: int
    _lock: threading.RLock
    _state_lock: threading.Lock
    _queue: queue.Queue[Job | None] | None
    _worker: threading.Thread | None

    if TYPE_CHECKING:

        def _deliver(self, jobs: Sequence[Job], allowed: int) -> None: ...

    def _ensure_worker(self) -> queue.Queue[Job | None]:
        with self._state_lock:
            if self._worker is None or self._queue is None:
                self._queue = queue.Queue()
                self._worker = threading.Thread(
                    target=self._work, args=(self._queue,), name="oauthsmtp-send", daemon=True
                )
                self._worker.start()
            return self._queue

    def _submit(self, job: Job) -> Future[SendResult]:
        job.future = Future()
        if job.error is not None:  # refused before sending: the error goes to the future
            job.future.set_running_or_notify_cancel()
            job.future.set_exception(job.error)
        else:
            self._ensure_worker().put(job)
        return job.future

    def _work(self, work_queue: queue.Queue[Job | None]) -> None:
        stop = False
        while not stop:
            item = work_queue.get()
            if item is None:
                return
            batch = [item]
            while len(batch) < _ASYNC_BATCH:
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
            error: BaseException | None = None
            with self._lock:
                try:
                    self._deliver(live, self.connections)
                except Exception as exc:  # every error must reach a future
                    error = exc
            for job in live:
                assert job.future is not None  # noqa: S101
                if job.result is not None:
                    job.future.set_result(job.result)
                else:
                    job.future.set_exception(error or SMTPError("not sent"))
