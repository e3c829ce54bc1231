"""SendLedger against a real redis-server: each message sent once across retries and redeliveries.

The happy path sends through the development provider's SMTP server; the other outcomes
(4xx, 5xx, unknown, a failing connection) come from a stand-in session that returns or
raises what a real one would, so each state transition is checked on its own.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pytest

from oauthsmtp import (
    ConfigurationError,
    LoginRequired,
    RedisStore,
    SendResult,
    SMTPError,
    TokenStoreError,
)
from oauthsmtp.devserver import DevProvider
from oauthsmtp.integrations.ledger import Outcome, SendLedger, is_transient, message_key

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "user@example.test"


def mail(n: int = 1, *, to: str = "friend@example.test") -> EmailMessage:
    message = EmailMessage()
    message["From"] = ACCOUNT
    message["To"] = to
    message["Subject"] = f"ledger test {n}"
    message["Message-ID"] = make_msgid(domain="example.test")
    message.set_content(f"message {n}\n")
    return message


class StandIn:
    """A session that answers ``send`` with the given results or errors, and counts calls."""

    def __init__(self, *answers: SendResult | BaseException) -> None:
        self.answers = list(answers)
        self.calls = 0
        self.pause: threading.Event | None = None
        self.entered = threading.Event()

    def send(self, message: Any) -> SendResult:
        self.calls += 1
        self.entered.set()
        if self.pause is not None:
            assert self.pause.wait(20)
        answer = self.answers.pop(0) if len(self.answers) > 1 else self.answers[0]
        if isinstance(answer, BaseException):
            raise answer
        return answer


SENT = SendResult("sent", 250, "2.0.0 OK queued")


@pytest.fixture
def store(redis_server: RedisServer) -> RedisStore:
    return RedisStore(redis_server.url)


@pytest.fixture
def provider() -> Iterator[DevProvider]:
    with DevProvider(smtps_port=None) as dev:
        yield dev


def test_a_message_is_sent_once_and_replayed_after(
    store: RedisStore, provider: DevProvider
) -> None:
    """Through a real SMTP server: the second run with the same Message-ID sends nothing."""
    ledger = SendLedger(store, account=ACCOUNT)
    message = mail()
    with provider.session(auth_token=provider.login(ACCOUNT)) as session:
        first = ledger.send_once(session, message.as_bytes())
        again = ledger.send_once(session, message.as_bytes())
        text = ledger.send_once(session, message.as_string())
    assert (first.status, first.code, first.replayed) == ("sent", 250, False)
    assert first.key == message["Message-ID"]
    assert (again.status, again.code, again.replayed) == ("sent", 250, True)
    assert text.replayed
    assert len(provider.smtp.messages) == 1
    assert first.as_dict() == {
        "status": "sent",
        "code": 250,
        "message": first.message,
        "refused": {},
        "key": message["Message-ID"],
        "replayed": False,
    }
    json.dumps(again.as_dict())  # JSON-able


def test_the_key_defaults_to_the_message_id_else_a_digest() -> None:
    message = mail()
    assert message_key(message.as_bytes()) == message["Message-ID"]
    del message["Message-ID"]
    key = message_key(message.as_bytes())
    assert re.fullmatch(r"sha256:[0-9a-f]{64}", key)
    assert message_key(message.as_bytes()) == key


def test_an_explicit_key_and_the_account_make_the_record(store: RedisStore) -> None:
    ledger = SendLedger(store, account=ACCOUNT)
    other = SendLedger(store, account="other@example.test")
    session = StandIn(SENT)
    message = mail().as_bytes()
    assert not ledger.send_once(session, message, key="order-17").replayed
    assert ledger.send_once(session, mail(2).as_bytes(), key="order-17").replayed
    assert not other.send_once(session, message, key="order-17").replayed  # its own key space
    assert session.calls == 2
    assert ledger.state_key("order-17").startswith("oauthsmtp:send:")
    assert ledger.lookup("order-17") == Outcome(
        "sent", 250, "2.0.0 OK queued", "order-17", replayed=True
    )


@pytest.mark.parametrize(
    ("result", "recorded"),
    [
        (SendResult("failed", 550, "5.1.1 user unknown", {"x@y.test": (550, "no")}), True),
        (SendResult("unknown", None, "the final reply never arrived"), True),
        (SendResult("failed", 451, "4.3.0 try again later"), False),
        (SendResult("failed", 432, "4.3.2 Concurrent connections limit exceeded"), False),
        (SendResult("failed", None, "connection lost before the message was sent"), False),
    ],
    ids=["5xx-recorded", "unknown-recorded", "451-deferred", "432-deferred", "no-reply-deferred"],
)
def test_permanent_and_unknown_outcomes_are_recorded_transient_ones_released(
    store: RedisStore, result: SendResult, recorded: bool
) -> None:
    ledger = SendLedger(store, account=ACCOUNT)
    message = mail().as_bytes()
    session = StandIn(result, SENT)
    first = ledger.send_once(session, message)
    second = ledger.send_once(session, message)
    if recorded:
        assert first.status == result.status
        assert dict(first.refused) == dict(result.refused)
        assert (second.status, second.replayed) == (result.status, True)
        assert session.calls == 1  # never sent again: not after 5xx, not after unknown
    else:
        assert first.status == "deferred"
        assert first.deferred
        assert first.code == result.code
        assert (second.status, second.replayed) == ("sent", False)
        assert session.calls == 2  # the claim was released: the retry sent it


@pytest.mark.parametrize(
    ("error", "transient"),
    [
        (SMTPError("connection refused"), True),
        (SMTPError("421 closing", code=421), True),
        (ConnectionResetError("reset"), True),
        (TokenStoreError("Redis down"), True),
        (LoginRequired("log in again"), False),
    ],
    ids=["no-connection", "421", "reset", "store-down", "login-required"],
)
def test_an_error_before_sending_releases_the_claim(
    store: RedisStore, error: BaseException, transient: bool
) -> None:
    ledger = SendLedger(store, account=ACCOUNT)
    message = mail().as_bytes()
    session = StandIn(error, SENT)
    with pytest.raises(type(error)):
        ledger.send_once(session, message)
    assert is_transient(error) is transient
    assert not ledger.send_once(session, message).replayed
    assert session.calls == 2


def test_a_malformed_message_fails_without_raising(store: RedisStore) -> None:
    ledger = SendLedger(store, account=ACCOUNT)
    session = StandIn(ConfigurationError("the To header does not parse"))
    outcome = ledger.send_once(session, mail().as_bytes())
    assert outcome.status == "failed"
    assert "does not parse" in (outcome.message or "")
    assert ledger.send_once(session, b"  ").status == "failed"
    with pytest.raises(ConfigurationError, match="idempotency key"):
        ledger.send_once(session, mail(2).as_bytes(), key="")


def test_a_message_another_worker_is_sending_is_deferred_not_sent(store: RedisStore) -> None:
    """Two runs of one message at once (a redelivery while the first still sends): one sends."""
    first = SendLedger(store, account=ACCOUNT, worker="worker-a")
    second = SendLedger(store, account=ACCOUNT, worker="worker-b")
    message = mail().as_bytes()
    slow = StandIn(SENT)
    slow.pause = threading.Event()
    results: list[Outcome] = []
    thread = threading.Thread(target=lambda: results.append(first.send_once(slow, message)))
    thread.start()
    try:
        assert slow.entered.wait(10)
        other = StandIn(SENT)
        busy = second.send_once(other, message)
        assert busy.deferred
        assert "worker-a" in (busy.message or "")
        assert busy.retry_after == pytest.approx(first.lease / 2)
        assert other.calls == 0
    finally:
        slow.pause.set()
        thread.join(20)
    assert results[0].status == "sent"
    assert second.send_once(StandIn(SENT), message).replayed


def test_the_claim_is_renewed_while_sending_and_lapses_when_the_worker_dies(
    store: RedisStore,
) -> None:
    """A send longer than the lease keeps its claim; a claim nobody renews lapses."""
    ledger = SendLedger(store, account=ACCOUNT, lease=0.6)
    message = mail().as_bytes()
    slow = StandIn(SENT)
    slow.pause = threading.Event()
    thread = threading.Thread(target=ledger.send_once, args=(slow, message))
    thread.start()
    try:
        assert slow.entered.wait(10)
        deadline = time.monotonic() + 1.5  # 2.5 leases
        while time.monotonic() < deadline:
            assert SendLedger(store, account=ACCOUNT).send_once(StandIn(SENT), message).deferred
            threading.Event().wait(0.2)
    finally:
        slow.pause.set()
        thread.join(20)
    assert slow.calls == 1
    # A worker that claimed and died: its claim (not renewed) expires after the lease.
    dead = mail(2).as_bytes()
    client = store.redis
    name = ledger.state_key(message_key(dead))
    claim = json.dumps({"format": "oauthsmtp-send/1", "state": "sending", "worker": "gone:1"})
    client.set(name, claim, px=300)
    assert ledger.send_once(StandIn(SENT), dead).deferred
    deadline = time.monotonic() + 10
    while client.exists(name) and time.monotonic() < deadline:
        threading.Event().wait(0.05)
    assert ledger.send_once(StandIn(SENT), dead).status == "sent"


def test_redis_down_is_a_clear_error_and_nothing_is_sent(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url.replace("redis://", "redis://:pw-SECRET@"))
    ledger = SendLedger(store, account=ACCOUNT)
    redis_server.stop()
    session = StandIn(SENT)
    with pytest.raises(TokenStoreError, match=r"Redis at redis://127\.0\.0\.1") as info:
        ledger.send_once(session, mail().as_bytes())
    assert "nothing was sent" in str(info.value)
    assert "pw-SECRET" not in str(info.value)
    assert is_transient(info.value)
    assert session.calls == 0


def test_a_ledger_needs_a_redis_store() -> None:
    from oauthsmtp import MemoryStore

    with pytest.raises(ConfigurationError, match="RedisStore"):
        SendLedger(MemoryStore(), account=ACCOUNT)  # type: ignore[arg-type]
    with pytest.raises(ConfigurationError, match="lease"):
        SendLedger(RedisStore("redis://127.0.0.1:1/0"), account=ACCOUNT, lease=0)


def _documented_acl() -> list[str]:
    """The ACL line docs/fleet.md gives, as SETUSER arguments (its password replaced)."""
    text = (ROOT / "docs" / "fleet.md").read_text(encoding="utf-8")
    match = re.search(r"^\s*ACL SETUSER oauthsmtp (.+)$", text, re.MULTILINE)
    assert match, "docs/fleet.md lost its ACL line"
    return [(">pw-ACL" if word == ">PASSWORD" else word) for word in match.group(1).split()]


def test_the_documented_acl_user_is_enough_for_the_ledger(redis_server: RedisServer) -> None:
    """docs/fleet.md's ACL user can claim, renew, release and record (nothing denied)."""
    admin = redis_server.client()
    admin.execute_command("ACL", "SETUSER", "oauthsmtp", *_documented_acl())
    url = redis_server.url.replace("redis://", "redis://oauthsmtp:pw-ACL@")
    ledger = SendLedger(RedisStore(url), account=ACCOUNT, lease=0.6)
    slow = StandIn(SENT)
    slow.pause = threading.Event()
    message = mail().as_bytes()
    thread = threading.Thread(target=ledger.send_once, args=(slow, message))
    thread.start()
    try:
        assert slow.entered.wait(10)
        threading.Event().wait(0.5)  # renewed at least once
    finally:
        slow.pause.set()
        thread.join(20)
    assert ledger.send_once(StandIn(SENT), message).replayed
    released = StandIn(SMTPError("no connection"), SENT)
    with pytest.raises(SMTPError):
        ledger.send_once(released, mail(2).as_bytes())
    assert admin.execute_command("ACL", "LOG") == []
    admin.close()


def test_import_oauthsmtp_imports_no_celery_and_a_missing_celery_is_explained() -> None:
    code = (
        "import sys, oauthsmtp\n"
        "print('celery' in sys.modules)\n"
        "sys.modules['celery'] = None\n"
        "from oauthsmtp.integrations.celery import make_send_task\n"
        "try:\n"
        "    make_send_task(object(), account='a@b.test', store=None)\n"
        "except oauthsmtp.ConfigurationError as exc:\n"
        "    print(exc)\n"
    )
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    out = subprocess.run(
        [sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60
    )
    lines = out.stdout.splitlines()
    assert lines[0] == "False", out.stderr
    assert "pip install 'oauthsmtp[celery]'" in lines[1]
