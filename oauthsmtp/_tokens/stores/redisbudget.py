"""A mailbox's sending budget in Redis, shared by every process that uses the same Redis.

:class:`RedisBudget` satisfies :class:`~oauthsmtp._limits.budget.SendBudget`; a
:class:`~oauthsmtp.RedisStore` makes it (``store.send_budget(mailbox, limits)``). Every
decision is one Lua script, so it is atomic however many workers ask at once, and timed
by Redis's clock (``TIME``), so the workers' clocks need not agree. Keys, under the
store's prefix and a hash of the mailbox (``<prefix>limits:<hash>:...``):

* ``conn``: the connection slots held, a sorted set of random owner tokens scored by
  when their lease ends. A holder renews its leases every third of the store's ``lease``
  while it holds them; a worker killed while holding one loses it when its lease ends.
* ``wait``, ``waitexp``, ``ticket``: the waiters for a slot, in order of a ticket
  (``INCR``), each with a lease of its own (a waiter that died leaves the queue); a slot
  goes only to a waiter among the first ``free`` of the queue: first come, first served.
* ``rate``: the latest message slot reserved (microseconds of Redis time); the next one
  is ``window / per_minute`` after it (:func:`~oauthsmtp._limits.rules.next_slot`),
  reserved by the asker, who then sleeps until it.
* ``flight``, ``answered``: the cap (:func:`~oauthsmtp._limits.rules.capped_start`):
  the tickets of messages reserved whose MAIL FROM is not answered yet, scored by when
  they count as answered anyway (their worker died), and the tickets answered, scored by
  when (Redis time) that was recorded. A slot is pushed back until fewer than
  ``per_minute`` tickets are in flight or answered within the window. Answers ride on the
  worker's next reservation (no round trip of their own), or, when none follows within a
  few milliseconds, go in one call for all those waiting.
* ``day``: the rolling daily counts, a hash of ``m:<bucket>`` and ``r:<bucket>``
  (messages and recipients per bucket of :data:`~oauthsmtp._limits.rules.DAY_BUCKETS`).

Nothing here holds a token or a secret; the mailbox appears only hashed.
"""

from __future__ import annotations

import hashlib
import logging
import random
import secrets
import threading
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any

from oauthsmtp._errors import TokenStoreError
from oauthsmtp._limits.budget import Hold, Permit, default_hold, poll_interval, too_long
from oauthsmtp._limits.rules import DAY_BUCKETS, SendLimits, day_refusal

__all__ = ["RedisBudget"]

log = logging.getLogger("oauthsmtp.limits")

_NOW = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
"""

# KEYS: conn, wait, waitexp, ticket. ARGV: owner, capacity, lease_us, wait_lease_us, queue (1/0)
_ACQUIRE = (
    _NOW
    + """
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
local gone = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now)
for _, w in ipairs(gone) do redis.call('ZREM', KEYS[2], w) end
redis.call('ZREMRANGEBYSCORE', KEYS[3], '-inf', now)
local lease = tonumber(ARGV[3])
local keep = math.floor(math.max(lease, tonumber(ARGV[4])) / 1000) * 2 + 1000
if redis.call('ZSCORE', KEYS[1], ARGV[1]) then
    redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
    return 1
end
local free = tonumber(ARGV[2]) - redis.call('ZCARD', KEYS[1])
local granted = false
if ARGV[5] == '1' then
    if not redis.call('ZSCORE', KEYS[2], ARGV[1]) then
        redis.call('ZADD', KEYS[2], redis.call('INCR', KEYS[4]), ARGV[1])
    end
    redis.call('ZADD', KEYS[3], now + tonumber(ARGV[4]), ARGV[1])
    granted = free > 0 and redis.call('ZRANK', KEYS[2], ARGV[1]) < free
else
    granted = free - redis.call('ZCARD', KEYS[2]) > 0
end
if granted then
    redis.call('ZREM', KEYS[2], ARGV[1])
    redis.call('ZREM', KEYS[3], ARGV[1])
    redis.call('ZADD', KEYS[1], now + lease, ARGV[1])
end
for i = 1, 4 do redis.call('PEXPIRE', KEYS[i], keep) end
if granted then return 1 end
return 0
"""
)

# KEYS: conn, wait, waitexp. ARGV: owner. Leaves the queue and gives back a slot.
_RELEASE = """
redis.call('ZREM', KEYS[1], ARGV[1])
redis.call('ZREM', KEYS[2], ARGV[1])
redis.call('ZREM', KEYS[3], ARGV[1])
return 1
"""

# KEYS: conn. ARGV: lease_us, owners... Returns the owners whose lease had already ended.
_RENEW = (
    _NOW
    + """
local lost = {}
for i = 2, #ARGV do
    local ends = redis.call('ZSCORE', KEYS[1], ARGV[i])
    if ends and tonumber(ends) > now then
        redis.call('ZADD', KEYS[1], now + tonumber(ARGV[1]), ARGV[i])
    else
        redis.call('ZREM', KEYS[1], ARGV[i])
        table.insert(lost, ARGV[i])
    end
end
redis.call('PEXPIRE', KEYS[1], math.floor(tonumber(ARGV[1]) / 1000) * 2 + 1000)
return lost
"""
)

# KEYS: flight, answered. ARGV: window_us, first answered ticket's index in ARGV, tickets...
# Records the tickets answered now, and tickets in flight past their hold as answered then;
# forgets answers older than the window.
_SETTLE = """
for i = tonumber(ARGV[2]), #ARGV do
    if redis.call('ZREM', KEYS[1], ARGV[i]) == 1 then
        redis.call('ZADD', KEYS[2], string.format('%d', now), ARGV[i])
    end
end
local lapsed = redis.call('ZRANGEBYSCORE', KEYS[1], '-inf', now, 'WITHSCORES')
for i = 1, #lapsed, 2 do redis.call('ZADD', KEYS[2], lapsed[i + 1], lapsed[i]) end
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZREMRANGEBYSCORE', KEYS[2], '-inf', string.format('%d', now - tonumber(ARGV[1])))
"""

# KEYS: flight, answered. ARGV: window_us, 3, tickets... (answers with no reservation)
_ANSWER = _NOW + _SETTLE + "return 1\n"

# KEYS: flight, answered, rate, day. ARGV: window_us, 15 (where the answered tickets
# start), interval_us (0: no rate), max_wait_us, count_day (1/0), recipients, message cap
# (-1: none), recipient cap (-1: none), bucket_us, buckets, per_minute (0: none), hold_us,
# ticket, poll_us, answered tickets...
# Returns {0, wait_us} (reserved), {1, messages, recipients} (a daily cap), {2, wait_us}
# (too far), {3, poll_us} (per_minute in flight: nothing reserved, ask again).
_RESERVE = (
    _NOW
    + _SETTLE
    + """
local bucket_us = tonumber(ARGV[9])
local buckets = tonumber(ARGV[10])
local current = math.floor(now / bucket_us)
local counting = ARGV[5] == '1'
local messages, recipients = 0, 0
if counting then
    local fields = redis.call('HGETALL', KEYS[4])
    for i = 1, #fields, 2 do
        local kind, b = string.match(fields[i], '^(%a):(%-?%d+)$')
        b = tonumber(b)
        if b == nil or b < current - 2 * buckets then
            redis.call('HDEL', KEYS[4], fields[i])
        elseif b >= current - buckets then
            if kind == 'm' then messages = messages + tonumber(fields[i + 1])
            else recipients = recipients + tonumber(fields[i + 1]) end
        end
    end
    local mcap, rcap = tonumber(ARGV[7]), tonumber(ARGV[8])
    if (mcap >= 0 and messages + 1 > mcap)
        or (rcap >= 0 and recipients + tonumber(ARGV[6]) > rcap) then
        return {1, messages, recipients}
    end
end
local wait = 0
local interval = tonumber(ARGV[3])
if interval > 0 then
    local window = tonumber(ARGV[1])
    local max_wait = tonumber(ARGV[4])
    local slot = now
    local last = tonumber(redis.call('GET', KEYS[3]))
    if last and last + interval > now then slot = last + interval end
    if slot - now > max_wait then return {2, slot - now} end
    local allowed = tonumber(ARGV[11]) - 1 - redis.call('ZCARD', KEYS[1])
    if allowed < 0 then return {3, tonumber(ARGV[14])} end
    local since = string.format('(%d', slot - window)
    local excess = redis.call('ZCOUNT', KEYS[2], since, '+inf') - allowed
    if excess > 0 then
        local oldest = redis.call('ZRANGEBYSCORE', KEYS[2], since, '+inf', 'WITHSCORES',
            'LIMIT', excess - 1, 1)
        local free = tonumber(oldest[2]) + window
        if free > slot then slot = free end
    end
    wait = slot - now
    if wait > max_wait then return {2, wait} end
    local hold = tonumber(ARGV[12])
    redis.call('SET', KEYS[3], string.format('%d', slot), 'PX',
        math.floor((wait + interval) / 1000) + 1000)
    redis.call('ZADD', KEYS[1], string.format('%d', slot + hold), ARGV[13])
    local keep = math.floor((wait + hold + window) / 1000) + 1000
    redis.call('PEXPIRE', KEYS[1], keep)
    redis.call('PEXPIRE', KEYS[2], keep)
end
if counting then
    redis.call('HINCRBY', KEYS[4], 'm:' .. current, 1)
    redis.call('HINCRBY', KEYS[4], 'r:' .. current, tonumber(ARGV[6]))
    redis.call('PEXPIRE', KEYS[4], math.floor(bucket_us * buckets * 2 / 1000) + 1000)
end
return {0, wait}
"""
)

_MICRO = 1_000_000

_FLUSH_AFTER = 0.005
"""Seconds an answer waits for a reservation to ride on before it is sent on its own."""


class _RedisHold:
    def __init__(self, budget: RedisBudget, owner: str) -> None:
        self._budget: RedisBudget | None = budget
        self.owner = owner

    def release(self) -> None:
        budget, self._budget = self._budget, None
        if budget is not None:
            budget.give_back(self.owner)


class RedisBudget:
    """One mailbox's budget in Redis (see the module's docstring).

    Args:
        client: a redis-py client (the store's).
        prefix: the store's key prefix.
        mailbox: the mailbox (hashed into the keys).
        limits: the limits.
        lease: seconds a connection slot lives unless renewed (the store's lease).
        errors: redis-py's error classes (caught where a failure is only logged).
        talking: the store's :meth:`~oauthsmtp.RedisStore.talking`: turns a Redis failure
            into TokenStoreError.
        where: the Redis URL without its password, for the repr.
        sleep: injectable for tests.
    """

    def __init__(
        self,
        client: Any,
        *,
        prefix: str,
        mailbox: str,
        limits: SendLimits,
        lease: float,
        errors: tuple[type[BaseException], ...],
        talking: Callable[[str], AbstractContextManager[None]],
        where: str,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self._client = client
        self._limits = limits
        self.mailbox = mailbox
        self.lease = lease
        self._errors = errors
        self._talking = talking
        self._where = where
        self._sleep = sleep
        digest = hashlib.sha256(mailbox.lower().encode("utf-8")).hexdigest()[:32]
        base = f"{prefix}limits:{digest}:"
        self.keys = {
            name: base + name
            for name in ("conn", "wait", "waitexp", "ticket", "rate", "day", "flight", "answered")
        }
        self._acquire = client.register_script(_ACQUIRE)
        self._release = client.register_script(_RELEASE)
        self._renew = client.register_script(_RENEW)
        self._reserve = client.register_script(_RESERVE)
        self._answer = client.register_script(_ANSWER)
        self._answers: list[str] = []  # answered tickets not yet recorded in Redis
        self._answers_since = 0.0  # when the oldest of them was handed in (monotonic)
        self._answers_ready = threading.Condition(threading.Lock())
        self._flusher: threading.Thread | None = None
        self._held: set[str] = set()
        self._lock = threading.Lock()
        self._renewer: threading.Thread | None = None
        self._poll = min(0.05, max(lease / 20, 0.005))

    @property
    def limits(self) -> SendLimits:
        """The limits this budget keeps."""
        return self._limits

    # -- connection slots ---------------------------------------------------------------
    def acquire_connection(self, timeout: float) -> Hold | None:
        """See :meth:`~oauthsmtp._limits.budget.SendBudget.acquire_connection`.

        Raises:
            TokenStoreError: Redis cannot be reached.
        """
        capacity = self._limits.connections
        if capacity is None:
            return _RedisHold(self, "")
        owner = secrets.token_hex(16)
        lease_us = int(self.lease * _MICRO)
        wait_lease_us = int(max(2.0, self._poll * 20) * _MICRO)
        deadline = time.monotonic() + timeout
        conn_keys = [self.keys["conn"], self.keys["wait"], self.keys["waitexp"]]
        queue = "1" if timeout > 0 else "0"
        granted = False
        try:
            while True:
                with self._talking(f"take a connection slot for {self.mailbox}"):
                    granted = bool(
                        self._acquire(
                            keys=[*conn_keys, self.keys["ticket"]],
                            args=[owner, capacity, lease_us, wait_lease_us, queue],
                        )
                    )
                if granted:
                    self._holding(owner)
                    return _RedisHold(self, owner)
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    return None
                self._sleep(min(remaining, self._poll * (0.5 + random.random())))  # noqa: S311
        finally:
            if not granted and queue == "1":
                self._forget(owner)

    def _forget(self, owner: str) -> None:
        try:
            self._release(
                keys=[self.keys["conn"], self.keys["wait"], self.keys["waitexp"]], args=[owner]
            )
        except self._errors as exc:  # its entries lapse by themselves
            log.warning("could not leave the queue for %s in Redis: %s", self.mailbox, exc)

    def give_back(self, owner: str) -> None:
        """Release a connection slot (called by its hold) and record the answers not yet
        recorded (the process may end next); a failure is logged: the slot lapses by
        itself within the lease, the tickets when their hold ends."""
        self._record_answers()
        if not owner:
            return
        with self._lock:
            self._held.discard(owner)
        self._forget(owner)

    def _holding(self, owner: str) -> None:
        with self._lock:
            self._held.add(owner)
            if self._renewer is None or not self._renewer.is_alive():
                self._renewer = threading.Thread(
                    target=self._renew_while_held, name="oauthsmtp-limits-lease", daemon=True
                )
                self._renewer.start()

    def _renew_while_held(self) -> None:
        """Renew every held slot each third of the lease, until none is held."""
        while True:
            time.sleep(self.lease / 3)
            with self._lock:
                owners = sorted(self._held)
                if not owners:
                    self._renewer = None
                    return
            try:
                lost = self._renew(
                    keys=[self.keys["conn"]], args=[int(self.lease * _MICRO), *owners]
                )
            except self._errors as exc:
                log.debug("could not renew connection slots for %s: %s", self.mailbox, exc)
                continue
            if lost:
                log.warning(
                    "%d connection slot(s) for %s lapsed before they could be renewed "
                    "(this process was paused longer than the lease of %g s?)",
                    len(lost),
                    self.mailbox,
                    self.lease,
                )

    # -- messages -----------------------------------------------------------------------
    def _take_answers(self) -> list[str]:
        with self._answers_ready:
            answers, self._answers = self._answers, []
            return answers

    def answered(self, tickets: Sequence[str]) -> None:
        """See :meth:`~oauthsmtp._limits.budget.SendBudget.answered`: recorded with this
        process's next reservation, or within a few milliseconds by a background thread
        (a failure there is logged: the tickets count as answered when their hold ends)."""
        if not tickets:
            return
        with self._answers_ready:
            if not self._answers:
                self._answers_since = time.monotonic()
            self._answers.extend(tickets)
            if self._flusher is None or not self._flusher.is_alive():
                self._flusher = threading.Thread(
                    target=self._flush_answers, name="oauthsmtp-limits-answers", daemon=True
                )
                self._flusher.start()

    def _flush_answers(self) -> None:
        """Every ``_FLUSH_AFTER``, record the answers no reservation took within that
        time (no wake-up per message); ends after a second with nothing to do."""
        idle = 0.0
        while True:
            time.sleep(_FLUSH_AFTER)
            with self._answers_ready:
                if not self._answers:
                    idle += _FLUSH_AFTER
                    if idle >= 1.0:
                        self._flusher = None
                        return
                    continue
                idle = 0.0
                if time.monotonic() - self._answers_since < _FLUSH_AFTER:
                    continue  # a reservation may take them meanwhile
            self._record_answers()

    def _record_answers(self) -> None:
        """Record the answers waiting, in one call."""
        answers = self._take_answers()
        if not answers:
            return
        window = int(self._limits.window * _MICRO)
        try:
            self._answer(
                keys=[self.keys["flight"], self.keys["answered"]], args=[window, 3, *answers]
            )
        except self._errors as exc:
            log.warning(
                "could not record %d answered message(s) for %s in Redis (%s); they "
                "count as in flight until their hold ends",
                len(answers),
                self.mailbox,
                exc,
            )

    def reserve_message(
        self, recipients: int, *, count_day: bool, max_wait: float, hold_for: float | None = None
    ) -> Permit:
        """See :meth:`~oauthsmtp._limits.budget.SendBudget.reserve_message`. Answers not
        yet recorded (:meth:`answered`) ride along.

        Raises:
            TokenStoreError: Redis cannot be reached.
        """
        limits = self._limits
        counting = count_day and limits.counts_days
        interval = 0 if limits.per_minute is None else limits.window / limits.per_minute
        ticket = secrets.token_hex(8) if limits.per_minute is not None else ""
        hold = default_hold(limits) if hold_for is None else hold_for
        answers = self._take_answers()
        args = [
            int(limits.window * _MICRO),
            15,
            max(int(interval * _MICRO), 1) if interval else 0,
            int(max_wait * _MICRO),
            "1" if counting else "0",
            recipients,
            -1 if limits.messages_per_day is None else limits.messages_per_day,
            -1 if limits.recipients_per_day is None else limits.recipients_per_day,
            max(int(limits.day / DAY_BUCKETS * _MICRO), 1),
            DAY_BUCKETS,
            limits.per_minute or 0,
            int(hold * _MICRO),
            ticket,
            int(poll_interval(limits) * _MICRO),
            *answers,
        ]
        keys = [self.keys[name] for name in ("flight", "answered", "rate", "day")]
        try:
            with self._talking(f"reserve a message slot for {self.mailbox}"):
                answer = self._reserve(keys=keys, args=args)
        except TokenStoreError:
            if answers:  # not recorded: the next call (or the flusher) tries again
                with self._answers_ready:
                    self._answers[:0] = answers
            raise
        kind = int(answer[0])
        if kind == 1:
            refusal = day_refusal(
                limits,
                messages=int(answer[1]),
                recipients=int(answer[2]),
                adding=recipients,
                mailbox=self.mailbox,
            )
            return Permit(refusal=refusal or "not sent: a daily cap is reached")
        wait = int(answer[1]) / _MICRO
        if kind == 2:
            return Permit(wait, too_long(wait, limits, self.mailbox))
        if kind == 3:
            return Permit(wait, retry=True)
        return Permit(wait, ticket=ticket or None)

    def __repr__(self) -> str:
        return f"RedisBudget({self.mailbox!r}, {self._limits.describe()}, at {self._where})"
