"""A development and test SMTP server that accepts SASL XOAUTH2 and OAUTHBEARER.

This is **not** a mail server for production: it keeps what it receives in memory (and, when
asked, as ``.eml`` files) and delivers nothing. It exists so that the library, its command line
and its users' tests can exercise a real SMTP submission dialogue on loopback, with the same
answers the big providers give:

- a submission port (like 587) that offers STARTTLS and refuses AUTH and mail until TLS is up,
  plus an implicit-TLS port (like 465);
- ``AUTH XOAUTH2`` in Google's format and ``AUTH OAUTHBEARER`` (RFC 7628), with or without an
  initial response, checked against a token validator (normally the development authorization
  server's ``validate_access_token``);
- on a bad token, Gmail's failure sequence: ``334 <base64 JSON>``, the client's empty line (or
  ``AQ==`` for OAUTHBEARER, RFC 7628 §3.2.3), then ``535 5.7.8``.

It is built on aiosmtpd and runs its own event loop in a background thread, so synchronous
tests can use it directly::

    with SMTPServer(tokens.get) as server:
        ...  # connect to (server.host, server.port), trust server.ca_path
        [message] = server.wait_for_messages(1)

Tokens and SASL blobs are never logged; protocol events go to the ``oauthsmtp.devserver.smtp``
logger at DEBUG.

This module is the facade: :class:`SMTPServer` (settings, its thread and event loop, what it
saw) and the names other modules import. The parts are private modules of one concept each:
``_smtpsasl`` (the XOAUTH2 and OAUTHBEARER parsers and the error challenge), ``_smtpsession``
(the aiosmtpd protocol and hooks, one per connection) and ``_smtpmessages``
(:class:`ReceivedMessage` and its ``.eml`` file).
"""

from __future__ import annotations

import asyncio
import functools
import ipaddress
import logging
import os
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ._authmodels import GMAIL_API_SCOPE, GRAPH_API_SCOPE
from ._authserver import SCOPE
from ._certs import DEFAULT_HOSTS, CertificateSet, make_certificates
from ._smtpmessages import ReceivedMessage, write_atomically
from ._smtpsasl import OAuthBearerFields
from ._smtpsession import (
    ACCEPTED,
    AUTH_FAILURES,
    BAD_CREDENTIALS,
    Handler,
    ServerHooks,
    SMTPProtocol,
    ValidatorFailedError,
    shutdown,
)

__all__ = [
    "OAuthBearerFields",
    "ReceivedMessage",
    "SMTPServer",
    "SMTP_SCOPE",
]

logger = logging.getLogger("oauthsmtp.devserver.smtp")

# The scope the server names in its failure challenges (like Gmail's https://mail.google.com/):
# the one the development authorization server grants for sending mail.
SMTP_SCOPE = SCOPE

API_SCOPES = (GMAIL_API_SCOPE, GRAPH_API_SCOPE)
"""The API emulation's scopes: a token carrying one of them and not :data:`SMTP_SCOPE` is
for another audience and refused at AUTH."""

TOKEN_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
# How long start() and stop() wait for the server thread (it needs milliseconds).
_THREAD_DEADLINE = 30.0
PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")


class SMTPServer:
    """A loopback SMTP submission server for development and tests.

    Args:
        token_validator: Called with an access token; returns an object whose ``user``
            attribute is the mailbox the token belongs to, or None when the token is invalid,
            expired or revoked. Called in a worker thread.
        host: The loopback address to bind (an IP literal: ``127.0.0.1`` or ``::1``).
        port: The submission port (plain text until STARTTLS); 0 picks a free port.
        tls_port: The implicit-TLS port; 0 picks a free port, None opens none.
        maildir: When set, each accepted message is also written there as an ``.eml`` file.
        certificates: The server certificate; by default a fresh CA and certificate for
            ``hostname``, ``localhost``, ``127.0.0.1`` and ``::1`` are made in a temporary
            folder that lives as long as this object.
        hostname: The name in the greeting and EHLO reply.
        pipelining: Advertise PIPELINING (RFC 2920).
        mechanisms: SASL mechanisms to offer, in order. ``XOAUTH2`` and ``OAUTHBEARER`` check
            tokens; ``PLAIN`` and ``LOGIN`` check ``passwords`` (and fail without them).
        require_auth: Refuse MAIL, RCPT and DATA before a successful AUTH.
        reject_recipients: Addresses that RCPT TO refuses with ``550 5.1.1 user unknown``
            (compared case-insensitively).
        scope: The scope named in failure challenges.
        passwords: ``{user: password}`` for the PLAIN and LOGIN mechanisms.
        starttls: When False, the submission port offers no STARTTLS and accepts AUTH in plain
            text, as a STARTTLS-stripping attacker would: for tests that a client refuses it.
        auth_failure: When set, every XOAUTH2/OAUTHBEARER attempt is refused the way Microsoft
            365 refuses it, whatever the token: ``"tenant"`` / ``"mailbox"`` (``535 5.7.139``
            SMTP AUTH disabled), ``"basic-auth"`` (``550 5.7.30``), ``"bad-token"``
            (``535 5.7.3``) or ``"connections"`` (``432 4.3.2``). Can be changed while
            running (None plays none).

    Raises:
        ValueError: For a non-loopback ``host``, an unknown mechanism or ``auth_failure``.
    """

    def __init__(
        self,
        token_validator: Callable[[str], object | None],
        *,
        host: str = "127.0.0.1",
        port: int = 0,
        tls_port: int | None = 0,
        maildir: Path | None = None,
        certificates: CertificateSet | None = None,
        hostname: str = "localhost",
        pipelining: bool = True,
        mechanisms: Iterable[str] = TOKEN_MECHANISMS,
        require_auth: bool = True,
        reject_recipients: Collection[str] = (),
        scope: str = SMTP_SCOPE,
        passwords: Mapping[str, str] | None = None,
        starttls: bool = True,
        auth_failure: str | None = None,
    ) -> None:
        if not _is_loopback(host):
            raise ValueError(f"the development SMTP server binds loopback only, not {host!r}")
        self.mechanisms = tuple(m.upper() for m in mechanisms)
        unknown = set(self.mechanisms) - {*TOKEN_MECHANISMS, *PASSWORD_MECHANISMS}
        if unknown:
            raise ValueError(f"unsupported SASL mechanism(s): {', '.join(sorted(unknown))}")
        self.token_validator = token_validator
        self.host = host
        self.port = port
        self.tls_port = tls_port
        self.maildir = None if maildir is None else Path(maildir)
        self.hostname = hostname
        self.pipelining = pipelining
        self.require_auth = require_auth
        self.reject_recipients = frozenset(a.casefold() for a in reject_recipients)
        self.scope = scope
        self.passwords = dict(passwords or {})
        self.starttls = starttls
        if auth_failure is not None and auth_failure not in AUTH_FAILURES:
            raise ValueError(
                f"auth_failure must be None or one of {', '.join(AUTH_FAILURES)}, "
                f"not {auth_failure!r}"
            )
        self.auth_failure = auth_failure
        if certificates is None:
            folder = Path(tempfile.mkdtemp(prefix="oauthsmtp-smtp-certs-"))
            weakref.finalize(self, shutil.rmtree, folder, ignore_errors=True)
            hosts = dict.fromkeys((hostname, *DEFAULT_HOSTS))
            certificates = make_certificates(folder, hosts=tuple(hosts))
        self.certificates = certificates
        self.ca_path = certificates.ca_cert

        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._messages: list[ReceivedMessage] = []
        self._auth_log: list[tuple[str, str | None, bool]] = []
        self._oauthbearer_fields: list[OAuthBearerFields] = []
        self._connections = 0
        self._counter = 0
        self._file_tag = secrets.token_hex(4)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> None:
        """Bind the ports and serve in a background thread.

        A stopped server can be started again; it binds the same port numbers.

        Raises:
            RuntimeError: If the server is already running.
            OSError: If a port cannot be bound.
        """
        if self._thread is not None:
            raise RuntimeError("the SMTP server is already running")
        sockets: list[tuple[socket.socket, bool]] = []
        try:
            sockets.append((self._bind(self.port), False))
            if self.tls_port is not None:
                sockets.append((self._bind(self.tls_port), True))
        except BaseException:
            for sock, _ in sockets:
                sock.close()
            raise
        self.port = sockets[0][0].getsockname()[1]
        if self.tls_port is not None:
            self.tls_port = sockets[1][0].getsockname()[1]

        loop = asyncio.new_event_loop()
        errors: list[BaseException] = []
        ready = threading.Event()
        thread = threading.Thread(
            target=self._serve,
            args=(loop, sockets, errors, ready),
            name=f"oauthsmtp-devserver-smtp-{self.port}",
            daemon=True,
        )
        thread.start()
        if not ready.wait(_THREAD_DEADLINE):
            loop.call_soon_threadsafe(loop.stop)
            raise RuntimeError(f"the SMTP server did not start within {_THREAD_DEADLINE} s")
        if errors:
            thread.join(_THREAD_DEADLINE)
            loop.close()
            raise errors[0]
        self._loop, self._thread = loop, thread
        logger.debug(
            "listening on %s port %d (%s) and %s (implicit TLS)",
            self.host,
            self.port,
            "STARTTLS" if self.starttls else "plain text",
            self.tls_port,
        )

    def stop(self) -> None:
        """Close the ports and every open connection, and join the thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None:
            return
        loop.call_soon_threadsafe(loop.stop)
        thread.join(_THREAD_DEADLINE)
        self._loop = self._thread = None
        if thread.is_alive():  # never expected: shutdown() bounds its own waits
            logger.warning("the SMTP server thread did not stop within %s s", _THREAD_DEADLINE)
            return
        loop.close()
        logger.debug("stopped")

    def __enter__(self) -> SMTPServer:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    # -- what the server saw -----------------------------------------------------------------

    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages received so far, oldest first (a copy)."""
        with self._lock:
            return list(self._messages)

    @property
    def auth_log(self) -> list[tuple[str, str | None, bool]]:
        """``(mechanism, user, success)`` for each AUTH attempt (a copy; never a token)."""
        with self._lock:
            return list(self._auth_log)

    @property
    def oauthbearer_fields(self) -> list[OAuthBearerFields]:
        """The non-secret fields of each well-formed OAUTHBEARER response (a copy)."""
        with self._lock:
            return list(self._oauthbearer_fields)

    @property
    def connections(self) -> int:
        """How many connections were accepted (since the last :meth:`clear`)."""
        with self._lock:
            return self._connections

    def wait_for_messages(self, count: int, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived, and return them all.

        Raises:
            TimeoutError: If fewer arrived within ``timeout`` seconds.
        """
        with self._changed:
            if not self._changed.wait_for(lambda: len(self._messages) >= count, timeout):
                raise TimeoutError(
                    f"expected {count} message(s) within {timeout} s, got {len(self._messages)}"
                )
            return list(self._messages)

    def clear(self) -> None:
        """Forget received messages, AUTH attempts and the connection count (files stay)."""
        with self._lock:
            self._messages.clear()
            self._auth_log.clear()
            self._oauthbearer_fields.clear()
            self._connections = 0

    # -- internals ---------------------------------------------------------------------------

    def _bind(self, port: int) -> socket.socket:
        family = socket.AF_INET6 if ":" in self.host else socket.AF_INET
        # proto=IPPROTO_TCP, not socket.create_server's 0: asyncio sets TCP_NODELAY only on
        # sockets that say TCP, and without it every multi-line reply waits for a delayed ACK.
        sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        try:
            if os.name == "posix":  # rebind over TIME_WAIT; never SO_REUSEPORT
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            elif hasattr(socket, "SO_EXCLUSIVEADDRUSE"):  # Windows: no port sharing
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)
            sock.bind((self.host, port))
            sock.listen()
        except BaseException:
            sock.close()
            raise
        return sock

    def _serve(
        self,
        loop: asyncio.AbstractEventLoop,
        sockets: list[tuple[socket.socket, bool]],
        errors: list[BaseException],
        ready: threading.Event,
    ) -> None:
        """The server thread: open the listeners, run the loop until stop(), then clean up."""
        asyncio.set_event_loop(loop)
        live: set[SMTPProtocol] = set()
        servers: list[asyncio.AbstractServer] = []
        try:
            try:
                tls_context = self.certificates.server_context()
                hooks: ServerHooks = _Hooks(self)
                handler = Handler(hooks)
                for sock, implicit_tls in sockets:
                    factory = functools.partial(
                        self._protocol, loop, live, handler, tls_context, implicit_tls=implicit_tls
                    )
                    ssl_context = tls_context if implicit_tls else None
                    coroutine = loop.create_server(factory, sock=sock, ssl=ssl_context)
                    servers.append(loop.run_until_complete(coroutine))
            except BaseException as exc:
                for sock, _ in sockets[len(servers) :]:
                    sock.close()
                errors.append(exc)
                return
            finally:
                ready.set()
            loop.run_forever()
        finally:
            loop.run_until_complete(shutdown(servers, live))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)

    def _protocol(
        self,
        loop: asyncio.AbstractEventLoop,
        live: set[SMTPProtocol],
        handler: Handler,
        tls_context: ssl.SSLContext,
        *,
        implicit_tls: bool,
    ) -> SMTPProtocol:
        with self._lock:
            self._connections += 1
        plain_auth = implicit_tls or not self.starttls
        return SMTPProtocol(
            handler,
            live=live,
            require_auth=self.require_auth,
            loop=loop,
            hostname=self.hostname,
            enable_SMTPUTF8=True,
            tls_context=None if plain_auth else tls_context,
            require_starttls=not plain_auth,
            # aiosmtpd cannot tell that an implicit-TLS transport is encrypted.
            auth_require_tls=not plain_auth,
            auth_exclude_mechanism=[
                m for m in (*TOKEN_MECHANISMS, *PASSWORD_MECHANISMS) if m not in self.mechanisms
            ],
            authenticator=self._check_password,
        )

    def _check_password(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        mechanism: str,
        auth_data: object,
    ) -> AuthResult:
        assert isinstance(auth_data, LoginPassword)  # noqa: S101 (aiosmtpd's PLAIN and LOGIN)
        user = auth_data.login.decode("utf-8", "replace")
        expected = self.passwords.get(user)
        ok = expected is not None and secrets.compare_digest(
            expected.encode(), bytes(auth_data.password)
        )
        self._record_auth(mechanism, user, ok)
        if ok:
            return AuthResult(success=True, auth_data=user, message=ACCEPTED)
        return AuthResult(success=False, handled=False, message=BAD_CREDENTIALS)

    def _record_auth(
        self,
        mechanism: str,
        user: str | None,
        success: bool,
        fields: OAuthBearerFields | None = None,
    ) -> None:
        with self._lock:
            self._auth_log.append((mechanism, user, success))
            if fields is not None:
                self._oauthbearer_fields.append(fields)
        # The console of `oauthsmtp dev-server` shows these (INFO); never the token.
        logger.info(
            "AUTH %s %s for %s",
            mechanism,
            "accepted" if success else "refused",
            repr(user) if user is not None else "an unreadable user",
        )

    def _store(self, envelope: Envelope, user: str | None) -> ReceivedMessage:
        return self.record(
            envelope.mail_from or "",
            tuple(envelope.rcpt_tos),
            bytes(envelope.original_content or b""),
            user,
            mail_options=tuple(envelope.mail_options),
        )

    def record(
        self,
        mail_from: str,
        rcpt_tos: tuple[str, ...],
        data: bytes,
        user: str | None,
        *,
        mail_options: tuple[str, ...] = (),
    ) -> ReceivedMessage:
        """Keep one accepted message (and write its ``.eml`` file); return it.

        The SMTP sessions call it for each message they accept; the API emulation
        (``_apiserver``) calls it for messages sent through the emulated Gmail API and
        Microsoft Graph, so that all of them share one store and one messages page.
        """
        received_at = datetime.now(timezone.utc)
        with self._lock:
            self._counter += 1
            counter = self._counter
        path = None
        if self.maildir is not None:
            name = f"{received_at:%Y%m%dT%H%M%S.%fZ}-{counter:06d}-{self._file_tag}.eml"
            path = write_atomically(self.maildir, name, data)
        message = ReceivedMessage(
            mail_from=mail_from,
            rcpt_tos=rcpt_tos,
            data=data,
            user=user,
            received_at=received_at,
            path=path,
            mail_options=mail_options,
        )
        with self._changed:
            self._messages.append(message)
            self._changed.notify_all()
        logger.debug(
            "message %d from %r for %d recipient(s), %d bytes, user %r",
            counter,
            message.mail_from,
            len(message.rcpt_tos),
            len(data),
            user,
        )
        return message

    async def _validate(self, token: str, claimed: str | None = None) -> str | None:
        """Return the token's user, or None; raise ValidatorFailedError if the validator broke.

        An app-only token (its info lists ``mailboxes`` and has no user) is good
        for the ``claimed`` user when that is one of its mailboxes.
        """
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, self.token_validator, token)
        except Exception as exc:
            # The exception text may quote the token (a dict's KeyError does): log its type only.
            logger.error("token validator raised %s", type(exc).__name__)
            raise ValidatorFailedError from None
        granted = getattr(info, "scope", ()) or ()
        if self.scope not in granted and any(s in API_SCOPES for s in granted):
            # A token for the API emulation's audience, not SMTP's: refused, as Exchange
            # Online refuses a Graph token and Gmail a gmail.send one.
            return None
        user = getattr(info, "user", None)
        mailboxes = getattr(info, "mailboxes", ())
        if not user and mailboxes and claimed is not None:
            allowed = {box.casefold() for box in mailboxes if isinstance(box, str)}
            return claimed if claimed.casefold() in allowed else None
        return user if isinstance(user, str) and user else None


class _Hooks:
    """The server as its connections see it (:class:`ServerHooks`), without its public API."""

    def __init__(self, server: SMTPServer) -> None:
        self._server = server

    # Read at each use: a test may change a setting while the server runs.
    @property
    def mechanisms(self) -> tuple[str, ...]:
        return self._server.mechanisms

    @property
    def pipelining(self) -> bool:
        return self._server.pipelining

    @property
    def reject_recipients(self) -> frozenset[str]:
        return self._server.reject_recipients

    @property
    def scope(self) -> str:
        return self._server.scope

    @property
    def auth_failure(self) -> str | None:
        return self._server.auth_failure

    def deliver(self, envelope: Envelope, user: str | None) -> None:
        self._server._store(envelope, user)

    def record_auth(
        self,
        mechanism: str,
        user: str | None,
        success: bool,
        fields: OAuthBearerFields | None = None,
    ) -> None:
        self._server._record_auth(mechanism, user, success, fields)

    async def validate(self, token: str, claimed: str | None = None) -> str | None:
        return await self._server._validate(token, claimed)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
