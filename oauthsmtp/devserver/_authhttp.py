"""The development authorization server's HTTP layer, on :mod:`http.server`.

Everything between the socket and the request handling of
``_authendpoints``: the limits a request must fit, form and query parsing
(``parse_params``), the ``Response`` value and its JSON, HTML and text
builders, and the threading server and request handler that read a request,
hand it to a :class:`Router` (the :class:`~oauthsmtp.devserver.AuthServer`'s
endpoints) and write the answer (one response per connection, request lines
never logged). This module knows nothing above it: the router is a protocol.
"""

from __future__ import annotations

import contextlib
import json
import logging
import re
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, Protocol
from urllib.parse import parse_qsl, urlsplit

from ._authmodels import MAX_VALUE
from ._pages import CONTENT_SECURITY_POLICY

_LOG = logging.getLogger("oauthsmtp.devserver")

_MAX_BODY = 64 * 1024  # bytes accepted in a POST body
_MAX_FIELDS = 64  # parameters accepted in one query or body
_HANDLER_TIMEOUT = 30  # seconds a connection may stay silent
_STOP_DEADLINE = 10.0  # seconds close() waits for the request threads, after cutting them off
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

_COMMON_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)
_JSON_HEADERS = (("Content-Type", "application/json"),)
HTML_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
)


class BadRequest(Exception):
    """A request the HTTP layer refuses before authlib sees it."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


def parse_params(text: str) -> list[tuple[str, str]]:
    """Parse a query string or form body; blank values count as absent (RFC 6749 §3.1)."""
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError:
        raise BadRequest("The parameters are not valid form encoding.") from None
    seen: set[str] = set()
    for key, value in pairs:
        if len(key) > 256 or len(value) > MAX_VALUE:
            raise BadRequest("A parameter is too long.")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key + value):
            raise BadRequest("Control characters are not allowed in parameters.")
        if key in seen:  # RFC 6749 §3.1, §3.2
            name = key if _PARAM_NAME.match(key) else "a parameter"
            raise BadRequest(f"The parameter {name} is repeated.")
        seen.add(key)
    return pairs


@dataclass
class Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def json_response(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> Response:
    body = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return Response(status, [*_JSON_HEADERS, *headers], body)


def json_error(status: int, error: str, description: str) -> Response:
    return json_response(status, {"error": error, "error_description": description})


def html_response(status: int, page: str) -> Response:
    return Response(status, list(HTML_HEADERS), page.encode("utf-8"))


def text_response(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> Response:
    return Response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), *headers],
        text.encode("utf-8"),
    )


class Router(Protocol):
    """Where the HTTP layer hands each request (called in the request's thread)."""

    def record(self, method: str, path: str) -> None:
        """Note a request (method and path only: never the query)."""

    def route(
        self,
        method: str,
        path: str,
        query: str,
        headers: Message,
        read_body: Callable[[], str],
    ) -> Response:
        """Answer one request; ``read_body()`` reads and checks the form body when needed."""


class DevHTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that hands requests to a :class:`Router` and can cut connections."""

    daemon_threads = True
    # close() joins the request threads itself, with a deadline (socketserver waits forever).
    block_on_close = False
    # SO_REUSEADDR is safe on POSIX (no port stealing); on Windows it is not.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], app: Router, family: socket.AddressFamily):
        self.address_family = family
        self.app = app
        self._connections: dict[socket.socket, threading.Thread] = {}
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # http.server.HTTPServer.server_bind calls socket.getfqdn(), a reverse lookup that
        # can take seconds; a loopback server has no use for it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; exception texts may quote
        # request data, so only the type is logged.
        exc = sys.exc_info()[1]
        _LOG.debug("connection error: %s", type(exc).__name__)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections[connection] = threading.current_thread()

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.pop(connection, None)

    def cut_connections(self) -> None:
        """Shut every open connection down, then wait (bounded) for their threads."""
        with self._connections_lock:
            connections = dict(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)
        deadline = time.monotonic() + _STOP_DEADLINE
        for thread in connections.values():
            thread.join(max(deadline - time.monotonic(), 0))
            if thread.is_alive():
                _LOG.warning("a request thread did not stop within %s s", _STOP_DEADLINE)


class _Handler(BaseHTTPRequestHandler):
    """Routes each request to the AuthServer; one response per connection (HTTP/1.0)."""

    server: DevHTTPServer
    server_version = "oauthsmtp-devserver"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = _HANDLER_TIMEOUT

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def _path_only(self) -> str:
        raw = getattr(self, "path", "") or ""
        return raw.split("?", 1)[0].split("#", 1)[0]

    def log_message(self, format: str, *args: Any) -> None:
        # Never the request line (its query string carries codes and state).
        _LOG.debug("%s %s", getattr(self, "command", None) or "-", self._path_only())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = getattr(code, "value", code)
        _LOG.debug("%s %s -> %s", self.command or "-", self._path_only(), status)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _read_body(self) -> str:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise BadRequest("A Content-Length header is required.", 411)
        try:
            length = int(length_text)
        except ValueError:
            raise BadRequest("Content-Length is not a number.") from None
        if length < 0:
            raise BadRequest("Content-Length is negative.")
        if length > _MAX_BODY:
            raise BadRequest("The request body is too large.", 413)
        if self.headers.get_content_type() != "application/x-www-form-urlencoded":
            raise BadRequest("The body must be application/x-www-form-urlencoded.", 415)
        charset = self.headers.get_content_charset()
        if charset is not None and charset.lower() not in ("utf-8", "utf8", "us-ascii"):
            raise BadRequest("The body must be UTF-8.", 415)
        body = self.rfile.read(length)
        if len(body) != length:
            raise BadRequest("The request body is truncated.")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise BadRequest("The request body is not UTF-8.") from None

    def _dispatch(self) -> None:
        path = self._path_only()
        app = self.server.app
        app.record(self.command, path)
        try:
            if not path.startswith("/"):
                response = text_response(400, "Bad request target.\n")
            else:
                query = urlsplit(self.path).query
                response = app.route(self.command, path, query, self.headers, self._read_body)
        except Exception as exc:
            _LOG.debug("%s %s failed: %s", self.command, path, type(exc).__name__)
            response = text_response(500, "Internal error in the development server.\n")
        self._send(response)

    def _send(self, response: Response) -> None:
        self.send_response(response.status)
        names: set[str] = set()
        for name, value in response.headers:
            self.send_header(name, value)
            names.add(name.lower())
        for name, value in _COMMON_HEADERS:
            if name.lower() not in names:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)
