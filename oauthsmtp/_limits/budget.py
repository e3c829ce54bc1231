"""The budget a session draws on: connection slots and message permits.

:class:`SendBudget` is what :class:`~oauthsmtp.SMTPSession` needs from a budget; it knows
no implementation. :class:`LocalBudget` holds one mailbox's budget in this process
(thread-safe; :func:`local_budget` hands every session of the process the same one for
the same mailbox and limits). The Redis budget (``RedisStore.send_budget``) satisfies the
same protocol for processes on many machines.

Both are fair: connection slots go to waiters first come, first served, and message slots
are reserved in the order they are asked for, each with a known wait (see
:func:`~oauthsmtp._limits.rules.next_slot`). Both cap what the server can see: a message
holds a *ticket* from its reservation until the session reports its MAIL FROM answered
(:meth:`SendBudget.answered`), and a slot is given only while fewer than ``per_minute``
tickets are held or were answered within the window
(:func:`~oauthsmtp._limits.rules.capped_start`). A ticket never reported (its worker was
killed) counts as answered when its ``hold_for`` runs out.
"""

from __future__ import annotations

import bisect
import itertools
import threading
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Protocol

from oauthsmtp._errors import SMTPError

from .rules import (
    DAY_BUCKETS,
    SendLimits,
    bucket_of,
    capped_start,
    day_refusal,
    next_slot,
    rolling_total,
)

__all__ = [
    "Hold",
    "LimitReached",
    "LocalBudget",
    "Permit",
    "SendBudget",
    "default_hold",
    "local_budget",
    "poll_interval",
    "too_long",
]


class LimitReached(SMTPError):
    """No connection slot came free within ``SendLimits.max_wait``: the messages waiting
    for it were not sent and may be sent later (``"deferred"`` results)."""


@dataclass(frozen=True, slots=True)
class Permit:
    """The answer to a request for a message slot.

    Attributes:
        wait: seconds until the reserved slot (0: now); with ``retry``, seconds to wait
            before asking again. Meaningless when refused.
        refusal: why the message may not be sent now (a daily cap, or a wait longer than
            ``max_wait``): it is ``"deferred"``; None when a slot was reserved.
        ticket: the message's place in the cap (``per_minute`` set): give it to
            :meth:`SendBudget.answered` once the server answered its MAIL FROM (or give
            it back unused the same way); None without a rate.
        retry: nothing was reserved or counted: ``per_minute`` messages are in flight,
            so no start time can be given yet; ask again after ``wait`` seconds.
    """

    wait: float = 0.0
    refusal: str | None = None
    ticket: str | None = None
    retry: bool = False


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

    def reserve_message(
        self, recipients: int, *, count_day: bool, max_wait: float, hold_for: float | None = None
    ) -> Permit:
        """Reserve the next message slot for a message with ``recipients`` recipients.

        Args:
            recipients: the message's envelope recipients.
            count_day: count the message against the daily caps (False for a retry of a
                message already counted).
            max_wait: a slot further away than this many seconds is not reserved.
            hold_for: seconds from the slot after which the ticket, if never reported
                answered, counts as answered then (None: :func:`default_hold`).
        """
        ...

    def answered(self, tickets: Sequence[str]) -> None:
        """The server answered these tickets' MAIL FROM (or they were never used): they
        count as answered from now on, and leave the cap ``window`` seconds later."""
        ...


def default_hold(limits: SendLimits) -> float:
    """How long a ticket counts as in flight at most when the caller does not say: three
    times a session's default timeout of 60 s (a write, then two replies)."""
    del limits  # the same for every limit; a session passes its own timeout
    return 180.0


def poll_interval(limits: SendLimits) -> float:
    """How long to wait before asking again while ``per_minute`` messages are in flight."""
    if limits.per_minute is None:
        return 0.05
    return min(limits.window / limits.per_minute, 0.05)


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
        self._flight: dict[str, float] = {}  # ticket -> when it counts as answered anyway
        self._answered: list[float] = []  # when tickets were answered, ascending
        self._tickets = itertools.count(1)
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

    @property
    def in_flight(self) -> int:
        """Tickets held now (messages reserved whose MAIL FROM is not answered yet)."""
        with self._cond:
            self._settle(self._clock())
            return len(self._flight)

    def _settle(self, now: float) -> None:
        """Tickets past their hold count as answered then; answers older than a window go."""
        for ticket, ends in list(self._flight.items()):
            if ends <= now:
                del self._flight[ticket]
                bisect.insort(self._answered, ends)
        if self._limits.per_minute is not None:
            gone = bisect.bisect_right(self._answered, now - self._limits.window)
            del self._answered[:gone]

    def answered(self, tickets: Sequence[str]) -> None:
        """See :meth:`SendBudget.answered`."""
        with self._cond:
            now = self._clock()
            for ticket in tickets:
                if self._flight.pop(ticket, None) is not None:
                    bisect.insort(self._answered, now)

    def reserve_message(
        self, recipients: int, *, count_day: bool, max_wait: float, hold_for: float | None = None
    ) -> Permit:
        """See :meth:`SendBudget.reserve_message`."""
        limits = self._limits
        with self._cond:
            now = self._clock()
            self._settle(now)
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
            wait, ticket = 0.0, None
            if limits.per_minute is not None:
                slot = next_slot(self._last, now, limits.per_minute, limits.window)
                if slot - now > max_wait:
                    return Permit(slot - now, too_long(slot - now, limits, self.mailbox))
                start = capped_start(
                    slot, len(self._flight), self._answered, limits.per_minute, limits.window
                )
                if start is None:
                    return Permit(poll_interval(limits), retry=True)
                wait = start - now
                if wait > max_wait:
                    return Permit(wait, too_long(wait, limits, self.mailbox))
                self._last = start
                ticket = f"t{next(self._tickets)}"
                hold = default_hold(limits) if hold_for is None else hold_for
                self._flight[ticket] = start + hold
            if counting:
                bucket = bucket_of(now, limits.day)
                self._messages[bucket] = self._messages.get(bucket, 0) + 1
                self._recipients[bucket] = self._recipients.get(bucket, 0) + recipients
                first = bucket - 2 * DAY_BUCKETS
                for counts in (self._messages, self._recipients):
                    for old in [b for b in counts if b < first]:
                        del counts[old]
            return Permit(wait, ticket=ticket)


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
