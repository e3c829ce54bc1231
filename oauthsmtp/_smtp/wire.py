"""The SMTP wire: reply parsing (pure), command encoding (pure) and one socket (I/O).

oauthsmtp speaks SMTP itself instead of through :mod:`smtplib`, which has traps (no EHLO
after STARTTLS, a 503 taken for AUTH success, no certificate check without a context, a
debug level that prints the token, no cap on reply lines). This module is small on
purpose:

* :class:`ReplyParser` turns received bytes into :class:`Reply` values, with a cap on the
  length of a line and on the number of lines in one reply (RFC 5321 §4.2.1, §4.5.3.1.5).
* :func:`parse_ehlo` and :func:`parse_size` read the server's EHLO answer; nothing the
  server sends can make them raise (a ``SIZE`` that is not 1-20 ASCII digits is ignored).
* :func:`command`, :func:`mail_from` and :func:`rcpt_to` build command lines and refuse CR,
  LF and NUL in arguments (docs/security.md); :func:`stuffed_blocks` (or :func:`dot_stuff`)
  and :func:`end_of_data` prepare a message for ``DATA``: views of the message itself
  where nothing needs stuffing, else a stuffed copy of one block at a time, never of the
  whole message.
* :class:`Connection` owns one socket: every read and write has a deadline (a write may be
  a one-pass :class:`Blocks`, made as it is sent), TLS is set up
  with the caller's verifying context, and protocol lines go to the ``oauthsmtp.smtp``
  logger at DEBUG with secrets masked by the caller. Its errors say what to change (the
  host name, the port, ``security=``, the trust anchors).
* :func:`speaks_tls` tells whether a port answers a TLS ClientHello, so that a plain-text
  session pointed at an implicit-TLS port fails at once with the fix instead of waiting
  for a greeting that never comes.

A :class:`Connection` that failed once (timeout, reset, malformed reply) is closed and
stays unusable: the SMTP state of the server is then unknown.
"""

from __future__ import annotations

import contextlib
import logging
import re
import socket
import ssl
import time
from collections import deque
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass

from oauthsmtp._errors import ConfigurationError, SMTPError
from oauthsmtp._util.net import peer_is_loopback

__all__ = [
    "MAX_COMMAND_LINE",
    "MAX_LINE",
    "MAX_REPLY_LINES",
    "SEND_BLOCK",
    "Blocks",
    "Buffer",
    "Connection",
    "Reply",
    "ReplyParser",
    "SMTPConnectionError",
    "SMTPTimeoutError",
    "buffers_and_size",
    "coalesce",
    "command",
    "connect_error",
    "dot_stuff",
    "encode_data",
    "end_of_data",
    "mail_from",
    "parse_ehlo",
    "parse_size",
    "rcpt_to",
    "speaks_tls",
    "stuffed_blocks",
    "stuffed_size",
    "tls_error",
]

logger = logging.getLogger("oauthsmtp.smtp")

MAX_LINE = 8192
"""Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5 says 512; servers stretch it)."""

MAX_REPLY_LINES = 128
"""Most lines accepted in one multi-line reply (an EHLO answer has about 15)."""

MAX_COMMAND_LINE = 512
"""Longest command line a client may send, CRLF included (RFC 5321 §4.5.3.1.4)."""

MIN_WRITE_RATE = 4096
"""Octets per second a write must average: a write of n octets may take ``timeout`` plus
n / MIN_WRITE_RATE seconds in all, so a peer that reads a trickle cannot hold it forever."""

SEND_BLOCK = 256 * 1024
"""Most octets handed to the socket (or the asyncio transport) at once, and the size of a
dot-stuffed block: what a write holds beside the message it sends."""

_RECV_SIZE = 65536
_COALESCE = 64 * 1024  # smaller buffers of one write are joined into one send
_DOT_SCAN = 64  # dots examined one by one before dot-stuffing with a full replace
_SIZE = re.compile(rb"[0-9]{1,20}")  # RFC 1870 §4: size-param = 1*20DIGIT
_CONTROLS = re.compile("[\x00-\x08\x0a-\x1f\x7f-\x9f]")


Buffer = bytes | memoryview
"""Octets to send: bytes, or a view of (part of) a message, never copied."""


@dataclass(frozen=True)
class Blocks:
    """Buffers to send in turn, made as they are sent (one pass), and their total size.

    Attributes:
        parts: the buffers; iterated once, by the write that sends them.
        size: how many octets they hold in all (the write's deadline depends on it).
    """

    parts: Iterable[Buffer]
    size: int

    def __iter__(self) -> Iterator[Buffer]:
        return iter(self.parts)


class SMTPTimeoutError(SMTPError, TimeoutError):
    """The server did not answer (or accept data) within the session's timeout."""


class SMTPConnectionError(SMTPError, ConnectionError):
    """The connection could not be opened, or it was closed or reset by the server."""


@dataclass(frozen=True)
class Reply:
    """One SMTP reply (RFC 5321 §4.2).

    Attributes:
        code: the three-digit reply code.
        lines: the text of each line, without the code and separator.
    """

    code: int
    lines: tuple[str, ...]

    @property
    def text(self) -> str:
        """The reply text, lines joined with newlines."""
        return "\n".join(self.lines)

    def __str__(self) -> str:
        return f"{self.code} {' '.join(self.lines)}".strip()


class ReplyParser:
    """Incremental parser of SMTP replies, with caps (pure; RFC 5321 §4.2.1).

    Lines end with LF (a preceding CR is removed). Every line is ``ddd``, ``ddd text`` or
    ``ddd-text`` with a first digit 2-5, and all lines of a reply share one code. Control
    characters in the text (a stray CR, an escape sequence) become U+FFFD, so that a reply
    quoted in an error message or a log cannot rewrite a terminal.
    """

    def __init__(self, *, max_line: int = MAX_LINE, max_lines: int = MAX_REPLY_LINES) -> None:
        self._max_line = max_line
        self._max_lines = max_lines
        self._buffer = bytearray()
        self._code: int | None = None
        self._lines: list[str] = []

    @property
    def pending(self) -> bool:
        """True while bytes of an incomplete reply are held."""
        return bool(self._buffer) or self._code is not None

    def feed(self, data: bytes) -> list[Reply]:
        """Add received bytes; return the replies they complete, in order.

        Raises:
            SMTPError: a line longer than the cap, too many lines in one reply, or a line
                that is not a reply line.
        """
        buffer = self._buffer
        buffer += data
        replies: list[Reply] = []
        start = 0
        while (end := buffer.find(b"\n", start)) >= 0:
            if end + 1 - start > self._max_line:
                raise SMTPError(f"the server sent a reply line over {self._max_line} octets")
            reply = self._line(bytes(buffer[start:end]).rstrip(b"\r"))
            start = end + 1
            if reply is not None:
                replies.append(reply)
        del buffer[:start]
        if len(buffer) > self._max_line:
            raise SMTPError(f"the server sent a reply line over {self._max_line} octets")
        return replies

    def _line(self, raw: bytes) -> Reply | None:
        head = raw[:3]
        separator = raw[3:4]
        if (
            len(head) != 3
            or not head.isdigit()
            or head[:1] not in b"2345"
            or separator
            not in (
                b"",
                b" ",
                b"-",
            )
        ):
            raise SMTPError(f"the server sent a malformed reply line: {raw[:80]!r}")
        code = int(head)
        if self._code is not None and code != self._code:
            raise SMTPError("the server changed the reply code inside a multi-line reply")
        self._code = code
        text = raw[4:].decode("utf-8", "replace")
        if not text.isprintable():  # no control characters in messages and logs
            text = _CONTROLS.sub("\ufffd", text)
        self._lines.append(text)
        if separator == b"-":
            if len(self._lines) >= self._max_lines:
                raise SMTPError(f"the server sent a reply of more than {self._max_lines} lines")
            return None
        reply = Reply(code, tuple(self._lines))
        self._code = None
        self._lines = []
        return reply


def parse_ehlo(reply: Reply) -> dict[str, str]:
    """Return the EHLO keywords (upper case) and their parameters (RFC 5321 §4.1.1.1).

    The first line is the greeting and is skipped. ``AUTH=LOGIN PLAIN`` (an old form) is
    merged into ``AUTH``.
    """
    extensions: dict[str, str] = {}
    for line in reply.lines[1:]:
        keyword, _, params = line.strip().partition(" ")
        keyword = keyword.upper()
        if keyword.startswith("AUTH="):
            keyword, params = "AUTH", f"{keyword[5:]} {params}"
        if keyword:
            previous = extensions.get(keyword)
            extensions[keyword] = f"{previous} {params}".strip() if previous else params.strip()
    return extensions


def parse_size(value: str) -> int | None:
    """The message size limit of an EHLO ``SIZE`` parameter (RFC 1870 §4), or None.

    None means no limit is known: ``SIZE`` without a number, ``SIZE 0`` (no fixed limit),
    or anything that is not 1-20 ASCII digits (a server's ``SIZE ²`` or a 5,000-digit
    number is ignored rather than trusted).
    """
    raw = value.strip().encode("ascii", "replace")
    if _SIZE.fullmatch(raw) is None:
        return None
    return int(raw) or None


def command(verb: str, *args: str, utf8: bool = False) -> bytes:
    """Encode one command line.

    Raises:
        ConfigurationError: an argument contains CR, LF or NUL, or is not ASCII while
            ``utf8`` is false (RFC 6531 allows UTF-8 only after SMTPUTF8).
    """
    line = " ".join((verb, *args))
    if "\r" in line or "\n" in line or "\x00" in line:
        raise ConfigurationError(f"refused: CR, LF or NUL in an SMTP {verb} command")
    try:
        return (line + "\r\n").encode("utf-8" if utf8 else "ascii")
    except UnicodeEncodeError as exc:
        raise ConfigurationError(
            f"the {verb} command needs SMTPUTF8 (a non-ASCII address), which is not in use"
        ) from exc


def mail_from(sender: str, params: Sequence[str] = (), *, utf8: bool = False) -> bytes:
    """``MAIL FROM:<sender> [params]`` (RFC 5321 §4.1.1.2)."""
    return command(f"MAIL FROM:<{sender}>", *params, utf8=utf8)


def rcpt_to(recipient: str, *, utf8: bool = False) -> bytes:
    """``RCPT TO:<recipient>`` (RFC 5321 §4.1.1.3)."""
    return command(f"RCPT TO:<{recipient}>", utf8=utf8)


def _needs_stuffing(data: bytes) -> bool:
    """True when some line may start with ``.``; False only when none does.

    ``bytes.find`` of one octet runs at memchr speed, and base64 has no ``.``, so a large
    attachment is cleared in microseconds where a two-octet search takes a millisecond per
    MB. After a few dots that do not start a line, the answer is "maybe".
    """
    position = data.find(b".")
    for _ in range(_DOT_SCAN):
        if position < 0:
            return False
        if position == 0 or data[position - 1] == 0x0A:
            return True
        position = data.find(b".", position + 1)
    return position >= 0


def dot_stuff(data: bytes) -> bytes:
    """Double every ``.`` that starts a line (RFC 5321 §4.5.2); ``data`` itself if none does."""
    if not _needs_stuffing(data):
        return data
    if data.startswith(b"."):
        data = b"." + data
    return data.replace(b"\n.", b"\n..")


def stuffed_blocks(data: bytes, *, block: int = SEND_BLOCK) -> Iterator[Buffer]:
    """``dot_stuff(data)`` a block at a time: never a copy of the whole message.

    Without a ``.`` at the start of a line (a message of base64 attachments), this is
    ``data`` itself, once. Otherwise each block of ``block`` octets is a view of ``data``
    when no line starts with ``.`` inside it, or a stuffed copy of that block alone. A dot
    that starts a block starts a line when the previous block ended with LF; a line end
    split between two blocks (CR in one, LF in the next) is just two octets: the message
    is CRLF already and is not rewritten here.
    """
    if not _needs_stuffing(data):
        yield data
        return
    view = memoryview(data)
    for start in range(0, len(data), block):
        end = min(start + block, len(data))
        lead = data[start : start + 1] == b"." and (start == 0 or data[start - 1] == 0x0A)
        if not lead and data.find(b"\n.", start, end) < 0:
            yield view[start:end]
            continue
        stuffed = data[start:end].replace(b"\n.", b"\n..")
        yield b"." + stuffed if lead else stuffed


def stuffed_size(data: bytes) -> int:
    """``len(dot_stuff(data))``, without stuffing (a scan when a line may start with ``.``)."""
    if not _needs_stuffing(data):
        return len(data)
    return len(data) + data.count(b"\n.") + data.startswith(b".")


def end_of_data(data: bytes) -> bytes:
    """What follows the (dot-stuffed) message: the end-of-data line (RFC 5321 §4.1.1.4)."""
    return b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"


def encode_data(data: bytes) -> bytes:
    """Dot-stuff a CRLF message and append the end-of-data line (RFC 5321 §4.5.2, §4.1.1.4)."""
    return dot_stuff(data) + end_of_data(data)


class Connection:
    """One SMTP connection: a socket, a reply parser and a deadline per operation.

    Args:
        sock: a connected socket (plain or TLS).
        timeout: seconds allowed for each write and for each complete reply.
    """

    def __init__(self, sock: socket.socket, *, timeout: float) -> None:
        self._sock = sock
        self.timeout = timeout
        self._parser = ReplyParser()
        self._replies: deque[Reply] = deque()
        self.closed = False
        self.peer_is_loopback = peer_is_loopback(sock.getpeername())
        self.local_address: str = sock.getsockname()[0]
        self.greeting: str = ""  # the text of the server's 220, once read

    @classmethod
    def open(
        cls, host: str, port: int, *, timeout: float, tls: ssl.SSLContext | None = None
    ) -> Connection:
        """Connect to ``host:port``; with ``tls``, start implicit TLS (RFC 8314 §3.3).

        Raises:
            SMTPTimeoutError: connecting or the TLS handshake took too long.
            SMTPConnectionError: the host cannot be resolved or reached.
            SMTPError: the TLS handshake failed (``__cause__`` holds the
                :class:`ssl.SSLError`, e.g. a certificate that does not verify).
        """
        sock = _connect(host, port, timeout)
        if tls is not None:
            sock = _wrap(sock, tls, host, port)
        try:
            return cls(sock, timeout=timeout)
        except OSError as exc:
            sock.close()
            raise SMTPConnectionError(f"connection to {host}:{port} lost: {exc}") from exc

    def wait_for_data(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for the server to send something; nothing is consumed.

        Returns:
            True when data (or the end of the connection) arrived, False on silence.

        Raises:
            SMTPConnectionError: the connection failed; it is then closed.
        """
        if self._replies or self._parser.pending:
            return True
        try:
            self._sock.settimeout(seconds)
            self._sock.recv(1, socket.MSG_PEEK)
        except TimeoutError:
            return False
        except OSError as exc:
            self.close()
            raise SMTPConnectionError(f"the connection was lost: {exc}") from exc
        return True

    @property
    def tls_version(self) -> str | None:
        """The TLS protocol version (e.g. ``"TLSv1.3"``), or None without TLS."""
        return self._sock.version() if isinstance(self._sock, ssl.SSLSocket) else None

    @property
    def peer_certificate(self) -> dict[str, object] | None:
        """The server's verified certificate (:meth:`ssl.SSLSocket.getpeercert`), or None."""
        if not isinstance(self._sock, ssl.SSLSocket):
            return None
        try:
            return dict(self._sock.getpeercert() or {}) or None
        except (ValueError, OSError):
            return None

    def starttls(self, context: ssl.SSLContext, host: str, port: int) -> None:
        """Start TLS after the server's ``220`` to STARTTLS (RFC 3207 §4).

        Raises:
            SMTPError: the server sent bytes after its ``220`` (they would be read as if
                protected; the client-side form of CVE-2011-0411), or the handshake failed.
        """
        if self._parser.pending or self._replies:
            self.close()
            raise SMTPError(
                "the server sent data after its STARTTLS reply (possible injection, "
                "CVE-2011-0411); connection closed"
            )
        try:
            self._sock.settimeout(self.timeout)
            self._sock = _wrap(self._sock, context, host, port)
        except SMTPError:
            self.closed = True
            raise
        self._parser = ReplyParser()

    def write(self, data: bytes | Iterable[Buffer], log: Sequence[str]) -> None:
        """Send ``data`` (bytes, or buffers sent in turn); ``log`` is what DEBUG shows.

        The log lines are masked by the caller. Small buffers are joined, so a pipelined
        group leaves in one segment; large ones are sent as they are, never copied, at
        most :data:`SEND_BLOCK` octets per system call. ``data`` may be :class:`Blocks`,
        made while they are sent (a dot-stuffed message, a block at a time). The timeout
        bounds each stretch without progress; the whole write may take the timeout plus
        one second per :data:`MIN_WRITE_RATE` octets, so a large message on a slow link
        is not cut off while it is still moving, and a peer that reads a trickle cannot
        hold it forever.

        Raises:
            SMTPTimeoutError, SMTPConnectionError: the connection is then closed.
        """
        if self.closed:
            raise SMTPConnectionError("the connection is closed")
        if logger.isEnabledFor(logging.DEBUG):
            for line in log:
                logger.debug("C: %s", line)
        buffers, size = buffers_and_size(data)
        deadline = time.monotonic() + self.timeout + size / MIN_WRITE_RATE
        try:
            self._sock.settimeout(self.timeout)
            for buffer in coalesce(buffers):
                view = memoryview(buffer)
                while view:
                    view = view[self._sock.send(view[:SEND_BLOCK]) :]
                    if view and time.monotonic() > deadline:
                        raise TimeoutError
        except TimeoutError as exc:
            self.close()
            raise SMTPTimeoutError(
                f"sending to the server timed out (timeout={self.timeout} s; the server "
                "stopped reading, or reads too slowly)"
            ) from exc
        except OSError as exc:
            self.close()
            raise SMTPConnectionError(f"the connection was lost while sending: {exc}") from exc

    def read_reply(self, *, mask: bool = False) -> Reply:
        """Return the next reply; the whole reply must arrive within the timeout.

        Args:
            mask: log the text of a ``334`` reply (a SASL challenge) as ``[masked]``.

        Raises:
            SMTPTimeoutError, SMTPConnectionError: the connection is then closed.
            SMTPError: the reply is malformed or over a cap; the connection is then closed.
        """
        deadline = time.monotonic() + self.timeout
        while not self._replies:
            if self.closed:
                raise SMTPConnectionError("the connection is closed")
            remaining = deadline - time.monotonic()
            try:
                if remaining <= 0:
                    raise TimeoutError
                self._sock.settimeout(remaining)
                data = self._sock.recv(_RECV_SIZE)
            except TimeoutError as exc:
                self.close()
                raise SMTPTimeoutError(
                    f"no complete reply from the server within {self.timeout} s"
                ) from exc
            except OSError as exc:
                self.close()
                raise SMTPConnectionError(f"the connection was lost: {exc}") from exc
            if not data:
                self.close()
                raise SMTPConnectionError("the server closed the connection")
            try:
                self._replies.extend(self._parser.feed(data))
            except SMTPError:
                self.close()
                raise
        reply = self._replies.popleft()
        if logger.isEnabledFor(logging.DEBUG):
            logger.debug("S: %s", "334 [masked]" if mask and reply.code == 334 else reply)
        return reply

    def close(self) -> None:
        """Close the socket (idempotent)."""
        self.closed = True
        self._sock.close()


def buffers_and_size(data: bytes | Iterable[Buffer]) -> tuple[Iterable[Buffer], int]:
    """The buffers of a write and how many octets they hold (a :class:`Blocks` says so
    itself; other buffers are counted)."""
    if isinstance(data, bytes):
        return [data], len(data)
    if isinstance(data, Blocks):
        return data, data.size
    buffers = list(data)
    return buffers, sum(len(buffer) for buffer in buffers)


def coalesce(buffers: Iterable[Buffer]) -> Iterator[Buffer]:
    """Join runs of small buffers (so a pipelined group leaves in one segment); large ones
    are passed on as they are, never copied. Lazy: one pass over ``buffers``."""
    small: list[Buffer] = []
    for buffer in buffers:
        if len(buffer) < _COALESCE:
            small.append(buffer)
            continue
        if small:
            yield b"".join(small)
            small = []
        yield buffer
    if small:
        yield b"".join(small)


def _connect(host: str, port: int, timeout: float) -> socket.socket:
    """A connected TCP socket, or an error that says what to check."""
    try:
        sock = socket.create_connection((host, port), timeout=timeout)
    except (OSError, UnicodeError) as exc:
        raise connect_error(exc, host, port, timeout) from exc
    try:
        # Writes are already coalesced (a whole pipelined group per write), so Nagle's
        # algorithm could only delay them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
    except OSError as exc:
        sock.close()
        raise SMTPConnectionError(f"connection to {host}:{port} lost: {exc}") from exc
    return sock


def connect_error(exc: BaseException, host: str, port: int, timeout: float) -> SMTPError:
    """The error to raise when connecting to ``host:port`` failed with ``exc`` (pure).

    Shared by the blocking and the asyncio connections, so both say the same thing.
    """
    if isinstance(exc, TimeoutError):
        return SMTPTimeoutError(
            f"connecting to {host}:{port} timed out after {timeout} s: check the host and "
            "port, and whether a firewall blocks outgoing connections to that port"
        )
    if isinstance(exc, socket.gaierror):
        return SMTPConnectionError(
            f"cannot find the host {host!r} ({exc.strerror}): check its spelling (for "
            "example smtp.gmail.com or smtp.office365.com) and the network's DNS"
        )
    if isinstance(exc, ConnectionRefusedError):
        return SMTPConnectionError(
            f"cannot connect to {host}:{port}: connection refused (nothing listens on that "
            "port): check the port (587 with security='starttls', 465 with security='ssl')"
        )
    return SMTPConnectionError(
        f"cannot connect to {host}:{port}: {exc}; check the host, the port and the network"
    )


# OpenSSL's reasons for a peer that answered with something other than TLS records.
_NOT_TLS = frozenset(
    {"WRONG_VERSION_NUMBER", "PACKET_LENGTH_TOO_LONG", "RECORD_LAYER_FAILURE", "HTTP_REQUEST"}
)
_OLD_TLS = frozenset(
    {"UNSUPPORTED_PROTOCOL", "TLSV1_ALERT_PROTOCOL_VERSION", "NO_PROTOCOLS_AVAILABLE"}
)

# X509_V_ERR_* codes (OpenSSL) and what to change for each.
_VERIFY_HINTS = {
    9: "the certificate is not valid yet: check this machine's clock",
    10: "the certificate has expired (or this machine's clock is wrong)",
    18: "the server sent a self-signed certificate: if you trust it, pass "
    "ssl_context=ssl.create_default_context(cafile=...) with it",
    19: "the certificate chain ends in a CA this machine does not trust: for a private CA "
    "pass ssl_context= or set SSL_CERT_FILE",
    20: "the certificate's issuer is not trusted here: for a private CA pass ssl_context= or "
    "set SSL_CERT_FILE (a TLS-inspecting proxy or antivirus also causes this)",
    62: "the certificate is for another host name: connect with the name on the certificate "
    "(for example smtp.gmail.com, not an IP address or an alias)",
}


def _wrap(sock: socket.socket, context: ssl.SSLContext, host: str, port: int) -> ssl.SSLSocket:
    try:
        return context.wrap_socket(sock, server_hostname=host.strip("[]"))
    except OSError as exc:  # ssl.SSLError, TimeoutError and ConnectionError are OSErrors
        sock.close()
        raise tls_error(exc, host, port) from exc


def tls_error(exc: OSError, host: str, port: int) -> SMTPError:
    """The error to raise when the TLS handshake with ``host:port`` failed with ``exc`` (pure).

    Says what to change (a certificate that does not verify, a plain-text port, no common
    TLS version); shared by the blocking and the asyncio connections.
    """
    if isinstance(exc, TimeoutError):
        return SMTPTimeoutError(
            f"the TLS handshake with {host}:{port} timed out; if this port expects STARTTLS "
            "(587, 25) rather than TLS from the first byte, use security='starttls'"
        )
    if isinstance(exc, ssl.SSLCertVerificationError):
        hint = _VERIFY_HINTS.get(
            exc.verify_code, "for a private CA pass ssl_context= or set SSL_CERT_FILE"
        )
        return SMTPError(
            f"the TLS certificate of {host}:{port} does not verify ({exc.verify_message}); "
            f"refusing to continue: {hint}"
        )
    if isinstance(exc, ssl.SSLError):
        reason = exc.reason or ""
        if reason in _NOT_TLS:
            message = (
                f"{host}:{port} answered in plain text, not TLS: use security='starttls' "
                "for this port (usually 587), or the implicit-TLS port (465) with "
                "security='ssl'"
            )
        elif isinstance(exc, ssl.SSLEOFError) or reason == "UNEXPECTED_EOF_WHILE_READING":
            message = (
                f"{host}:{port} closed the connection during the TLS handshake: check the port "
                "and security= (587 with 'starttls', 465 with 'ssl'); the server may also "
                "refuse this client's TLS settings"
            )
        elif reason in _OLD_TLS:
            message = (
                f"the TLS handshake with {host}:{port} failed: the server and this machine "
                "have no TLS version in common (the server may offer only TLS 1.0/1.1, which "
                "the default context refuses)"
            )
        else:
            message = f"the TLS handshake with {host}:{port} failed: {exc}"
        return SMTPError(message)
    return SMTPConnectionError(
        f"the connection to {host}:{port} was lost during the TLS handshake: {exc}"
    )


def speaks_tls(host: str, port: int, *, timeout: float) -> bool:
    """True when ``host:port`` answers a TLS ClientHello with a TLS record.

    Used on a second, throw-away connection when a server that should speak first (plain
    SMTP, RFC 5321 §3.1) stays silent: an implicit-TLS port (RFC 8314 §3.3) waits for the
    client's hello instead. Only a ClientHello is sent (no credentials, no SMTP), and the
    handshake is never completed. Any failure means "not known to speak TLS".
    """
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    name = host.strip("[]")
    try:
        tls = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT).wrap_bio(
            incoming, outgoing, server_hostname=name
        )
        with contextlib.suppress(ssl.SSLWantReadError):
            tls.do_handshake()  # writes the ClientHello, then wants the server's answer
        hello = outgoing.read()
        with socket.create_connection((name, port), timeout=timeout) as sock:
            sock.sendall(hello)
            head = b""
            deadline = time.monotonic() + timeout
            while len(head) < 3 and (remaining := deadline - time.monotonic()) > 0:
                sock.settimeout(remaining)
                chunk = sock.recv(3 - len(head))
                if not chunk:
                    break
                head += chunk
    except (OSError, ValueError):
        return False
    # A handshake (0x16) or alert (0x15) record of TLS 1.x (major version 3).
    return len(head) == 3 and head[0] in (0x15, 0x16) and head[1] == 3
