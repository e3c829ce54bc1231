"""A fleet of real Celery workers sending for one mailbox through the development provider.

Everything is real and on loopback: a redis-server (broker, result backend and RedisStore),
four ``celery worker`` processes started here (``--pool=solo``, tests/celery_fleet_app.py,
configured through environment variables), the development authorization server and SMTP
server, and a counting proxy in front of the SMTP server (tests/smtp_counting_proxy.py).
Assertions are on counts and recorded states, never on durations.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import ExitStack
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest
import redis
from celery import Celery
from components import Lines, spawned
from smtp_counting_proxy import CountingProxy, max_in_window

from oauthsmtp import LoginRequired, RedisStore
from oauthsmtp._accounts import AccountRegistry, AccountSettings
from oauthsmtp.devserver import AuthServer, SMTPServer, headless_login
from oauthsmtp.integrations.ledger import SendLedger, message_key

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent
TESTS = ROOT / "tests"
ACCOUNT = "fleet@example.test"
TASK = "oauthsmtp.send"
LIFETIME = 3600
WORKERS = 4
# Microsoft 365's limits (3 connections, 30 messages a minute) with the minute scaled down.
LIMITS = {"connections": 3, "per_minute": 30, "window": 0.6}


@dataclass
class Fleet:
    """The servers of one fleet test and the workers it started."""

    redis: RedisServer
    auth: AuthServer
    smtp: SMTPServer
    proxy: CountingProxy
    store: RedisStore
    env: dict[str, str]
    clock_offset: list[float]
    stack: ExitStack
    workers: list[subprocess.Popen[str]] = field(default_factory=list)
    logs: list[Lines] = field(default_factory=list)

    @property
    def broker(self) -> str:
        return self.env["FLEET_BROKER"]

    def start_workers(self, count: int, *, within: float = 90.0) -> None:
        """Start ``count`` workers and wait (bounded) until each says it is ready."""
        started = []
        for i in range(len(self.workers), len(self.workers) + count):
            command = [
                sys.executable, "-m", "celery", "-A", "celery_fleet_app", "worker",
                "--pool=solo", "-n", f"fleet{i}@%h", "--loglevel=INFO",
                "--without-gossip", "--without-mingle", "--without-heartbeat",
            ]  # fmt: skip
            proc = self.stack.enter_context(
                spawned(
                    command,
                    cwd=TESTS,
                    env=self.env,
                    stdout=subprocess.DEVNULL,
                    stderr=subprocess.PIPE,
                )
            )
            assert proc.stderr is not None
            lines = Lines(proc.stderr)
            self.workers.append(proc)
            self.logs.append(lines)
            started.append(lines)
        deadline = time.monotonic() + within
        for lines in started:
            lines.until(r"fleet\d+@\S+ ready\.", timeout=max(deadline - time.monotonic(), 1))

    def stop_workers(self, within: float = 30.0) -> None:
        """SIGTERM (a warm shutdown: sessions say QUIT), bounded; SIGKILL after."""
        for proc in self.workers:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
        deadline = time.monotonic() + within
        for proc in self.workers:
            try:
                proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


@pytest.fixture
def make_fleet(
    make_redis_server: Callable[..., RedisServer], tmp_path: Path
) -> Iterator[Callable[..., Fleet]]:
    """Builds the servers and the recorded account; stops everything at the test's end."""
    with ExitStack() as stack:

        def make(*, limits: dict[str, Any] | None = None, visibility: float = 3600) -> Fleet:
            redis_server = make_redis_server()
            offset = [0.0]
            auth = stack.enter_context(
                AuthServer(
                    mode="auto",
                    user=ACCOUNT,
                    access_token_lifetime=LIFETIME,
                    rotate_refresh_tokens=True,
                    clock=lambda: time.time() + offset[0],
                )
            )
            smtp = stack.enter_context(
                SMTPServer(auth.validate_access_token, tls_port=None, starttls=False)
            )
            proxy = CountingProxy(smtp.port).start()
            stack.callback(proxy.stop)
            store_url = redis_server.url  # db 0: tokens, send records, the shared budget
            store = RedisStore(store_url)
            params = auth.parameters(
                auth.register_client(public=True), redirect_url="http://127.0.0.1:0/callback"
            )
            headless_login(params, account=ACCOUNT, store=store, timeout=30)
            home = tmp_path / "home"
            AccountRegistry(home).put(
                AccountSettings(
                    account=ACCOUNT,
                    provider="custom",
                    client_id=params.client_id,
                    auth_url=params.auth_url,
                    token_url=params.token_url,
                    scope=tuple(params.scopes),
                    redirect_url=params.redirect_url,
                    smtp_host="127.0.0.1",
                    smtp_port=proxy.port,
                    security="none",
                    revocation_url=params.revocation_url,
                    issuer=params.issuer,
                )
            )
            env = {
                **os.environ,
                "PYTHONPATH": os.pathsep.join([str(ROOT), str(TESTS)]),
                "OAUTHSMTP_HOME": str(home),
                "FLEET_BROKER": store_url.rsplit("/", 1)[0] + "/1",
                "FLEET_STORE": store_url,
                "FLEET_ACCOUNT": ACCOUNT,
                "FLEET_VISIBILITY": str(visibility),
                "FLEET_LEASE": "3",
            }
            env.pop("FLEET_LIMITS", None)
            if limits is not None:
                env["FLEET_LIMITS"] = json.dumps(limits)
            fleet = Fleet(redis_server, auth, smtp, proxy, store, env, offset, stack)
            stack.callback(fleet.stop_workers)
            return fleet

        yield make


def message(n: int) -> bytes:
    mail = EmailMessage()
    mail["From"] = ACCOUNT
    mail["To"] = f"reader{n % 50:02d}@example.test"
    mail["Subject"] = f"fleet message {n}"
    mail["Message-ID"] = make_msgid(idstring=f"fleet{n}", domain="example.test")
    mail.set_content(f"message number {n}\n")
    return mail.as_bytes()


def wait_until(condition: Callable[[], bool], within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"not within {within} s: {what}")
        time.sleep(0.05)


def kill_outside_the_window(fleet: Fleet, victim: subprocess.Popen[str]) -> int:
    """SIGKILL ``victim`` at a moment it is not between "server accepted" and "recorded".

    The victim is stopped first (SIGSTOP); once the bytes it had written reached the
    server, its claims in Redis are compared with what the server received: a message
    the server has and the victim still marks "sending" is in the window no client can
    close (docs/fleet.md), so the victim is resumed and tried again a moment later.
    Returns how many attempts it took.
    """
    ledger = SendLedger(fleet.store, account=ACCOUNT)
    worker = f"{socket.gethostname()}:{victim.pid}"
    client = fleet.store.redis
    for attempt in range(1, 50):
        victim.send_signal(signal.SIGSTOP)
        time.sleep(0.3)  # let the bytes it wrote reach the server (not a timing assertion)
        received = set(message_ids(fleet.smtp))
        names = [ledger.state_key(mid) for mid in received]
        records = client.mget(names) if names else []
        in_window = any(
            raw is not None
            and json.loads(raw).get("state") == "sending"
            and json.loads(raw).get("worker") == worker
            for raw in records
        )
        if not in_window:
            victim.send_signal(signal.SIGKILL)
            victim.wait(timeout=10)
            return attempt
        victim.send_signal(signal.SIGCONT)
        time.sleep(0.05)
    raise AssertionError("the victim was always inside the recording window")


def message_id(data: bytes) -> str:
    return message_key(data)  # the ledger's key: the unfolded Message-ID


def message_ids(smtp: SMTPServer) -> collections.Counter[str]:
    return collections.Counter(message_id(received.data) for received in smtp.messages)


@pytest.mark.timeout(300)
def test_four_workers_send_2000_messages_once_each(make_fleet: Callable[..., Fleet]) -> None:
    """4 workers, 2,000 messages, one mailbox: a worker SIGKILLed mid-run, the token expired
    mid-run. Every message arrives exactly once, one refresh request for the whole fleet."""
    total = 2000
    fleet = make_fleet(visibility=4, limits=LIMITS)
    sender = Celery("fleet-sender", broker=fleet.broker, backend=fleet.broker)
    expected = {}
    async_results = []
    for n in range(total):
        data = message(n)
        mid = message_id(data)
        expected[mid] = n
        async_results.append(sender.send_task(TASK, args=[data]))
    fleet.start_workers(WORKERS)

    wait_until(lambda: fleet.proxy.transactions() >= 500, 120, "500 transactions")
    attempts = kill_outside_the_window(fleet, fleet.workers[0])

    wait_until(lambda: len(fleet.smtp.messages) >= 1000, 120, "1,000 messages arrived")
    # The token expires mid-run: the authorization server's clock jumps past its lifetime,
    # and every open connection is closed before its next transaction, so each worker
    # authenticates again, is refused (535), and refreshes: one request for all of them.
    before = fleet.auth.token_requests
    fleet.clock_offset[0] = LIFETIME + 120
    live = fleet.proxy.cut_all()

    try:
        wait_until(lambda: set(message_ids(fleet.smtp)) >= set(expected), 150, "every message")
    except AssertionError:
        fleet.stop_workers()
        tails = "\n".join(lines.rest()[-3000:] for lines in fleet.logs)
        raise AssertionError(
            f"{len(message_ids(fleet.smtp))} of {total} arrived; proxy: connections "
            f"{fleet.proxy.connections}, cuts {fleet.proxy.cuts}"
            f"\n{tails}"
        ) from None
    client = redis.Redis.from_url(fleet.broker)
    wait_until(
        lambda: client.llen("celery") == 0 and client.hlen("unacked") == 0,
        60,
        "the queue drained and nothing unacknowledged",
    )
    fleet.stop_workers()
    counts = message_ids(fleet.smtp)
    duplicates = {mid: c for mid, c in counts.items() if c > 1}
    assert set(counts) == set(expected)
    assert duplicates == {}
    assert fleet.auth.token_requests - before == 1
    assert live >= 1
    assert fleet.proxy.cuts >= 1
    assert fleet.proxy.max_open <= LIMITS["connections"]
    # Message starts per window, as the server's side saw them, over whole windows: the
    # budget's cap counts a start until its MAIL reply is read (docs/limits.md).
    window = float(LIMITS["window"])
    assert max_in_window(fleet.proxy.mail_times, window) <= LIMITS["per_minute"]
    assert fleet.workers[0].returncode == -signal.SIGKILL
    results = [r.get(timeout=30) for r in async_results]
    assert collections.Counter(r["status"] for r in results) == {"sent": total}
    print(
        f"\nfleet: {total} messages, max open connections {fleet.proxy.max_open}, "
        f"connections {fleet.proxy.connections}, cuts {fleet.proxy.cuts}, kill attempts "
        f"{attempts}, replayed {sum(r['replayed'] for r in results)}, "
        f"max starts per window {max_in_window(fleet.proxy.mail_times, window)}"
    )


def test_one_worker_retries_what_may_pass_later_and_returns_the_rest(
    make_fleet: Callable[..., Fleet],
) -> None:
    """Through a real worker: a 432 at AUTH is retried until it passes; a 550 is returned as
    'failed' and not retried; a login that is gone fails the task at once."""
    fleet = make_fleet()
    sender = Celery("fleet-sender", broker=fleet.broker, backend=fleet.broker)
    fleet.start_workers(1)

    fleet.smtp.auth_failure = "connections"  # Microsoft's 432 4.3.2 on every AUTH
    busy = sender.send_task(TASK, args=[message(1)])
    wait_until(lambda: len(fleet.smtp.auth_log) >= 2, 60, "AUTH refused twice (one retry)")
    fleet.smtp.auth_failure = None
    assert busy.get(timeout=60)["status"] == "sent"

    fleet.smtp.reject_recipients = frozenset({"reader02@example.test"})
    second = message(2)
    refused = sender.send_task(TASK, args=[second]).get(timeout=60)
    assert (refused["status"], refused["code"], refused["replayed"]) == ("failed", 550, False)
    assert list(refused["refused"]) == ["reader02@example.test"]
    again = sender.send_task(TASK, args=[second]).get(timeout=60)
    assert (again["status"], again["replayed"]) == ("failed", True)  # recorded, not retried

    # The login is removed (a logout elsewhere); the token expires, the connection is cut.
    key = fleet.store.keys()[0]
    fleet.store.delete(key)
    fleet.clock_offset[0] = LIFETIME + 120
    fleet.proxy.cut_all()
    gone = sender.send_task(TASK, args=[message(3)])
    with pytest.raises(Exception, match=r"[Ll]og in again") as info:
        gone.get(timeout=60)
    assert type(info.value).__name__ == LoginRequired.__name__  # rebuilt by Celery's backend
    fleet.stop_workers()
    log = fleet.logs[0].rest()
    assert log.count("Retry in") >= 1
    assert "LoginRequired" in log
    received = message_ids(fleet.smtp)
    assert sorted(received.values()) == [1]  # only message 1 arrived; 3 never did
