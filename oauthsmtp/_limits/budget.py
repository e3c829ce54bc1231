"""The budget a session draws on: connection slots and message permits.

:class:`SendBudget` is what :class:`~oauthsmtp.SMTPSession` needs from a budget; it knows
no implementation. :class:`LocalBudget` holds one mailbox's budget in this process
(thread-safe; :func:`local_budget` hands every session of the process the same one for
the same mailbox and limits). The Redis budget (``RedisStore.send_budget``) satisfies the
same protocol for processes on many machines.

Both are fair: connection slots go to waiters first come, first served, and message slots
are reserved in the order they are asked for, each with a known wait (see
:func:`~oauthsmtp._limits.rules.next_slot`).
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from oauthsmtp._errors import SMTPError

from .rules import DAY_BUCKETS, SendLimits, bucket_of, day_refusal, next_slot, rolling_total

__all__ = [
    "Hold",
    "LimitReached",
    "LocalBudget",
    "Permit",
    "SendBudget",
    "local_budget",
    "too_long",
]


class LimitReached(SMTPError):
    """No connection slot came free within ``SendLimits.max_wait``: the messages waiting
    for it were not sent and may be sent later (``"deferred"`` results)."""


@dataclass(frozen=True, slots=True)
class Permit:
    """The answer to a request for a message slot.

    Attributes:
        wait: seconds until the reserved slot (0: now). Meaningless when refused.
        refusal: why the message may not be sent now (a daily cap, or a wait longer than
            ``max_wait``): it is ``"deferred"``; None when a slot was reserved.
    """

    wait: float = 0.0
    refusal: str | None = None


class Hold(Protocol):
    """A connection slot held; :meth:`release` gives it back (idempotent)."""

    def release(self) -> None: ...


class SendBudget(Protocol):
    """One mailbox's budget, shared by every session that holds this object (or, for a
    shared budget, the same store and mailbox)."""

    @property
    def limits(self) -> SendLimits: ...

    def acquire_connection(self, timeout: float) -> Hold | None:
        """A connection slot, waiting at most ``timeout`` seconds (0: do not wait), in
        order of asking; None when none came free in time."""
        ...

    def reserve_message(self, recipients: int, *, count_day: bool, max_wait: float) -> Permit:
        """Reserve the next message slot for a message with ``recipients`` recipients.

        Args:
            recipients: the message's envelope recipients.
            count_day: count the message against the daily caps (False for a retry of a
                message already counted).
            max_wait: a slot further away than this many seconds is not reserved.
        """
        ...


def too_long(wait: float, limits: SendLimits, mailbox: str) -> str:
    """The refusal for a message slot further away than ``max_wait``."""
    return (
        f"not sent: the next free slot for {mailbox} under its limit of {limits.per_minute} "
        f"messages per {limits.window:g} s is {wait:.1f} s away, longer than "
        f"SendLimits.max_wait ({limits.max_wait:g} s); it may be sent later"
    )


class _LocalHold:
    def __init__(self, budget: LocalBudget) -> None:
        self._budget: LocalBudget | None = budget

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.give_back()


class _NoHold:
    def release(self) -> None:
        return None


class LocalBudget:
    """One mailbox's budget held in this process (threads share it).

    Args:
        limits: the limits.
        mailbox: the mailbox, for messages.
        clock: seconds on a monotonic clock (injectable for tests).
    """

    def __init__(
        self, limits: SendLimits, mailbox: str, *, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._limits = limits
        self.mailbox = mailbox
        self._clock = clock
        self._cond = threading.Condition()
        self._held = 0
        self._waiting: deque[object] = deque()
        self._last: float | None = None
        self._messages: dict[int, int] = {}
        self._recipients: dict[int, int] = {}

    @property
    def limits(self) -> SendLimits:
        """The limits this budget keeps."""
        return self._limits

    @property
    def held(self) -> int:
        """Connection slots held now."""
        with self._cond:
            return self._held

    @property
    def waiters(self) -> int:
        """Callers waiting for a connection slot now."""
        with self._cond:
            return len(self._waiting)

    def acquire_connection(self, timeout: float) -> Hold | None:
        """See :meth:`SendBudget.acquire_connection`."""
        capacity = self._limits.connections
        if capacity is None:
            return _NoHold()
        me = object()
        deadline = self._clock() + timeout
        with self._cond:
            self._waiting.append(me)
            try:
                while not (self._held < capacity and self._waiting[0] is me):
                    remaining = deadline - self._clock()
                    if remaining <= 0:
                        return None
                    self._cond.wait(remaining)
                self._held += 1
                return _LocalHold(self)
            finally:
                self._waiting.remove(me)
                self._cond.notify_all()

    def give_back(self) -> None:
        """Release one connection slot (called by the hold)."""
        with self._cond:
            self._held = max(self._held - 1, 0)
            self._cond.notify_all()

    def reserve_message(self, recipients: int, *, count_day: bool, max_wait: float) -> Permit:
        """See :meth:`SendBudget.reserve_message`."""
        limits = self._limits
        with self._cond:
            now = self._clock()
            counting = count_day and limits.counts_days
            if counting:
                refusal = day_refusal(
                    limits,
                    messages=rolling_total(self._messages, now, limits.day),
                    recipients=rolling_total(self._recipients, now, limits.day),
                    adding=recipients,
                    mailbox=self.mailbox,
                )
                if refusal is not None:
                    return Permit(refusal=refusal)
            wait = 0.0
            if limits.per_minute is not None:
                slot = next_slot(self._last, now, limits.per_minute, limits.window)
                wait = slot - now
                if wait > max_wait:
                    return Permit(wait, too_long(wait, limits, self.mailbox))
                self._last = slot
            if counting:
                bucket = bucket_of(now, limits.day)
                self._messages[bucket] = self._messages.get(bucket, 0) + 1
                self._recipients[bucket] = self._recipients.get(bucket, 0) + recipients
                first = bucket - 2 * DAY_BUCKETS
                for counts in (self._messages, self._recipients):
                    for old in [b for b in counts if b < first]:
                        del counts[old]
            return Permit(wait)


_BUDGETS: dict[tuple[str, SendLimits], LocalBudget] = {}
_BUDGETS_LOCK = threading.Lock()


def local_budget(mailbox: str, limits: SendLimits) -> LocalBudget:
    """This process's budget for ``mailbox`` under ``limits`` (the same object for every
    session of the process that asks with the same mailbox, case-insensitively, and
    limits)."""
    key = (mailbox.lower(), limits)
    with _BUDGETS_LOCK:
        budget = _BUDGETS.get(key)
        if budget is None:
            budget = _BUDGETS[key] = LocalBudget(limits, mailbox)
        return budget
