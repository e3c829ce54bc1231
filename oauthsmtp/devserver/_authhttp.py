"""The development authorization server's HTTP layer, on :mod:`http.server`.

Everything between the socket and the request handling of
``_authendpoints``: the limits a request must fit, form and query parsing
(``_parse_params``), the ``_Response`` value and its JSON, HTML and text
builders, and the threading server and request handler that read a request,
hand it to the :class:`~oauthsmtp.devserver.AuthServer` and write the answer
(one response per connection, request lines never logged).
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
from collections.abc import Iterable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qsl, urlsplit

from ._authmodels import _MAX_VALUE
from ._pages import CONTENT_SECURITY_POLICY

if TYPE_CHECKING:
    from ._authserver import AuthServer

_LOG = logging.getLogger("oauthsmtp.devserver")

_MAX_BODY = 64 * 1024  # bytes accepted in a POST body
_MAX_FIELDS = 64  # parameters accepted in one query or body
_HANDLER_TIMEOUT = 30  # seconds a connection may stay silent
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")

_COMMON_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)
_JSON_HEADERS = (("Content-Type", "application/json"),)
_HTML_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
)


class _BadRequest(Exception):
    """A request the HTTP layer refuses before authlib sees it."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


def _parse_params(text: str) -> list[tuple[str, str]]:
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
        raise _BadRequest("The parameters are not valid form encoding.") from None
    seen: set[str] = set()
    for key, value in pairs:
        if len(key) > 256 or len(value) > _MAX_VALUE:
            raise _BadRequest("A parameter is too long.")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key + value):
            raise _BadRequest("Control characters are not allowed in parameters.")
        if key in seen:  # RFC 6749 §3.1, §3.2
            name = key if _PARAM_NAME.match(key) else "a parameter"
            raise _BadRequest(f"The parameter {name} is repeated.")
        seen.add(key)
    return pairs


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def _json_response(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    body = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return _Response(status, [*_JSON_HEADERS, *headers], body)


def _json_error(status: int, error: str, description: str) -> _Response:
    return _json_response(status, {"error": error, "error_description": description})


def _html_response(status: int, page: str) -> _Response:
    return _Response(status, list(_HTML_HEADERS), page.encode("utf-8"))


def _text_response(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    return _Response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), *headers],
        text.encode("utf-8"),
    )


class _HTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its AuthServer and can cut its open connections."""

    daemon_threads = True
    block_on_close = True
    # SO_REUSEADDR is safe on POSIX (no port stealing); on Windows it is not.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], app: AuthServer, family: socket.AddressFamily):
        self.address_family = family
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse lookup that
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
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Routes each request to the AuthServer; one response per connection (HTTP/1.0)."""

    server: _HTTPServer
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
            raise _BadRequest("A Content-Length header is required.", 411)
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest("Content-Length is not a number.") from None
        if length < 0:
            raise _BadRequest("Content-Length is negative.")
        if length > _MAX_BODY:
            raise _BadRequest("The request body is too large.", 413)
        if self.headers.get_content_type() != "application/x-www-form-urlencoded":
            raise _BadRequest("The body must be application/x-www-form-urlencoded.", 415)
        charset = self.headers.get_content_charset()
        if charset is not None and charset.lower() not in ("utf-8", "utf8", "us-ascii"):
            raise _BadRequest("The body must be UTF-8.", 415)
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest("The request body is truncated.")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadRequest("The request body is not UTF-8.") from None

    def _dispatch(self) -> None:
        path = self._path_only()
        app = self.server.app
        app._record(self.command, path)
        try:
            if not path.startswith("/"):
                response = _text_response(400, "Bad request target.\n")
            else:
                query = urlsplit(self.path).query
                response = app._route(self.command, path, query, self.headers, self._read_body)
        except Exception as exc:
            _LOG.debug("%s %s failed: %s", self.command, path, type(exc).__name__)
            response = _text_response(500, "Internal error in the development server.\n")
        self._send(response)

    def _send(self, response: _Response) -> None:
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
