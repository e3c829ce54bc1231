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
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import collections
import email.message
import email.parser
import email.policy
import functools
import ipaddress
import json
import logging
import os
import re
import secrets
import shutil
import socket
import ssl
import tempfile
import threading
import weakref
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from types import TracebackType
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from ._authserver import SCOPE
from ._certs import DEFAULT_HOSTS, CertificateSet, make_certificates

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

TOKEN_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")
PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")

# Real access tokens are 1-3 KB, so an AUTH line with an initial response is up to ~4 KB of
# base64. RFC 4954 §4: servers must accept AUTH lines of at least 12288 octets.
AUTH_LINE_LIMIT = 12288
# RFC 5321 §4.5.3.1.6: 998 octets + CRLF, plus one for dot-stuffing.
DATA_LINE_LIMIT = 1001

_BAD_CREDENTIALS = "535 5.7.8 Username and Password not accepted."
_ACCEPTED = "235 2.7.0 Accepted"
_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SASLNAME_ESCAPE = re.compile(r"=(?!2C|3D)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class ReceivedMessage:
    """One message the server accepted.

    Attributes:
        mail_from: The envelope sender (``MAIL FROM``).
        rcpt_tos: The envelope recipients the server accepted, in order.
        data: The message exactly as received, after dot-unstuffing (CRLF line ends).
        user: The identity that authenticated on the connection, or None.
        received_at: When the end of data arrived (UTC).
        path: The ``.eml`` file written for it, when the server has a maildir.
        mail_options: The ``MAIL FROM`` parameters, upper-cased (e.g. ``("SMTPUTF8",)``).
    """

    mail_from: str
    rcpt_tos: tuple[str, ...]
    data: bytes
    user: str | None
    received_at: datetime
    path: Path | None
    mail_options: tuple[str, ...] = ()

    @property
    def message(self) -> email.message.EmailMessage:
        """The message parsed with ``email.policy.default``."""
        return email.parser.BytesParser(policy=email.policy.default).parsebytes(self.data)

    @property
    def subject(self) -> str:
        """The decoded Subject header, or ``""``."""
        return str(self.message.get("Subject", ""))


@dataclass(frozen=True)
class OAuthBearerFields:
    """What an OAUTHBEARER client sent besides its token (RFC 7628 §3.1).

    Attributes:
        authzid: The ``a=`` user of the GS2 header, unescaped, or None when absent.
        host: The ``host`` key/value pair, or None.
        port: The ``port`` key/value pair as sent (a string), or None.
        extra: Any other key/value pairs, except ``auth``.
    """

    authzid: str | None
    host: str | None
    port: str | None
    extra: Mapping[str, str] = field(default_factory=dict)


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

    Raises:
        ValueError: For a non-loopback ``host`` or an unknown mechanism.
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
        ready.wait()
        if errors:
            thread.join()
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
        thread.join()
        loop.close()
        self._loop = self._thread = None
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
        live: set[_Protocol] = set()
        servers: list[asyncio.AbstractServer] = []
        try:
            try:
                tls_context = self.certificates.server_context()
                handler = _Handler(self)
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
            loop.run_until_complete(_shutdown(servers, live))
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.run_until_complete(loop.shutdown_default_executor())
            asyncio.set_event_loop(None)

    def _protocol(
        self,
        loop: asyncio.AbstractEventLoop,
        live: set[_Protocol],
        handler: _Handler,
        tls_context: ssl.SSLContext,
        *,
        implicit_tls: bool,
    ) -> _Protocol:
        with self._lock:
            self._connections += 1
        plain_auth = implicit_tls or not self.starttls
        protocol = _Protocol(
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
        live.add(protocol)
        return protocol

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
            return AuthResult(success=True, auth_data=user, message=_ACCEPTED)
        return AuthResult(success=False, handled=False, message=_BAD_CREDENTIALS)

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
        logger.debug("AUTH %s for %r: %s", mechanism, user, "accepted" if success else "refused")

    def _store(self, envelope: Envelope, user: str | None) -> ReceivedMessage:
        data = bytes(envelope.original_content or b"")
        received_at = datetime.now(timezone.utc)
        with self._lock:
            self._counter += 1
            counter = self._counter
        path = None
        if self.maildir is not None:
            name = f"{received_at:%Y%m%dT%H%M%S.%fZ}-{counter:06d}-{self._file_tag}.eml"
            path = _write_atomically(self.maildir, name, data)
        message = ReceivedMessage(
            mail_from=envelope.mail_from or "",
            rcpt_tos=tuple(envelope.rcpt_tos),
            data=data,
            user=user,
            received_at=received_at,
            path=path,
            mail_options=tuple(envelope.mail_options),
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

    async def _validate(self, token: str) -> str | None:
        """Return the token's user, or None; raise _ValidatorFailed if the validator broke."""
        loop = asyncio.get_running_loop()
        try:
            info = await loop.run_in_executor(None, self.token_validator, token)
        except Exception as exc:
            # The exception text may quote the token (a dict's KeyError does): log its type only.
            logger.error("token validator raised %s", type(exc).__name__)
            raise _ValidatorFailedError from None
        user = getattr(info, "user", None)
        return user if isinstance(user, str) else None

    def _failure_challenge(self, mechanism: str) -> str:
        if mechanism == "XOAUTH2":  # Gmail's live form (SECURITY.md part (b))
            body = {"status": "400", "schemes": "Bearer", "scope": self.scope}
        else:  # RFC 7628 §3.2.2
            body = {"status": "invalid_token", "scope": self.scope, "schemes": "bearer"}
        text = json.dumps(body, separators=(",", ":"))
        return "334 " + base64.b64encode(text.encode()).decode("ascii")


class _ValidatorFailedError(Exception):
    pass


class _Session(Session):
    # aiosmtpd 1.4 made login_data a property that logs a deprecation warning on every AUTH;
    # a plain attribute keeps the dev server's console quiet.
    login_data: Any = None


class _Protocol(SMTP):
    """aiosmtpd's SMTP with room for real-size tokens and our own AUTH-required check."""

    # The stream limit: what one line may hold before aiosmtpd's own per-command checks.
    line_length_limit = AUTH_LINE_LIMIT

    def __init__(
        self, handler: _Handler, *, live: set[_Protocol], require_auth: bool, **kwargs: Any
    ):
        self._live = live
        self._require_auth = require_auth
        super().__init__(handler, **kwargs)
        # After the reader exists: DATA lines keep the RFC 5321 limit.
        self.line_length_limit = DATA_LINE_LIMIT
        # An instance dict: aiosmtpd's class-level one is shared by every SMTP in the process.
        self.command_size_limits = collections.defaultdict(
            lambda: SMTP.command_size_limit, {"AUTH": AUTH_LINE_LIMIT}
        )

    def _create_session(self) -> Session:
        return _Session(self.loop)

    async def check_auth_needed(self, caller_method: str) -> bool:
        # aiosmtpd's own auth_required warns (an error under pytest) on the implicit-TLS port.
        assert self.session is not None  # noqa: S101 (set in connection_made)
        if self._require_auth and not self.session.authenticated:
            await self.push("530 5.7.0 Authentication required")
            return True
        return False

    def connection_lost(self, error: Exception | None) -> None:
        self._live.discard(self)
        super().connection_lost(error)

    async def read_line(self) -> bytes:
        """Read one client line (a SASL response) without logging it."""
        line: bytes = await self._reader.readline()
        return line


class _Handler:
    """aiosmtpd hooks and SASL mechanisms for one connection."""

    def __init__(self, server: SMTPServer) -> None:
        self._server = server

    async def handle_EHLO(
        self, smtp: _Protocol, session: Session, envelope: Envelope, hostname: str, lines: list[str]
    ) -> list[str]:
        session.host_name = hostname  # aiosmtpd leaves this to the hook when there is one
        # lines: "250-<hostname>", one "250-<extension>" each, then "250 HELP".
        out = lines[:1]
        for line in lines[1:-1]:
            if line[4:].upper().startswith("AUTH "):
                if self._server.mechanisms:  # in our order, like the providers' lists
                    out.append("250-AUTH " + " ".join(self._server.mechanisms))
            else:
                out.append(line)
        if self._server.pipelining:
            out.append("250-PIPELINING")
        out.append(lines[-1])
        return out

    async def handle_RCPT(
        self,
        smtp: _Protocol,
        session: Session,
        envelope: Envelope,
        address: str,
        options: list[str],
    ) -> str:
        if address.casefold() in self._server.reject_recipients:
            return "550 5.1.1 user unknown"
        envelope.rcpt_tos.append(address)
        envelope.rcpt_options.extend(options)
        return "250 2.1.5 OK"

    async def handle_DATA(self, smtp: _Protocol, session: Session, envelope: Envelope) -> str:
        user = session.auth_data if isinstance(session.auth_data, str) else None
        self._server._store(envelope, user)
        return "250 2.0.0 OK queued"

    async def handle_exception(self, error: Exception) -> str:
        if isinstance(error, ssl.SSLError) or isinstance(error.__cause__, ssl.SSLError):
            logger.debug("TLS failed: %s", error.__cause__ or error)
        else:  # a bug here; the validator's errors (which may quote a token) never get here
            logger.error("SMTP session error", exc_info=error)
        return "451 4.3.0 Internal server error"

    async def auth_XOAUTH2(self, smtp: _Protocol, args: list[str]) -> AuthResult:
        """Google's XOAUTH2: ``user=U^Aauth=Bearer T^A^A``, base64."""
        blob = await _sasl_response(smtp, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        parsed = _parse_xoauth2(blob)
        if parsed is None:
            self._server._record_auth("XOAUTH2", None, False)
            await smtp.push("501 5.5.2 Malformed XOAUTH2 response")
            return AuthResult(success=False, handled=True)
        user, token = parsed
        return await self._finish("XOAUTH2", smtp, user, token, None)

    async def auth_OAUTHBEARER(self, smtp: _Protocol, args: list[str]) -> AuthResult:
        """RFC 7628 OAUTHBEARER: ``n,a=U,^Ahost=H^Aport=P^Aauth=Bearer T^A^A``, base64."""
        blob = await _sasl_response(smtp, args)
        if blob is None:
            return AuthResult(success=False, handled=True)
        parsed = _parse_oauthbearer(blob)
        if parsed is None:
            self._server._record_auth("OAUTHBEARER", None, False)
            await smtp.push("501 5.5.2 Malformed OAUTHBEARER response")
            return AuthResult(success=False, handled=True)
        fields, token = parsed
        return await self._finish("OAUTHBEARER", smtp, fields.authzid, token, fields)

    async def _finish(
        self,
        mechanism: str,
        smtp: _Protocol,
        claimed: str | None,
        token: str,
        fields: OAuthBearerFields | None,
    ) -> AuthResult:
        server = self._server
        try:
            # An empty token is RFC 7628 §4.3's discovery probe: it gets the error challenge.
            owner = await server._validate(token) if token else None
        except _ValidatorFailedError:
            server._record_auth(mechanism, claimed, False, fields)
            await smtp.push("454 4.7.0 Temporary authentication failure")
            return AuthResult(success=False, handled=True)
        if owner is not None and (claimed is None or claimed.casefold() == owner.casefold()):
            user = claimed or owner
            server._record_auth(mechanism, user, True, fields)
            return AuthResult(success=True, auth_data=user, message=_ACCEPTED)
        server._record_auth(mechanism, claimed, False, fields)
        await smtp.push(server._failure_challenge(mechanism))
        reply = (await smtp.read_line()).strip()
        if reply == b"*":  # RFC 4954 §4: the client cancelled
            await smtp.push("501 5.7.0 Authentication aborted")
        elif mechanism == "OAUTHBEARER" and reply != b"AQ==":
            await smtp.push("501 5.5.2 Expected AQ== (%x01) after the error challenge")
        else:  # Gmail answers 535 to whatever follows its XOAUTH2 challenge
            await smtp.push(_BAD_CREDENTIALS)
        return AuthResult(success=False, handled=True)


async def _shutdown(servers: list[asyncio.AbstractServer], live: set[_Protocol]) -> None:
    for server in servers:
        server.close()
    for protocol in list(live):
        transport = protocol.transport
        if isinstance(transport, asyncio.WriteTransport):
            transport.abort()  # close() would wait for a TLS close_notify exchange
        elif transport is not None:
            transport.close()
    for server in servers:
        await server.wait_closed()
    current = asyncio.current_task()
    tasks = [task for task in asyncio.all_tasks() if task is not current]
    for task in tasks:
        task.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)


async def _sasl_response(smtp: _Protocol, args: list[str]) -> bytes | None:
    """The initial response, or the answer to an empty ``334`` challenge; None if answered."""
    if len(args) == 1:
        response = await smtp.challenge_auth("")
        return response if isinstance(response, bytes) else None
    if args[1] == "=":  # RFC 4954 §4: an empty initial response
        return b""
    try:
        return base64.b64decode(args[1], validate=True)
    except (binascii.Error, ValueError):
        await smtp.push("501 5.5.2 Can't decode base64")
        return None


def _parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """``(user, token)`` from a decoded XOAUTH2 response, or None if malformed."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\x01\x01"):
        return None
    pairs = _kvpairs(text[:-2].split("\x01"))
    if pairs is None or set(pairs) != {"user", "auth"}:
        return None
    user, token = pairs["user"], _bearer(pairs["auth"])
    if not user or _CONTROL.search(user) or token is None:
        return None
    return user, token


def _parse_oauthbearer(blob: bytes) -> tuple[OAuthBearerFields, str] | None:
    """The fields and token of a decoded OAUTHBEARER response (RFC 7628 §3.1), or None."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split(",", 2)
    if len(parts) != 3 or parts[0] not in ("n", "y"):  # "p=": channel binding is not supported
        return None
    _, gs2_authzid, rest = parts
    authzid = None
    if gs2_authzid:
        if not gs2_authzid.startswith("a=") or _SASLNAME_ESCAPE.search(gs2_authzid[2:]):
            return None
        authzid = gs2_authzid[2:].replace("=2C", ",").replace("=3D", "=")
        if not authzid or _CONTROL.search(authzid):
            return None
    if not rest.startswith("\x01") or not rest.endswith("\x01\x01"):
        return None
    inner = rest[1:-2]
    pairs = _kvpairs(inner.split("\x01") if inner else [])
    if pairs is None or "auth" not in pairs:
        return None
    auth = pairs.pop("auth")
    token = _bearer(auth) if auth else ""
    if token is None:
        return None
    host, port = pairs.pop("host", None), pairs.pop("port", None)
    return OAuthBearerFields(authzid=authzid, host=host, port=port, extra=pairs), token


def _kvpairs(items: list[str]) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isascii() or not key.isalpha() or key in pairs:
            return None
        pairs[key] = value
    return pairs


def _bearer(value: str) -> str | None:
    """The token of an ``auth=Bearer <token>`` value (scheme case-insensitive), or None."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not _B64TOKEN.fullmatch(token):
        return None
    return token


def _write_atomically(folder: Path, name: str, data: bytes) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    final = folder / name
    temporary = folder / f".{name}.tmp"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    try:
        with os.fdopen(fd, "wb") as file:
            file.write(data)
        os.replace(temporary, final)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise
    return final


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False
