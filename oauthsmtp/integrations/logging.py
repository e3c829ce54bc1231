"""``SMTPHandler``: mail log records with an account's cached OAuth2 token.

A drop-in for :class:`logging.handlers.SMTPHandler` (same first three arguments) that sends
as an account ``oauthsmtp login`` recorded, without a password, and that a burst of errors
cannot turn into a stall or a mail storm (docs/integrations.md):

* **Never blocks the logging thread for long.** :meth:`SMTPHandler.emit` formats the record
  and puts it on a queue (at most ``capacity`` records, default 1,000); one background
  thread, started on the first record, does the network work. A record that finds the queue
  full is dropped and counted (:attr:`SMTPHandler.dropped`); the first drop prints one
  warning to standard error, and the next mail says how many records were dropped.
* **Rate-limits floods.** Records that arrive within ``batch_window`` seconds (default 5)
  of the first one go into one mail (at most ``max_records_per_mail``, default 500; the
  rest wait for the next mail), and at most ``max_per_minute`` mails (default 6) leave in
  any 60 seconds; records keep queueing meanwhile. So a flood of 1,000 records makes two or
  three mails, not 1,000.
* **Never logs through itself.** Records of oauthsmtp's own loggers (``oauthsmtp`` and
  below) and every record emitted by the sender thread are not mailed, so sending a mail
  never produces another; a failed send goes to :meth:`logging.Handler.handleError` (a
  traceback on standard error when ``logging.raiseExceptions`` is true), never to a logger.
* **Bounded shutdown.** :meth:`SMTPHandler.flush` sends what is queued now, and
  :meth:`SMTPHandler.close` sends what is queued and stops the thread; each waits at most
  ``shutdown_timeout`` seconds (default 10). At close, records that the rate limit would
  hold back longer are dropped and counted on standard error.

Each mail opens its own :class:`~oauthsmtp.SMTPSession` (the account's recorded server, the
token from the store, refreshed when it is due; never a browser) and closes it after.

Usable from :func:`logging.config.dictConfig`::

    "mail": {
        "class": "oauthsmtp.integrations.logging.SMTPHandler",
        "level": "ERROR",
        "account": "alerts@example.com",
        "toaddrs": ["oncall@example.com"],
        "subject": "[myapp] %(levelname)s: %(message)s",
    }

The subject may hold ``%(...)s`` fields of the first record of a mail; a mail of several
records says so at the end of its subject (``(+12 more)``).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import sys
import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass, field
from email.message import EmailMessage
from email.utils import formatdate, make_msgid, parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from oauthsmtp._accounts import open_session
from oauthsmtp._errors import ConfigurationError

if TYPE_CHECKING:
    from oauthsmtp._tokens.stores.base import TokenStore

__all__ = ["SMTPHandler"]

DEFAULT_CAPACITY = 1000
DEFAULT_BATCH_WINDOW = 5.0
DEFAULT_MAX_PER_MINUTE = 6
DEFAULT_MAX_RECORDS_PER_MAIL = 500
DEFAULT_SHUTDOWN_TIMEOUT = 10.0
MAX_SUBJECT = 200
"""The longest subject (in characters) taken from a record."""
_MINUTE = 60.0
_OWN_LOGGER = "oauthsmtp"


@dataclass(frozen=True)
class _Entry:
    """One record, formatted in the logging thread (its arguments may change later)."""

    record: logging.LogRecord
    text: str
    subject: str


@dataclass(frozen=True)
class _Marker:
    """A flush (``stop=False``) or close (``stop=True``) request; ``done`` is set after it."""

    stop: bool
    done: threading.Event = field(default_factory=threading.Event)


class SMTPHandler(logging.Handler):
    """A :class:`logging.Handler` that mails records as a recorded oauthsmtp account.

    Args:
        account: the account to send as (recorded by ``oauthsmtp login``).
        toaddrs: one address or a list of addresses.
        subject: the subject; ``%(name)s`` style fields of the first record are filled in.
        fromaddr: the From address; default the account.
        store: the token store (a :class:`~oauthsmtp.TokenStore`); default
            ``$OAUTHSMTP_STORE``.
        home: the folder of recorded accounts; default ``$OAUTHSMTP_HOME``.
        level: the handler's level (as :class:`logging.Handler`).
        capacity: records the queue holds; more are dropped and counted.
        batch_window: seconds during which records go into the same mail.
        max_per_minute: mails sent in any 60 seconds, at most.
        max_records_per_mail: records in one mail, at most (the rest go in the next).
        shutdown_timeout: seconds :meth:`flush` and :meth:`close` wait, at most.
        **session_options: :class:`~oauthsmtp.SMTPSession` keywords (``host``, ``port``,
            ``security``, ``timeout``, ``ssl_context``, ...) over the recorded settings.

    Raises:
        ConfigurationError: an argument is invalid (no account, no recipient, a
            non-positive limit).
    """

    def __init__(
        self,
        account: str,
        toaddrs: str | Iterable[str],
        subject: str,
        *,
        fromaddr: str | None = None,
        store: TokenStore | None = None,
        home: str | Path | None = None,
        level: int | str = logging.NOTSET,
        capacity: int = DEFAULT_CAPACITY,
        batch_window: float = DEFAULT_BATCH_WINDOW,
        max_per_minute: int = DEFAULT_MAX_PER_MINUTE,
        max_records_per_mail: int = DEFAULT_MAX_RECORDS_PER_MAIL,
        shutdown_timeout: float = DEFAULT_SHUTDOWN_TIMEOUT,
        **session_options: Any,
    ) -> None:
        super().__init__(level)
        if not isinstance(account, str) or not account.strip():
            raise ConfigurationError("SMTPHandler needs the account to send as")
        recipients = (toaddrs,) if isinstance(toaddrs, str) else tuple(toaddrs)
        if not recipients or not all(isinstance(a, str) and a.strip() for a in recipients):
            raise ConfigurationError("SMTPHandler needs at least one recipient address")
        for address in (*recipients, fromaddr or account):
            if any(c in address for c in "\r\n\x00") or "@" not in parseaddr(address)[1]:
                raise ConfigurationError(f"SMTPHandler: {address[:80]!r} is not an address")
        for name, value in (
            ("capacity", capacity),
            ("max_per_minute", max_per_minute),
            ("max_records_per_mail", max_records_per_mail),
        ):
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigurationError(f"SMTPHandler {name} must be a whole number >= 1")
        for name, seconds in (
            ("batch_window", batch_window),
            ("shutdown_timeout", shutdown_timeout),
        ):
            if isinstance(seconds, bool) or not isinstance(seconds, (int, float)) or seconds < 0:
                raise ConfigurationError(f"SMTPHandler {name} must be seconds >= 0")
        self.account = account.strip()
        self.toaddrs = recipients
        self.subject = subject
        self.fromaddr = fromaddr or self.account
        self.store = store
        self.home = Path(home).expanduser().absolute() if home else None
        self.capacity = capacity
        self.batch_window = float(batch_window)
        self.max_per_minute = max_per_minute
        self.max_records_per_mail = max_records_per_mail
        self.shutdown_timeout = float(shutdown_timeout)
        self.session_options = session_options
        self.mails_sent = 0
        """Mails the server accepted so far."""
        self._queue: queue.SimpleQueue[_Entry | _Marker] = queue.SimpleQueue()
        self._state = threading.Lock()
        self._pending = 0
        self._dropped = 0
        self._dropped_unreported = 0
        self._warned = False
        self._urgent = 0
        self._closed = False
        self._thread: threading.Thread | None = None
        self._sender_ident: int | None = None
        self._sent_at: deque[float] = deque()
        self._wake = threading.Event()

    @property
    def dropped(self) -> int:
        """Records dropped so far (the queue was full, or the handler was closing)."""
        with self._state:
            return self._dropped

    # -- the logging thread -------------------------------------------------------------
    def getSubject(self, record: logging.LogRecord) -> str:
        """The subject for a mail that starts with ``record`` (override to customise).

        ``subject`` with the record's ``%(...)s`` fields filled in, cut to its first line
        and :data:`MAX_SUBJECT` characters (a message may span lines; a header may not).
        """
        subject = self.subject
        if "%(" in subject:
            try:
                subject = subject % record.__dict__
            except (KeyError, TypeError, ValueError):
                subject = self.subject
        first = subject.strip().splitlines()[0] if subject.strip() else "log record"
        return first[:MAX_SUBJECT]

    def emit(self, record: logging.LogRecord) -> None:
        """Queue ``record`` for mailing and return at once.

        Records of oauthsmtp's own loggers and of the sender thread are ignored (sending
        must never mail about itself).
        """
        if record.name == _OWN_LOGGER or record.name.startswith(_OWN_LOGGER + "."):
            return
        if threading.get_ident() == self._sender_ident:
            return
        try:
            entry = _Entry(record, self.format(record), self.getSubject(record))
        except Exception:
            self.handleError(record)
            return
        warn = False
        with self._state:
            if self._closed or self._pending >= self.capacity:
                self._dropped += 1
                self._dropped_unreported += 1
                warn, self._warned = not self._warned, True
            else:
                self._pending += 1
                self._queue.put(entry)
                self._start_locked()
        if warn:
            _stderr(
                f"oauthsmtp SMTPHandler: {self.capacity} log records are waiting to be mailed; "
                "further records are dropped (and counted in the next mail) until it catches up"
            )

    def flush(self) -> None:
        """Send what is queued now, waiting at most ``shutdown_timeout`` seconds."""
        self._request(stop=False)

    def close(self) -> None:
        """Send what is queued and stop the sender, waiting at most ``shutdown_timeout``."""
        with self._state:
            already, self._closed = self._closed, True
        if not already:
            deadline = time.monotonic() + self.shutdown_timeout
            self._request(stop=True)
            thread = self._thread
            if thread is not None and threading.get_ident() != self._sender_ident:
                thread.join(max(0.0, deadline - time.monotonic()))
            with self._state:
                lost = self._pending
            if lost:
                _stderr(f"oauthsmtp SMTPHandler: {lost} log records were not mailed before close")
        super().close()

    def _request(self, *, stop: bool) -> None:
        with self._state:
            if self._thread is None or not self._thread.is_alive():
                return
            marker = _Marker(stop)
            self._urgent += 1
            self._queue.put(marker)
        self._wake.set()
        if threading.get_ident() != self._sender_ident:
            marker.done.wait(self.shutdown_timeout)

    def _start_locked(self) -> None:
        if self._thread is None:
            self._thread = threading.Thread(
                target=self._run, name="oauthsmtp-SMTPHandler", daemon=True
            )
            self._thread.start()

    # -- the sender thread ----------------------------------------------------------------
    def _run(self) -> None:
        self._sender_ident = threading.get_ident()
        stop = False
        while not stop:
            batch: list[_Entry] = []
            markers: list[_Marker] = []
            self._take(self._queue.get(), batch, markers)
            deadline = time.monotonic() + self.batch_window
            while len(batch) < self.max_records_per_mail and not markers:
                remaining = deadline - time.monotonic()
                with self._state:
                    if self._urgent:
                        remaining = 0
                try:
                    item = self._queue.get(timeout=remaining) if remaining > 0 else None
                    if item is None:
                        item = self._queue.get_nowait()
                except queue.Empty:
                    break
                self._take(item, batch, markers)
            stop = any(m.stop for m in markers)
            if batch:
                self._mail(batch, closing=self._closed)
            for marker in markers:
                with self._state:
                    self._urgent -= 1
                marker.done.set()
            self._wake.clear()

    def _take(self, item: _Entry | _Marker, batch: list[_Entry], markers: list[_Marker]) -> None:
        if isinstance(item, _Marker):
            markers.append(item)
        else:
            batch.append(item)

    def _mail(self, batch: list[_Entry], *, closing: bool) -> None:
        """Send one mail of ``batch`` when the rate limit allows; errors to handleError."""
        if not self._slot(closing=closing):
            with self._state:
                self._pending -= len(batch)
                self._dropped += len(batch)
            _stderr(
                f"oauthsmtp SMTPHandler: {len(batch)} log records were dropped at close: at "
                f"most {self.max_per_minute} mails leave per minute"
            )
            return
        with self._state:
            self._pending -= len(batch)
            dropped, self._dropped_unreported = self._dropped_unreported, 0
        try:
            message = self.compose([e.text for e in batch], batch[0].subject, dropped=dropped)
            session = open_session(
                self.account, home=self.home, store=self.store, **self.session_options
            )
            with session:
                session.send(message).raise_for_status()
            self.mails_sent += 1
        except Exception:
            self.handleError(batch[0].record)

    def _slot(self, *, closing: bool) -> bool:
        """Wait until fewer than ``max_per_minute`` mails left in the last minute.

        While closing, wait no longer than ``shutdown_timeout``; False when it would take
        longer.
        """
        give_up = time.monotonic() + self.shutdown_timeout
        while True:
            now = time.monotonic()
            while self._sent_at and now - self._sent_at[0] >= _MINUTE:
                self._sent_at.popleft()
            if len(self._sent_at) < self.max_per_minute:
                self._sent_at.append(now)
                return True
            free_at = self._sent_at[0] + _MINUTE
            if (closing or self._closed) and free_at > give_up:
                return False
            self._wake.wait(max(0.0, free_at - now))
            self._wake.clear()

    def compose(self, texts: list[str], subject: str, *, dropped: int = 0) -> EmailMessage:
        """The mail for some formatted records (override to change its layout).

        Args:
            texts: the formatted records, oldest first.
            subject: the subject of the first record.
            dropped: records dropped since the previous mail (the queue was full).
        """
        message = EmailMessage()
        extra = len(texts) - 1
        message["Subject"] = subject if not extra else f"{subject} (+{extra} more)"
        message["From"] = self.fromaddr
        message["To"] = ", ".join(self.toaddrs)
        message["Date"] = formatdate(localtime=True)
        domain = parseaddr(self.fromaddr)[1].rpartition("@")[2] or None
        message["Message-ID"] = make_msgid(domain=domain)
        parts = list(texts)
        if dropped:
            parts.insert(
                0,
                f"({dropped} log records were dropped before this mail: more than "
                f"{self.capacity} were waiting.)",
            )
        message.set_content("\n\n".join(parts) + "\n")
        return message


def _stderr(text: str) -> None:
    stream = sys.stderr
    if stream is not None:
        with contextlib.suppress(OSError, ValueError):
            stream.write(text + "\n")
