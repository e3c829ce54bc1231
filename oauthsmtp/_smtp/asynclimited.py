"""Sending limits for the asyncio session, without blocking the event loop.

:class:`AsyncLimiter` runs a :class:`~oauthsmtp._smtp.limited.Limiter`'s decisions (the
same ones the blocking session runs, so both keep the same budget the same way; see
docs/limits.md) on the loop:

* **Message slots**: :meth:`Limiter.admission <oauthsmtp._smtp.limited.Limiter.admission>`
  says how long to wait and when to ask the budget; waits are ``await asyncio.sleep``.
  The in-process budget answers at once (it only takes a lock), so it is asked on the
  loop; the Redis budget talks to Redis, so it is asked in a worker thread
  (``asyncio.to_thread``).
* **Connection slots**: the session's first connection waits for a slot up to
  ``max_wait``, in the budget's first-come queue (shared with blocking sessions), in a
  thread of its own (a daemon: it never holds up the program's exit); its further
  connections take one only if one is free now, else they sit out (the first one sends).
  A slot is given back when the channel drops its connection (off the loop for the Redis
  budget). A transient refusal while connecting the first is retried after the same
  backoff as the blocking session's.
"""

from __future__ import annotations

import asyncio
import functools
import threading
from collections.abc import Awaitable, Callable

from oauthsmtp._errors import SMTPError
from oauthsmtp._limits.budget import Hold, LocalBudget, Permit

from .asyncprotocol import AsyncChannel
from .limited import Limiter, Pause, Reserve
from .transact import Job, SendResult

__all__ = ["AsyncLimiter"]


class AsyncLimiter:
    """Applies a :class:`~oauthsmtp._smtp.limited.Limiter` to an asyncio session.

    Args:
        limiter: the session's limiter (its budget may be shared with blocking sessions).
    """

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter
        self._inline = isinstance(limiter.budget, LocalBudget)  # no I/O, no waiting
        self._asking = 0

    # -- messages -----------------------------------------------------------------------
    async def admit(self, job: Job, busy: bool) -> SendResult | bool:
        """The asyncio form of :meth:`Limiter.admit` (same verdicts), never blocking."""
        steps = self.limiter.admission(job, busy)
        permit: Permit | None = None
        try:
            while True:
                step = steps.send(permit)
                permit = await self._run(step)
        except StopIteration as stop:
            verdict: SendResult | bool = stop.value
            return verdict

    async def _run(self, step: Pause | Reserve) -> Permit | None:
        if isinstance(step, Pause):
            await asyncio.sleep(step.seconds)
            return None
        ask = functools.partial(
            self.limiter.budget.reserve_message,
            step.recipients,
            count_day=step.count_day,
            max_wait=step.max_wait,
            hold_for=step.hold_for,
        )
        return ask() if self._inline else await asyncio.to_thread(ask)

    # -- connections --------------------------------------------------------------------
    async def connect(self, channel: AsyncChannel, open_: Callable[[], Awaitable[None]]) -> None:
        """Open ``channel`` with ``open_`` once a connection slot is taken; the slot is
        held until the channel drops the connection.

        Raises:
            LimitReached: the session's first connection got no slot within ``max_wait``.
            NoFreeSlot: a further connection found none free now (it sits out).
            The errors of ``open_``.
        """
        limiter = self.limiter
        first = limiter.held == 0 and self._asking == 0
        self._asking += 1
        try:
            hold = limiter.slot_or_none(
                await self._acquire(limiter.limits.max_wait if first else 0.0), first
            )
        finally:
            self._asking -= 1
        try:
            attempt, spent = 0, 0.0
            while True:
                try:
                    await open_()
                    break
                except SMTPError as exc:
                    attempt += 1
                    delay = limiter.connect_backoff(exc, attempt, spent) if first else None
                    if delay is None:
                        raise
                    spent += delay
                    await asyncio.sleep(delay)
        except BaseException:
            self._let_go(hold)
            raise
        limiter.opened()

        def release() -> None:
            self._let_go(hold)
            limiter.closed()

        channel.hold(release)

    async def _acquire(self, timeout: float) -> Hold | None:
        budget = self.limiter.budget
        if self._inline and (timeout <= 0 or self.limiter.limits.connections is None):
            return budget.acquire_connection(0.0)  # answers at once: no wait, no I/O
        if timeout <= 0:
            return await asyncio.to_thread(budget.acquire_connection, 0.0)  # one Redis call
        # A wait of up to max_wait in the budget's queue: in a thread of its own, not the
        # loop's executor, which the sessions holding slots need meanwhile (token reads,
        # Redis reservations) and which waiters could otherwise fill.
        loop = asyncio.get_running_loop()
        answer: asyncio.Future[Hold | None] = loop.create_future()

        def wait() -> None:
            try:
                hold = budget.acquire_connection(timeout)
            except Exception as exc:  # the budget's error (Redis down): the caller's
                _hand_over(loop, answer, None, exc)
            else:
                _hand_over(loop, answer, hold, None)

        threading.Thread(target=wait, name="oauthsmtp-slot-wait", daemon=True).start()
        return await answer

    def _let_go(self, hold: Hold) -> None:
        """Give ``hold`` back: at once for the in-process budget, else off the loop."""
        if self._inline:
            hold.release()
            return
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:  # no loop runs (it ended): nothing to block
            hold.release()
            return
        loop.run_in_executor(None, hold.release)


def _hand_over(
    loop: asyncio.AbstractEventLoop,
    answer: asyncio.Future[Hold | None],
    hold: Hold | None,
    error: Exception | None,
) -> None:
    """From the waiting thread: give the slot (or the error) to the loop; a slot nobody
    waits for any more (cancelled, or the loop ended) goes back at once."""

    def settle() -> None:
        if answer.cancelled():
            if hold is not None:
                hold.release()
        elif error is not None:
            answer.set_exception(error)
        else:
            answer.set_result(hold)

    try:
        loop.call_soon_threadsafe(settle)
    except RuntimeError:  # the loop is closed
        if hold is not None:
            hold.release()
