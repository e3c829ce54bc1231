"""SendLimits in one process: the rules (pure), the presets, and sessions sharing a budget
against a loopback server that counts connections and message starts (tests/limits_server.py).

Assertions are on counts the server recorded, never on how long anything took.
"""

from __future__ import annotations

import heapq
import random
import threading
from email.message import EmailMessage

import pytest
from limits_server import LimitsServer

import oauthsmtp
from oauthsmtp import ConfigurationError, SendLimits, SMTPSession
from oauthsmtp._limits.budget import LocalBudget, local_budget
from oauthsmtp._limits.rules import (
    backoff_delay,
    capped_start,
    day_refusal,
    next_slot,
    rolling_total,
)
from oauthsmtp._smtp.limited import transient_result
from oauthsmtp._smtp.transact import SendResult


def message(n: int, *, recipients: int = 1, tag: str = "t") -> EmailMessage:
    msg = EmailMessage()
    msg["From"] = "sender@example.test"
    msg["To"] = ", ".join(f"r{i}@example.test" for i in range(recipients))
    msg["Subject"] = f"message {n}"
    msg["Message-ID"] = f"<{tag}-{n}@example.test>"
    msg.set_content(f"body {n}\n")
    return msg


# -- the rules -------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"connections": 0}, "connections"),
        ({"connections": True}, "connections"),
        ({"connections": 101}, "connections"),
        ({"per_minute": -1}, "per_minute"),
        ({"per_minute": 2.5}, "per_minute"),
        ({"recipients_per_message": "100"}, "recipients_per_message"),
        ({"recipients_per_day": 0}, "recipients_per_day"),
        ({"messages_per_day": 0}, "messages_per_day"),
        ({"window": 0}, "window"),
        ({"window": float("nan")}, "window"),
        ({"day": float("inf")}, "day"),
        ({"max_wait": -1}, "max_wait"),
        ({"backoff": float("nan")}, "backoff"),
        ({"retries": -1}, "retries"),
        ({"retries": 1.5}, "retries"),
    ],
    ids=lambda v: str(v),
)
def test_bad_limits_are_refused(kwargs: dict[str, object], says: str) -> None:
    """Each bad value is a ConfigurationError naming the field."""
    with pytest.raises(ConfigurationError, match=says):
        SendLimits(**kwargs)  # type: ignore[arg-type]


def test_limits_are_frozen_values() -> None:
    """SendLimits is a value: equal when equal, hashable, immutable."""
    limits = SendLimits(connections=3, per_minute=30)
    assert limits == SendLimits(connections=3, per_minute=30)
    assert hash(limits) == hash(SendLimits(connections=3, per_minute=30))
    with pytest.raises(AttributeError):
        limits.connections = 4  # type: ignore[misc]
    assert "3 connections" in limits.describe()
    assert "30 messages per 60 s" in limits.describe()


def test_presets_carry_the_published_numbers() -> None:
    """The presets say what docs/limits.md cites."""
    ms = oauthsmtp.providers.MICROSOFT_365_LIMITS
    assert (ms.connections, ms.per_minute, ms.recipients_per_day) == (3, 30, 10_000)
    ws = oauthsmtp.providers.GOOGLE_WORKSPACE_LIMITS
    assert (ws.recipients_per_message, ws.messages_per_day, ws.recipients_per_day) == (
        100,
        2_000,
        10_000,
    )
    gm = oauthsmtp.providers.GMAIL_LIMITS
    assert (gm.recipients_per_message, gm.messages_per_day) == (100, 500)


def test_slots_never_put_more_than_n_in_a_window() -> None:
    """Whatever the arrival times, reserved slots hold at most N per window, in order."""
    rng = random.Random(7)  # noqa: S311 - arrival times, not secrets
    for _ in range(200):
        n, window = rng.randint(1, 6), rng.choice([0.2, 1.0, 60.0])
        now, slots = 0.0, []
        for _ in range(40):
            now += rng.random() * window / 3
            slots.append(next_slot(slots[-1] if slots else None, now, n, window))
        assert slots == sorted(slots)
        for i in range(n, len(slots)):
            assert slots[i] - slots[i - n] >= window - 1e-9


def most_in_window(times: list[float], window: float) -> int:
    """The most of ``times`` in any half-open interval of ``window`` seconds."""
    times = sorted(times)
    most, first = 0, 0
    for last, when in enumerate(times):
        while when - times[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def simulate(seed: int, *, capped: bool) -> tuple[list[float], int, float]:
    """Connections sharing a LocalBudget on a simulated clock, each sending in a loop:
    reserve, start at the slot, the MAIL FROM arrives 0 to 3 slots later (random), its
    reply is read up to 2 slots after that; now and then a worker dies after its start
    (its ticket is never handed back; a new one takes its place). Returns the arrival
    times at the server, per_minute and window. Without the cap, only the even pacing."""
    rng = random.Random(seed)  # noqa: S311 - delays, not secrets
    n, window = rng.randint(1, 8), rng.choice([0.5, 2.0])
    slot = window / n
    hold = 5 * slot
    clock = [0.0]
    budget = LocalBudget(SendLimits(per_minute=n, window=window), "m@x", clock=lambda: clock[0])
    arrivals: list[float] = []
    events: list[tuple[float, int, str, str | None]] = []
    last: float | None = None
    for c in range(rng.randint(2, 6)):
        heapq.heappush(events, (rng.random() * slot, c, "reserve", None))
    while events and len(arrivals) < 60:
        now, c, what, ticket = heapq.heappop(events)
        clock[0] = now
        if what == "answer":
            budget.answered([str(ticket)])
            heapq.heappush(events, (now + rng.random() * slot / 4, c, "reserve", None))
            continue
        if capped:
            permit = budget.reserve_message(1, count_day=False, max_wait=1e9, hold_for=hold)
            if permit.retry:
                heapq.heappush(events, (now + permit.wait, c, "reserve", None))
                continue
            start, ticket = now + permit.wait, permit.ticket
        else:
            start = last = next_slot(last, now, n, window)
        arrival = start + rng.random() * 3 * slot  # within the hold: 3 slots < 5
        arrivals.append(arrival)
        if rng.random() < 0.05:  # the worker dies: its ticket lapses; a new one starts
            heapq.heappush(events, (arrival, c, "reserve", None))
        else:
            heapq.heappush(events, (arrival + rng.random() * 2 * slot, c, "answer", ticket))
    return arrivals, n, window


def test_the_cap_holds_every_server_window_whatever_the_delays() -> None:
    """Simulated fleets with random network delays and dead workers: the server never sees
    more than per_minute MAIL FROMs in a window; with even pacing alone it does."""
    paced_over = 0
    for seed in range(80):
        arrivals, n, window = simulate(seed, capped=True)
        assert len(arrivals) == 60
        assert most_in_window(arrivals, window) <= n, seed
        paced, n, window = simulate(seed, capped=False)
        paced_over += most_in_window(paced, window) > n
    assert paced_over > 40  # the simulation does bunch arrivals without the cap


def test_capped_start_waits_for_answers_to_leave_the_window() -> None:
    """The first time from the slot on with in_flight + answers in the window below N."""
    assert capped_start(10.0, 0, [], 3, 5.0) == 10.0
    assert capped_start(10.0, 3, [], 3, 5.0) is None
    assert capped_start(10.0, 2, [], 3, 5.0) == 10.0
    assert capped_start(10.0, 2, [9.0], 3, 5.0) == 14.0
    assert capped_start(10.0, 1, [4.0, 6.0, 7.0, 8.0], 3, 5.0) == 12.0  # 4.0 is out already
    assert capped_start(10.0, 0, [7.0, 7.0, 7.0], 3, 5.0) == 12.0  # ties leave together


def test_a_ticket_never_handed_back_lapses_after_its_hold() -> None:
    """A worker killed between its slot and the answer: its ticket counts as answered when
    its hold ends, so it delays the others by a window at most, never forever."""
    clock = [100.0]
    budget = LocalBudget(SendLimits(per_minute=2, window=10.0), "m@x", clock=lambda: clock[0])
    first = budget.reserve_message(1, count_day=True, max_wait=60.0, hold_for=30.0)
    second = budget.reserve_message(1, count_day=True, max_wait=60.0, hold_for=30.0)
    assert (first.wait, second.wait) == (0.0, 5.0)
    assert budget.in_flight == 2
    third = budget.reserve_message(1, count_day=True, max_wait=60.0, hold_for=30.0)
    assert third.retry
    assert third.ticket is None
    budget.answered([str(first.ticket), "no-such-ticket"])
    clock[0] = 101.0
    fourth = budget.reserve_message(1, count_day=True, max_wait=60.0, hold_for=30.0)
    assert fourth.wait == 9.0  # the first's answer (at 100) leaves at 110
    clock[0] = 136.0  # the second (slot 105) lapsed at 135: answered then
    assert budget.in_flight == 1
    fifth = budget.reserve_message(1, count_day=True, max_wait=60.0, hold_for=30.0)
    assert fifth.wait == 9.0  # leaves at 145
    assert budget.reserve_message(1, count_day=True, max_wait=60.0).retry


def test_daily_counts_roll_and_refuse_clearly() -> None:
    """The rolling day forgets old buckets; a cap reached is refused naming it."""
    day = 144.0  # buckets of one second
    assert rolling_total({0: 5, 100: 2}, 100.5, day) == 7
    assert rolling_total({0: 5, 100: 2}, 145.5, day) == 2
    limits = SendLimits(recipients_per_day=10, messages_per_day=3)
    said = day_refusal(limits, messages=1, recipients=9, adding=2, mailbox="m@x")
    assert said is not None
    assert "recipients_per_day" in said
    assert "m@x" in said
    said = day_refusal(limits, messages=3, recipients=0, adding=1, mailbox="m@x")
    assert said is not None
    assert "messages_per_day" in said
    assert day_refusal(limits, messages=2, recipients=8, adding=2, mailbox="m@x") is None


def test_backoff_doubles_with_jitter_and_a_cap() -> None:
    """Each retry waits longer, never more than the cap."""
    assert backoff_delay(1, base=1.0, cap=10, unit=0.0) == 0.5
    assert backoff_delay(3, base=1.0, cap=10, unit=0.999) < 4.0
    assert backoff_delay(30, base=1.0, cap=10, unit=0.999) <= 10


def test_which_results_are_retried() -> None:
    """4xx refusals are retried; 5xx, 432 4.7.12 and partial deliveries are not."""
    assert transient_result(SendResult("failed", 451, "4.7.500 busy"))
    assert not transient_result(SendResult("failed", 550, "5.1.1 no such user"))
    assert not transient_result(SendResult("failed", 432, "4.7.12 password transition"))
    assert not transient_result(SendResult("sent", 250, "ok", {"a@x": (451, "later")}))
    mixed = SendResult("failed", 451, "later", {"a@x": (451, "later"), "b@x": (550, "no")})
    assert not transient_result(mixed)


def test_local_budget_is_first_come_first_served() -> None:
    """Connection slots go to waiters in the order they asked."""
    budget = LocalBudget(SendLimits(connections=1), "m@x")
    first = budget.acquire_connection(1.0)
    assert first is not None
    assert budget.acquire_connection(0.0) is None
    order: list[int] = []

    def wait_for_slot(i: int, ready: threading.Event) -> None:
        ready.set()
        hold = budget.acquire_connection(10.0)
        assert hold is not None
        order.append(i)
        hold.release()

    threads = []
    for i in range(3):
        ready = threading.Event()
        t = threading.Thread(target=wait_for_slot, args=(i, ready))
        t.start()
        ready.wait(5)
        for _ in range(2500):  # this waiter is queued before the next one asks (bounded)
            if budget.waiters == i + 1:
                break
            threading.Event().wait(0.002)
        threads.append(t)
    first.release()
    for t in threads:
        t.join(10)
    assert order == [0, 1, 2]
    assert budget.held == 0


# -- sessions sharing one budget in a process -------------------------------------------------

WINDOW = 0.5


def send_from_threads(
    server: LimitsServer, limits: SendLimits, *, workers: int, count: int
) -> list[str]:
    """``workers`` sessions in as many threads, one mailbox, ``count`` messages each
    (2 connections each); their statuses."""
    results: list[SendResult] = []
    lock = threading.Lock()

    def worker(w: int) -> None:
        batch = [message(i, tag=f"w{w}") for i in range(count)]
        with SMTPSession(
            "127.0.0.1", server.port, security="none", connections=2, limits=limits
        ) as session:
            got = session.send_many(batch)
        with lock:
            results.extend(got)

    threads = [threading.Thread(target=worker, args=(w,)) for w in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(60)
    assert not any(t.is_alive() for t in threads)
    return [r.status for r in results]


def test_threads_share_one_budget() -> None:
    """Four sessions in four threads, one mailbox: together never more than the limits,
    counted by the server over every half-open window of the full length."""
    limits = SendLimits(connections=2, per_minute=10, window=WINDOW)
    with LimitsServer() as server:
        statuses = send_from_threads(server, limits, workers=4, count=8)
    assert statuses == ["sent"] * 32
    assert server.peak <= 2
    assert server.most_in_window(WINDOW) <= 10
    assert sorted(server.ids.values()) == [1] * 32


def test_late_arrivals_never_bunch_past_the_limit() -> None:
    """The server sees each MAIL FROM up to 2.5 slots late, at random (a network that delays
    some messages more than others): evenly paced starts would bunch (a late one lands in
    the window of the punctual ones after it); the cap on messages not yet answered or
    answered within the window keeps every full window at the limit."""
    limits = SendLimits(connections=3, per_minute=8, window=WINDOW)
    with LimitsServer(mail_delay=2.5 * WINDOW / 8) as server:
        statuses = send_from_threads(server, limits, workers=3, count=8)
    assert statuses == ["sent"] * 24
    assert server.peak <= 3
    assert server.most_in_window(WINDOW) <= 8
    assert sorted(server.ids.values()) == [1] * 24


def test_too_many_recipients_fail_without_sending() -> None:
    """A message over recipients_per_message fails naming the limit; the others go."""
    limits = SendLimits(recipients_per_message=3)
    with (
        LimitsServer() as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        big, small = s.send_many([message(1, recipients=4), message(2, recipients=3)])
    assert big.status == "failed"
    assert "recipients_per_message allows 3" in (big.message or "")
    assert small.ok
    assert list(server.ids) == ["<t-2@example.test>"]


def test_daily_cap_defers_clearly() -> None:
    """Past messages_per_day, messages are 'deferred' (not sent), never blocked forever."""
    limits = SendLimits(messages_per_day=3, recipients_per_day=100)
    with (
        LimitsServer() as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        results = s.send_many([message(i) for i in range(5)])
        single = s.send(message(9))
    assert [r.status for r in results] == ["sent"] * 3 + ["deferred"] * 2
    assert "messages_per_day" in (results[3].message or "")
    assert single.status == "deferred"
    assert not single.ok
    with pytest.raises(oauthsmtp.SMTPError, match="deferred"):
        single.raise_for_status()
    assert len(server.ids) == 3


def test_a_wait_past_max_wait_is_deferred() -> None:
    """A message slot further away than max_wait is not taken: 'deferred', at once."""
    limits = SendLimits(per_minute=1, window=3600, max_wait=0.05)
    with (
        LimitsServer() as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        first, second = s.send_many([message(1), message(2)])
    assert first.ok
    assert second.status == "deferred"
    assert "max_wait" in (second.message or "")
    assert len(server.ids) == 1


def test_messages_in_flight_past_max_wait_are_deferred() -> None:
    """per_minute messages in flight (their MAIL FROM unanswered, here a ticket nobody hands
    back) for longer than max_wait: 'deferred', naming why; handed back, the next goes."""
    limits = SendLimits(per_minute=1, window=0.05, max_wait=0.2)
    with LimitsServer() as server:
        budget = local_budget(f"127.0.0.1:{server.port}", limits)
        stuck = budget.reserve_message(1, count_day=False, max_wait=1.0)
        assert stuck.ticket is not None
        with SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s:
            late = s.send(message(1))
            budget.answered([stuck.ticket])
            sent = s.send(message(2))
    assert late.status == "deferred"
    assert "in flight" in (late.message or "")
    assert "max_wait" in (late.message or "")
    assert sent.ok
    assert list(server.ids) == ["<t-2@example.test>"]
    assert budget.in_flight == 0  # the session handed its own ticket back


def test_no_connection_slot_in_time_is_deferred() -> None:
    """All slots held by another session for longer than max_wait: 'deferred' results
    (send, send_many), and start() says why."""
    limits = SendLimits(connections=1, max_wait=0.05)
    with LimitsServer() as server:
        with SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as holder:
            assert holder.send(message(0)).ok
            other = SMTPSession("127.0.0.1", server.port, security="none", limits=limits)
            one = other.send(message(1))
            many = other.send_many([message(2), message(3)])
            with pytest.raises(
                oauthsmtp.SMTPError, match=r"no connection slot .* SendLimits\.max_wait"
            ):
                other.start()
            other.close()
        with other:  # the holder closed: its slot is free again
            assert other.send(message(4)).ok
    assert one.status == "deferred"
    assert "at most 1 connections" in (one.message or "")
    assert [r.status for r in many] == ["deferred", "deferred"]
    assert sorted(server.ids) == ["<t-0@example.test>", "<t-4@example.test>"]
    assert server.peak == 1


def test_transient_refusals_are_retried_once_each() -> None:
    """451 to MAIL FROM and to the end of data: retried after a backoff, delivered once."""
    limits = SendLimits(backoff=0.01, retries=3)
    with (
        LimitsServer(transient_mail=2, transient_data=1) as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        results = s.send_many([message(i) for i in range(4)])
    assert [r.status for r in results] == ["sent"] * 4
    assert server.refused_mail == 2
    assert server.refused_data == 1
    assert sorted(server.ids.values()) == [1] * 4


def test_retries_run_out_with_the_servers_answer() -> None:
    """A server that keeps saying 451: the message fails with that reply, after `retries`."""
    limits = SendLimits(backoff=0.001, retries=2)
    with (
        LimitsServer(transient_mail=100) as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        result = s.send(message(1))
    assert result.status == "failed"
    assert result.code == 451
    assert server.refused_mail == 3


def test_432_at_connect_backs_off_and_delivers() -> None:
    """A provider allowing 1 connection (432 4.3.2 beyond) and sessions wanting 3: all sent."""
    limits = SendLimits(backoff=0.01, retries=8, max_wait=30)
    with (
        LimitsServer(max_connections=1) as server,
        SMTPSession("127.0.0.1", server.port, security="none", connections=3, limits=limits) as s,
    ):
        results = s.send_many([message(i) for i in range(12)])
    assert [r.status for r in results] == ["sent"] * 12
    assert sorted(server.ids.values()) == [1] * 12


def test_without_limits_nothing_changes() -> None:
    """limits_store without limits is a configuration error; limits must be SendLimits."""
    with pytest.raises(ConfigurationError, match="limits="):
        SMTPSession("127.0.0.1", 25, security="none", limits_store=object())
    with pytest.raises(ConfigurationError, match="SendLimits"):
        SMTPSession("127.0.0.1", 25, security="none", limits={"connections": 3})  # type: ignore[arg-type]


def test_the_relay_tells_its_client_to_try_again_later() -> None:
    """A deferred message becomes a 451 for a program that relays through oauthsmtp."""
    from oauthsmtp._cli.relayserver import reply_for

    reply = reply_for(SendResult("deferred", None, "not sent: the daily cap ... is reached"))
    assert reply.startswith("451 4.3.0")
    assert "daily cap" in reply


def test_recipients_per_day_counts_every_recipient() -> None:
    """Two messages of 2 recipients fit in 5 a day; the third would make 6: deferred."""
    limits = SendLimits(recipients_per_day=5)
    with (
        LimitsServer() as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        results = s.send_many([message(i, recipients=2) for i in range(3)])
        one_more = s.send(message(9, recipients=1))
    assert [r.status for r in results] == ["sent", "sent", "deferred"]
    assert "recipients_per_day" in (results[2].message or "")
    assert one_more.ok  # 4 + 1 fits
    assert len(server.ids) == 3


def test_submitted_messages_get_deferred_results_too() -> None:
    """The background sender (submit) hands out the same 'deferred' results."""
    limits = SendLimits(messages_per_day=1)
    with (
        LimitsServer() as server,
        SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s,
    ):
        futures = [s.submit(message(i)) for i in range(3)]
        statuses = [f.result(timeout=30).status for f in futures]
    assert statuses == ["sent", "deferred", "deferred"]
    assert len(server.ids) == 1


def test_a_session_never_opens_more_than_the_limit_itself() -> None:
    """connections=4 on the session, 2 in the limits: the server sees at most 2."""
    limits = SendLimits(connections=2)
    with (
        LimitsServer() as server,
        SMTPSession("127.0.0.1", server.port, security="none", connections=4, limits=limits) as s,
    ):
        results = s.send_many([message(i) for i in range(30)])
    assert all(r.ok for r in results)
    assert server.peak <= 2
    assert sorted(server.ids.values()) == [1] * 30
