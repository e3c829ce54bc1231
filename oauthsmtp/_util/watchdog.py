"""One watchdog thread per process that calls a function when a deadline passes.

A request with a total deadline needs something that acts when the deadline passes while
the request's thread is blocked in a read (the HTTP-API sessions shut the socket down).
Starting a :class:`threading.Timer` for each request costs a thread per request;
:class:`Watchdog` keeps the deadlines in a heap and serves them all from one daemon thread,
started on first use. Deadlines are :func:`time.monotonic` values.

Callbacks run on the watchdog's thread: they must be quick and must not raise (an exception
is logged and dropped, so one bad callback cannot stop the others).
"""

from __future__ import annotations

import heapq
import itertools
import logging
import threading
import time
from collections.abc import Callable

__all__ = ["Alarm", "Watchdog", "shared_watchdog"]

logger = logging.getLogger("oauthsmtp")


class Alarm:
    """A scheduled call; :meth:`cancel` it when the guarded work ends first."""

    __slots__ = ("_callback", "_cancelled")

    def __init__(self, callback: Callable[[], None]) -> None:
        self._callback: Callable[[], None] | None = callback
        self._cancelled = False

    def cancel(self) -> None:
        """The call will not happen (if it has not happened yet). Idempotent."""
        self._cancelled = True
        self._callback = None  # drop references held by the callback at once

    @property
    def cancelled(self) -> bool:
        """True once :meth:`cancel` was called."""
        return self._cancelled

    def _fire(self) -> None:
        callback = self._callback
        if callback is None or self._cancelled:
            return
        self._callback = None
        try:
            callback()
        except Exception:  # a broken callback must not stop the watchdog
            logger.exception("a deadline callback failed")


class Watchdog:
    """Calls functions at deadlines, from one daemon thread started on first use."""

    def __init__(self, *, name: str = "oauthsmtp-watchdog") -> None:
        self._name = name
        self._heap: list[tuple[float, int, Alarm]] = []
        self._order = itertools.count()
        self._wake = threading.Condition(threading.Lock())
        self._thread: threading.Thread | None = None
        self._compact_at = 64  # heap size at which cancelled alarms are swept out

    def call_at(self, deadline: float, callback: Callable[[], None]) -> Alarm:
        """Call ``callback`` once :func:`time.monotonic` reaches ``deadline``."""
        alarm = Alarm(callback)
        with self._wake:
            if len(self._heap) >= self._compact_at:
                # Cancelled alarms wait for their deadline in the heap; sweep them out once
                # it has doubled, so a steady stream of finished requests stays bounded.
                self._heap = [entry for entry in self._heap if not entry[2].cancelled]
                heapq.heapify(self._heap)
                self._compact_at = max(64, 2 * len(self._heap))
            heapq.heappush(self._heap, (deadline, next(self._order), alarm))
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(target=self._run, name=self._name, daemon=True)
                self._thread.start()
            elif self._heap[0][2] is alarm:
                self._wake.notify()  # it is now the earliest: the thread sleeps too long
        return alarm

    def call_later(self, seconds: float, callback: Callable[[], None]) -> Alarm:
        """Call ``callback`` after ``seconds``."""
        return self.call_at(time.monotonic() + seconds, callback)

    @property
    def pending(self) -> int:
        """Alarms scheduled and neither fired nor cancelled."""
        with self._wake:
            return sum(not alarm.cancelled for _, _, alarm in self._heap)

    @property
    def held(self) -> int:
        """Alarms held, cancelled ones that still wait for their deadline included."""
        with self._wake:
            return len(self._heap)

    def _run(self) -> None:
        while True:
            with self._wake:
                while True:
                    now = time.monotonic()
                    if self._heap and self._heap[0][0] <= now:
                        _, _, alarm = heapq.heappop(self._heap)
                        break
                    self._wake.wait(self._heap[0][0] - now if self._heap else None)
            alarm._fire()


_SHARED: Watchdog | None = None
_SHARED_LOCK = threading.Lock()


def shared_watchdog() -> Watchdog:
    """The process's watchdog (made on first use)."""
    global _SHARED
    with _SHARED_LOCK:
        if _SHARED is None:
            _SHARED = Watchdog()
        return _SHARED
