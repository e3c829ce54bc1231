"""SendLimits on GmailAPISession and GraphSession, counted at the server.

A small HTTP server on loopback answers like the two APIs (``users.messages.send``,
``sendMail``, ``$batch``) and records, at its side, every message's arrival time and how
many requests were in progress at once. The assertions are on those counts: never more
requests at once than ``connections``, never more messages in any half-open window of
``window`` seconds than ``per_minute``; and on the results (``"failed"`` for too many
recipients, ``"deferred"`` at a daily cap) with nothing sent for them.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING

import pytest

import oauthsmtp
from oauthsmtp import (
    ConfigurationError,
    Email,
    GmailAPISession,
    GraphSession,
    RedisStore,
    SendLimits,
)
from oauthsmtp.devserver import DevProvider

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

SENDER = "alice@example.test"
Session = GmailAPISession | GraphSession


class Token:
    """A token source that never expires (the counting server checks no token)."""

    access_token = "token-for-tests"

    def refresh(self) -> None:
        return None


class Counting(ThreadingHTTPServer):
    """Answers like the APIs; counts messages and concurrent requests at its side."""

    daemon_threads = True

    def __init__(self, hold: float = 0.03) -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.hold = hold
        self.lock = threading.Lock()
        self.active = 0
        self.most_active = 0
        self.requests = 0
        self.arrivals: list[float] = []  # one per message, at the server
        self.request_times: list[float] = []  # one per request, throttled ones too
        self.throttle = 0  # answer this many next requests 429 (Retry-After: 0)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: Counting
    counted = False  # this request is counted in server.active

    def log_message(self, format: str, *args: object) -> None:
        return None

    def do_POST(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length", "0")))
        server = self.server
        now = time.monotonic()
        with server.lock:
            server.requests += 1
            server.request_times.append(now)
            server.active += 1
            server.most_active = max(server.most_active, server.active)
            throttled = server.throttle > 0
            server.throttle -= throttled
        self.counted = True
        try:
            if throttled:
                self.answer(429, b'{"error": {"code": "TooManyRequests", "message": "slow"}}', 0)
                return
            time.sleep(server.hold)  # the API at work: requests overlap
            if self.path.endswith("/$batch"):
                items = json.loads(body)["requests"]
                with server.lock:
                    server.arrivals.extend([now] * len(items))
                payload = {"responses": [{"id": i["id"], "status": 202} for i in items]}
                self.answer(200, json.dumps(payload).encode())
            elif self.path.endswith("/sendMail"):
                with server.lock:
                    server.arrivals.append(now)
                self.answer(202, b"")
            else:
                with server.lock:
                    server.arrivals.append(now)
                self.answer(200, b'{"id": "m1", "threadId": "t1", "labelIds": ["SENT"]}')
        finally:
            self.done()

    def done(self) -> None:
        """The request stops counting as active (once)."""
        if self.counted:
            self.counted = False
            with self.server.lock:
                self.server.active -= 1

    def answer(self, status: int, body: bytes, retry_after: int | None = None) -> None:
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        if retry_after is not None:
            self.send_header("Retry-After", str(retry_after))
        # Active until just before the answer can reach the client: once the client has
        # read it, it may start another request on the slot this one gave back.
        self.done()
        self.end_headers()
        self.wfile.write(body)


@pytest.fixture
def server() -> Iterator[Counting]:
    running = Counting()
    thread = threading.Thread(target=running.serve_forever, kwargs={"poll_interval": 0.05})
    thread.start()
    try:
        yield running
    finally:
        running.shutdown()
        running.server_close()
        thread.join(timeout=5)


def mail(n: int, recipients: int = 1) -> Email:
    to = [f"bob{i}@example.test" for i in range(recipients)]
    return Email(sender=SENDER, to=to, subject=f"message {n}", text="Hi.")


def api(
    kind: type[GmailAPISession] | type[GraphSession],
    server: Counting,
    limits: SendLimits,
    mailbox: str | None = None,
    store: object = None,
) -> GmailAPISession | GraphSession:
    url = server.url + ("/gmail/v1" if kind is GmailAPISession else "/v1.0")
    return kind(
        auth_token=Token(), base_url=url, limits=limits, limits_store=store, mailbox=mailbox
    )


def gmail(server: Counting, limits: SendLimits, mailbox: str | None = None) -> Session:
    return api(GmailAPISession, server, limits, mailbox)


def graph(server: Counting, limits: SendLimits, mailbox: str | None = None) -> Session:
    return api(GraphSession, server, limits, mailbox)


def most_in_window(times: list[float], window: float) -> int:
    """The most arrivals any half-open interval [t, t + window) holds (exact)."""
    times = sorted(times)
    most, first = 0, 0
    for last, at in enumerate(times):
        while at >= times[first] + window:
            first += 1
        most = max(most, last - first + 1)
    return most


def run_threads(count: int, work: Callable[[], None]) -> None:
    threads = [threading.Thread(target=work) for _ in range(count)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
        assert not thread.is_alive(), "a sending thread did not finish in 30 s"


def send_in_threads(
    make: Callable[[], GmailAPISession | GraphSession], threads: int, each: int
) -> list[str]:
    """``threads`` sessions from ``make`` at once, each sending ``each`` messages; the
    statuses of all results."""
    results: list[oauthsmtp.SendResult] = []
    lock = threading.Lock()

    def work() -> None:
        with make() as session:
            got = session.send_many([mail(i) for i in range(each)])
        with lock:
            results.extend(got)

    run_threads(threads, work)
    return [r.status for r in results]


def test_gmail_requests_at_once_never_exceed_connections(server: Counting) -> None:
    limits = SendLimits(connections=2, max_wait=20)
    statuses = send_in_threads(lambda: gmail(server, limits, mailbox="conn@example.test"), 5, 4)
    assert statuses == ["sent"] * 20
    assert server.requests == 20
    assert 1 <= server.most_active <= 2


def test_gmail_messages_per_window_at_the_server(server: Counting) -> None:
    limits = SendLimits(connections=4, per_minute=5, window=0.4, max_wait=20)
    statuses = send_in_threads(lambda: gmail(server, limits, mailbox="rate@example.test"), 3, 5)
    assert statuses == ["sent"] * 15
    assert len(server.arrivals) == 15
    assert most_in_window(server.arrivals, 0.4) <= 5


def test_graph_batches_under_limits_one_result_per_message(server: Counting) -> None:
    limits = SendLimits(connections=1, per_minute=4, window=0.4, max_wait=20)
    statuses = send_in_threads(lambda: graph(server, limits, mailbox="batch@example.test"), 2, 9)
    assert statuses == ["sent"] * 18  # one result per message
    assert len(server.arrivals) == 18
    assert server.requests < 18  # batched: several messages per request
    assert server.most_active == 1
    assert most_in_window(server.arrivals, 0.4) <= 4


def test_redis_budget_shared_by_gmail_and_graph_sessions(
    server: Counting, redis_server: RedisServer
) -> None:
    limits = SendLimits(connections=2, per_minute=5, window=0.4, max_wait=20)
    made = iter(range(4))

    def make() -> GmailAPISession | GraphSession:
        # each session its own RedisStore (as in another process); both APIs alike
        store = RedisStore(redis_server.url)
        kind = GmailAPISession if next(made) % 2 else GraphSession
        return api(kind, server, limits, "shared@example.test", store)

    statuses = send_in_threads(make, 4, 4)
    assert statuses == ["sent"] * 16
    assert len(server.arrivals) == 16
    assert 1 <= server.most_active <= 2
    assert most_in_window(server.arrivals, 0.4) <= 5


def test_too_many_recipients_fail_and_are_not_sent(server: Counting) -> None:
    limits = SendLimits(recipients_per_message=2)
    with gmail(server, limits) as session:
        results = session.send_many([mail(1, recipients=2), mail(2, recipients=3)])
    assert [r.status for r in results] == ["sent", "failed"]
    assert "recipients_per_message" in (results[1].message or "")
    assert server.requests == 1
    with graph(server, limits) as session:
        batched = session.send_many([mail(i, recipients=1 + i % 3) for i in range(4)])
    assert [r.status for r in batched] == ["sent", "sent", "failed", "sent"]
    assert len(server.arrivals) == 4


def test_daily_cap_defers_and_sends_nothing_more(server: Counting) -> None:
    limits = SendLimits(messages_per_day=3, day=3600)
    with graph(server, limits, mailbox="daily@example.test") as session:
        results = session.send_many([mail(i) for i in range(5)])
        alone = session.send(mail(6))
    assert [r.status for r in results] == ["sent"] * 3 + ["deferred"] * 2
    assert alone.status == "deferred"
    assert "messages_per_day" in (alone.message or "")
    assert len(server.arrivals) == 3


def test_a_retry_takes_a_new_slot_but_counts_once_for_the_day(server: Counting) -> None:
    limits = SendLimits(per_minute=1, window=0.3, messages_per_day=1, day=3600, max_wait=10)
    server.throttle = 1
    with gmail(server, limits, mailbox="retry@example.test") as session:
        result = session.send(mail(1))
    assert result.status == "sent"  # the retry was not refused by the daily cap of 1
    assert server.requests == 2
    assert len(server.arrivals) == 1
    # the throttled request and its retry each took a message slot: a window apart
    assert most_in_window(server.request_times, 0.3) == 1


def test_retried_requests_stay_within_the_window(server: Counting) -> None:
    limits = SendLimits(per_minute=2, window=0.4, max_wait=10)
    server.throttle = 2
    with gmail(server, limits, mailbox="retry2@example.test") as session:
        results = session.send_many([mail(i) for i in range(3)])
    assert [r.status for r in results] == ["sent"] * 3
    assert server.requests == 5  # two throttled attempts, each counted as a request
    assert most_in_window(server.request_times, 0.4) <= 2


def test_no_connection_slot_within_max_wait_defers(server: Counting) -> None:
    server.hold = 0.6
    limits = SendLimits(connections=1, max_wait=0.1)
    results: list[oauthsmtp.SendResult] = []
    lock = threading.Lock()

    def work() -> None:
        with gmail(server, limits, mailbox="slot@example.test") as session:
            result = session.send(mail(1))
        with lock:
            results.append(result)

    run_threads(2, work)
    assert sorted(r.status for r in results) == ["deferred", "sent"]
    assert server.requests == 1
    assert server.most_active == 1


def test_limits_are_checked_like_the_smtp_sessions() -> None:
    with pytest.raises(ConfigurationError, match="SendLimits"):
        GmailAPISession(auth_token=Token(), limits={"connections": 1})  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="give limits= too"):
        GraphSession(auth_token=Token(), limits_store=object())
    with pytest.raises(ConfigurationError, match="mailbox"):
        GraphSession(auth_token=Token(), limits=SendLimits(), mailbox="")


def test_presets_follow_the_published_limits() -> None:
    graph_limits = oauthsmtp.providers.GRAPH_LIMITS
    assert graph_limits.connections == 4
    assert graph_limits.per_minute == 10_000
    assert graph_limits.window == 600
    assert graph_limits.recipients_per_day == 10_000
    gmail_limits = oauthsmtp.providers.GMAIL_API_LIMITS
    assert gmail_limits.per_minute == 60
    assert gmail_limits.window == 60
    assert gmail_limits.messages_per_day == oauthsmtp.providers.GMAIL_LIMITS.messages_per_day
    assert gmail_limits.recipients_per_message == 100
    for name in ("GRAPH_LIMITS", "GMAIL_API_LIMITS"):
        assert name in oauthsmtp.providers.__all__


def test_devserver_gmail_and_graph_under_limits() -> None:
    limits = SendLimits(recipients_per_message=2, messages_per_day=2, day=3600)
    scope = f"{DevProvider.GMAIL_API_SCOPE} {DevProvider.GRAPH_API_SCOPE} offline_access"
    with DevProvider(smtps_port=None) as provider:
        token = provider.login(scope=scope)
        over = Email(sender=provider.user, to=["a@x.test", "b@x.test", "c@x.test"], text="Hi")
        ok = [
            Email(sender=provider.user, to=["a@x.test"], subject=f"m{i}", text="Hi")
            for i in range(3)
        ]
        with GmailAPISession(
            auth_token=token, base_url=provider.gmail_api_url, limits=limits, mailbox="g"
        ) as session:
            results = session.send_many([over, *ok])
        with GraphSession(
            auth_token=token, base_url=provider.graph_api_url, limits=limits, mailbox="m"
        ) as session:
            batched = session.send_many([over, *ok])
        expected = ["failed", "sent", "sent", "deferred"]
        assert [r.status for r in results] == expected
        assert [r.status for r in batched] == expected
        assert len(provider.messages) == 4
