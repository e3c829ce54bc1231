"""SendLimits shared through a RedisStore by several processes, against a real redis-server
(tests/redis_server.py) and a loopback SMTP server that counts what the limits must hold
(tests/limits_server.py). Worker processes run tests/limits_worker.py.

Assertions are on counts the server and Redis recorded, never on how long anything took.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
from components import Lines, spawned
from limits_server import LimitsServer

from oauthsmtp import RedisStore, SendLimits, TokenStoreError

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent
WORKER = Path(__file__).resolve().parent / "limits_worker.py"
MAILBOX = "fleet@example.test"


def env() -> dict[str, str]:
    environ = dict(os.environ)
    environ["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), environ.get("PYTHONPATH")]))
    return environ


def run_workers(configs: list[dict[str, Any]], *, within: float = 60.0) -> list[list[str]]:
    """Start one worker per config at once; their statuses, in order."""
    procs = [
        subprocess.Popen(
            [sys.executable, str(WORKER), json.dumps(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env(),
        )
        for config in configs
    ]
    statuses = []
    for proc in procs:
        try:
            out, err = proc.communicate(timeout=within)
        except subprocess.TimeoutExpired:
            for other in procs:
                other.kill()
            raise
        assert proc.returncode == 0, err
        statuses.append(json.loads(out.strip().splitlines()[-1]))
    return statuses


# -- the budget in Redis ------------------------------------------------------------------


def test_connection_slots_are_shared_and_fair(redis_server: RedisServer) -> None:
    """Two stores (as two processes would): together never more than `connections`;
    waiters are served in the order they asked."""
    limits = SendLimits(connections=2)
    a = RedisStore(redis_server.url).send_budget(MAILBOX, limits)
    b = RedisStore(redis_server.url).send_budget(MAILBOX, limits)
    first, second = a.acquire_connection(1.0), b.acquire_connection(1.0)
    assert first is not None
    assert second is not None
    assert a.acquire_connection(0.0) is None
    assert b.acquire_connection(0.05) is None
    order: list[int] = []
    client = redis_server.client()

    def wait_for_slot(i: int) -> None:
        hold = (a, b)[i % 2].acquire_connection(20.0)
        assert hold is not None
        order.append(i)
        hold.release()

    threads = []
    for i in range(4):
        t = threading.Thread(target=wait_for_slot, args=(i,))
        t.start()
        threads.append(t)
        for _ in range(2500):  # this waiter is queued in Redis before the next one asks
            if client.zcard(a.keys["wait"]) == i + 1:
                break
            threading.Event().wait(0.002)
    first.release()
    for t in threads:
        t.join(30)
    second.release()
    assert order == [0, 1, 2, 3]
    assert client.zcard(a.keys["conn"]) == 0
    assert client.zcard(a.keys["wait"]) == 0
    client.close()


def test_message_slots_and_daily_caps_are_shared(redis_server: RedisServer) -> None:
    """Reservations from two stores are spaced as one budget and capped as one (4 in
    flight: no fifth until one is answered); a daily cap counts both."""
    limits = SendLimits(per_minute=4, window=400.0, messages_per_day=5, max_wait=350.0)
    a = RedisStore(redis_server.url).send_budget(MAILBOX, limits)
    b = RedisStore(redis_server.url).send_budget(MAILBOX, limits)
    waits = [(a, b)[i % 2].reserve_message(1, count_day=True, max_wait=350.0) for i in range(4)]
    assert [p.refusal for p in waits] == [None] * 4
    # 100 s apart each: the waits grow by about 100 s (Redis's clock moves a little meanwhile)
    assert [round(p.wait / 100) for p in waits] == [0, 1, 2, 3]
    too_far = a.reserve_message(1, count_day=True, max_wait=350.0)
    assert too_far.refusal is not None
    assert "max_wait" in too_far.refusal
    crowded = b.reserve_message(1, count_day=True, max_wait=1000.0)
    assert crowded.retry  # 4 in flight: nothing reserved, nothing counted
    assert crowded.refusal is None
    assert crowded.ticket is None
    tickets = [p.ticket for p in waits]
    assert None not in tickets
    assert len(set(tickets)) == 4
    a.answered([str(t) for t in tickets[:2]])
    b.answered([str(t) for t in tickets[2:]])
    fifth = b.reserve_message(1, count_day=True, max_wait=1000.0)
    assert fifth.refusal is None
    assert not fifth.retry
    # the 4 answered just now count until a window after their answers
    assert 399 < fifth.wait <= 401
    capped = a.reserve_message(1, count_day=True, max_wait=1000.0)
    assert capped.refusal is not None
    assert "messages_per_day" in capped.refusal
    retry = a.reserve_message(1, count_day=False, max_wait=1000.0)
    assert retry.refusal is None  # a retry of a counted message is not counted again


def test_redis_down_is_a_clear_error(make_redis_server: Callable[..., RedisServer]) -> None:
    """Redis unreachable: TokenStoreError naming Redis, never a hang."""
    server = make_redis_server()
    budget = RedisStore(server.url, socket_timeout=1.0).send_budget(
        MAILBOX, SendLimits(connections=1, per_minute=10)
    )
    server.stop()
    with pytest.raises(TokenStoreError, match=r"Redis at redis://127\.0\.0\.1"):
        budget.acquire_connection(1.0)
    with pytest.raises(TokenStoreError, match="Redis"):
        budget.reserve_message(1, count_day=True, max_wait=1.0)


# -- processes sharing the budget ----------------------------------------------------------


def test_four_processes_never_exceed_the_limits(redis_server: RedisServer) -> None:
    """4 workers x 10 messages, 2 connections and 10 messages per 0.5 s for the mailbox:
    the server never sees more; every message arrives exactly once."""
    limits = {"connections": 2, "per_minute": 10, "window": 0.5, "max_wait": 60}
    with LimitsServer() as server:
        configs = [
            {"url": redis_server.url, "port": server.port, "worker": w, "count": 10,
             "limits": limits, "connections": 2}
            for w in range(4)
        ]  # fmt: skip
        statuses = run_workers(configs)
    assert statuses == [["sent"] * 10] * 4
    assert server.peak <= 2
    assert server.most_in_window(0.5) <= 10  # every half-open window, the server's clock
    assert sorted(server.ids.values()) == [1] * 40


def test_late_arrivals_never_bunch_past_the_limit(redis_server: RedisServer) -> None:
    """4 workers, 3 connections and 8 messages per 0.5 s; the server sees each MAIL FROM up
    to 2.5 slots late, at random: evenly paced starts alone would bunch past the limit in
    some window; with the cap, no full window on the server holds more than 8."""
    limits = {"connections": 3, "per_minute": 8, "window": 0.5, "max_wait": 60}
    with LimitsServer(mail_delay=2.5 * 0.5 / 8) as server:
        configs = [
            {"url": redis_server.url, "port": server.port, "worker": w, "count": 8,
             "limits": limits, "connections": 2}
            for w in range(4)
        ]  # fmt: skip
        statuses = run_workers(configs)
    assert statuses == [["sent"] * 8] * 4
    assert server.peak <= 3
    assert server.most_in_window(0.5) <= 8
    assert sorted(server.ids.values()) == [1] * 32
    # every ticket was handed back before its worker exited (none left to lapse)
    budget = RedisStore(redis_server.url).send_budget(
        f"127.0.0.1:{server.port}", SendLimits(**limits)
    )
    client = redis_server.client()
    assert client.zcard(budget.keys["flight"]) == 0
    assert client.zcard(budget.keys["answered"]) > 0
    client.close()


def test_a_daily_cap_holds_across_processes(redis_server: RedisServer) -> None:
    """messages_per_day=5 for two workers of 4 messages: 5 sent, 3 deferred, none lost."""
    limits = {"messages_per_day": 5, "max_wait": 10}
    with LimitsServer() as server:
        configs = [
            {
                "url": redis_server.url,
                "port": server.port,
                "worker": w,
                "count": 4,
                "limits": limits,
            }
            for w in range(2)
        ]
        statuses = run_workers(configs)
    flat = [s for worker in statuses for s in worker]
    assert sorted(flat) == ["deferred"] * 3 + ["sent"] * 5
    assert len(server.ids) == 5


def test_a_432_server_is_backed_off_and_all_delivered(redis_server: RedisServer) -> None:
    """The budget allows 3 connections but the server only 1 (432 4.3.2 beyond): the
    workers back off and retry; every message arrives once."""
    limits = {"connections": 3, "backoff": 0.02, "retries": 10, "max_wait": 60}
    with LimitsServer(max_connections=1) as server:
        configs = [
            {
                "url": redis_server.url,
                "port": server.port,
                "worker": w,
                "count": 5,
                "limits": limits,
            }
            for w in range(3)
        ]
        statuses = run_workers(configs)
    assert statuses == [["sent"] * 5] * 3
    assert server.refused_connections >= 1
    assert sorted(server.ids.values()) == [1] * 15


def test_a_killed_worker_does_not_keep_its_slot(redis_server: RedisServer) -> None:
    """A worker SIGKILLed while holding the only connection slot: its lease lapses and the
    next worker sends (within a bounded wait)."""
    limits = {"connections": 1, "max_wait": 30}
    with LimitsServer() as server:
        holder = {"url": redis_server.url, "port": server.port, "worker": "h", "count": 0,
                  "limits": limits, "lease": 1.0, "hold": True}  # fmt: skip
        with spawned(
            [sys.executable, str(WORKER), json.dumps(holder)], stdout=subprocess.PIPE, env=env()
        ) as proc:
            assert proc.stdout is not None
            Lines(proc.stdout).until("holding")
            store = RedisStore(redis_server.url, lease=1.0)
            budget = store.send_budget(f"127.0.0.1:{server.port}", SendLimits(**limits))
            client = redis_server.client()
            assert client.zcard(budget.keys["conn"]) == 1
            assert budget.acquire_connection(0.0) is None
            proc.kill()
            proc.wait(10)
        statuses = run_workers(
            [
                {
                    "url": redis_server.url,
                    "port": server.port,
                    "worker": "n",
                    "count": 3,
                    "limits": limits,
                    "lease": 1.0,
                }
            ]
        )
    assert statuses == [["sent"] * 3]
    assert sorted(server.ids) == [f"<wn-{n}@example.test>" for n in range(3)]
    assert client.zcard(budget.keys["conn"]) == 0
    client.close()


def test_the_documented_acl_commands_are_enough(redis_server: RedisServer) -> None:
    """docs/fleet.md's ACL line plus docs/limits.md's commands run the budget."""
    doc = (ROOT / "docs" / "limits.md").read_text(encoding="utf-8")
    extra = re.search(r"also needs `([^`]+)`", doc)
    assert extra is not None
    admin = redis_server.client()
    acl = "on >pw-ACL ~oauthsmtp:* +get +set +del +mget +scan +pexpire +evalsha +eval"
    admin.execute_command(
        "ACL", "SETUSER", "oauthsmtp", *acl.split(), "+script|load", *extra.group(1).split()
    )
    url = redis_server.url.replace("redis://", "redis://oauthsmtp:pw-ACL@")
    limits = SendLimits(connections=1, per_minute=100, window=1.0, messages_per_day=10)
    budget = RedisStore(url, lease=1.0).send_budget(MAILBOX, limits)
    hold = budget.acquire_connection(1.0)
    assert hold is not None
    assert budget.acquire_connection(0.05) is None  # waited in the queue, then left it
    threading.Event().wait(1.3)  # past one lease: the renewer (as this user) kept the slot
    assert budget.acquire_connection(0.0) is None
    assert budget.reserve_message(2, count_day=True, max_wait=5.0).refusal is None
    hold.release()
    assert admin.execute_command("ACL", "LOG") == []  # nothing was denied
    admin.close()
