"""A real HTTP server on loopback that answers scripted replies, for token-endpoint tests.

Each POST takes the next reply from the script (status, headers, body) and is
recorded (path, headers, form body), so tests can assert what the client sent
and feed it answers no real token endpoint would give. A reply can also be a
hostile behaviour written on the raw socket (:meth:`ScriptedServer.reply_raw`):
dripping bytes, resetting, stalling, broken chunked encoding, a gzip bomb.
"""

from __future__ import annotations

import json
import socket
import ssl
import struct
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs

Behaviour = Callable[[socket.socket, threading.Event], None]
"""Writes a hostile answer on the raw connection; must return once the event is set."""


@dataclass
class Reply:
    status: int = 200
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    raw: Behaviour | None = None


def head(status: int = 200, **headers: str) -> bytes:
    """A status line and headers, as bytes (``Content_Type`` -> ``Content-Type``)."""
    lines = [f"HTTP/1.1 {status} X"] + [f"{k.replace('_', '-')}: {v}" for k, v in headers.items()]
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


def drip(data: bytes, every: float = 0.05, *, forever: bool = True) -> Behaviour:
    """Send ``data`` one byte at a time, ``every`` seconds apart (then keep dripping spaces)."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        stream = iter(data)
        while not stop.wait(every):
            byte = next(stream, None)
            if byte is None:
                if not forever:
                    return
                byte = 0x20
            try:
                conn.sendall(bytes([byte]))
            except OSError:
                return

    return behave


def send_then(data: bytes, then: str = "close") -> Behaviour:
    """Send ``data`` then ``close``, ``reset`` (RST) or ``stall`` (hold the connection open)."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.sendall(data)
        except OSError:
            return
        if then == "reset":
            conn.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            conn.close()
        elif then == "stall":
            stop.wait(60)

    return behave


@dataclass
class Seen:
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def form(self) -> dict[str, list[str]]:
        return parse_qs(self.body.decode(), keep_blank_values=True, strict_parsing=True)


class ScriptedServer:
    """Answers POSTs (and GETs) from a script of replies; records every request."""

    def __init__(self, tls: ssl.SSLContext | None = None) -> None:
        self.replies: deque[Reply] = deque()
        self.seen: list[Seen] = []
        self.stopping = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                server.seen.append(Seen(self.path, dict(self.headers), body))
                reply = server.replies.popleft() if server.replies else Reply(500, b"no script")
                if reply.raw is not None:
                    self.close_connection = True
                    reply.raw(self.connection, server.stopping)
                    return
                self.send_response(reply.status)
                for name, value in reply.headers.items():
                    self.send_header(name, value)
                self.send_header("Content-Length", str(len(reply.body)))
                self.end_headers()
                self.wfile.write(reply.body)

            do_GET = do_POST  # discovery documents: the same script, no body

            def log_message(self, *args: Any) -> None:
                pass

        self._httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        if tls is not None:
            self._httpd.socket = tls.wrap_socket(self._httpd.socket, server_side=True)
        self._thread = threading.Thread(
            target=self._httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True
        )
        scheme = "https" if tls is not None else "http"
        host = "localhost" if tls is not None else "127.0.0.1"
        self.base = f"{scheme}://{host}:{self._httpd.server_address[1]}"

    def url(self, path: str = "/token") -> str:
        return self.base + path

    def reply(self, status: int = 200, *, body: bytes | str = b"", **headers: str) -> None:
        data = body.encode() if isinstance(body, str) else body
        self.replies.append(
            Reply(status, data, {k.replace("_", "-"): v for k, v in headers.items()})
        )

    def reply_raw(self, behaviour: Behaviour) -> None:
        """Answer the next request with a hostile behaviour on the raw socket."""
        self.replies.append(Reply(raw=behaviour))

    def reply_json(self, data: object, status: int = 200) -> None:
        self.reply(status, body=json.dumps(data), Content_Type="application/json")

    def start(self) -> ScriptedServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self.stopping.set()
        self._httpd.shutdown()
        self._httpd.server_close()
        self._thread.join(5)
