"""Purpose-built SMTP servers that misbehave, on 127.0.0.1, each connection in a thread.

:class:`HostileServer` speaks just enough SMTP (raw sockets, no aiosmtpd) to be bent in the
ways a real network bends a client: STARTTLS stripped, refused or followed by injected
lines; a self-signed or wrong-host certificate; only ``AUTH LOGIN``; a 1 MB reply line or
endless continuation lines; a flood of SASL challenges; dropped connections after a given
number of replies; Microsoft's ``535 5.7.139`` and ``535 5.7.3``; Microsoft's cap on
concurrent connections (``432 4.3.2``); and a PIPELINING server that records whether each
envelope arrived in one write.

Everything the client sent is recorded per connection (raw chunks, command lines, decoded
AUTH responses, messages), so tests can assert what did and did not cross the wire.
"""

from __future__ import annotations

import base64
import binascii
import json
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field

__all__ = ["AuthAttempt", "Connection", "HostileServer", "Received"]

GMAIL_CHALLENGE = base64.b64encode(
    json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}).encode()
).decode()
TENANT_DISABLED = (
    "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
    "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information. "
    "[AM0PR02CA0001.eurprd02.prod.outlook.com]"
)
MS_BAD_TOKEN = "535 5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]"
MS_CONNECTION_LIMIT = (
    "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending "
    "for more information. [Hostname=AM0PR02MB0001.eurprd02.prod.outlook.com]"
)


class _Dropped(Exception):
    """The server side decided to drop the connection (or the client went away)."""


@dataclass
class AuthAttempt:
    """One AUTH exchange as the server saw it."""

    mechanism: str
    initial_response: bool
    line_length: int
    decoded: bytes
    user: str | None
    token: str | None
    responses: list[bytes] = field(default_factory=list)


@dataclass
class Received:
    """One message the server accepted (or swallowed before dropping)."""

    mail_from: str
    rcpt_to: list[str]
    data: bytes
    mail_line: str


class Connection:
    """The server's end of one client connection."""

    def __init__(self, server: HostileServer, sock: socket.socket, index: int) -> None:
        self.server = server
        self.sock: socket.socket = sock
        self.index = index
        self.chunks: list[bytes] = []
        self.lines: list[bytes] = []
        self.replies_sent = 0
        self.tls = False
        self.authenticated = False
        self.envelope: Received | None = None
        self.bodies = 0
        self.mails = 0
        self.resets = 0
        self.over_limit = False  # opened while max_connections others were open
        self.open = False
        self._buffer = b""

    # -- I/O ---------------------------------------------------------------------------
    def send(self, *lines: str, raw: bytes = b"") -> None:
        data = "".join(f"{line}\r\n" for line in lines).encode() + raw
        limit = self.server.drop_after_replies.get(self.index)
        try:
            self.sock.sendall(data)
        except OSError as exc:
            raise _Dropped from exc
        self.replies_sent += len(lines)
        if limit is not None and self.replies_sent >= limit:
            raise _Dropped

    def _recv(self) -> None:
        try:
            chunk = self.sock.recv(65536)
        except OSError as exc:
            raise _Dropped from exc
        if not chunk:
            raise _Dropped
        self.chunks.append(chunk)
        self._buffer += chunk

    def readline(self) -> bytes:
        while b"\n" not in self._buffer:
            self._recv()
        line, _, self._buffer = self._buffer.partition(b"\n")
        self.lines.append(line + b"\n")
        return line.rstrip(b"\r")

    @property
    def buffered(self) -> bytes:
        return self._buffer

    def read_data(self) -> bytes:
        body = bytearray()
        while True:
            while b"\n" not in self._buffer:
                self._recv()
            line, _, self._buffer = self._buffer.partition(b"\n")
            line += b"\n"
            if line == b".\r\n":
                return bytes(body)
            body += line[1:] if line.startswith(b".") else line

    def start_tls(self) -> None:
        assert self.server.tls_context is not None
        try:
            self.sock = self.server.tls_context.wrap_socket(self.sock, server_side=True)
        except (ssl.SSLError, OSError) as exc:
            raise _Dropped from exc
        self.tls = True
        self._buffer = b""


class HostileServer:
    """A scripted SMTP server. Every keyword is one way to misbehave (defaults behave).

    Args:
        tls_context: server-side TLS context (for STARTTLS or implicit TLS).
        implicit_tls: TLS from the first byte (like port 465).
        starttls: "ok", "missing" (not offered; a STARTTLS command gets 502), "refuse"
            (offered, answered 454), "syntax" (answered 501) or "inject" (``220`` plus an
            injected line in one write).
        pre_tls_auth: AUTH mechanisms advertised before TLS (a stripping attacker's bait).
        auth: AUTH mechanisms advertised after TLS.
        extensions: other EHLO keywords after TLS.
        extensions_by_connection: ``{connection index: keywords}``: other keywords for that
            connection (e.g. a hostile ``SIZE`` only after a reconnect).
        greeting: the greeting line (a hostile one, or None for no greeting at all).
        pipelining: advertise PIPELINING and record envelopes that did not come in one write.
        tokens: access tokens that authenticate.
        password: the password that authenticates with PLAIN/LOGIN.
        failure: how a bad token is refused: "gmail" (334 JSON, then 535 5.7.8),
            "microsoft" (535 5.7.3), "tenant" (535 5.7.139, whatever the token), or "plain"
            (a 334 that is not base64).
        challenges: send this many ``334`` challenges to every AUTH response.
        ehlo_line: "long" (a 1 MB line) or "endless" (continuation lines until the client
            hangs up) in the EHLO reply.
        drop_after_replies: ``{connection index: n}``: close after sending n reply lines.
        drop_before_data_reply: ``{connection index: k}``: swallow the k-th message (1-based)
            and close without answering its end of data.
        drop_on_mail: ``{connection index: k}``: close on the k-th MAIL, without a reply.
        bye_on_mail: ``{connection index: k}``: answer the k-th MAIL with 421 and close.
        drop_on_rset: ``{connection index: k}``: close on the k-th RSET, without a reply.
        bye_on_data: ``{connection index: k}``: answer the k-th end of data with 421 and close
            (the message is not accepted).
        reject_rcpt: recipients refused with 550.
        reject_mail: senders refused with ``reject_mail_reply``.
        reject_mail_reply: the reply to MAIL from a sender of ``reject_mail``.
        data_reply: the end-of-data reply.
        data_command_reply: answer DATA with this instead of ``354`` (and read no body).
        max_connections: accept this many concurrent connections; each one beyond (counted
            when it opens) is refused with Microsoft's ``432 4.3.2`` at ``limit_at``.
        limit_at: "greeting" (instead of 220, then silence), "mail" (every MAIL), or
            "data" (every end of data; the message is not kept).
        data_delay: seconds to wait before answering each end of data (a busy server), so
            that every connection of a pool gets work.
    """

    def __init__(
        self,
        *,
        tls_context: ssl.SSLContext | None = None,
        implicit_tls: bool = False,
        starttls: str = "ok",
        pre_tls_auth: tuple[str, ...] = (),
        auth: tuple[str, ...] = ("XOAUTH2", "OAUTHBEARER"),
        extensions: tuple[str, ...] = ("8BITMIME", "SIZE 10000000"),
        extensions_by_connection: dict[int, tuple[str, ...]] | None = None,
        greeting: str | None = "220 hostile.test ESMTP ready",
        pipelining: bool = True,
        tokens: tuple[str, ...] = ("good-token",),
        password: str | None = None,
        failure: str = "gmail",
        challenges: int = 0,
        ehlo_line: str | None = None,
        drop_after_replies: dict[int, int] | None = None,
        drop_before_data_reply: dict[int, int] | None = None,
        drop_on_mail: dict[int, int] | None = None,
        bye_on_mail: dict[int, int] | None = None,
        bye_on_data: dict[int, int] | None = None,
        drop_on_rset: dict[int, int] | None = None,
        reject_rcpt: tuple[str, ...] = (),
        reject_mail: tuple[str, ...] = (),
        reject_mail_reply: str = "550 5.7.1 Sender not allowed",
        data_reply: str = "250 2.0.0 OK queued",
        data_command_reply: str | None = None,
        max_connections: int | None = None,
        limit_at: str = "mail",
        data_delay: float = 0.0,
    ) -> None:
        self.tls_context = tls_context
        self.implicit_tls = implicit_tls
        self.starttls = starttls
        self.pre_tls_auth = pre_tls_auth
        self.auth = auth
        self.extensions = extensions
        self.extensions_by_connection = extensions_by_connection or {}
        self.greeting = greeting
        self.pipelining = pipelining
        self.tokens = set(tokens)
        self.password = password
        self.failure = failure
        self.challenges = challenges
        self.ehlo_line = ehlo_line
        self.drop_after_replies = drop_after_replies or {}
        self.drop_before_data_reply = drop_before_data_reply or {}
        self.drop_on_mail = drop_on_mail or {}
        self.bye_on_mail = bye_on_mail or {}
        self.bye_on_data = bye_on_data or {}
        self.drop_on_rset = drop_on_rset or {}
        self.reject_rcpt = set(reject_rcpt)
        self.reject_mail = set(reject_mail)
        self.reject_mail_reply = reject_mail_reply
        self.data_reply = data_reply
        self.data_command_reply = data_command_reply
        self.max_connections = max_connections
        self.limit_at = limit_at
        self.data_delay = data_delay
        self.open_now = 0
        self.peak_open = 0
        self.refused_over_limit = 0

        self.connections: list[Connection] = []
        self.auth_attempts: list[AuthAttempt] = []
        self.messages: list[Received] = []
        self.pipelining_violations: list[str] = []
        self.errors: list[BaseException] = []
        self._listener: socket.socket | None = None
        self._threads: list[threading.Thread] = []
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self.port = 0

    # -- lifecycle ---------------------------------------------------------------------
    def start(self) -> HostileServer:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", 0))
        listener.listen()
        listener.settimeout(0.05)
        self._listener = listener
        self.port = listener.getsockname()[1]
        thread = threading.Thread(target=self._accept_loop, daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(10)
        if self._listener is not None:
            self._listener.close()
        for conn in self.connections:
            conn.sock.close()

    def __enter__(self) -> HostileServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def wait_closed(self, count: int = 1, timeout: float = 5.0) -> None:
        """Wait until ``count`` connections were handled to the end."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            with self._lock:
                done = sum(1 for t in self._threads[1:] if not t.is_alive())
            if done >= count:
                return
            time.sleep(0.01)
        raise AssertionError(f"{count} connection(s) did not finish")

    @property
    def received(self) -> bytes:
        """Every byte any client sent, concatenated (after TLS decryption)."""
        return b"".join(chunk for conn in self.connections for chunk in conn.chunks)

    # -- serving -----------------------------------------------------------------------
    def _accept_loop(self) -> None:
        assert self._listener is not None
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            sock.settimeout(5)
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # no Nagle delays
            with self._lock:
                conn = Connection(self, sock, len(self.connections))
                self.connections.append(conn)
                slots = sum(1 for c in self.connections if c.open and not c.over_limit)
                if self.max_connections is not None and slots >= self.max_connections:
                    conn.over_limit = True
                conn.open = True
                self.open_now += 1
                self.peak_open = max(self.peak_open, self.open_now)
                thread = threading.Thread(target=self._serve, args=(conn,), daemon=True)
                self._threads.append(thread)
            thread.start()

    def _serve(self, conn: Connection) -> None:
        try:
            if self.implicit_tls:
                conn.start_tls()
            if conn.over_limit and self.limit_at == "greeting":
                self._refuse_over_limit(conn)
                return
            if self.greeting is None:
                while not self._stopping.wait(0.05):  # silent until stopped
                    pass
                return
            conn.send(self.greeting)
            while not self._stopping.is_set():
                line = conn.readline()
                verb = line.split(b" ", 1)[0].upper().decode("ascii", "replace")
                handler = getattr(self, f"_on_{verb.lower()}", None)
                if handler is None:
                    conn.send("502 5.5.2 Command not recognized")
                    continue
                if handler(conn, line.decode("utf-8", "replace")) is False:
                    return
        except _Dropped:
            pass
        except Exception as exc:  # a bug in a test server must fail the test
            self.errors.append(exc)
        finally:
            with self._lock:  # before closing: a client may reconnect at once
                conn.open = False
                self.open_now -= 1
            conn.sock.close()

    def _refuse_over_limit(self, conn: Connection) -> None:
        with self._lock:
            self.refused_over_limit += 1
        conn.send(MS_CONNECTION_LIMIT)

    def _ehlo_lines(self, conn: Connection) -> list[str]:
        keywords: list[str] = []
        extensions = self.extensions_by_connection.get(conn.index, self.extensions)
        if conn.tls:
            keywords += list(extensions)
            if self.auth:
                keywords.append("AUTH " + " ".join(self.auth))
            if self.pipelining:
                keywords.append("PIPELINING")
        else:
            keywords += list(extensions)
            if self.starttls in ("ok", "refuse", "syntax", "inject"):
                keywords.append("STARTTLS")
            if self.pre_tls_auth:
                keywords.append("AUTH " + " ".join(self.pre_tls_auth))
        return ["hostile.test greets you", *keywords]

    def _on_ehlo(self, conn: Connection, line: str) -> None:
        if self.ehlo_line == "long":
            conn.send(raw=b"250-" + b"x" * 1_000_000 + b"\r\n250 OK\r\n")
            return
        if self.ehlo_line == "endless":
            while not self._stopping.is_set():
                conn.send(*["250-continuing"] * 200)
            return
        lines = self._ehlo_lines(conn)
        conn.send(*[f"250-{x}" for x in lines[:-1]], f"250 {lines[-1]}")

    def _on_helo(self, conn: Connection, line: str) -> None:
        conn.send("250 hostile.test")

    def _on_starttls(self, conn: Connection, line: str) -> None:
        if self.starttls == "missing" or conn.tls:
            conn.send("502 5.5.1 STARTTLS not available")
        elif self.starttls == "refuse":
            conn.send("454 4.7.0 TLS not available due to temporary reason")
        elif self.starttls == "syntax":
            conn.send("501 5.5.4 Syntax error")
        elif self.starttls == "inject":
            conn.send("220 2.0.0 Ready to start TLS", "250-INJECTED AUTH PLAIN")
            conn.start_tls()
        else:
            conn.send("220 2.0.0 Ready to start TLS")
            conn.start_tls()

    def _on_noop(self, conn: Connection, line: str) -> None:
        conn.send("250 2.0.0 OK")

    def _on_rset(self, conn: Connection, line: str) -> None:
        conn.resets += 1
        if self.drop_on_rset.get(conn.index) == conn.resets:
            raise _Dropped
        conn.envelope = None
        conn.send("250 2.0.0 OK")

    def _on_quit(self, conn: Connection, line: str) -> bool:
        conn.send("221 2.0.0 Bye")
        return False

    # -- AUTH --------------------------------------------------------------------------
    def _on_auth(self, conn: Connection, line: str) -> None:
        parts = line.split(" ")
        mechanism = parts[1].upper() if len(parts) > 1 else ""
        offered = self.auth if conn.tls else self.pre_tls_auth
        if mechanism not in offered:
            conn.send("504 5.5.4 Unrecognized authentication type")
            return
        initial = len(parts) > 2
        if initial:
            response = parts[2].encode()
        else:
            conn.send("334 " if mechanism != "LOGIN" else "334 VXNlcm5hbWU6")
            response = conn.readline()
        attempt = AuthAttempt(mechanism, initial, len(line) + 2, b"", None, None, [response])
        self.auth_attempts.append(attempt)
        for _ in range(self.challenges):
            conn.send("334 " + GMAIL_CHALLENGE)
            answer = conn.readline()
            attempt.responses.append(answer)
            if answer == b"*":
                conn.send("501 5.7.0 Authentication aborted")
                return
        try:
            attempt.decoded = base64.b64decode(response, validate=True)
        except binascii.Error:
            conn.send("501 5.5.2 Cannot decode response")
            return
        if mechanism in ("PLAIN", "LOGIN"):
            self._password_auth(conn, attempt)
            return
        attempt.user, attempt.token = _parse_oauth(mechanism, attempt.decoded)
        if self.failure == "tenant":
            conn.send(TENANT_DISABLED)
            return
        if attempt.token in self.tokens:
            conn.authenticated = True
            conn.send("235 2.7.0 Accepted")
            return
        if self.failure == "microsoft":
            conn.send(MS_BAD_TOKEN)
            return
        conn.send("334 " + ("not base64!" if self.failure == "plain" else GMAIL_CHALLENGE))
        answer = conn.readline()
        attempt.responses.append(answer)
        if answer == b"*":
            conn.send("501 5.7.0 Authentication aborted")
        else:
            conn.send(
                "535-5.7.8 Username and Password not accepted. For more information, go to",
                "535 5.7.8  https://support.google.com/mail/?p=BadCredentials x.1 - gsmtp",
            )

    def _password_auth(self, conn: Connection, attempt: AuthAttempt) -> None:
        if attempt.mechanism == "LOGIN":
            user = attempt.decoded.decode()
            conn.send("334 UGFzc3dvcmQ6")
            answer = conn.readline()
            attempt.responses.append(answer)
            password = base64.b64decode(answer).decode()
        else:
            _, user, password = attempt.decoded.decode().split("\x00")
        attempt.user = user
        if password == self.password:
            conn.authenticated = True
            conn.send("235 2.7.0 Accepted")
        else:
            conn.send("535 5.7.8 Bad credentials")

    # -- mail --------------------------------------------------------------------------
    def _on_mail(self, conn: Connection, line: str) -> None:
        conn.mails += 1
        if self.drop_on_mail.get(conn.index) == conn.mails:
            raise _Dropped
        if self.bye_on_mail.get(conn.index) == conn.mails:
            conn.send("421 4.3.2 Service shutting down")
            raise _Dropped
        if self.pipelining and conn.tls and b"DATA\r\n" not in conn.buffered:
            self.pipelining_violations.append(line)
        if not conn.authenticated and (self.auth or self.pre_tls_auth):
            conn.send("530 5.7.0 Authentication required")
            return
        if conn.over_limit and self.limit_at == "mail":
            self._refuse_over_limit(conn)
            return
        address = line[10:].split(">", 1)[0].lstrip("<")
        conn.envelope = Received(address, [], b"", line)
        if address in self.reject_mail:
            conn.envelope = None
            conn.send(self.reject_mail_reply)
            return
        conn.send("250 2.1.0 OK")

    def _on_rcpt(self, conn: Connection, line: str) -> None:
        envelope = conn.envelope
        if envelope is None:
            conn.send("503 5.5.1 Need MAIL first")
            return
        address = line[8:].split(">", 1)[0].lstrip("<")
        if address in self.reject_rcpt:
            conn.send("550 5.1.1 User unknown")
            return
        envelope.rcpt_to.append(address)
        conn.send("250 2.1.5 OK")

    def _on_data(self, conn: Connection, line: str) -> None:
        envelope = conn.envelope
        if envelope is None or not envelope.rcpt_to:
            conn.send("554 5.5.1 No valid recipients")
            return
        if self.data_command_reply is not None:
            conn.envelope = None
            conn.send(self.data_command_reply)
            return
        conn.send("354 Go ahead")
        envelope.data = conn.read_data()
        conn.envelope = None
        conn.bodies += 1
        if self.bye_on_data.get(conn.index) == conn.bodies:
            conn.send("421 4.3.2 Service shutting down, message not accepted")
            raise _Dropped
        if conn.over_limit and self.limit_at == "data":
            self._refuse_over_limit(conn)
            return
        self.messages.append(envelope)
        if self.drop_before_data_reply.get(conn.index) == conn.bodies:
            raise _Dropped
        if self.data_delay:
            time.sleep(self.data_delay)
        conn.send(self.data_reply)


def _parse_oauth(mechanism: str, decoded: bytes) -> tuple[str | None, str | None]:
    text = decoded.decode("utf-8", "replace")
    fields: dict[str, str] = {}
    if mechanism == "OAUTHBEARER":
        gs2, _, text = text.partition(",\x01")
        user = gs2.partition("a=")[2] or None
        fields["user"] = user or ""
    for item in text.split("\x01"):
        key, _, value = item.partition("=")
        if key:
            fields.setdefault(key, value)
    auth = fields.get("auth", "")
    token = auth[7:] if auth.startswith("Bearer ") else None
    return fields.get("user") or None, token
