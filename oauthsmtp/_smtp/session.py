"""SMTPSession: send email over authenticated connections (WinDev ``emailSMTPSession``).

The session connects, secures and authenticates, then sends one message or a batch over
the same connection (or, when asked, a pool of a few connections):

* **TLS fails closed** (SECURITY.md rules 21-23). ``security="starttls"`` requires STARTTLS
  (RFC 3207): not offered, refused, or a certificate that does not verify, and the session
  fails before AUTH. EHLO is sent again after TLS and only that answer is trusted (§4.2).
  Credentials never cross an unencrypted connection, except to a loopback address with
  ``security="none"`` (for local testing).
* **AUTH** (rules 24-27) is in :mod:`oauthsmtp._smtp.auth`: XOAUTH2 or OAUTHBEARER with a
  token, refreshed once and retried once after a ``535``, or PLAIN/LOGIN with a password.
* **Batches** (RFC 2920): when the server offers PIPELINING, a message's envelope
  (MAIL, RCPT..., DATA) goes out in one write, and after the ``354`` its body goes out in
  the same write as the next message's envelope, so a batch costs one round trip per
  message (plus one). Each message gets its own :class:`SendResult`.
* **A pool** (``connections=N``): a batch is shared by up to N connections, each
  pipelined, opened on demand and kept for later calls; never more than N are open, and
  fewer once the server refuses one as too many (``432 4.3.2``, :mod:`._smtppool`).
* **Drops**: if the connection is lost mid-batch, the session reconnects (reading the
  token again) and carries on. A message whose body was sent but whose end-of-data reply
  never came is reported ``"unknown"`` and is not sent again; the others are sent once.

The session's connections are opened by its base class in :mod:`oauthsmtp._smtp.connect`
(connect, TLS, AUTH), and its asynchronous mode is in :mod:`oauthsmtp._smtp.background`.
"""

from __future__ import annotations

import logging
import queue
import ssl
import threading
from collections.abc import Iterable, Mapping
from email.message import Message
from types import MappingProxyType
from typing import TYPE_CHECKING, Any

from oauthsmtp._errors import ConfigurationError, OAuthSMTPError
from oauthsmtp._message.prepare import Email, prepare_message
from oauthsmtp._oauth.params import is_loopback_host

from .auth import check_mechanism
from .background import _AsyncSender
from .connect import Security, TokenSource, _Connector
from .pool import Channel, deliver, quit_all
from .transact import Job, SendResult, failed
from .wire import SMTPConnectionError, SMTPTimeoutError

if TYPE_CHECKING:
    from collections.abc import Sequence

__all__ = [
    "SMTPConnectionError",
    "SMTPSession",
    "SMTPTimeoutError",
    "Security",
    "SendResult",
    "TokenSource",
]

logger = logging.getLogger("oauthsmtp.smtp")

_DEFAULT_PORTS: dict[str, int] = {"starttls": 587, "ssl": 465, "none": 25}


def _check_connections(value: object) -> int:
    if isinstance(value, bool) or not isinstance(value, int) or value < 1:
        raise ConfigurationError(f"connections must be a whole number >= 1, not {value!r}")
    return value


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or any(c in value for c in "\r\n\x00\x01 \t"):
        raise ConfigurationError(f"{name} must be a non-empty string without spaces or controls")
    return value


class SMTPSession(_Connector, _AsyncSender):
    """An SMTP session for sending mail (WinDev ``emailSMTPSession``).

    Args:
        host: the server (``ServerAddress``), e.g. ``"smtp.gmail.com"``.
        port: the port; None means 587 for starttls, 465 for ssl, 25 for none.
        security: ``"starttls"`` (required, RFC 3207), ``"ssl"`` (implicit TLS, RFC 8314)
            or ``"none"`` (no TLS; credentials allowed only to a loopback address).
        username: the account (``Name``); defaults to ``auth_token.account`` when it has one.
        auth_token: an :class:`~oauthsmtp.AuthToken` (anything with ``access_token`` and
            ``refresh()``) for XOAUTH2/OAUTHBEARER.
        password: a password for PLAIN/LOGIN instead of a token (TLS only).
        mechanism: force ``"XOAUTH2"``/``"OAUTHBEARER"`` (token) or ``"PLAIN"``/``"LOGIN"``
            (password); None chooses from what the server offers after TLS, OAUTHBEARER first.
        timeout: seconds allowed for connecting, for each write and for each reply.
        ssl_context: the TLS context; default :func:`ssl.create_default_context` (verifies
            certificates and host names; honours ``SSL_CERT_FILE``).
        asynchronous: :meth:`send` returns a :class:`~concurrent.futures.Future` at once and
            a background thread sends; :meth:`close` waits for every queued message.
        local_hostname: the EHLO name; default is the address literal of the local end
            (RFC 5321 §4.1.4), which needs no DNS lookup and discloses no host name.
        connections: how many connections :meth:`send_many` (and asynchronous sending)
            may use at once; 1 (the default) sends everything over one connection. More
            connections are opened when a batch needs them and kept until :meth:`close`.
            Providers cap them: Microsoft 365 allows about 3 per mailbox and answers
            ``432 4.3.2`` beyond; the session then carries on with the connections the
            server accepted and never opens more than that again.

    Raises:
        ConfigurationError: inconsistent or malformed options (both a token and a password,
            credentials with ``security="none"`` to a non-loopback host, ...).
    """

    def __init__(
        self,
        host: str,
        port: int | None = None,
        *,
        security: Security = "starttls",
        username: str | None = None,
        auth_token: TokenSource | None = None,
        password: str | None = None,
        mechanism: str | None = None,
        timeout: float = 60,
        ssl_context: ssl.SSLContext | None = None,
        asynchronous: bool = False,
        local_hostname: str | None = None,
        connections: int = 1,
    ) -> None:
        if security not in _DEFAULT_PORTS:
            raise ConfigurationError(
                f"security must be 'starttls', 'ssl' or 'none', not {security!r}"
            )
        self.host = _check_text("host", host)
        port = _DEFAULT_PORTS[security] if port is None else port
        if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
            raise ConfigurationError(f"port must be 1-65535, not {port!r}")
        self.port = port
        self.security: Security = security
        if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
            raise ConfigurationError(
                f"timeout must be a positive number of seconds, not {timeout!r}"
            )
        self.timeout = float(timeout)
        if auth_token is not None and password is not None:
            raise ConfigurationError("pass auth_token= or password=, not both")
        if username is None and auth_token is not None:
            username = getattr(auth_token, "account", None)
        if (auth_token is not None or password is not None) and username is None:
            raise ConfigurationError("username= is required with auth_token= or password=")
        self.username = None if username is None else _check_text("username", username)
        self._token = auth_token
        self._password = password
        self.mechanism = check_mechanism(mechanism, token=auth_token is not None, password=password)
        if security == "none" and ssl_context is not None:
            raise ConfigurationError("ssl_context= has no effect with security='none'")
        if security == "none" and self._has_credentials and not is_loopback_host(host):
            raise ConfigurationError(
                "credentials are never sent without TLS: use security='starttls' or 'ssl' "
                "(security='none' with credentials is only for loopback test servers)"
            )
        self._context = ssl_context
        self.asynchronous = asynchronous
        self.local_hostname = (
            None if local_hostname is None else _check_text("local_hostname", local_hostname)
        )
        self.connections = _check_connections(connections)
        self._channels: list[Channel] = [Channel()]
        self._limit: int | None = None  # connections the server accepted when it refused more
        self._lock = threading.RLock()
        self._state_lock = threading.Lock()
        self._queue: queue.Queue[Job | None] | None = None
        self._worker: threading.Thread | None = None

    # -- public API -------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still have been dropped by the server)."""
        return any(channel.connected for channel in self._channels)

    @property
    def extensions(self) -> Mapping[str, str]:
        """The EHLO keywords of the current connection (after TLS), upper case."""
        return MappingProxyType(self._main().extensions)

    @property
    def auth_mechanism(self) -> str | None:
        """The SASL mechanism the current connection authenticated with, or None."""
        return self._main().mechanism

    @property
    def open_connections(self) -> int:
        """How many connections are open now (at most ``connections``)."""
        return sum(1 for channel in self._channels if channel.connected)

    def start(self) -> SMTPSession:
        """Connect, secure and authenticate now (WinDev ``EmailStartSession``); returns self.

        Raises:
            SMTPError: the server refused or failed (TLS, EHLO, STARTTLS, ...);
                :class:`SMTPAuthError` when AUTH was refused (with code, text and a hint).
            SMTPTimeoutError, SMTPConnectionError: the server did not answer or dropped.
            LoginRequired, TokenError: the token could not be refreshed.
        """
        with self._lock:
            if not self.connected:
                self._connect(self._channels[0], None)
        if self.asynchronous:
            self._ensure_worker()
        return self

    def close(self) -> None:
        """Wait for queued messages, then QUIT and close (WinDev ``EmailCloseSession``).

        Idempotent; the session can be started again afterwards.
        """
        with self._state_lock:
            worker, work_queue = self._worker, self._queue
            self._worker = self._queue = None
        if worker is not None and work_queue is not None:
            work_queue.put(None)
            worker.join()
        with self._lock:
            quit_all(self._channels)
            self._channels = self._channels[:1]

    def __enter__(self) -> SMTPSession:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def send(self, message: Email | Message) -> Any:
        """Send one message (WinDev ``EmailSendMessage``).

        Returns:
            The :class:`SendResult` (a ``Future[SendResult]`` when ``asynchronous``). A
            message the server refuses is a ``"failed"`` result, not an exception; use
            ``result.ok`` or ``result.raise_for_status()``.

        Raises:
            ConfigurationError: the message is malformed (CR/LF/NUL in an address or a
                header, address parse defects, no recipient), before anything is sent.
            SMTPError, LoginRequired, TokenError: the session could not be (re)established.
                In asynchronous mode every error reaches the future instead.
        """
        job = self._prepare(message)
        if self.asynchronous:
            return self._submit(job)
        if job.error is not None:
            raise job.error
        with self._lock:
            self._deliver([job], self.connections)
        assert job.result is not None  # noqa: S101 - _deliver sets it or raises
        return job.result

    def send_many(
        self, messages: Iterable[Email | Message], *, connections: int | None = None
    ) -> list[SendResult]:
        """Send messages, pipelined when the server allows it, over one or more connections.

        One bad message does not stop the batch: a malformed one gets a ``"failed"`` result
        without reaching the server, a refused one the server's code and text.

        Args:
            messages: the messages to send.
            connections: share the batch between up to this many connections (threads);
                None uses the session's ``connections``. Never more are open at once, and
                never more than the server accepted once it refused one (``432 4.3.2``).
                In asynchronous mode the session's setting applies.

        Returns:
            One :class:`SendResult` per message, in the order of ``messages``.

        Raises:
            ConfigurationError: ``connections`` is not a whole number >= 1.
            SMTPError, LoginRequired, TokenError: only when the session could not be
                established before any message of the batch got an answer; after that, a
                failure to reconnect makes the remaining messages ``"failed"``.
        """
        width = self.connections if connections is None else _check_connections(connections)
        jobs = [self._prepare(m) for m in messages]
        if self.asynchronous:
            futures = [self._submit(job) for job in jobs if job.error is None]
            errors = [f.exception() for f in futures]
            for error in errors:
                if error is not None:
                    self._settle(jobs, error)
                    break
        else:
            with self._lock:
                try:
                    self._deliver(jobs, width)
                except OAuthSMTPError as exc:
                    self._settle(jobs, exc)
        return [job.result or failed("not sent") for job in jobs]

    def __repr__(self) -> str:
        auth = "token" if self._token is not None else "password" if self._password else None
        return (
            f"SMTPSession(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, auth={auth!r}, connected={self.connected})"
        )

    # -- channels ---------------------------------------------------------------------
    def _main(self) -> Channel:
        """The first connected channel (or the first channel)."""
        return next((c for c in self._channels if c.connected), self._channels[0])

    # -- messages -----------------------------------------------------------------------
    def _prepare(self, message: Email | Message) -> Job:
        """Validate and serialize a message; a refused one becomes a failed job, not a raise."""
        from email.errors import MessageError

        try:
            return Job(prepare_message(message))
        except (ValueError, MessageError, OSError) as exc:
            error: Exception = exc
            if not isinstance(exc, (ConfigurationError, OSError)):
                error = ConfigurationError(f"the message cannot be sent: {exc}")
                error.__cause__ = exc
            return Job(None, failed(f"refused before sending: {error}"), error)

    def _settle(self, jobs: Sequence[Job], error: BaseException) -> None:
        """Apply send_many's rule: raise unless some message already got an answer."""
        if not any(job.result is not None and job.outgoing is not None for job in jobs):
            raise error
        for job in jobs:
            if job.result is None:
                job.result = failed(f"not sent: {error}")

    def _deliver(self, jobs: Sequence[Job], allowed: int) -> None:
        """Send every job without a result over up to ``allowed`` connections.

        The caller holds the lock. Open connections beyond ``allowed`` (or beyond what the
        server accepted) are closed first, so never more than that are open at once.
        """
        if self._limit is not None:
            allowed = min(allowed, self._limit)
        self._trim(allowed)
        pending = sum(1 for job in jobs if job.result is None and job.outgoing is not None)
        if not pending:
            return
        width = min(allowed, pending)
        # The list is replaced, never changed in place: other threads may read it.
        self._channels = self._channels + [Channel() for _ in range(width - len(self._channels))]
        deliver(
            jobs,
            self._channels[:width],
            connect=self._connect,
            host=self.host,
            on_limit=self._learn_limit,
        )

    def _learn_limit(self, accepted: int) -> None:
        if self._limit is None or accepted < self._limit:
            logger.info(
                "%s refused a connection as one too many (432 4.3.2); using at most %d",
                self.host,
                accepted,
            )
            self._limit = accepted

    def _trim(self, allowed: int) -> None:
        """Close connections beyond ``allowed`` (QUIT); open ones are kept, and put first."""
        channels = sorted(self._channels, key=lambda channel: not channel.connected)
        keep = max(allowed, 1)
        self._channels = channels[:keep]
        if channels[keep:]:
            quit_all(channels[keep:])
