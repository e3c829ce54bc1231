"""The SMTP wire: reply parsing (pure), command encoding (pure) and one socket (I/O).

oauthsmtp speaks SMTP itself instead of through :mod:`smtplib`, whose traps are listed in
DESIGN.md (no EHLO after STARTTLS, a 503 taken for AUTH success, no certificate check
without a context, a debug level that prints the token, no cap on reply lines). This
module is small on purpose:

* :class:`ReplyParser` turns received bytes into :class:`Reply` values, with a cap on the
  length of a line and on the number of lines in one reply (RFC 5321 §4.2.1, §4.5.3.1.5).
* :func:`command`, :func:`mail_from` and :func:`rcpt_to` build command lines and refuse CR,
  LF and NUL in arguments (SECURITY.md rule 29); :func:`dot_stuff` and :func:`end_of_data`
  prepare a message for ``DATA`` without copying it when nothing needs stuffing.
* :class:`Connection` owns one socket: every read and write has a deadline, TLS is set up
  with the caller's verifying context, and protocol lines go to the ``oauthsmtp.smtp``
  logger at DEBUG with secrets masked by the caller.

A :class:`Connection` that failed once (timeout, reset, malformed reply) is closed and
stays unusable: the SMTP state of the server is then unknown.
"""

from __future__ import annotations

import logging
import socket
import ssl
import time
from collections import deque
from collections.abc import Sequence
from dataclasses import dataclass

from oauthsmtp._errors import ConfigurationError, SMTPError

__all__ = [
    "MAX_LINE",
    "MAX_REPLY_LINES",
    "Connection",
    "Reply",
    "ReplyParser",
    "SMTPConnectionError",
    "SMTPTimeoutError",
    "command",
    "dot_stuff",
    "encode_data",
    "end_of_data",
    "mail_from",
    "parse_ehlo",
    "rcpt_to",
]

logger = logging.getLogger("oauthsmtp.smtp")

MAX_LINE = 8192
"""Longest reply line accepted, CRLF included (RFC 5321 §4.5.3.1.5 says 512; servers stretch it)."""

MAX_REPLY_LINES = 128
"""Most lines accepted in one multi-line reply (an EHLO answer has about 15)."""

_RECV_SIZE = 65536
_SEND_SIZE = 256 * 1024
_COALESCE = 64 * 1024  # smaller buffers of one write are joined into one send
_DOT_SCAN = 64  # dots examined one by one before dot-stuffing with a full replace


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
    ``ddd-text`` with a first digit 2-5, and all lines of a reply share one code.
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
        self._lines.append(raw[4:].decode("utf-8", "replace"))
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


def end_of_data(data: bytes) -> bytes:
    """What follows the (dot-stuffed) message: the end-of-data line (RFC 5321 §4.1.1.4)."""
    return b".\r\n" if data.endswith(b"\r\n") else b"\r\n.\r\n"


def encode_data(data: bytes) -> bytes:
    """Dot-stuff a CRLF message and append the end-of-data line (RFC 5321 §4.5.2, §4.1.1.4)."""
    return dot_stuff(data) + end_of_data(data)


def _peer_is_loopback(address: object) -> bool:
    import ipaddress

    if not isinstance(address, tuple) or not address or not isinstance(address[0], str):
        return False
    try:
        return ipaddress.ip_address(address[0].split("%")[0]).is_loopback
    except ValueError:
        return False


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
        self.peer_is_loopback = _peer_is_loopback(sock.getpeername())
        self.local_address: str = sock.getsockname()[0]

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
        try:
            sock = socket.create_connection((host, port), timeout=timeout)
        except TimeoutError as exc:
            raise SMTPTimeoutError(f"connecting to {host}:{port} timed out") from exc
        except OSError as exc:
            raise SMTPConnectionError(f"cannot connect to {host}:{port}: {exc}") from exc
        # Writes are already coalesced (a whole pipelined group per write), so Nagle's
        # algorithm could only delay them.
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        if tls is not None:
            sock = _wrap(sock, tls, host, port)
        try:
            return cls(sock, timeout=timeout)
        except OSError as exc:
            sock.close()
            raise SMTPConnectionError(f"connection to {host}:{port} lost: {exc}") from exc

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

    def write(self, data: bytes | Sequence[bytes], log: Sequence[str]) -> None:
        """Send ``data`` (bytes, or buffers sent in turn); ``log`` is what DEBUG shows.

        The log lines are masked by the caller. Small buffers are joined, so a pipelined
        group leaves in one segment; large ones are sent as they are, never copied. The
        timeout bounds each stretch without progress, not the whole write, so a large
        message on a slow link is not cut off while it is still moving.

        Raises:
            SMTPTimeoutError, SMTPConnectionError: the connection is then closed.
        """
        if self.closed:
            raise SMTPConnectionError("the connection is closed")
        if logger.isEnabledFor(logging.DEBUG):
            for line in log:
                logger.debug("C: %s", line)
        try:
            self._sock.settimeout(self.timeout)
            for buffer in _coalesce([data] if isinstance(data, bytes) else data):
                view = memoryview(buffer)
                while view:
                    view = view[self._sock.send(view[:_SEND_SIZE]) :]
        except TimeoutError as exc:
            self.close()
            raise SMTPTimeoutError(
                f"sending to the server timed out after {self.timeout} s"
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


def _coalesce(buffers: Sequence[bytes]) -> list[bytes]:
    out: list[bytes] = []
    small: list[bytes] = []
    for buffer in buffers:
        if len(buffer) < _COALESCE:
            small.append(buffer)
            continue
        if small:
            out.append(b"".join(small))
            small = []
        out.append(buffer)
    if small:
        out.append(b"".join(small))
    return out


def _wrap(sock: socket.socket, context: ssl.SSLContext, host: str, port: int) -> ssl.SSLSocket:
    try:
        return context.wrap_socket(sock, server_hostname=host.strip("[]"))
    except TimeoutError as exc:
        sock.close()
        raise SMTPTimeoutError(f"the TLS handshake with {host}:{port} timed out") from exc
    except ssl.SSLCertVerificationError as exc:
        sock.close()
        raise SMTPError(
            f"the TLS certificate of {host}:{port} does not verify ({exc.verify_message}); "
            "refusing to continue. For a private CA pass ssl_context= or set SSL_CERT_FILE"
        ) from exc
    except ssl.SSLError as exc:
        sock.close()
        raise SMTPError(f"the TLS handshake with {host}:{port} failed: {exc}") from exc
    except OSError as exc:
        sock.close()
        raise SMTPConnectionError(f"the connection to {host}:{port} was lost: {exc}") from exc
