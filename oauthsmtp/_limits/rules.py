"""SendLimits and the pure decisions behind a sending budget (docs/limits.md).

Everything here takes values (the current time included) and returns values, so the
in-process budget, the Redis budget's Lua scripts and the tests share one meaning:

* **Messages per window** (``per_minute`` over ``window`` seconds): every message reserves
  the next free *slot*, a time at which it may start: ``window / per_minute`` after the
  previous slot (first come, first served, evenly paced, :func:`next_slot`). Slots alone
  do not bound what the *server* sees: a message reaches it later than its slot by a
  delay that varies, and a late one lands in the window of the punctual ones after it.
  So the slot is also *capped* (:func:`capped_start`): a message may start at ``T`` only
  while fewer than ``per_minute`` others are in flight (started, their MAIL FROM not yet
  answered) or were answered after ``T - window``. The wait is known when the slot is
  reserved: one too far away is not reserved at all.
* **Per day** (``messages_per_day``, ``recipients_per_day`` over ``day`` seconds): counts
  kept in :data:`DAY_BUCKETS` buckets of a rolling day; a bucket leaves the count only once
  all of it is older than a day, so the count errs on the safe side.
* **Transient replies** (``4xx``, RFC 5321 §4.2.1) are retried after a bounded
  exponential backoff with full jitter.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from oauthsmtp._errors import ConfigurationError

__all__ = [
    "DAY_BUCKETS",
    "SendLimits",
    "backoff_delay",
    "bucket_of",
    "capped_start",
    "day_refusal",
    "is_transient_code",
    "next_slot",
    "rolling_total",
]

DAY_BUCKETS = 144
"""Buckets a rolling day is counted in (ten minutes each for a 24-hour day)."""


def _count(name: str, value: object, *, most: int = 10**9) -> int | None:
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, int) or not 1 <= value <= most:
        raise ConfigurationError(
            f"SendLimits {name} must be None (no limit) or a whole number from 1 to "
            f"{most:,}, not {value!r:.40}"
        )
    return value


def _seconds(name: str, value: object, *, least: float = 0.0, most: float = 10 * 86400.0) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or not least <= value <= most
    ):
        raise ConfigurationError(
            f"SendLimits {name} must be a number of seconds from {least:g} to {most:g}, "
            f"not {value!r:.40}"
        )
    return float(value)


@dataclass(frozen=True, slots=True)
class SendLimits:
    """What a provider allows one mailbox, shared by every sender of that mailbox.

    Every count is optional (None: no limit). Give it to a session as
    ``SMTPSession(..., limits=limits, limits_store=store)``: sessions using the same store
    (a :class:`~oauthsmtp.RedisStore`: any number of processes on any number of machines;
    otherwise: the threads of one process) and the same mailbox share one budget.
    Presets: ``oauthsmtp.providers.MICROSOFT_365_LIMITS``, ``GMAIL_LIMITS``,
    ``GOOGLE_WORKSPACE_LIMITS`` (sources in docs/limits.md).

    Attributes:
        connections: connections open at once for the mailbox (Microsoft 365: 3).
        per_minute: messages started (MAIL FROM) per ``window`` seconds (Microsoft 365: 30).
        recipients_per_message: a message with more recipients is not sent (a ``"failed"``
            result naming the limit; it is never split silently).
        recipients_per_day: recipients (To, Cc and Bcc, each counted) per rolling ``day``;
            once reached, messages get ``"deferred"`` results.
        messages_per_day: messages per rolling ``day``; once reached, ``"deferred"``.
        window: the seconds ``per_minute`` counts over (60; smaller in tests).
        day: the seconds of a rolling day (86,400; smaller in tests).
        max_wait: the longest a message waits for a connection slot or a message slot
            (seconds); a longer wait is not taken: the message is ``"deferred"``.
        retries: how many times a message refused with a transient (``4xx``) reply, or a
            connection refused with one (``432 4.3.2`` too many connections, ``421``), is
            tried again.
        backoff: the first wait before such a retry (seconds); each next wait doubles, with
            full jitter, at most ``max_wait`` in all.

    Raises:
        ConfigurationError: a count that is not a whole number above 0, or a time that is
            not a finite number of seconds in range.
    """

    connections: int | None = None
    per_minute: int | None = None
    recipients_per_message: int | None = None
    recipients_per_day: int | None = None
    messages_per_day: int | None = None
    window: float = 60.0
    day: float = 86400.0
    max_wait: float = 300.0
    retries: int = 5
    backoff: float = 1.0

    def __post_init__(self) -> None:
        _count("connections", self.connections, most=100)
        _count("per_minute", self.per_minute, most=1_000_000)
        _count("recipients_per_message", self.recipients_per_message)
        _count("recipients_per_day", self.recipients_per_day)
        _count("messages_per_day", self.messages_per_day)
        for name, least in (("window", 0.001), ("day", 0.001)):
            value = getattr(self, name)
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not math.isfinite(value)
                or not least <= value <= 366 * 86400.0
            ):
                raise ConfigurationError(
                    f"SendLimits {name} must be a number of seconds from {least:g} to one "
                    f"year, not {value!r:.40}"
                )
        _seconds("max_wait", self.max_wait, most=86400.0)
        _seconds("backoff", self.backoff, most=3600.0)
        if isinstance(self.retries, bool) or not isinstance(self.retries, int):
            raise ConfigurationError(f"SendLimits retries must be 0-100, not {self.retries!r:.40}")
        if not 0 <= self.retries <= 100:
            raise ConfigurationError(f"SendLimits retries must be 0-100, not {self.retries!r}")
        for name in ("window", "day", "max_wait", "backoff"):
            object.__setattr__(self, name, float(getattr(self, name)))

    @property
    def counts_days(self) -> bool:
        """True when a daily cap is set."""
        return self.recipients_per_day is not None or self.messages_per_day is not None

    def describe(self) -> str:
        """The limits in one line, for messages and logs."""
        parts = []
        if self.connections is not None:
            parts.append(f"{self.connections} connections")
        if self.per_minute is not None:
            parts.append(f"{self.per_minute} messages per {self.window:g} s")
        if self.recipients_per_message is not None:
            parts.append(f"{self.recipients_per_message} recipients per message")
        if self.messages_per_day is not None:
            parts.append(f"{self.messages_per_day} messages per {self.day:g} s")
        if self.recipients_per_day is not None:
            parts.append(f"{self.recipients_per_day} recipients per {self.day:g} s")
        return ", ".join(parts) or "no limits"


def next_slot(last: float | None, now: float, per_window: int, window: float) -> float:
    """The earliest time the next message may start (pure).

    Args:
        last: the latest slot reserved so far, or None.
        now: the current time, on the same clock.
        per_window: how many starts a window may hold.
        window: the window's length in seconds.

    Slots are spaced evenly, ``window / per_window`` apart, and handed out in the order
    asked for (each after the latest): no half-open interval of ``window`` seconds holds
    more than ``per_window`` of them, and since the messages start in that same rhythm,
    a server counting them over any such interval sees the same (a burst of
    ``per_window`` at once, then a pause, would reach the server spread by round trips
    and overlap the next burst's window).
    """
    if last is None:
        return now
    return max(now, last + window / per_window)


def capped_start(
    slot: float, in_flight: int, answered: Sequence[float], per_window: int, window: float
) -> float | None:
    """The earliest time from ``slot`` on at which a message may start under the cap, or
    None while ``per_window`` or more messages are in flight (pure).

    Args:
        slot: the message's paced slot (:func:`next_slot`).
        in_flight: messages started (or given a start time) whose MAIL FROM has not been
            answered yet; each counts whatever the time.
        answered: the times the others' MAIL FROM replies were recorded (ascending; on the
            budget's clock, each no earlier than the server saw that MAIL FROM).
        per_window: ``per_minute``.
        window: ``window``.

    The answer ``T`` is the first time with ``in_flight`` plus the answers later than
    ``T - window`` below ``per_window``. Why that bounds the server: take any half-open
    window of ``window`` seconds on the server holding MAIL FROMs of messages ``1..k``, and
    ``j`` the one whose start was decided last, at ``T_j``, no later than its arrival
    ``A_j``. Every other ``i`` was decided before, so it counted for ``j`` if still in
    flight; if answered, at ``R_i >= A_i > A_j - window >= T_j - window``, so it counted
    too: ``k - 1 < per_window``. Network delays change when messages arrive, not this
    count.
    """
    allowed = per_window - 1 - in_flight
    if allowed < 0:
        return None
    later = len(answered) - bisect.bisect_right(answered, slot - window)
    excess = later - allowed
    if excess <= 0:
        return slot
    # the answers must leave the window up to and including the excess-th oldest of them
    return max(slot, answered[len(answered) - later + excess - 1] + window)


def bucket_of(now: float, day: float) -> int:
    """The daily-count bucket ``now`` falls in (:data:`DAY_BUCKETS` per ``day``)."""
    return math.floor(now / (day / DAY_BUCKETS))


def rolling_total(buckets: Mapping[int, int], now: float, day: float) -> int:
    """The count of the rolling day that ends at ``now``: buckets not entirely older
    than ``day`` (so at most one bucket's worth of extra caution)."""
    first = bucket_of(now, day) - DAY_BUCKETS
    return sum(count for bucket, count in buckets.items() if bucket >= first)


def day_refusal(
    limits: SendLimits, *, messages: int, recipients: int, adding: int, mailbox: str
) -> str | None:
    """Why a message with ``adding`` recipients may not be sent today, or None (pure).

    Args:
        limits: the limits.
        messages: messages counted in the rolling day so far.
        recipients: recipients counted in the rolling day so far.
        adding: this message's recipients.
        mailbox: for the message.
    """
    hours = limits.day / 3600
    if limits.messages_per_day is not None and messages + 1 > limits.messages_per_day:
        return (
            f"not sent: the daily cap of {limits.messages_per_day:,} messages for {mailbox} "
            f"(SendLimits.messages_per_day, over a rolling {hours:g} h) is reached; it may be "
            "sent once earlier messages leave the window"
        )
    if limits.recipients_per_day is not None and recipients + adding > limits.recipients_per_day:
        return (
            f"not sent: the daily cap of {limits.recipients_per_day:,} recipients for {mailbox} "
            f"(SendLimits.recipients_per_day, over a rolling {hours:g} h) would be passed "
            f"({recipients:,} counted, this message has {adding}); it may be sent once "
            "earlier messages leave the window"
        )
    return None


def backoff_delay(attempt: int, *, base: float, cap: float, unit: float) -> float:
    """The wait before retry number ``attempt`` (1, 2, ...): full jitter over a doubling
    ceiling, ``unit`` being a random number in [0, 1) (pure)."""
    ceiling = min(cap, base * 2.0 ** max(attempt - 1, 0))
    return ceiling * (0.5 + unit / 2)


def is_transient_code(code: int | None, text: str | None = None) -> bool:
    """True for a reply that says "not now, try again" (RFC 5321 §4.2.1: 4yz), except
    ``432 4.7.12`` (RFC 4954 §6: a password transition is needed; waiting will not help)."""
    if code is None or not 400 <= code < 500:
        return False
    return not (text or "").startswith("4.7.12")
