"""The asynchronous mode runs a fixed set of threads and a bounded queue (issue 17)."""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence

import pytest
from smtp_sink import SMTPSink

from oauthsmtp import Email, SMTPSession
from oauthsmtp._smtp.background import BackgroundSender
from oauthsmtp._smtp.transact import Job, SendResult


@pytest.fixture
def sink() -> Iterator[SMTPSink]:
    with SMTPSink() as server:
        yield server


def test_threads_are_fixed_over_many_submits(
    sink: SMTPSink, monkeypatch: pytest.MonkeyPatch
) -> None:
    """2,000 submits over 4 connections start at most 1 + 3 threads for the session.

    Before, every batch of up to 100 queued messages started 3 new connection threads
    (about one thread per 33 messages).
    """
    started: list[str] = []
    start = threading.Thread.start

    def counting(self: threading.Thread) -> None:
        started.append(self.name)
        start(self)

    monkeypatch.setattr(threading.Thread, "start", counting)
    with SMTPSession("127.0.0.1", sink.port, security="none", connections=4) as s:
        futures = [
            s.submit(Email(sender="a@example.test", to=[f"r{i}@example.test"], text="hi"))
            for i in range(2000)
        ]
        results = [f.result(timeout=60) for f in futures]
        mine = [name for name in started if name.startswith("oauthsmtp")]
    assert all(r.ok for r in results)
    assert sink.messages == 2000
    assert 1 <= len(mine) <= 4, mine


def test_the_queue_is_bounded_and_submit_blocks() -> None:
    """With ``limit`` jobs waiting and the worker busy, submit blocks until it takes more."""
    entered, release = threading.Event(), threading.Event()

    def deliver(jobs: Sequence[Job]) -> None:
        entered.set()
        assert release.wait(30)
        for job in jobs:
            job.result = SendResult("sent", 250, "ok")

    sender = BackgroundSender(deliver, limit=2)
    first = sender.submit(Job(None))
    assert entered.wait(30)  # the worker holds the first job
    queued = [sender.submit(Job(None)) for _ in range(2)]  # fills the queue
    done = threading.Event()
    late: list[object] = []

    def submit_one_more() -> None:
        late.append(sender.submit(Job(None)))
        done.set()

    producer = threading.Thread(target=submit_one_more, daemon=True)
    producer.start()
    assert not done.wait(0.3), "submit returned although the queue was full"
    release.set()
    assert done.wait(30)
    producer.join(30)
    sender.close()
    assert [f.result(timeout=30).status for f in [first, *queued, *late]] == ["sent"] * 4  # type: ignore[attr-defined]
