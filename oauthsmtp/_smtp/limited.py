"""A session's share of a mailbox's budget: connection slots, message slots, retries.

A :class:`Limiter` sits between a session and its :class:`~oauthsmtp._limits.budget.SendBudget`
(docs/limits.md):

* **Connections**: :meth:`Limiter.connect` wraps the connector: a slot is taken before a
  connection is opened (the session's first connection waits for one, at most
  ``max_wait`` seconds, then its messages are ``"deferred"``; its further connections,
  once the first is up, take one only if one is free now) and given back when the
  connection is closed, whatever closes it. A transient refusal while connecting the
  session's first connection (``432 4.3.2`` too many connections, ``421``, any ``4xx``) is
  retried after a bounded, jittered, doubling backoff; a further connection refused so is
  given up at once (the pool carries on with the connections it has, and remembers how
  many the server accepts).
* **Messages**: :meth:`Limiter.admit` runs when a connection takes the next message, before
  its MAIL FROM is written: more recipients than ``recipients_per_message`` fail it (never
  split); a daily cap reached, or a message slot further away than ``max_wait``, defers it;
  otherwise it waits for its reserved slot. A pipelining connection that would have to wait
  while a body is still to be written first finishes that message, then waits. The slot
  comes with a ticket, held until :meth:`Limiter.answered` (the reply to its MAIL FROM was
  read) hands it back: the budget caps messages in flight or answered within the window,
  so the server never sees more than ``per_minute`` in a window, however late some arrive.
* **Transient replies**: :meth:`Limiter.retry` decides whether a message the server refused
  with a ``4xx`` (to MAIL, every RCPT, DATA or the end of data: nothing was accepted) is
  tried again, after a backoff, instead of getting its ``"failed"`` result. A message whose
  outcome is unknown is never retried, nor one that was accepted.
"""

from __future__ import annotations

import logging
import random
import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass

from oauthsmtp._errors import ConfigurationError, SMTPError
from oauthsmtp._limits.budget import Hold, LimitReached, Permit, SendBudget, local_budget
from oauthsmtp._limits.rules import SendLimits, backoff_delay, is_transient_code

from .pool import Channel, Connect, Gate, NoFreeSlot
from .settings import SessionSettings
from .transact import Job, SendResult, deferred, failed

__all__ = [
    "Admission",
    "Limiter",
    "Pause",
    "Reserve",
    "budget_for",
    "check_limits",
    "limiter_for",
    "transient_result",
]

logger = logging.getLogger("oauthsmtp.smtp")

_EARLY = 0.002
"""Seconds of a slot's wait not worth sleeping for."""


def budget_for(store: object, mailbox: str, limits: SendLimits) -> SendBudget:
    """The budget ``store`` shares for ``mailbox`` (``store.send_budget(mailbox, limits)``,
    e.g. a RedisStore), or this process's own when the store shares none (or is None)."""
    maker = getattr(store, "send_budget", None)
    if callable(maker):
        budget: SendBudget = maker(mailbox, limits)
        return budget
    return local_budget(mailbox, limits)


@dataclass(frozen=True, slots=True)
class Pause:
    """A step of an admission: wait ``seconds`` (then carry on; nothing is sent back)."""

    seconds: float


@dataclass(frozen=True, slots=True)
class Reserve:
    """A step of an admission: call the budget's ``reserve_message`` with these
    arguments and send the :class:`~oauthsmtp._limits.budget.Permit` back."""

    recipients: int
    count_day: bool
    max_wait: float
    hold_for: float


Admission = Generator["Pause | Reserve", "Permit | None", "SendResult | bool"]
"""The decisions of :meth:`Limiter.admission`: it yields what to do (wait, ask the budget)
and returns the verdict; the blocking and the asyncio sessions each run the steps their
own way (sleeping or awaiting)."""


def limiter_for(limits: object, limits_store: object, settings: SessionSettings) -> Limiter | None:
    """The :class:`Limiter` for a session's ``limits=`` and ``limits_store=`` (both
    sessions check them the same way), or None without limits. The mailbox is the
    username (or the server's address and port without one).

    Raises:
        ConfigurationError: ``limits`` is not a SendLimits, or a store without limits.
    """
    checked = check_limits(limits, limits_store)
    if checked is None:
        return None
    mailbox = settings.username or f"{settings.address}:{settings.port}"
    return Limiter(budget_for(limits_store, mailbox, checked), mailbox, timeout=settings.timeout)


def check_limits(limits: object, limits_store: object) -> SendLimits | None:
    """A session's ``limits=`` checked (None: no limits), the same for every session.

    Raises:
        ConfigurationError: ``limits`` is not a SendLimits, or a store without limits.
    """
    if limits is None:
        if limits_store is not None:
            raise ConfigurationError(
                "limits_store= shares a budget of SendLimits: give limits= too "
                "(for example oauthsmtp.providers.MICROSOFT_365_LIMITS)"
            )
        return None
    if not isinstance(limits, SendLimits):
        raise ConfigurationError(
            f"limits must be an oauthsmtp.SendLimits (or None), not {type(limits).__name__}"
        )
    return limits


def transient_result(result: SendResult) -> bool:
    """True for a ``"failed"`` result the server gave with a transient (``4xx``) reply and
    no permanent refusal of a recipient: sending it again later may succeed (pure)."""
    if result.status != "failed" or not is_transient_code(result.code, result.message):
        return False
    return all(is_transient_code(code, text) for code, text in result.refused.values())


class Limiter:
    """Applies a budget to one session's connections and messages.

    Args:
        budget: the mailbox's budget.
        mailbox: the mailbox, for messages and logs.
        timeout: the session's timeout: a ticket not handed back within ``3 * timeout``
            of its slot (a write and two replies; its process died) counts as answered.
        sleep, clock, rand: injectable for tests.
    """

    def __init__(
        self,
        budget: SendBudget,
        mailbox: str,
        *,
        timeout: float = 60.0,
        sleep: Callable[[float], None] = time.sleep,
        clock: Callable[[], float] = time.monotonic,
        rand: Callable[[], float] = random.random,
    ) -> None:
        self.budget = budget
        self.limits = budget.limits
        self.mailbox = mailbox
        self._sleep = sleep
        self._clock = clock
        self._rand = rand
        self._lock = threading.Lock()
        self._held = 0
        self.hold_for = 3 * timeout

    @property
    def paces_messages(self) -> bool:
        """True when each message needs a permit (a rate or a daily cap)."""
        return self.limits.per_minute is not None or self.limits.counts_days

    def width(self, allowed: int) -> int:
        """How many connections a batch may use: the session's, at most ``connections``."""
        cap = self.limits.connections
        return allowed if cap is None else min(allowed, cap)

    def _count(self, change: int) -> int:
        with self._lock:
            self._held += change
            return self._held

    # -- connections --------------------------------------------------------------------
    def connect(self, inner: Connect) -> Connect:
        """``inner`` (the connector), with a connection slot taken first and held until
        the channel drops the connection, and transient refusals retried."""

        def connect(channel: Channel, gate: Gate | None) -> None:
            if gate is not None:
                # A further connection of a new batch: once the first is up (holding its
                # slot), take one only if one is free, so this never waits in the queue
                # ahead of the first or after the batch no longer needs it.
                gate()
                gate = None
            first = self.held == 0
            hold = self.slot_or_none(
                self.budget.acquire_connection(self.limits.max_wait if first else 0.0), first
            )
            try:
                if first:
                    self._connect_retrying(inner, channel, gate)
                else:  # a refusal ends this further connection; the pool carries on without
                    inner(channel, gate)
            except BaseException:
                hold.release()
                raise
            self.opened()

            def release() -> None:
                hold.release()
                self.closed()

            channel.hold(release)

        return connect

    def _connect_retrying(self, inner: Connect, channel: Channel, gate: Gate | None) -> None:
        attempt, spent = 0, 0.0
        while True:
            try:
                inner(channel, gate)
                return
            except SMTPError as exc:
                attempt += 1
                delay = self.connect_backoff(exc, attempt, spent)
                if delay is None:
                    raise
                spent += delay
                self._sleep(delay)

    def connect_backoff(self, exc: SMTPError, attempt: int, spent: float) -> float | None:
        """The wait before trying the session's first connection again after ``exc``
        (attempt number ``attempt``, ``spent`` seconds waited so far), or None to give
        up (not a transient refusal, no retries left, or past ``max_wait``)."""
        if not is_transient_code(exc.code, exc.server_message):
            return None
        delay = self._delay(attempt)
        if attempt > self.limits.retries or spent + delay > self.limits.max_wait:
            return None
        logger.info(
            "connecting for %s was refused for now (%s %s); retry %d in %.2f s",
            self.mailbox,
            exc.code,
            exc.server_message or "",
            attempt,
            delay,
        )
        return delay

    def slot_or_none(self, hold: Hold | None, first: bool, *, what: str = "connections") -> Hold:
        """``hold``, or the error for no connection slot: :class:`NoFreeSlot` for a further
        connection (it sits this batch out), :class:`LimitReached` for the first one.
        ``what`` names what a slot holds (the HTTP-API sessions: ``"requests"``)."""
        if hold is not None:
            return hold
        if not first:
            raise NoFreeSlot(f"no free connection slot for {self.mailbox} now")
        raise LimitReached(
            f"not sent: no connection slot for {self.mailbox} came free within "
            f"SendLimits.max_wait ({self.limits.max_wait:g} s; at most "
            f"{self.limits.connections} {what} at once); it may be sent later"
        )

    def opened(self) -> None:
        """A connection of this session took its slot and is up (see :attr:`held`)."""
        self._count(1)

    def closed(self) -> None:
        """A connection of this session gave its slot back."""
        self._count(-1)

    @property
    def held(self) -> int:
        """Connection slots this session's connections hold now."""
        return self._count(0)

    def _delay(self, attempt: int) -> float:
        limits = self.limits
        return backoff_delay(attempt, base=limits.backoff, cap=limits.max_wait, unit=self._rand())

    # -- messages -----------------------------------------------------------------------
    def admit(self, job: Job, busy: bool) -> SendResult | bool:
        """May the connection write ``job``'s envelope now? Runs :meth:`admission`,
        sleeping and asking the budget in this thread (see there for the verdict)."""
        steps = self.admission(job, busy)
        permit: Permit | None = None
        try:
            while True:
                step = steps.send(permit)
                permit = None
                if isinstance(step, Pause):
                    self._sleep(step.seconds)
                else:
                    permit = self.budget.reserve_message(
                        step.recipients,
                        count_day=step.count_day,
                        max_wait=step.max_wait,
                        hold_for=step.hold_for,
                    )
        except StopIteration as stop:
            verdict: SendResult | bool = stop.value
            return verdict

    def admission(self, job: Job, busy: bool) -> Admission:
        """The decision whether the connection may write ``job``'s envelope now, as steps.

        Args:
            job: the message the connection took.
            busy: the connection still has a message in flight (a body to write).

        Yields :class:`Pause` (wait that long) and :class:`Reserve` (send back the
        budget's permit); returns True: go (its slot has come); False: not yet, and the
        connection is busy (give the job back and finish the message in flight first); a
        result: the message is not sent (``"failed"``: too many recipients;
        ``"deferred"``: a daily cap, or a wait longer than ``max_wait``).
        """
        out = job.outgoing
        assert out is not None  # noqa: S101 - the queue holds prepared jobs
        limits = self.limits
        count = len(out.recipients)
        if limits.recipients_per_message is not None and count > limits.recipients_per_message:
            return failed(
                f"not sent: the message has {count} recipients and "
                f"SendLimits.recipients_per_message allows {limits.recipients_per_message} "
                f"for {self.mailbox}; send it as several messages (oauthsmtp does not split "
                "it by itself)"
            )
        wait = job.not_before - self._clock()
        if wait > _EARLY:
            if busy:
                return False
            yield Pause(wait)
        if not self.paces_messages:
            return True
        if job.slot_at is None:
            asked = self._clock()
            while True:
                left = max(limits.max_wait - (self._clock() - asked), 0.0)
                permit = yield Reserve(count, not job.counted, left, self.hold_for)
                assert permit is not None  # noqa: S101 - the driver sends the permit back
                if permit.refusal is not None:
                    return deferred(permit.refusal)
                if not permit.retry:
                    break
                if busy:  # finish the message in flight first, then ask again
                    return False
                if permit.wait > left:
                    return deferred(
                        f"not sent: {limits.per_minute} messages for {self.mailbox} were in "
                        "flight (their MAIL FROM not answered yet) for longer than "
                        f"SendLimits.max_wait ({limits.max_wait:g} s); it may be sent later"
                    )
                yield Pause(permit.wait)
            job.counted = True
            job.slot_at = self._clock() + permit.wait
            job.ticket = permit.ticket
        wait = job.slot_at - self._clock()
        if wait > _EARLY and busy:
            return False
        if wait > 0:
            yield Pause(wait)
        job.slot_at = None
        return True

    def answered(self, job: Job) -> None:
        """The reply to ``job``'s MAIL FROM was read: hand its ticket back to the budget
        (the server has seen the message; it leaves the cap a window from now)."""
        ticket, job.ticket = job.ticket, None
        if ticket is not None:
            self.budget.answered([ticket])

    def retry(self, job: Job, result: SendResult) -> bool:
        """Whether ``job``, refused with ``result``, goes back to the queue for a retry
        (after a backoff, set as ``job.not_before``) instead of getting ``result``."""
        if job.body_sent and result.code is None:
            return False  # no answer after the body: unknown, never sent again
        if not transient_result(result) or job.attempts >= self.limits.retries:
            return False
        delay = self._delay(job.attempts + 1)
        if job.backed_off + delay > self.limits.max_wait:
            return False
        job.attempts += 1
        job.backed_off += delay
        job.not_before = self._clock() + delay
        job.body_sent = False
        logger.info(
            "a message for %s was refused for now (%s %s); retry %d in %.2f s",
            self.mailbox,
            result.code,
            result.message or "",
            job.attempts,
            delay,
        )
        return True
