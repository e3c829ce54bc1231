"""``SendLedger``: send each message once across retries and redeliveries, through Redis.

A task queue (Celery, RQ, Dramatiq) delivers a job *at least once*: a worker killed before
it acknowledged, a visibility timeout that lapsed, or a retry after a transient failure all
run the same job again. Sending mail is not idempotent, so each message gets an
**idempotency key** (its ``Message-ID`` unless the caller gives one) and a small state
machine in the same Redis as the :class:`~oauthsmtp.RedisStore`, under its prefix
(``<prefix>send:<sha256 of account and key>``):

* **claim**: one atomic script sets ``sending`` (a random owner token, the worker's name)
  with a time to live of ``lease`` seconds, only when the key holds nothing. A background
  thread renews the lease every third of it while the message is being sent, so a send
  that waits for the provider's limits keeps it;
* **done**: once the server answered, the outcome (``sent``, a permanent ``failed``, or
  ``unknown``) is written with a time to live of ``remember`` seconds. A job that runs again
  with the same key gets the recorded outcome back and sends nothing;
* **released**: a transient failure (no connection, a ``4xx`` reply, Redis briefly down)
  removes the claim (only if still this owner's), and the caller retries later;
* **busy**: a key that another live worker holds (``sending``, lease not lapsed) is not
  sent; the caller retries later and then finds the outcome;
* **lapsed**: a worker killed while ``sending`` stops renewing; after ``lease`` seconds the
  key expires and the next run may send.

The one window this cannot close: a worker killed (or cut off from Redis) after the server
accepted the message's data and before ``done`` was written. The next run finds the lease
lapsed and sends again: at the SMTP level exactly-once is impossible (RFC 5321 §4.1.1.4
leaves a lost final reply ambiguous, and no SMTP extension lets a client ask "did you get
it?"). The window is kept to one reply and one Redis write: the outcome is recorded as
soon as the reply is read, before anything else. A dropped connection *during* that reply
is the session's ``"unknown"`` result, which is recorded and never sent again.

Nothing here imports a task framework: a Celery task
(:mod:`oauthsmtp.integrations.celery`), an RQ job or a Dramatiq actor calls
:meth:`SendLedger.send_once` with its own per-process :class:`~oauthsmtp.SMTPSession`
(docs/fleet.md).
"""

from __future__ import annotations

import email.policy
import hashlib
import json
import logging
import os
import secrets
import socket
import threading
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import dataclass, field
from email import message_from_bytes
from email.message import EmailMessage
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from oauthsmtp._errors import (
    ConfigurationError,
    LoginRequired,
    SMTPAuthError,
    SMTPError,
    TokenError,
    TokenStoreError,
)

if TYPE_CHECKING:
    from oauthsmtp._smtp.session import SMTPSession
    from oauthsmtp._smtp.transact import SendResult
    from oauthsmtp._tokens.stores.redisstore import RedisStore

__all__ = [
    "DEFAULT_LEASE",
    "DEFAULT_REMEMBER",
    "Outcome",
    "SendLedger",
    "is_transient",
    "message_key",
    "parse_message",
]

log = logging.getLogger("oauthsmtp.ledger")

DEFAULT_LEASE = 60.0
"""Seconds a ``sending`` claim lives unless renewed (renewed every third of it)."""

DEFAULT_REMEMBER = 7 * 24 * 3600.0
"""Seconds an outcome is remembered (longer than any retry or redelivery runs)."""

_FORMAT = "oauthsmtp-send/1"
MAX_KEY = 1000
"""The longest idempotency key accepted, in characters."""

# KEYS[1]: the state key; ARGV[1]: the claim record, ARGV[2]: the lease in ms.
# Returns nil when claimed, else what the key holds.
_CLAIM = """
local held = redis.call('get', KEYS[1])
if held then
    return held
end
redis.call('set', KEYS[1], ARGV[1], 'PX', ARGV[2])
return false
"""

# KEYS[1]: the state key; ARGV[1]: the claim record, ARGV[2]: the lease in ms (renew) or ''.
_RENEW = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('pexpire', KEYS[1], ARGV[2])
return 1
"""

_RELEASE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('del', KEYS[1])
return 1
"""

Status = Literal["sent", "failed", "unknown", "deferred"]


def message_key(data: bytes) -> str:
    """The default idempotency key of a message: its ``Message-ID``, else a digest.

    ``data`` is the RFC 5322 message. Without a ``Message-ID`` field the key is
    ``sha256:<hex>`` of the bytes, so the same bytes delivered twice are one message
    (and two byte-identical messages without a Message-ID are one message, too).
    """
    parsed = message_from_bytes(data, policy=email.policy.compat32)
    value = parsed.get("Message-ID")
    text = " ".join(str(value).split()) if value is not None else ""
    if text:
        return text[:MAX_KEY]
    return "sha256:" + hashlib.sha256(data).hexdigest()


def parse_message(message: bytes | str) -> tuple[bytes, EmailMessage]:
    """The bytes of an RFC 5322 message (``EmailMessage.as_bytes()`` or its text) and the
    parsed message :meth:`~oauthsmtp.SMTPSession.send` takes.

    The envelope comes from the headers (From; To, Cc and Bcc), as ``sendmail -t`` does;
    Bcc is sent in the envelope only.

    Raises:
        ConfigurationError: ``message`` is neither bytes nor str, or is empty.
    """
    if isinstance(message, str):
        data = message.encode("utf-8", "surrogateescape")
    elif isinstance(message, (bytes, bytearray, memoryview)):
        data = bytes(message)
    else:
        raise ConfigurationError(
            "the message must be RFC 5322 bytes or text (EmailMessage.as_bytes()), "
            f"not {type(message).__name__}"
        )
    if not data.strip():
        raise ConfigurationError("the message is empty")
    parsed = message_from_bytes(data, policy=email.policy.default)
    assert isinstance(parsed, EmailMessage)  # noqa: S101 - policy.default makes EmailMessage
    return data, parsed


def is_transient(exc: BaseException) -> bool:
    """Whether sending may succeed later without anyone changing anything.

    Transient: a connection that failed or timed out (:class:`OSError`,
    :class:`~oauthsmtp.SMTPError` without a reply or with a ``4xx`` one), the token
    endpoint or the store briefly unreachable (:class:`~oauthsmtp.TokenError` other than
    a dead login, :class:`~oauthsmtp.TokenStoreError`). Not transient: a malformed message
    (:class:`~oauthsmtp.ConfigurationError`), a dead login
    (:class:`~oauthsmtp.LoginRequired`), an authentication the server refused for good
    (``5xx``), any other error.
    """
    if isinstance(exc, (LoginRequired, ConfigurationError)):
        return False
    if isinstance(exc, SMTPAuthError):
        return exc.code is not None and 400 <= exc.code < 500
    if isinstance(exc, SMTPError):
        return exc.code is None or 400 <= exc.code < 500
    if isinstance(exc, TokenError):
        return exc.error not in ("invalid_grant", "invalid_client", "unauthorized_client")
    return isinstance(exc, (TokenStoreError, OSError))


def _deferred(result: SendResult) -> bool:
    """A result that may succeed later: ``"deferred"`` by the session's limits, or not
    sent with a ``4xx`` reply or no reply (and no recipient refused for good)."""
    status: str = result.status
    if status == "deferred":
        return True
    if status != "failed" or not (result.code is None or 400 <= result.code < 500):
        return False
    return all(400 <= code < 500 for code, _ in result.refused.values())


@dataclass(frozen=True)
class Outcome:
    """What happened to one message, as a task returns it (never a token).

    Attributes:
        status: ``"sent"``, ``"failed"`` (refused for good, or malformed), ``"unknown"``
            (the server's final reply was lost: it may have been delivered; never sent
            again), or ``"deferred"`` (not sent now: retry later, see ``retry_after``).
        code: the server's final reply code, or None.
        message: the server's reply text, or why it was not sent.
        refused: ``{recipient: (code, text)}`` for recipients the server refused.
        key: the idempotency key.
        replayed: True when the outcome was recorded by an earlier run and nothing was
            sent now.
        retry_after: for ``"deferred"``: seconds after which a retry makes sense (None:
            the caller's backoff decides).
    """

    status: Status
    code: int | None
    message: str | None
    key: str
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    replayed: bool = False
    retry_after: float | None = None

    def __post_init__(self) -> None:
        object.__setattr__(self, "refused", MappingProxyType(dict(self.refused)))

    @property
    def deferred(self) -> bool:
        """True when the message was not sent and a later retry may send it."""
        return self.status == "deferred"

    def as_dict(self) -> dict[str, Any]:
        """A small JSON-able dict: status, code, message, refused, key, replayed."""
        return {
            "status": self.status,
            "code": self.code,
            "message": self.message,
            "refused": {r: [c, t] for r, (c, t) in self.refused.items()},
            "key": self.key,
            "replayed": self.replayed,
        }

    @classmethod
    def from_record(cls, record: Mapping[str, Any], key: str) -> Outcome | None:
        """The outcome a ``done`` record holds (None when malformed)."""
        status = record.get("status")
        code = record.get("code")
        text = record.get("message")
        refused = record.get("refused")
        if status not in ("sent", "failed", "unknown"):
            return None
        if (code is not None and not isinstance(code, int)) or not isinstance(refused, dict):
            return None
        pairs: dict[str, tuple[int, str]] = {}
        for recipient, pair in refused.items():
            if not (isinstance(pair, list) and len(pair) == 2):
                return None
            pairs[str(recipient)] = (int(pair[0]), str(pair[1]))
        return cls(
            status,
            code,
            text if isinstance(text, str) else None,
            key,
            pairs,
            replayed=True,
        )


@dataclass
class _Claim:
    name: str
    record: bytes
    lost: threading.Event = field(default_factory=threading.Event)


class SendLedger:
    """Idempotency keys for messages, kept in the Redis of a :class:`~oauthsmtp.RedisStore`.

    Args:
        store: the RedisStore whose Redis (and ``prefix``) holds the keys.
        account: the mailbox the messages are sent from (part of each key, so two
            accounts never share a key).
        lease: seconds a ``sending`` claim lives unless renewed; a worker killed
            mid-send blocks its message for at most this long.
        remember: seconds an outcome is kept; a job run again later than this sends again.
        worker: a name for this worker in the records (default ``host:pid`` of the
            process that claims, also after a fork).

    Thread-safe: one ledger may serve every thread of a process.

    Raises:
        ConfigurationError: ``store`` is not a RedisStore, or a number is out of range.
    """

    def __init__(
        self,
        store: RedisStore,
        *,
        account: str,
        lease: float = DEFAULT_LEASE,
        remember: float = DEFAULT_REMEMBER,
        worker: str | None = None,
    ) -> None:
        client = getattr(store, "redis", None)
        if client is None or not hasattr(store, "prefix"):
            raise ConfigurationError(
                "sending once needs a RedisStore (its Redis keeps the idempotency keys), "
                f"not {type(store).__name__}: oauthsmtp.RedisStore('redis://...')"
            )
        if not isinstance(account, str) or not account.strip():
            raise ConfigurationError("SendLedger needs the account the messages are sent from")
        for name, value in (("lease", lease), ("remember", remember)):
            if isinstance(value, bool) or not isinstance(value, (int, float)) or value <= 0:
                raise ConfigurationError(f"{name} must be a number of seconds > 0")
        self._errors = store.redis_errors
        self.store = store
        self.account = account.strip()
        self.lease = float(lease)
        self.remember = float(remember)
        self._worker = worker
        self._client: Any = client
        self._claim_script: Any = client.register_script(_CLAIM)
        self._renew_script: Any = client.register_script(_RENEW)
        self._release_script: Any = client.register_script(_RELEASE)
        self._held: dict[str, _Claim] = {}
        self._held_lock = threading.Lock()
        self._wake = threading.Event()
        self._renewer: threading.Thread | None = None
        self._renewer_pid = 0

    @property
    def worker(self) -> str:
        """This worker's name in the records: ``worker=``, else ``host:pid``."""
        return self._worker or f"{socket.gethostname()}:{os.getpid()}"

    def state_key(self, key: str) -> str:
        """The Redis key that holds the state of idempotency key ``key``."""
        digest = hashlib.sha256(f"{self.account}\x00{key}".encode()).hexdigest()
        return f"{self.store.prefix}send:{digest}"

    # -- Redis -------------------------------------------------------------------------

    def _talking(self, doing: str) -> AbstractContextManager[None]:
        return self.store.talking(doing, outcome="nothing was sent")

    def _done_record(self, outcome: Outcome) -> bytes:
        record = {"format": _FORMAT, "state": "done", **outcome.as_dict()}
        del record["replayed"]
        return json.dumps(record, sort_keys=True).encode("utf-8")

    def lookup(self, key: str) -> Outcome | None:
        """The recorded outcome for ``key``, or None (nothing recorded, or still sending).

        Raises:
            TokenStoreError: Redis cannot be reached.
        """
        with self._talking("read a message's send record"):
            data = self._client.get(self.state_key(key))
        record = _load(data)
        if record is None or record.get("state") != "done":
            return None
        return Outcome.from_record(record, key)

    # -- claims -------------------------------------------------------------------------

    def _claim(self, key: str) -> _Claim | Outcome:
        name = self.state_key(key)
        record = json.dumps(
            {
                "format": _FORMAT,
                "state": "sending",
                "owner": secrets.token_hex(16),
                "worker": self.worker,
            },
            sort_keys=True,
        ).encode("utf-8")
        with self._talking("claim a message for sending"):
            held = self._claim_script(keys=[name], args=[record, int(self.lease * 1000)])
        if held is None:
            claim = _Claim(name, record)
            with self._held_lock:
                self._held[name] = claim
            self._start_renewer()
            return claim
        existing = _load(held)
        if existing is not None and existing.get("state") == "done":
            outcome = Outcome.from_record(existing, key)
            if outcome is not None:
                return outcome
        if existing is not None and existing.get("state") == "sending":
            who = existing.get("worker")
            return Outcome(
                "deferred",
                None,
                f"another worker ({str(who)[:80]}) is sending this message now; retry later",
                key,
                retry_after=self.lease / 2,
            )
        log.warning("the send record %s in Redis is not oauthsmtp's; not sending", name)
        return Outcome("failed", None, f"the send record {name} in Redis is not oauthsmtp's", key)

    def _finish(self, claim: _Claim, outcome: Outcome) -> None:
        """Record a final outcome (done), retrying briefly; never raises."""
        self._forget(claim)
        data = self._done_record(outcome)
        for attempt in range(3):
            try:
                previous = self._client.set(
                    claim.name, data, px=int(self.remember * 1000), get=True
                )
            except self._errors as exc:
                if attempt == 2:
                    log.warning(
                        "could not record that message %.80r was %s (%s): a redelivery may "
                        "send it again",
                        outcome.key,
                        outcome.status,
                        exc,
                    )
                continue
            if previous != claim.record:
                log.warning(
                    "the claim on message %.80r lapsed while it was being sent (this worker "
                    "was paused or cut off from Redis for longer than %g s); another run may "
                    "have sent it too",
                    outcome.key,
                    self.lease,
                )
            return

    def _release(self, claim: _Claim) -> None:
        """Give up a claim after a transient failure, so a retry may send; never raises."""
        self._forget(claim)
        try:
            self._release_script(keys=[claim.name], args=[claim.record])
        except self._errors as exc:  # it expires by itself within the lease
            log.debug("could not release the claim %s: %s", claim.name, exc)

    def _forget(self, claim: _Claim) -> None:
        with self._held_lock:
            self._held.pop(claim.name, None)

    def _start_renewer(self) -> None:
        with self._held_lock:
            pid = os.getpid()
            if self._renewer is not None and self._renewer_pid == pid:
                return
            self._renewer_pid = pid  # a forked child starts its own
            self._renewer = threading.Thread(
                target=self._renew, name="oauthsmtp-ledger-lease", daemon=True
            )
            self._renewer.start()

    def _renew(self) -> None:
        while True:
            self._wake.wait(self.lease / 3)
            with self._held_lock:
                held = list(self._held.values())
            for claim in held:
                try:
                    ok = self._renew_script(
                        keys=[claim.name], args=[claim.record, int(self.lease * 1000)]
                    )
                except self._errors as exc:
                    log.debug("could not renew the claim %s: %s", claim.name, exc)
                    continue
                if not ok:
                    claim.lost.set()

    # -- sending ------------------------------------------------------------------------

    def send_once(
        self, session: SMTPSession, message: bytes | str, *, key: str | None = None
    ) -> Outcome:
        """Send ``message`` through ``session`` unless ``key`` says it was sent already.

        Args:
            session: the :class:`~oauthsmtp.SMTPSession` to send with (kept open by the
                caller across messages).
            message: the RFC 5322 message (``EmailMessage.as_bytes()``) or its text.
            key: the idempotency key; default :func:`message_key` (the Message-ID).

        Returns:
            The :class:`Outcome`: recorded ones come back with ``replayed=True``; a
            ``"deferred"`` one was not sent and should be retried later (a ``4xx`` reply,
            no reply, or another worker sending it now). A malformed message is a
            ``"failed"`` outcome (recorded), not an exception.

        Raises:
            TokenStoreError: Redis cannot be reached (nothing was sent; retry later).
            LoginRequired: the saved login is gone (log in again; nothing was sent).
            OAuthSMTPError, OSError: sending failed before the message went out; see
                :func:`is_transient` for which are worth retrying. The claim is released
                first, so a retry may send.
        """
        try:
            data, parsed = parse_message(message)
        except ConfigurationError as exc:
            return Outcome("failed", None, str(exc), key or "")
        if key is None:
            key = message_key(data)
        if not isinstance(key, str) or not key.strip() or len(key) > MAX_KEY:
            raise ConfigurationError(
                f"the idempotency key must be a non-empty string of at most {MAX_KEY} characters"
            )
        claimed = self._claim(key)
        if isinstance(claimed, Outcome):
            return claimed
        try:
            result = session.send(parsed)
        except ConfigurationError as exc:
            outcome = Outcome("failed", None, f"refused before sending: {exc}", key)
            self._finish(claimed, outcome)
            return outcome
        except BaseException:
            self._release(claimed)
            raise
        # The server answered: record it first, before anything else can go wrong.
        if _deferred(result):
            self._release(claimed)
            return Outcome("deferred", result.code, result.message, key, dict(result.refused))
        outcome = Outcome(result.status, result.code, result.message, key, dict(result.refused))
        self._finish(claimed, outcome)
        if outcome.status == "unknown":
            log.warning(
                "message %.80r: the server's final reply was lost; it may or may not have "
                "been delivered, and it is not sent again",
                key,
            )
        return outcome


def _load(data: object) -> dict[str, Any] | None:
    if not isinstance(data, bytes):
        return None
    try:
        record = json.loads(data)
    except ValueError:
        return None
    if not isinstance(record, dict) or record.get("format") != _FORMAT:
        return None
    return record
