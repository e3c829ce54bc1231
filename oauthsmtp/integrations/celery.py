"""A Celery task that sends mail through a fleet's shared RedisStore, once per message.

::

    from celery import Celery
    import oauthsmtp
    from oauthsmtp.integrations.celery import make_send_task

    app = Celery("mail", broker="redis://redis.internal:6379/1")
    store = oauthsmtp.RedisStore("redis://redis.internal:6379/0")
    send_mail = make_send_task(app, account="me@example.com", store=store,
                               limits=oauthsmtp.providers.MICROSOFT_365_LIMITS)

    send_mail.delay(message.as_bytes())          # from any process that has the app

Each worker process keeps one :class:`~oauthsmtp.SMTPSession` for the account (made on its
first task from the account's recorded settings and the token in ``store``; its
connections are kept between tasks and closed when the process ends), and every message
goes through a :class:`~oauthsmtp.integrations.ledger.SendLedger`: an idempotency key per
message (the ``Message-ID`` unless ``key=`` is given) in the same Redis, so a retry, a
redelivery after a worker was killed, or a duplicate ``delay()`` never sends a message the
server already accepted (docs/fleet.md says where this cannot be absolute).

The task is ``acks_late`` with ``reject_on_worker_lost``: a message is acknowledged to the
broker only after its outcome was recorded, and a worker killed mid-task leaves it to be
delivered again. Transient failures (no connection, a ``4xx`` reply, the token endpoint or
Redis briefly down, another worker sending the same message now) are retried with
exponential backoff and jitter through Celery's ``retry``; a permanent ``failed`` result
(``5xx``, a malformed message) is returned, not retried; ``unknown`` (the final reply was
lost: it may have been delivered) is recorded, returned and never retried. A dead login
(:class:`~oauthsmtp.LoginRequired`) fails the task at once. The task returns a small
JSON-able dict (``status``, ``code``, ``message``, ``refused``, ``key``, ``replayed``),
never a token.

Celery is imported when :func:`make_send_task` runs, not before: ``import oauthsmtp``
never imports it (``pip install 'oauthsmtp[celery]'``).
"""

from __future__ import annotations

import logging
import os
import random
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oauthsmtp._accounts import open_session
from oauthsmtp._errors import ConfigurationError, SMTPError

from .ledger import DEFAULT_LEASE, DEFAULT_REMEMBER, SendLedger, is_transient

if TYPE_CHECKING:
    from oauthsmtp._smtp.session import SMTPSession
    from oauthsmtp._tokens.stores.redisstore import RedisStore

__all__ = ["WorkerSession", "backoff", "make_send_task"]

log = logging.getLogger("oauthsmtp.celery")

_INSTALL_HINT = "pip install 'oauthsmtp[celery]'"


def backoff(retries: int, *, base: float, cap: float, rand: random.Random | None = None) -> float:
    """Seconds before retry number ``retries + 1``: full jitter over ``base * 2**retries``.

    Between 0.5x and 1x of ``min(cap, base * 2**retries)``, so workers that failed
    together do not come back together.
    """
    ceiling = min(cap, base * 2.0 ** min(retries, 30))
    # Jitter, not a secret: the module-level generator is fine here.
    jitter = rand.random() if rand is not None else random.random()  # noqa: S311
    return ceiling * (0.5 + 0.5 * jitter)


class WorkerSession:
    """One :class:`~oauthsmtp.SMTPSession` per worker process, made on first use.

    Thread-safe; a forked child makes its own (it never uses the parent's sockets).
    With ``hold`` (seconds), the connection is given back in turns: closed after the task
    that finds it open for ``hold`` seconds or more, and after ``hold`` seconds without a
    task (a background thread), so that a connection slot of the mailbox's limits is never
    kept by one worker while others wait. :meth:`close` says QUIT; it runs at worker
    shutdown (Celery's ``worker_process_shutdown`` and ``worker_shutdown`` signals).
    """

    def __init__(self, factory: Any, *, hold: float | None = None) -> None:
        self._factory = factory
        self.hold = hold
        self._lock = threading.Lock()
        self._session: SMTPSession | None = None
        self._pid = 0
        self._busy = 0
        self._opened_at: float | None = None
        self._last_done = 0.0
        self._reaper_pid = 0

    def get(self) -> SMTPSession:
        """The session of this process (made now when there is none).

        Raises:
            whatever making it raises (LoginRequired, TokenStoreError, ConfigurationError).
        """
        with self._lock:
            if self._session is None or self._pid != os.getpid():
                self._session = self._factory()
                self._pid = os.getpid()
                self._opened_at = None
            return self._session

    @contextmanager
    def task(self) -> Iterator[SMTPSession]:
        """The session for one task; afterwards the connection is closed if its turn is over."""
        session = self.get()
        with self._lock:
            self._busy += 1
            if self._opened_at is None:
                self._opened_at = time.monotonic()
        try:
            yield session
        finally:
            now = time.monotonic()
            with self._lock:
                self._busy -= 1
                self._last_done = now
                opened = self._opened_at
                turn_over = (
                    self.hold is not None and opened is not None and (now - opened >= self.hold)
                )
            if turn_over:
                self.disconnect()
            self._start_reaper()

    def disconnect(self) -> None:
        """Close this process's connections (QUIT) and keep the session for the next task;
        never raises."""
        with self._lock:
            session = self._session if self._pid == os.getpid() else None
            self._opened_at = None
        if session is not None:
            try:
                session.close()
            except Exception as exc:  # the next send reconnects: say so, do not fail the task
                log.debug("closing the SMTP connection after a task: %s", exc)

    def _start_reaper(self) -> None:
        if self.hold is None:
            return
        with self._lock:
            if self._reaper_pid == os.getpid():
                return
            self._reaper_pid = os.getpid()
        threading.Thread(target=self._reap, name="oauthsmtp-celery-idle", daemon=True).start()

    def _reap(self) -> None:
        hold = self.hold or 1.0
        while self._reaper_pid == os.getpid():
            time.sleep(hold / 2)
            with self._lock:
                idle = (
                    self._busy == 0
                    and self._opened_at is not None
                    and time.monotonic() - self._last_done >= hold
                )
            if idle:
                self.disconnect()

    def close(self, **_signal: Any) -> None:
        """Close this process's session, if any; never raises."""
        with self._lock:
            session, self._session = self._session, None
            mine = self._pid == os.getpid()
            self._reaper_pid = 0
        if session is not None and mine:
            try:
                session.close()
            except Exception as exc:  # shutting down: say so, do not fail the shutdown
                log.debug("closing the SMTP session at worker shutdown: %s", exc)


def make_send_task(
    app: Any,
    *,
    account: str,
    store: RedisStore,
    limits: Any = None,
    name: str = "oauthsmtp.send",
    home: str | Path | None = None,
    max_retries: int = 10,
    retry_backoff: float = 2.0,
    retry_backoff_max: float = 600.0,
    lease: float = DEFAULT_LEASE,
    remember: float = DEFAULT_REMEMBER,
    hold_connection: float | None = None,
    **session_options: Any,
) -> Any:
    """Register a task on ``app`` that sends one message as ``account``, once.

    Args:
        app: the :class:`celery.Celery` application.
        account: the account to send as, recorded by ``oauthsmtp login`` (its SMTP host,
            port and security are used unless ``session_options`` say otherwise).
        store: the :class:`~oauthsmtp.RedisStore` every worker shares: the token, the
            idempotency keys and (with ``limits``) the shared budget live there.
        limits: a :class:`~oauthsmtp.SendLimits` (for example
            ``oauthsmtp.providers.MICROSOFT_365_LIMITS``) shared by every worker through
            ``store``; None sends without limits.
        name: the task's name.
        home: the folder of recorded accounts; default ``$OAUTHSMTP_HOME``.
        max_retries: retries of a transient failure before the task fails.
        retry_backoff: seconds before the first retry; doubled each time, with jitter.
        retry_backoff_max: the longest wait between retries.
        lease: seconds a message's ``sending`` claim lives unless renewed (a worker killed
            mid-send holds its message back at most this long).
        remember: seconds a message's outcome is remembered.
        hold_connection: seconds a worker keeps its connection between tasks before it
            gives it back (closed after the task that finds it open this long, and after
            this long without a task). None (the default): 1 second when ``limits`` caps
            connections, so that with more workers than connection slots the workers take
            turns (each slot goes to the longest waiter); otherwise kept until the worker
            stops.
        **session_options: :class:`~oauthsmtp.SMTPSession` keywords (``host``, ``port``,
            ``security``, ``ssl_context``, ``timeout``, ``connections``, ...) over the
            account's recorded settings.

    Returns:
        The registered task: ``task.delay(message, key=None)`` with ``message`` the RFC
        5322 bytes (``EmailMessage.as_bytes()``) or text and ``key`` the idempotency key
        (default: the message's ``Message-ID``).

    Raises:
        ConfigurationError: Celery is not installed (``pip install 'oauthsmtp[celery]'``),
            ``store`` is not a RedisStore, or an argument is out of range.
    """
    try:
        from celery import signals
    except ImportError as exc:
        raise ConfigurationError(
            f"oauthsmtp.integrations.celery needs Celery: {_INSTALL_HINT}"
        ) from exc
    if isinstance(max_retries, bool) or not isinstance(max_retries, int) or max_retries < 0:
        raise ConfigurationError("max_retries must be a whole number >= 0")
    for label, seconds in (
        ("retry_backoff", retry_backoff),
        ("retry_backoff_max", retry_backoff_max),
    ):
        if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds <= 0:
            raise ConfigurationError(f"{label} must be a number of seconds > 0")
    ledger = SendLedger(store, account=account, lease=lease, remember=remember)
    folder = Path(home).expanduser().absolute() if home else None
    options = dict(session_options)
    if limits is not None:
        options["limits"] = limits
        options["limits_store"] = store

    def open_worker_session() -> SMTPSession:
        return open_session(ledger.account, home=folder, store=store, **options)

    if hold_connection is None and getattr(limits, "connections", None) is not None:
        hold_connection = 1.0
    if hold_connection is not None and (
        isinstance(hold_connection, bool)
        or not isinstance(hold_connection, (int, float))
        or hold_connection < 0
    ):
        raise ConfigurationError("hold_connection must be a number of seconds >= 0 (or None)")
    worker_session = WorkerSession(open_worker_session, hold=hold_connection)
    signals.worker_process_shutdown.connect(worker_session.close, weak=False)
    signals.worker_shutdown.connect(worker_session.close, weak=False)

    @app.task(  # type: ignore[untyped-decorator]  # Celery ships no types
        bind=True,
        name=name,
        acks_late=True,
        reject_on_worker_lost=True,
        max_retries=max_retries,
    )
    def send_message(task: Any, message: bytes | str, key: str | None = None) -> dict[str, Any]:
        retries = int(task.request.retries or 0)
        wait = backoff(retries, base=retry_backoff, cap=retry_backoff_max)
        try:
            with worker_session.task() as session:
                outcome = ledger.send_once(session, message, key=key)
        except Exception as exc:
            if not is_transient(exc):
                raise
            log.info("message not sent now (%s); retry %d in %.1f s", exc, retries + 1, wait)
            raise task.retry(exc=exc, countdown=wait) from None
        if outcome.deferred:
            if outcome.retry_after is not None:
                wait = max(wait, outcome.retry_after)
            reason = SMTPError(
                f"message {outcome.key[:80]!r} deferred: "
                f"{outcome.code or ''} {outcome.message or ''}".strip(),
                code=outcome.code,
                server_message=outcome.message,
            )
            raise task.retry(exc=reason, countdown=wait)
        return outcome.as_dict()

    send_message.worker_session = worker_session
    send_message.ledger = ledger
    return send_message
