"""A fast SMTP sink for the equal-width, scaling and memory rows: counts, hashes, drops.

The development server (``servers.py``, aiosmtpd) keeps every message in memory and spends
more CPU per message than the clients being measured. This sink keeps nothing: for each
message it adds one to a count, the message's size to a total, and the SHA-256 of its
envelope and data to an order-independent sum, then forgets it. So 100,000 messages cost
it no memory, and two clients that delivered the same messages (in any order, over any
number of connections) leave the same ``digest``: the benchmark's proof that every client
was given, and put on the wire, byte-identical messages.

What it speaks: a greeting, EHLO (PIPELINING, 8BITMIME, STARTTLS before TLS; AUTH XOAUTH2
after it), STARTTLS with a certificate from the development CA, AUTH XOAUTH2 (initial
response inline or after a ``334``; the bearer token must be the one given in
``OAUTHSMTP_BENCH_SINK_TOKEN``), MAIL, RCPT, DATA (the body up to the end-of-data line,
dot-stuffing undone), RSET, NOOP, QUIT. Each connection has a thread; every reply is
written at once, so pipelined commands are answered in order. MAIL before AUTH is refused.

Run by the benchmark as a :class:`harness.Helper` (its own process, so the clients'
CPU and GIL are their own)::

    OAUTHSMTP_BENCH_SINK_TOKEN=... python bench/sink.py
    {"host": "127.0.0.1", "port": 40123, "ca_file": "/tmp/.../ca.pem"}

Commands: ``stats`` -> ``{"messages", "bytes", "connections", "digest"}``; ``clear`` resets them.
"""

from __future__ import annotations

import base64
import hashlib
import os
import socket
import ssl
import tempfile
import threading
from pathlib import Path
from typing import Any

from harness import serve_commands

from oauthsmtp.devserver import make_certificates

TOKEN_VARIABLE = "OAUTHSMTP_BENCH_SINK_TOKEN"  # noqa: S105 - a variable's name
MODULUS = 1 << 256


class Sink:
    """Listens on 127.0.0.1 (an ephemeral port); one thread per connection."""

    def __init__(self, context: ssl.SSLContext, token: str) -> None:
        self._context = context
        self._token = token
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(128)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self.clear()

    def clear(self) -> dict[str, bool]:
        """Forget the counts."""
        with self._lock:
            self.messages = 0
            self.bytes = 0
            self.connections = 0
            self.digest = 0
        return {"cleared": True}

    def stats(self) -> dict[str, Any]:
        """The counts, and the order-independent digest of everything received."""
        with self._lock:
            return {
                "messages": self.messages,
                "bytes": self.bytes,
                "connections": self.connections,
                "digest": f"{self.digest:064x}",
            }

    def start(self) -> Sink:
        """Accept connections in a background thread."""
        threading.Thread(target=self._accept, name="sink", daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                sock, _ = self._listener.accept()
            except OSError:
                return
            with self._lock:
                self.connections += 1
            threading.Thread(target=self._serve, args=(sock,), daemon=True).start()

    def _authorized(self, response: bytes) -> bool:
        """An XOAUTH2 initial response (base64) carrying the expected bearer token."""
        try:
            text = base64.b64decode(response, validate=True).decode()
        except (ValueError, UnicodeDecodeError):
            return False
        fields = dict(part.split("=", 1) for part in text.split("\x01") if "=" in part)
        return fields.get("auth") == f"Bearer {self._token}" and bool(fields.get("user"))

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(120)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        conn: socket.socket = sock
        reader = conn.makefile("rb")
        tls = authed = False
        envelope: list[bytes] = []
        try:
            conn.sendall(b"220 sink ESMTP\r\n")
            while True:
                line = reader.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    offer = b"250-AUTH XOAUTH2\r\n" if tls else b"250-STARTTLS\r\n"
                    conn.sendall(b"250-sink\r\n250-PIPELINING\r\n" + offer + b"250 8BITMIME\r\n")
                elif verb == b"STAR" and not tls:
                    conn.sendall(b"220 2.0.0 ready\r\n")
                    reader.close()
                    conn = self._context.wrap_socket(sock, server_side=True)
                    reader = conn.makefile("rb")
                    tls = True
                elif verb == b"AUTH" and tls:
                    parts = line.split()
                    if len(parts) == 2:
                        conn.sendall(b"334 \r\n")
                        response = reader.readline(65536).strip()
                    else:
                        response = parts[2]
                    authed = self._authorized(response)
                    conn.sendall(b"235 2.7.0 ok\r\n" if authed else b"535 5.7.8 bad token\r\n")
                elif verb == b"MAIL":
                    envelope = [_address(line)]
                    conn.sendall(b"250 2.1.0 ok\r\n" if authed else b"530 5.7.0 auth first\r\n")
                elif verb == b"RCPT":
                    envelope.append(_address(line))
                    conn.sendall(b"250 2.1.5 ok\r\n")
                elif verb == b"DATA":
                    conn.sendall(b"354 go ahead\r\n")
                    digest = hashlib.sha256(b"\0".join(envelope) + b"\0\0")
                    size = 0
                    while (body := reader.readline(1 << 16)) not in (b".\r\n", b""):
                        if body[:1] == b".":
                            body = body[1:]
                        digest.update(body)
                        size += len(body)
                    with self._lock:
                        self.messages += 1
                        self.bytes += size
                        self.digest = (self.digest + int.from_bytes(digest.digest())) % MODULUS
                    envelope = []
                    conn.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    conn.sendall(b"221 2.0.0 bye\r\n")
                    return
                else:  # RSET, NOOP
                    if verb == b"RSET":
                        envelope = []
                    conn.sendall(b"250 2.0.0 ok\r\n")
        except (OSError, ssl.SSLError):
            return
        finally:
            reader.close()
            conn.close()


def _address(line: bytes) -> bytes:
    """The <path> of a MAIL or RCPT command (clients differ in case and parameters)."""
    start = line.find(b"<")
    return line[start : line.find(b">", start) + 1] if start >= 0 else line.strip()


def main() -> None:
    """Start the sink, announce it, serve commands until stdin closes."""
    token = os.environ.get(TOKEN_VARIABLE, "")
    if not token:
        raise SystemExit(f"sink.py: set {TOKEN_VARIABLE} to the access token clients will send")
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-bench-sink-") as folder:
        certificates = make_certificates(Path(folder))
        sink = Sink(certificates.server_context(), token).start()
        serve_commands(
            {"host": "127.0.0.1", "port": sink.port, "ca_file": str(certificates.ca_cert)},
            {"stats": sink.stats, "clear": sink.clear},
        )


if __name__ == "__main__":
    main()
