"""SendLimits for AsyncSMTPSession: the same budget as the blocking session's, kept the
same way, waiting on the event loop without blocking it.

Against the loopback server that counts connections and MAIL FROMs over full windows
(tests/limits_server.py); the Redis test uses a real redis-server (tests/redis_server.py)
and a blocking worker process (tests/limits_worker.py). Assertions are on counts the
server recorded, never on how long anything took.
"""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
import threading
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, TypeVar

import pytest
from limits_server import LimitsServer
from test_limits import message, send_from_threads
from test_limits_fleet import WORKER, env

from oauthsmtp import (
    AsyncSMTPSession,
    ConfigurationError,
    RedisStore,
    SendLimits,
    SMTPSession,
    TokenStoreError,
)
from oauthsmtp._limits.budget import local_budget
from oauthsmtp._smtp.transact import SendResult

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

T = TypeVar("T")
WINDOW = 0.5


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


def session(server: LimitsServer, limits: SendLimits, **kwargs: Any) -> AsyncSMTPSession:
    return AsyncSMTPSession("127.0.0.1", server.port, security="none", limits=limits, **kwargs)


async def concurrent_senders(
    server: LimitsServer, limits: SendLimits, *, sessions: int, count: int, **kwargs: Any
) -> list[SendResult]:
    """``sessions`` asyncio sessions on this loop (2 connections each), each sending
    ``count`` messages: half as concurrent ``send()`` calls, half with ``send_many``."""

    async def one(s: int) -> list[SendResult]:
        half = count // 2
        async with session(server, limits, connections=2, **kwargs) as smtp:
            singles = [smtp.send(message(i, tag=f"a{s}")) for i in range(half)]
            many = smtp.send_many([message(i, tag=f"a{s}") for i in range(half, count)])
            *sent, rest = await asyncio.gather(*singles, many)
        return [*sent, *rest]

    batches = await asyncio.gather(*(one(s) for s in range(sessions)))
    return [result for batch in batches for result in batch]


def test_concurrent_sends_never_exceed_the_limits() -> None:
    """Three asyncio sessions, one mailbox, concurrent send() and send_many: together
    never more than 2 connections nor 10 MAIL FROMs in any full window at the server."""
    limits = SendLimits(connections=2, per_minute=10, window=WINDOW)
    with LimitsServer() as server:
        results = run(concurrent_senders(server, limits, sessions=3, count=10))
        budget = local_budget(f"127.0.0.1:{server.port}", limits)
    assert [r.status for r in results] == ["sent"] * 30
    assert server.peak <= 2
    assert server.most_in_window(WINDOW) <= 10
    assert sorted(server.ids.values()) == [1] * 30
    assert budget.held == 0  # every slot given back on close
    assert budget.in_flight == 0  # every ticket handed back when its MAIL FROM was answered


def test_late_arrivals_never_bunch_past_the_limit() -> None:
    """MAIL FROMs seen up to 2.5 slots late, at random: the tickets handed back when the
    MAIL reply is read keep every full window at the server within the limit."""
    limits = SendLimits(connections=3, per_minute=8, window=WINDOW)
    with LimitsServer(mail_delay=2.5 * WINDOW / 8) as server:
        results = run(concurrent_senders(server, limits, sessions=3, count=8))
    assert [r.status for r in results] == ["sent"] * 24
    assert server.peak <= 3
    assert server.most_in_window(WINDOW) <= 8
    assert sorted(server.ids.values()) == [1] * 24


def test_blocking_and_asyncio_sessions_share_one_budget() -> None:
    """Two blocking sessions in threads and two asyncio sessions on a loop, one mailbox:
    one in-process budget, never exceeded together."""
    limits = SendLimits(connections=2, per_minute=10, window=WINDOW)
    with LimitsServer() as server:
        statuses: list[str] = []
        blocking = threading.Thread(
            target=lambda: statuses.extend(send_from_threads(server, limits, workers=2, count=8))
        )
        blocking.start()
        results = run(concurrent_senders(server, limits, sessions=2, count=8))
        blocking.join(60)
        assert not blocking.is_alive()
    assert statuses == ["sent"] * 16
    assert [r.status for r in results] == ["sent"] * 16
    assert server.peak <= 2
    assert server.most_in_window(WINDOW) <= 10
    assert sorted(server.ids.values()) == [1] * 32


def test_too_many_recipients_fail_and_a_daily_cap_defers() -> None:
    """recipients_per_message: 'failed' naming it; messages_per_day: 'deferred'."""
    limits = SendLimits(recipients_per_message=3, messages_per_day=2)

    async def main(server: LimitsServer) -> tuple[list[SendResult], SendResult]:
        async with session(server, limits) as smtp:
            results = await smtp.send_many(
                [message(1, recipients=4), message(2, recipients=3), message(3), message(4)]
            )
            return results, await smtp.send(message(5))

    with LimitsServer() as server:
        results, single = run(main(server))
    assert [r.status for r in results] == ["failed", "sent", "sent", "deferred"]
    assert "recipients_per_message allows 3" in (results[0].message or "")
    assert "messages_per_day" in (results[3].message or "")
    assert single.status == "deferred"
    assert sorted(server.ids) == ["<t-2@example.test>", "<t-3@example.test>"]


def test_a_transient_refusal_is_retried_and_delivered_once() -> None:
    """451 to MAIL FROM and to the end of data, then 250: retried, each delivered once."""
    limits = SendLimits(backoff=0.01, retries=3)

    async def main(server: LimitsServer) -> list[SendResult]:
        async with session(server, limits) as smtp:
            return list(await asyncio.gather(*(smtp.send(message(i)) for i in range(3))))

    with LimitsServer(transient_mail=1, transient_data=1) as server:
        results = run(main(server))
    assert [r.status for r in results] == ["sent"] * 3
    assert (server.refused_mail, server.refused_data) == (1, 1)
    assert sorted(server.ids.values()) == [1] * 3


def test_no_connection_slot_in_time_is_deferred() -> None:
    """The only slot held by a blocking session past max_wait: send() and send_many get
    'deferred' (verify() still runs: it is outside the budget); once the slot is given
    back, the asyncio session sends."""
    limits = SendLimits(connections=1, max_wait=0.05)

    async def main(server: LimitsServer, holder: SMTPSession) -> list[SendResult]:
        smtp = session(server, limits)
        assert (await smtp.verify()).mechanism is None  # outside the budget, as SMTPSession's
        one = await smtp.send(message(1))
        many = await smtp.send_many([message(2), message(3)])
        holder.close()
        async with smtp:
            later = await smtp.send(message(4))
        return [one, *many, later]

    with LimitsServer() as server:
        holder = SMTPSession("127.0.0.1", server.port, security="none", limits=limits).start()
        results = run(main(server, holder))
    assert [r.status for r in results] == ["deferred"] * 3 + ["sent"]
    assert "at most 1 connections" in (results[0].message or "")
    assert list(server.ids) == ["<t-4@example.test>"]
    assert server.peak == 2  # the holder's, and verify()'s own (outside the budget)


def test_432_at_connect_backs_off_and_delivers() -> None:
    """A provider allowing 1 connection (432 4.3.2 beyond) and three asyncio sessions at
    once: the refused ones back off and retry; every message arrives once."""
    limits = SendLimits(backoff=0.01, retries=10, max_wait=30)

    async def main(server: LimitsServer) -> list[SendResult]:
        async def one(s: int) -> list[SendResult]:
            async with session(server, limits) as smtp:
                return await smtp.send_many([message(i, tag=f"a{s}") for i in range(4)])

        batches = await asyncio.gather(*(one(s) for s in range(3)))
        return [result for batch in batches for result in batch]

    with LimitsServer(max_connections=1) as server:
        results = run(main(server))
    assert [r.status for r in results] == ["sent"] * 12
    assert server.refused_connections >= 1
    assert sorted(server.ids.values()) == [1] * 12


async def ticking(reached: threading.Event, ticks: list[int], after: int) -> None:
    """Count turns of the loop; set ``reached`` after ``after`` of them."""
    while True:
        await asyncio.sleep(0.005)
        ticks[0] += 1
        if ticks[0] == after:
            reached.set()


async def send_while_ticking(
    server: LimitsServer, limits: SendLimits, ticked: threading.Event
) -> tuple[SendResult, int]:
    """Send message 1 from an asyncio session while a ticker task sets ``ticked`` after
    20 turns of the loop; the result and the ticks counted by then."""
    ticks = [0]
    ticker = asyncio.ensure_future(ticking(ticked, ticks, 20))
    try:
        async with session(server, limits) as smtp:
            result = await smtp.send(message(1))
        return result, ticks[0]
    finally:
        ticker.cancel()


def test_the_loop_runs_while_waiting_for_a_connection_slot() -> None:
    """The only slot is held by a blocking session in a thread, which gives it back only
    once a ticker task on the loop has ticked 20 times: the asyncio session waiting for
    the slot gets it (a loop blocked in the wait would never tick, and the send would be
    deferred at max_wait)."""
    limits = SendLimits(connections=1, max_wait=5)

    with LimitsServer() as server:
        ticked = threading.Event()

        def hold() -> None:
            with SMTPSession("127.0.0.1", server.port, security="none", limits=limits) as s:
                assert s.send(message(0)).ok
                held.set()
                ticked.wait(20)

        held = threading.Event()
        holder = threading.Thread(target=hold)
        holder.start()
        assert held.wait(20)
        result, ticks = run(send_while_ticking(server, limits, ticked))
        holder.join(20)
    assert result.ok
    assert ticks >= 20
    assert server.peak == 1
    assert sorted(server.ids) == ["<t-0@example.test>", "<t-1@example.test>"]


def test_the_loop_runs_while_waiting_for_a_message_slot() -> None:
    """per_minute messages in flight (a ticket held elsewhere): the asyncio session waits
    for a message slot; a ticker task hands the ticket back after 20 ticks, and only then
    can the message go (a loop blocked in the wait would never tick: deferred)."""
    limits = SendLimits(per_minute=1, window=0.05, max_wait=5)

    async def main(server: LimitsServer) -> tuple[SendResult, int]:
        budget = local_budget(f"127.0.0.1:{server.port}", limits)
        stuck = budget.reserve_message(1, count_day=False, max_wait=1.0)
        assert stuck.ticket is not None
        ticked = threading.Event()
        ticked_then = asyncio.ensure_future(asyncio.to_thread(ticked.wait, 20))
        ticked_then.add_done_callback(lambda _: budget.answered([str(stuck.ticket)]))
        try:
            return await send_while_ticking(server, limits, ticked)
        finally:
            await ticked_then

    with LimitsServer() as server:
        result, ticks = run(main(server))
    assert result.ok
    assert ticks >= 20
    assert list(server.ids) == ["<t-1@example.test>"]


def test_limits_are_checked_like_the_blocking_sessions() -> None:
    """limits_store without limits, or limits that are not SendLimits: refused at once."""
    with pytest.raises(ConfigurationError, match="limits="):
        AsyncSMTPSession("127.0.0.1", 25, security="none", limits_store=object())
    with pytest.raises(ConfigurationError, match="SendLimits"):
        AsyncSMTPSession("127.0.0.1", 25, security="none", limits={"connections": 3})  # type: ignore[arg-type]
    limits = SendLimits(connections=3)
    assert AsyncSMTPSession("127.0.0.1", 25, security="none", limits=limits).limits == limits
    assert AsyncSMTPSession("127.0.0.1", 25, security="none").limits is None


def test_an_asyncio_and_a_blocking_process_share_a_redis_budget(
    redis_server: RedisServer,
) -> None:
    """An asyncio session here and a blocking session in another process, one RedisStore
    budget: together never more than 2 connections nor 10 MAIL FROMs per full window."""
    raw = {"connections": 2, "per_minute": 10, "window": WINDOW, "max_wait": 60}
    limits = SendLimits(**raw)  # type: ignore[arg-type]
    with LimitsServer() as server:
        config = {"url": redis_server.url, "port": server.port, "worker": "b", "count": 12,
                  "limits": raw, "connections": 2}  # fmt: skip
        proc = subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        try:
            store = RedisStore(redis_server.url)
            results = run(concurrent_senders(server, limits, sessions=1, count=12,
                                             limits_store=store))  # fmt: skip
            out, err = proc.communicate(timeout=60)
        finally:
            proc.kill()
            proc.wait(10)
        assert proc.returncode == 0, err
    assert json.loads(out.strip().splitlines()[-1]) == ["sent"] * 12
    assert [r.status for r in results] == ["sent"] * 12
    assert server.peak <= 2
    assert server.most_in_window(WINDOW) <= 10
    assert sorted(server.ids.values()) == [1] * 24
    budget = store.send_budget(f"127.0.0.1:{server.port}", limits)
    client = redis_server.client()
    assert client.zcard(budget.keys["flight"]) == 0  # every ticket handed back
    assert client.zcard(budget.keys["conn"]) == 0  # every slot given back
    client.close()


def test_many_sessions_waiting_for_a_slot_do_not_starve_its_holder(
    redis_server: RedisServer,
) -> None:
    """40 asyncio sessions on one loop, one connection slot in Redis: the 39 waiting for it
    do not fill the loop's thread pool, so the holder still reaches Redis for its message
    slot, sends and gives the slot back; each waiter in turn, none deferred."""
    limits = SendLimits(connections=1, per_minute=10_000, window=1.0, max_wait=10)

    async def main(server: LimitsServer) -> list[SendResult]:
        store = RedisStore(redis_server.url)

        async def one(n: int) -> SendResult:
            async with session(server, limits, limits_store=store) as smtp:
                return await smtp.send(message(n))

        return list(await asyncio.gather(*(one(n) for n in range(40))))

    with LimitsServer() as server:
        results = run(main(server))
    assert [r.status for r in results] == ["sent"] * 40
    assert server.peak == 1
    assert sorted(server.ids.values()) == [1] * 40


def test_redis_down_is_a_clear_error(make_redis_server: Callable[..., RedisServer]) -> None:
    """Redis unreachable: send() raises TokenStoreError naming Redis (from the thread
    that asked), send_many too; nothing reaches the SMTP server, nothing hangs."""
    server_r = make_redis_server()
    store = RedisStore(server_r.url, socket_timeout=1.0)
    server_r.stop()
    limits = SendLimits(connections=1, per_minute=10, max_wait=5)

    async def main(server: LimitsServer) -> None:
        smtp = session(server, limits, limits_store=store)
        with pytest.raises(TokenStoreError, match=r"Redis at redis://127\.0\.0\.1"):
            await smtp.send(message(1))
        with pytest.raises(TokenStoreError, match="Redis"):
            await smtp.send_many([message(2), message(3)])
        await smtp.close()

    with LimitsServer() as server:
        run(main(server))
    assert not server.ids
    assert server.connections == 0
