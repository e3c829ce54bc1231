"""The loopback redirect listener (RFC 8252 §7.3). I/O only; judging is in ``_authz``.

:class:`LoopbackListener` binds the redirect URL's port on loopback addresses
only (both 127.0.0.1 and ::1 for ``localhost``), before any browser opens, and
:meth:`LoopbackListener.wait` serves requests until one completes or ends the
flow, or the deadline passes. Each connection is served in its own thread with
its own timeout, so an idle pre-connection from a browser cannot block the real
redirect. Request lines are never logged: they carry the authorization code.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import selectors
import socket
import sys
import threading
import time
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from oauthsmtp._errors import AuthorizationError, AuthorizationTimeout, LoopbackError

from .authz import AuthorizationRequest, CallbackVerdict, Outcome, check_callback
from .pages import SECURITY_HEADERS, render_page

__all__ = ["LoopbackListener"]

log = logging.getLogger("oauthsmtp.loopback")

CONNECTION_TIMEOUT = 10.0
"""Seconds one connection may take to send its request."""

PAGE_WAIT = 30.0
"""Seconds the browser's redirect request waits for the final result page."""

_MAX_PORT_ATTEMPTS = 20


@dataclass(frozen=True)
class _Address:
    family: socket.AddressFamily
    host: str
    required: bool


def _addresses_for(host: str) -> list[_Address]:
    host = host.lower().strip("[]")
    if host == "localhost":
        return [
            _Address(socket.AF_INET, "127.0.0.1", True),
            _Address(socket.AF_INET6, "::1", False),
        ]
    if ":" in host:
        return [_Address(socket.AF_INET6, host, True)]
    return [_Address(socket.AF_INET, host, True)]


def _no_ipv6(exc: OSError) -> bool:
    return exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT, errno.EPROTONOSUPPORT)


class _Flow:
    """State shared by the handler threads and the waiting thread."""

    def __init__(self, request: AuthorizationRequest, wake: socket.socket) -> None:
        self.request = request
        self.lock = threading.Lock()
        self.verdict: CallbackVerdict | None = None
        self.final_page: tuple[int, str, str, bool] | None = None
        self.page_ready = threading.Event()
        self.closed = False
        self.claimer: threading.Thread | None = None
        self._wake = wake

    def wake(self) -> None:
        with contextlib.suppress(OSError):  # the waiting side is gone; nothing to wake
            self._wake.send(b"!")

    def claim(self, verdict: CallbackVerdict) -> bool:
        with self.lock:
            if self.verdict is not None or self.closed:
                return False
            self.verdict = verdict
            self.claimer = threading.current_thread()
        self.wake()
        return True


class _Handler(BaseHTTPRequestHandler):
    """Serves one connection. Never logs the request line (it carries the code)."""

    server_version = "oauthsmtp"
    default_request_version = "HTTP/1.0"  # answer even malformed (0.9-looking) requests
    sys_version = ""
    timeout = CONNECTION_TIMEOUT
    flow: _Flow  # set on a per-listener subclass

    def __init__(self, conn: socket.socket, addr: Any, flow: _Flow) -> None:
        self.flow = flow
        super().__init__(conn, addr, None)  # type: ignore[arg-type]

    def log_message(self, format: str, *args: Any) -> None:
        """Silenced: the stdlib version writes the request line, code included, to stderr."""

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        path = urlsplit(getattr(self, "path", "") or "").path[:64]
        log.debug("loopback: %s %s -> %s", self.command, path, code)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        """Answer malformed requests (400, 414, 431, 501) with our own page."""
        self._page(code, "Bad request", message or "The request could not be read.", ok=False)

    def _page(
        self, status: int, title: str, message: str, *, ok: bool, allow: bool = False
    ) -> None:
        body = render_page(title, message, ok=ok)
        self.close_connection = True
        try:
            self.send_response(status)
            self.send_header("Content-Type", "text/html; charset=utf-8")
            self.send_header("Content-Length", str(len(body)))
            self.send_header("Connection", "close")
            if allow:
                self.send_header("Allow", "GET")
            for name, value in SECURITY_HEADERS:
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)
        except OSError:  # the browser went away; nothing to tell it
            log.debug("loopback: client closed the connection early")

    def _serve(self) -> None:
        flow = self.flow
        verdict = check_callback(flow.request, self.command, self.path)
        if verdict.outcome is Outcome.IGNORE:
            title = "Not found" if verdict.status == 404 else "Ignored"
            self._page(
                verdict.status, title, verdict.message, ok=False, allow=verdict.status == 405
            )
            return
        if not flow.claim(verdict):
            self._page(409, "Already finished", "This login has already finished.", ok=False)
            return
        if verdict.outcome is Outcome.ERROR:
            self._page(verdict.status, "Login failed", str(verdict.error), ok=False)
            return
        # A code: wait for the application to exchange it, then show the real result.
        if flow.page_ready.wait(PAGE_WAIT) and flow.final_page is not None:
            status, title, message, ok = flow.final_page
        else:
            status, title, message, ok = (
                200,
                "Authorization received",
                ("The application received the authorization."),
                True,
            )
        self._page(status, title, message, ok=ok)

    do_GET = _serve
    do_POST = _serve
    do_HEAD = _serve
    do_PUT = _serve
    do_DELETE = _serve
    do_PATCH = _serve
    do_OPTIONS = _serve


class LoopbackListener:
    """Listening sockets for one authorization flow.

    Args:
        redirect_url: the loopback redirect URL (port 0: any free port).

    Attributes:
        redirect_uri: the URI to send as ``redirect_uri`` (the given URL verbatim,
            or with the chosen port when the URL asked for port 0).
        port: the bound port.
    """

    def __init__(self, redirect_url: str) -> None:
        parts = urlsplit(redirect_url)
        self._url = redirect_url
        self._parts = parts
        self._host = parts.hostname or "localhost"
        self._requested_port = parts.port if parts.port is not None else 80
        self._sockets: list[socket.socket] = []
        self._conns: set[socket.socket] = set()
        self._conns_lock = threading.Lock()
        self._cancelled = threading.Event()
        self._flow: _Flow | None = None
        self.port = self._requested_port
        self.redirect_uri = redirect_url

    # -- binding --------------------------------------------------------------
    @property
    def addresses(self) -> list[tuple[str, int]]:
        """The (host, port) pairs listened on."""
        return [s.getsockname()[:2] for s in self._sockets]

    def _bind_one(self, address: _Address, port: int) -> socket.socket | None:
        try:
            sock = socket.socket(address.family, socket.SOCK_STREAM)
        except OSError as exc:
            if not address.required and _no_ipv6(exc):
                log.debug("loopback: no IPv6 on this machine; listening on IPv4 only")
                return None
            raise
        try:
            if sys.platform == "win32":  # pragma: no cover - Windows only
                # RFC 8252 App. B.3: nobody else may bind this port while we listen.
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_EXCLUSIVEADDRUSE, 1)  # type: ignore[attr-defined]
            else:
                # POSIX: lets a second login rebind while old connections sit in TIME_WAIT;
                # it never lets another socket take a listening port (SECURITY.md rule 7).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, port))
            sock.listen(16)
            sock.setblocking(False)
        except OSError as exc:
            sock.close()
            if not address.required and _no_ipv6(exc):
                log.debug("loopback: ::1 is not available; listening on IPv4 only")
                return None
            raise
        return sock

    def open(self) -> None:
        """Bind every address of the redirect host on the redirect port.

        Raises:
            LoopbackError: the port is in use (on any of the addresses), needs
                privileges, or the address does not exist on this machine.
        """
        addresses = _addresses_for(self._host)
        attempts = _MAX_PORT_ATTEMPTS if self._requested_port == 0 else 1
        for _ in range(attempts):
            port = self._requested_port
            bound: list[socket.socket] = []
            try:
                for address in addresses:
                    sock = self._bind_one(address, port)
                    if sock is None:
                        continue
                    bound.append(sock)
                    port = sock.getsockname()[1]
            except OSError as exc:
                for sock in bound:
                    sock.close()
                if self._requested_port == 0 and exc.errno == errno.EADDRINUSE:
                    continue
                raise self._bind_error(exc, address, port) from exc
            self._sockets = bound
            self.port = port
            break
        else:
            raise LoopbackError("could not find a free loopback port for the redirect", port=0)
        if self._requested_port == 0:
            netloc = f"{self._parts.hostname if ':' not in self._host else '[' + self._host + ']'}"
            self.redirect_uri = urlunsplit(self._parts._replace(netloc=f"{netloc}:{self.port}"))
        log.debug("loopback: listening on %s", self.addresses)

    def _bind_error(self, exc: OSError, address: _Address, port: int) -> LoopbackError:
        where = f"[{address.host}]:{port}" if ":" in address.host else f"{address.host}:{port}"
        if exc.errno == errno.EADDRINUSE:
            extra = ""
            if self._host == "localhost":
                extra = (
                    " (for a localhost redirect both 127.0.0.1 and ::1 must be free, because "
                    "browsers may try either)"
                )
            return LoopbackError(
                f"cannot receive the login redirect: port {port} is already in use on {where}"
                f"{extra}. Stop the program using it (see `ss -ltnp 'sport = :{port}'`), or "
                f"use another port in redirect_url (e.g. http://localhost:{port + 1}), "
                "registering it with the provider if it needs exact redirect URLs",
                port=port,
            )
        if exc.errno in (errno.EACCES, errno.EPERM):
            return LoopbackError(
                f"cannot listen on {where}: ports below 1024 need privileges; "
                "use a redirect_url with a higher port such as http://localhost:9000",
                port=port,
            )
        if exc.errno == errno.EADDRNOTAVAIL:
            return LoopbackError(
                f"cannot listen on {where}: that address does not exist on this machine "
                "(use http://localhost:PORT or http://127.0.0.1:PORT)",
                port=port,
            )
        return LoopbackError(f"cannot listen on {where}: {exc.strerror or exc}", port=port)

    # -- serving --------------------------------------------------------------
    def wait(
        self,
        request: AuthorizationRequest,
        *,
        deadline: float,
        finish: Any = None,
    ) -> str:
        """Serve until a valid authorization response arrives; return its code.

        Args:
            request: the pending request (state, redirect path, issuer).
            deadline: a ``time.monotonic()`` value after which the flow gives up.
            finish: called with the code while the browser waits; it returns
                ``(status, title, message, ok)`` for the page the browser
                shows, or raises (the browser then sees a failure page and the
                exception propagates).

        Raises:
            AuthorizationTimeout: nothing valid arrived before the deadline.
            AuthorizationError: the provider sent an error, or the response
                cannot be trusted.
        """
        if not self._sockets:
            self.open()
        wake_r, wake_w = socket.socketpair()
        flow = _Flow(request, wake_w)
        self._flow = flow
        selector = selectors.DefaultSelector()
        try:
            for sock in self._sockets:
                selector.register(sock, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            while flow.verdict is None:
                if self._cancelled.is_set():
                    raise AuthorizationError("the login was cancelled")
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AuthorizationTimeout(
                        "no answer from the browser before the deadline: the login was not "
                        "completed. Run it again and approve the request in the browser "
                        "(on a remote machine, forward the port first: "
                        f"ssh -L {self.port}:127.0.0.1:{self.port} HOST)"
                    )
                for key, _ in selector.select(min(remaining, 1.0)):
                    if key.fileobj is wake_r:
                        wake_r.recv(64)
                        continue
                    self._accept(key.fileobj, flow)  # type: ignore[arg-type]
        finally:
            with flow.lock:
                flow.closed = True
            selector.close()
            self.close()
            self._flow = None
            wake_r.close()
            wake_w.close()
        verdict = flow.verdict
        try:
            if verdict.outcome is Outcome.ERROR:
                assert verdict.error is not None  # noqa: S101 - invariant of Outcome.ERROR
                raise verdict.error
            assert verdict.code is not None  # noqa: S101 - invariant of Outcome.CODE
            if finish is None:
                flow.final_page = (
                    200,
                    "Login complete",
                    "oauthsmtp received the authorization.",
                    True,
                )
                return verdict.code
            try:
                flow.final_page = finish(verdict.code)
            except Exception as exc:
                flow.final_page = (500, "Login failed", _public_reason(exc), False)
                raise
            return verdict.code
        finally:
            flow.page_ready.set()
            self._finish_connections(flow)

    def _accept(self, sock: socket.socket, flow: _Flow) -> None:
        try:
            conn, addr = sock.accept()
        except (BlockingIOError, InterruptedError):
            return
        conn.setblocking(True)
        with self._conns_lock:
            self._conns.add(conn)
        thread = threading.Thread(
            target=self._serve_connection,
            args=(conn, addr, flow),
            daemon=True,
            name="oauthsmtp-loopback",
        )
        thread.start()

    def _serve_connection(self, conn: socket.socket, addr: Any, flow: _Flow) -> None:
        try:
            _Handler(conn, addr, flow)
        except Exception:
            log.debug("loopback: a connection failed", exc_info=False)
        finally:
            with self._conns_lock:
                self._conns.discard(conn)
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_WR)
            conn.close()

    def _finish_connections(self, flow: _Flow) -> None:
        """Let the claiming request write its page, then end idle connections."""
        if flow.claimer is not None:
            flow.claimer.join(PAGE_WAIT)
        with self._conns_lock:
            idle = list(self._conns)
        for conn in idle:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    def cancel(self) -> None:
        """Make a running :meth:`wait` raise :class:`AuthorizationError` (thread-safe)."""
        self._cancelled.set()
        flow = self._flow
        if flow is not None:
            flow.wake()

    def close(self) -> None:
        """Stop listening (idempotent). The port refuses connections afterwards."""
        for sock in self._sockets:
            sock.close()
        self._sockets = []

    def __enter__(self) -> LoopbackListener:
        self.open()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def _public_reason(exc: BaseException) -> str:
    if isinstance(exc, AuthorizationError):
        return str(exc)
    return f"{type(exc).__name__}: {exc}"
