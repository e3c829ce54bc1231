"""SMTPSession: send email over authenticated connections (WinDev ``emailSMTPSession``).

The session connects, secures and authenticates, then sends one message or a batch over
the same connection (or, when asked, a pool of a few connections). It is built from three
objects it owns, each in its own module:

* a :class:`~oauthsmtp._smtp.connect.Connector` opens a connection: TLS fails closed
  (``security="starttls"`` requires STARTTLS, RFC 3207; certificates are verified; EHLO is
  sent again after TLS and only that answer is trusted), then AUTH
  (:mod:`oauthsmtp._smtp.auth`: XOAUTH2 or OAUTHBEARER with a token, refreshed once and
  retried once after a ``535``, or PLAIN/LOGIN with a password). Credentials never cross
  an unencrypted connection, except to a loopback address with ``security="none"``;
* a :class:`~oauthsmtp._smtp.pool.Pool` holds up to ``connections`` connections and sends
  batches over them (:mod:`oauthsmtp._smtp.transact`: pipelined when the server offers
  PIPELINING, RFC 2920, about one round trip per message). A drop mid-batch reconnects
  and carries on: a message whose body was sent but whose end-of-data reply never came is
  ``"unknown"`` and is not sent again; the others are sent once. A ``432 4.3.2`` (too many
  connections) shrinks the pool;
* a :class:`~oauthsmtp._smtp.background.BackgroundSender` serves :meth:`SMTPSession.submit`
  (and ``asynchronous=True``): a queue and one thread;
* with ``limits=``, a :class:`~oauthsmtp._smtp.limited.Limiter` draws every connection and
  every message from the mailbox's budget, shared through ``limits_store`` (docs/limits.md).

Nothing but oauthsmtp's own errors leaves the session, and a batch always returns one
:class:`SendResult` per message, in order: a message that cannot be prepared or sent fails
alone.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Iterable
from concurrent.futures import Future
from email.message import Message
from types import MappingProxyType
from typing import TYPE_CHECKING

from oauthsmtp._errors import ConfigurationError, OAuthSMTPError, SMTPError
from oauthsmtp._limits.budget import LimitReached
from oauthsmtp._limits.rules import SendLimits
from oauthsmtp._message.prepare import Email, OutgoingMessage

from .auth import TokenSource
from .background import BackgroundSender
from .batch import check_messages, prepare_job
from .connect import Connector, Security
from .limited import limiter_for
from .options import check_connections
from .pool import Pool
from .settings import check_settings
from .stream import send_stream
from .transact import Job, Lane, SendResult, deferred
from .verify import VerifyResult, verify
from .wire import SMTPConnectionError, SMTPTimeoutError

if TYPE_CHECKING:
    from collections.abc import Mapping, Sequence

__all__ = [
    "SMTPConnectionError",
    "SMTPSession",
    "SMTPTimeoutError",
    "Security",
    "SendResult",
    "TokenSource",
    "VerifyResult",
]


class SMTPSession:
    """An SMTP session for sending mail (WinDev ``emailSMTPSession``).

    Args:
        host: the server (``ServerAddress``), e.g. ``"smtp.gmail.com"``.
        port: the port; None means 587 for starttls, 465 for ssl, 25 for none.
        security: ``"starttls"`` (required, RFC 3207), ``"ssl"`` (implicit TLS, RFC 8314)
            or ``"none"`` (no TLS; credentials allowed only to a loopback address).
        username: the account (``Name``); defaults to ``auth_token.account`` when it has one.
        auth_token: an :class:`~oauthsmtp.AuthToken` (anything with ``access_token`` and
            ``refresh()``, see :class:`TokenSource`) for XOAUTH2/OAUTHBEARER.
        password: a password for PLAIN/LOGIN instead of a token (TLS only).
        mechanism: force ``"XOAUTH2"``/``"OAUTHBEARER"`` (token) or ``"PLAIN"``/``"LOGIN"``
            (password); None chooses from what the server offers after TLS, OAUTHBEARER first.
        timeout: seconds allowed for connecting, for each write and for each reply
            (above 0, at most one day).
        ssl_context: the TLS context; default :func:`ssl.create_default_context` (verifies
            certificates and host names; honours ``SSL_CERT_FILE``).
        asynchronous: WinDev's ``Asynchronous``: :meth:`start` also starts the background
            sender of :meth:`submit`, whose futures hold the results; :meth:`send` still
            returns a :class:`SendResult` (it waits behind the queued messages);
            :meth:`close` waits for every queued message.
        local_hostname: the EHLO name; default is the address literal of the local end
            (RFC 5321 §4.1.4), which needs no DNS lookup and discloses no host name.
        connections: how many connections :meth:`send_many` (and :meth:`submit`) may use
            at once (1-100); 1 (the default) sends everything over one connection. More
            connections are opened when a batch needs them and kept until :meth:`close`.
            Providers cap them: Microsoft 365 allows about 3 per mailbox and answers
            ``432 4.3.2`` beyond; the session then carries on with the connections the
            server accepted and never opens more than that again.
        limits: a :class:`~oauthsmtp.SendLimits` (e.g.
            ``oauthsmtp.providers.MICROSOFT_365_LIMITS``): the session takes a connection
            slot before opening a connection (and gives it back on close), a message slot
            before each MAIL FROM, fails a message with more recipients than
            ``recipients_per_message``, defers messages once a daily cap is reached or a
            wait would pass ``max_wait`` (``"deferred"`` results), and retries transient
            (``4xx``) refusals after a backoff. Never more than ``limits.connections`` of
            this session's connections are open. See docs/limits.md.
        limits_store: where the budget is shared: a :class:`~oauthsmtp.RedisStore` shares
            it (per mailbox: the username) with every process, on any machine, that uses
            the same Redis and prefix; None (or a store that shares nothing, such as the
            keyring or file store) shares it with every session of this process for the
            same mailbox and limits.

    ``host``, ``port``, ``security``, ``timeout``, ``username``, ``mechanism`` and
    ``local_hostname`` are read-only afterwards (the connector holds them);
    ``connections`` and ``asynchronous`` are read when used.

    Raises:
        ConfigurationError: a malformed or inconsistent option (a timeout that is not a
            finite positive number, a port outside 1-65535, a host with spaces or control
            characters, both a token and a password, credentials with
            ``security="none"`` to a non-loopback host, ...).
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
        limits: SendLimits | None = None,
        limits_store: object | None = None,
    ) -> None:
        settings = check_settings(
            host,
            port,
            security=security,
            username=username,
            auth_token=auth_token,
            password=password,
            mechanism=mechanism,
            timeout=timeout,
            ssl_context=ssl_context,
            local_hostname=local_hostname,
        )
        if not isinstance(asynchronous, bool):
            raise ConfigurationError(f"asynchronous must be True or False, not {asynchronous!r}")
        self.asynchronous = asynchronous
        self.connections = check_connections(connections)
        self._host = settings.host
        self._connector = Connector(
            settings.address,
            settings.port,
            security=settings.security,
            timeout=settings.timeout,
            username=settings.username,
            token=settings.token,
            password=settings.password,
            mechanism=settings.mechanism,
            local_hostname=settings.local_hostname,
            context=settings.ssl_context,
        )
        self._limiter = limiter_for(limits, limits_store, settings)
        limiter = self._limiter
        if limiter is None:
            self._pool = Pool(self._connector.connect, host=settings.address)
        else:
            self._pool = Pool(
                limiter.connect(self._connector.connect),
                host=settings.address,
                lane=lambda: Lane(
                    admit=limiter.admit, retry=limiter.retry, answered=limiter.answered
                ),
            )
        self._sender = BackgroundSender(self._deliver_queued)

    # -- settings (read-only: the connector holds them) ----------------------------------
    @property
    def host(self) -> str:
        """The server, as given (``ServerAddress``)."""
        return self._host

    @property
    def port(self) -> int:
        """The server's port."""
        return self._connector.port

    @property
    def security(self) -> Security:
        """``"starttls"``, ``"ssl"`` or ``"none"``."""
        return self._connector.security

    @property
    def timeout(self) -> float:
        """Seconds allowed for connecting, for each write and for each reply."""
        return self._connector.timeout

    @property
    def username(self) -> str | None:
        """The SASL user (``Name``), or None without credentials."""
        return self._connector.username

    @property
    def mechanism(self) -> str | None:
        """The forced SASL mechanism, upper case, or None (chosen from EHLO)."""
        return self._connector.mechanism

    @property
    def local_hostname(self) -> str | None:
        """The EHLO name, or None for the local address literal."""
        return self._connector.local_hostname

    @property
    def limits(self) -> SendLimits | None:
        """The sending limits this session keeps, or None."""
        return None if self._limiter is None else self._limiter.limits

    # -- state ----------------------------------------------------------------------------
    @property
    def connected(self) -> bool:
        """True while a connection is open (it may still have been dropped by the server)."""
        return self._pool.connected

    @property
    def extensions(self) -> Mapping[str, str]:
        """The EHLO keywords of the current connection (after TLS), upper case."""
        return MappingProxyType(self._pool.main.extensions)

    @property
    def auth_mechanism(self) -> str | None:
        """The SASL mechanism the current connection authenticated with, or None."""
        return self._pool.main.mechanism

    @property
    def open_connections(self) -> int:
        """How many connections are open now (at most ``connections``)."""
        return self._pool.open_connections

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> SMTPSession:
        """Connect, secure and authenticate now (WinDev ``EmailStartSession``); returns self.

        With ``asynchronous=True`` the background sender starts too.

        Raises:
            SMTPError: the server refused or failed (TLS, EHLO, STARTTLS, ...), with a hint
                what to change; :class:`SMTPAuthError` when AUTH was refused.
            SMTPTimeoutError, SMTPConnectionError: the server did not answer or dropped.
            LoginRequired, TokenError: the token could not be refreshed.
        """
        self._pool.start()
        if self.asynchronous:
            self._sender.start()
        return self

    def close(self) -> None:
        """Wait for queued messages, then QUIT and close (WinDev ``EmailCloseSession``).

        Idempotent; the session can be started again afterwards.
        """
        self._sender.close()
        self._pool.close()

    def __enter__(self) -> SMTPSession:
        return self.start()

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def verify(self) -> VerifyResult:
        """Check the settings end to end without sending: connect, TLS, EHLO, AUTH, RSET, QUIT.

        Uses a connection of its own (an open session is left as it is) and sends no
        message. Run it at start-up, or from ``oauthsmtp doctor``, to learn now what the
        first :meth:`send` would otherwise learn.

        Returns:
            A :class:`VerifyResult`: the mechanism used, the extensions and size limit,
            the TLS version, the server certificate's subject and issuer, the greeting.

        Raises:
            The same errors :meth:`send` raises when it cannot connect: SMTPError (with a
            hint), SMTPAuthError, SMTPTimeoutError, SMTPConnectionError, LoginRequired,
            TokenError.
        """
        return verify(self._connector, host=self._host)

    # -- sending ----------------------------------------------------------------------------
    def send(self, message: Email | Message | OutgoingMessage) -> SendResult:
        """Send one message and return its result (WinDev ``EmailSendMessage``).

        ``message`` may also be an already prepared
        :class:`~oauthsmtp._message.prepare.OutgoingMessage` (an explicit envelope and the
        wire bytes, as ``oauthsmtp sendmail`` and ``oauthsmtp relay`` pass on a message
        they received whole); its envelope is checked, its bytes are sent as they are.

        When the background sender runs (``asynchronous=True``, or after :meth:`submit`),
        the message queues behind those already submitted and this call waits for it.

        Returns:
            The :class:`SendResult`. A message the server refuses is a ``"failed"`` result,
            not an exception; use ``result.ok`` or ``result.raise_for_status()``.

        Raises:
            ConfigurationError: the message is malformed (CR/LF/NUL in an address or a
                header, address parse defects, no recipient, an address too long for an
                SMTP command), before anything is sent.
            SMTPError, LoginRequired, TokenError: the session could not be (re)established.
        """
        job = self._prepare(message)
        if job.error is not None:
            raise job.error
        if self._sender.queueing:
            return self._sender.submit(job).result()
        try:
            self._deliver([job], self.connections)
        except LimitReached as exc:
            job.result = deferred(str(exc))
        assert job.result is not None  # noqa: S101 - _deliver sets it or raises
        return job.result

    def submit(self, message: Email | Message | OutgoingMessage) -> Future[SendResult]:
        """Queue one message for the background sender and return its future.

        The queue holds at most 1,000 messages: beyond that, this call blocks until the
        sender has taken the next batch, so a producer faster than the server is held to
        its pace. (From a future's callback, which runs in the sender's thread and cannot
        wait, a full queue fails the message at once.) The session's threads are fixed:
        the sender's, and one per connection beyond the first, kept until :meth:`close`.

        The asynchronous form of :meth:`send` (WinDev's ``Asynchronous`` mode): one
        background thread, started on first use (or by :meth:`start` with
        ``asynchronous=True``), sends queued messages in order, pipelined, over up to
        ``connections`` connections. :meth:`close` waits for every queued message.

        Returns:
            A future that holds the message's :class:`SendResult`, or the error that
            stopped it: a malformed message's :class:`ConfigurationError` (set at once),
            or the session's :class:`SMTPError` / :class:`LoginRequired` /
            :class:`TokenError`. This method itself does not raise for those.
        """
        return self._sender.submit(self._prepare(message))

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
                While the background sender runs, the session's setting applies.

        Returns:
            One :class:`SendResult` per message, in the order of ``messages``;
            ``"unknown"`` for a message whose body was sent but whose answer never came.

        Raises:
            ConfigurationError: ``messages`` is not an iterable of messages, or
                ``connections`` is not a whole number from 1 to 100.
            SMTPError, LoginRequired, TokenError: only when the session could not be
                established before any message of the batch got an answer (nothing was
                sent); after that, a failure to reconnect makes the remaining messages
                ``"failed"``.
        """
        width = self.connections if connections is None else check_connections(connections)
        results: list[SendResult] = []
        self._stream(messages, width, results.append)
        return results

    def send_stream(
        self,
        messages: Iterable[Email | Message],
        on_result: Callable[[SendResult], object],
        *,
        connections: int | None = None,
    ) -> int:
        """Send a batch of any size, handing each result to ``on_result`` as it comes.

        :meth:`send_many` for batches too large to hold: ``messages`` (a generator, say) is
        read only as the connections are ready for the next message, and nothing is kept
        once its result is handed on, so memory stays flat however long the batch.
        Sending, pipelining and failures are as in :meth:`send_many`.

        Args:
            messages: the messages to send, any iterable (read lazily, once).
            on_result: called once per message with its :class:`SendResult`, in the order
                of ``messages``, one call at a time, from the thread that sends (with
                several connections, one of their threads): keep it quick. If it raises,
                no further message is read; the error is raised once the messages under
                way are settled.
            connections: as for :meth:`send_many`.

        Returns:
            How many messages were read (each got one ``on_result`` call).

        Raises:
            ConfigurationError: as :meth:`send_many`.
            SMTPError, LoginRequired, TokenError: as :meth:`send_many` (nothing was sent).
            Exception: what ``messages`` or ``on_result`` raised.
        """
        if not callable(on_result):
            raise ConfigurationError(
                f"on_result must be callable (it receives each SendResult), not "
                f"{type(on_result).__name__}"
            )
        width = self.connections if connections is None else check_connections(connections)
        return self._stream(messages, width, on_result)

    def __repr__(self) -> str:
        connector = self._connector
        auth = "token" if connector.token else "password" if connector.password else None
        return (
            f"SMTPSession(host={self.host!r}, port={self.port}, security={self.security!r}, "
            f"username={self.username!r}, auth={auth!r}, connected={self.connected})"
        )

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _prepare(message: Email | Message | OutgoingMessage) -> Job:
        return prepare_job(message)

    def _stream(
        self, messages: Iterable[Email | Message], width: int, emit: Callable[[SendResult], object]
    ) -> int:
        return send_stream(
            check_messages(messages),
            prepare=self._prepare,
            deliver=lambda jobs: self._deliver(jobs, width),
            submit=self._sender.submit if self._sender.queueing else None,
            emit=emit,
        )

    def _deliver(self, jobs: Iterable[Job], allowed: int) -> None:
        """Send jobs over the pool; only oauthsmtp's errors come out."""
        if self._limiter is not None:
            allowed = self._limiter.width(allowed)
        try:
            self._pool.send(jobs, allowed)
        except OAuthSMTPError:
            raise
        except Exception as exc:  # a defect must not lose the batch's results
            raise SMTPError(f"sending failed unexpectedly: {type(exc).__name__}: {exc}") from exc

    def _deliver_queued(self, jobs: Sequence[Job]) -> None:
        try:
            self._deliver(jobs, self.connections)
        except LimitReached as exc:
            for job in jobs:
                if job.result is None and job.outgoing is not None and not job.body_sent:
                    job.result = deferred(str(exc))
