"""The loopback redirect receiver (RFC 8252 §7.3). I/O only; judging is pure elsewhere.

:class:`LoopbackListener` binds the redirect URL's port on loopback addresses
only (both 127.0.0.1 and ::1 for ``localhost``), before any browser opens, and
:meth:`LoopbackListener.wait` serves requests until one completes or ends the
flow, or the deadline passes.

The port is reachable by every local process and, through the user's browser,
by every web page, so the receiver is built to outlast them (docs/security.md,
"The loopback receiver"): one thread serves every connection from a selector
(no thread per connection); at most :data:`MAX_CONNECTIONS` are open at once,
the oldest dropped first when more arrive or when file descriptors run out
(``EMFILE`` never ends the flow); each connection has
:data:`REQUEST_TIMEOUT` seconds *in all* to send its request head, so dripping
bytes buys nothing; heads are bounded (414/431); each request is screened
(:func:`~oauthsmtp._oauth.requesthead.screen`: Host, Sec-Fetch-*, smuggling)
then judged (:func:`~oauthsmtp._oauth.authz.check_callback`); one request per
connection, then close. Request lines are never logged: they carry the code.
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
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import urlsplit, urlunsplit

from oauthsmtp._errors import AuthorizationError, AuthorizationTimeout, LoopbackError

from .authz import AuthorizationRequest, CallbackVerdict, Outcome, check_callback
from .pages import SECURITY_HEADERS, render_page
from .requesthead import REASONS, Rejection, RequestHead, head_end, oversized, parse_head, screen

__all__ = ["MAX_CONNECTIONS", "REQUEST_TIMEOUT", "LoopbackListener", "Page"]

log = logging.getLogger("oauthsmtp.loopback")

REQUEST_TIMEOUT = 10.0
"""Seconds a connection has, from being accepted, to send its whole request head."""

MAX_CONNECTIONS = 64
"""Connections served at once; the oldest is dropped when another arrives."""

LINGER = 2.0
"""Seconds a connection that got its answer may take to close (its unread input is discarded)."""

_MAX_PORT_ATTEMPTS = 20
_ACCEPT_BATCH = 32
_RECV = 16384

_OUT_OF_FDS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})

Page = tuple[int, str, str, bool]
"""(HTTP status, title, message, ok): what the browser is shown after the redirect."""


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


def _response(status: int, page: bytes, *, head_only: bool, allow: bool) -> bytes:
    lines = [
        f"HTTP/1.0 {status} {REASONS.get(status, 'Error')}",
        "Server: oauthsmtp",
        "Content-Type: text/html; charset=utf-8",
        f"Content-Length: {len(page)}",
        "Connection: close",
    ]
    if allow:
        lines.append("Allow: GET")
    lines += [f"{name}: {value}" for name, value in SECURITY_HEADERS]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode("ascii")
    return head if head_only else head + page


class _Conn:
    """One accepted connection: reading its head, or lingering after its answer."""

    __slots__ = ("buf", "expires", "lingering", "sock")

    def __init__(self, sock: socket.socket, now: float) -> None:
        self.sock = sock
        self.buf = bytearray()
        self.expires = now + REQUEST_TIMEOUT
        self.lingering = False


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
        self._cancelled = threading.Event()
        self._wake: socket.socket | None = None
        self.port = self._requested_port
        self.redirect_uri = redirect_url

    @property
    def _host_names(self) -> frozenset[str]:
        """``Host`` header names a browser uses for this listener (RFC 8252 §8.3)."""
        return frozenset(
            {
                "localhost",
                "127.0.0.1",
                "[::1]",
                self._host.lower() if ":" not in self._host else f"[{self._host.lower()}]",
            }
        )

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
                # it never lets another socket take a listening port (docs/security.md rule 7).
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            if address.family == socket.AF_INET6:
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
            sock.bind((address.host, port))
            sock.listen(socket.SOMAXCONN)
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
        finish: Callable[[str], Page] | None = None,
    ) -> str:
        """Serve until a valid authorization response arrives; return its code.

        Args:
            request: the pending request (state, redirect path, issuer).
            deadline: a ``time.monotonic()`` value after which the flow gives up.
            finish: called with the code while the browser waits; it returns
                the :data:`Page` the browser shows, or raises (the browser
                then sees a failure page and the exception propagates).

        Raises:
            AuthorizationTimeout: nothing valid arrived before the deadline.
            AuthorizationError: the provider sent an error, or the response
                cannot be trusted.
        """
        if not self._sockets:
            self.open()
        wake_r, wake_w = socket.socketpair()
        wake_r.setblocking(False)
        self._wake = wake_w
        selector = selectors.DefaultSelector()
        conns: dict[socket.socket, _Conn] = {}
        claimed: tuple[_Conn, CallbackVerdict, RequestHead] | None = None
        try:
            for sock in self._sockets:
                selector.register(sock, selectors.EVENT_READ)
            selector.register(wake_r, selectors.EVENT_READ)
            while claimed is None:
                if self._cancelled.is_set():
                    raise AuthorizationError("the login was cancelled")
                now = time.monotonic()
                remaining = deadline - now
                if remaining <= 0:
                    raise AuthorizationTimeout(
                        "no answer from the browser before the deadline: the login was not "
                        "completed. Run it again and approve the request in the browser "
                        "(on a remote machine, forward the port first: "
                        f"ssh -L {self.port}:127.0.0.1:{self.port} HOST)"
                    )
                for conn in [c for c in conns.values() if c.expires <= now]:
                    self._drop(conn, conns, selector)
                soonest = min((c.expires for c in conns.values()), default=now + 1.0)
                wait_for = max(0.0, min(remaining, 1.0, soonest - now))
                for key, _ in selector.select(wait_for):
                    if key.fileobj is wake_r:
                        with contextlib.suppress(OSError):
                            wake_r.recv(64)
                    elif key.data is None:
                        self._accept(key.fileobj, conns, selector)  # type: ignore[arg-type]
                    elif key.fileobj in conns:
                        claimed = self._read(conns[key.fileobj], request, conns, selector)
                        if claimed is not None:
                            break
        finally:
            self._wake = None
            for conn in list(conns.values()):
                if claimed is None or conn is not claimed[0]:
                    self._drop(conn, conns, selector)
            selector.close()
            self.close()
            wake_r.close()
            wake_w.close()
        held, verdict, head = claimed
        held.sock.setblocking(True)
        if verdict.outcome is Outcome.ERROR:
            assert verdict.error is not None  # noqa: S101 - invariant of Outcome.ERROR
            self._answer_and_close(
                held, head, (verdict.status, "Login failed", str(verdict.error), False)
            )
            raise verdict.error
        assert verdict.code is not None  # noqa: S101 - invariant of Outcome.CODE
        page: Page = (200, "Login complete", "oauthsmtp received the authorization.", True)
        try:
            if finish is not None:
                page = finish(verdict.code)
        except Exception as exc:
            page = (500, "Login failed", _public_reason(exc), False)
            raise
        finally:
            self._answer_and_close(held, head, page)
        return verdict.code

    def _accept(
        self,
        listening: socket.socket,
        conns: dict[socket.socket, _Conn],
        selector: selectors.BaseSelector,
    ) -> None:
        """Accept what is waiting; never let a flood or fd exhaustion end the flow."""
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, _addr = listening.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:
                if exc.errno in _OUT_OF_FDS:
                    log.debug("loopback: out of file descriptors; dropping the oldest connection")
                    if conns:
                        self._drop(next(iter(conns.values())), conns, selector)
                    else:  # the descriptors are held elsewhere in this process: let them go
                        time.sleep(0.05)
                    return
                log.debug("loopback: accept failed (%s)", exc.errno)
                return
            if len(conns) >= MAX_CONNECTIONS:
                lingering = [c for c in conns.values() if c.lingering]
                self._drop(
                    lingering[0] if lingering else next(iter(conns.values())), conns, selector
                )
            sock.setblocking(False)
            conn = _Conn(sock, time.monotonic())
            conns[sock] = conn
            selector.register(sock, selectors.EVENT_READ, conn)

    def _drop(
        self, conn: _Conn, conns: dict[socket.socket, _Conn], selector: selectors.BaseSelector
    ) -> None:
        conns.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError, OSError):
            selector.unregister(conn.sock)
        conn.sock.close()

    def _read(
        self,
        conn: _Conn,
        request: AuthorizationRequest,
        conns: dict[socket.socket, _Conn],
        selector: selectors.BaseSelector,
    ) -> tuple[_Conn, CallbackVerdict, RequestHead] | None:
        """Read what arrived; answer, linger, drop, or return a claimed verdict."""
        try:
            data = conn.sock.recv(_RECV)
        except (BlockingIOError, InterruptedError):
            return None
        except OSError:
            data = b""
        if conn.lingering:
            if not data:
                self._drop(conn, conns, selector)
            return None
        if not data:
            if conn.buf:  # half a request, then the end: answer it as malformed
                self._answer(
                    conn, None, Rejection(400, "The request could not be read."), conns, selector
                )
            self._drop(conn, conns, selector)
            return None
        conn.buf += data
        end = head_end(conn.buf)
        if end < 0:
            too_big = oversized(conn.buf)
            if too_big is not None:
                self._answer(conn, None, too_big, conns, selector)
            return None
        head = parse_head(conn.buf[:end])
        if isinstance(head, Rejection):
            self._answer(conn, None, head, conns, selector)
            return None
        refused = screen(head, hosts=self._host_names, port=self.port)
        if refused is not None:
            self._answer(conn, head, refused, conns, selector)
            return None
        try:
            verdict = check_callback(request, head.method, head.target)
        except Exception:  # a bug in judging one request must not end the login
            log.debug("loopback: a request could not be judged", exc_info=False)
            self._answer(
                conn, head, Rejection(400, "The request could not be read."), conns, selector
            )
            return None
        path = head.target.split("?", 1)[0][:64]
        log.debug("loopback: %s %s -> %s", head.method[:16], path, verdict.status)
        if verdict.outcome is Outcome.IGNORE:
            self._answer(
                conn,
                head,
                Rejection(verdict.status, verdict.message),
                conns,
                selector,
                allow=verdict.status == 405,
            )
            return None
        conns.pop(conn.sock, None)
        with contextlib.suppress(KeyError, ValueError):
            selector.unregister(conn.sock)
        return conn, verdict, head

    def _answer(
        self,
        conn: _Conn,
        head: RequestHead | None,
        rejection: Rejection,
        conns: dict[socket.socket, _Conn],
        selector: selectors.BaseSelector,
        *,
        allow: bool = False,
    ) -> None:
        """Send a short page without blocking, then linger until the peer closes."""
        title = "Not found" if rejection.status == 404 else "Request refused"
        data = _response(
            rejection.status,
            render_page(title, rejection.message, ok=False),
            head_only=head is not None and head.method == "HEAD",
            allow=allow,
        )
        try:
            conn.sock.send(data)  # a page fits in any socket buffer; a peer that
            conn.sock.shutdown(socket.SHUT_WR)  # does not read loses it, not us
        except OSError:
            self._drop(conn, conns, selector)
            return
        conn.lingering = True
        conn.buf.clear()
        conn.expires = time.monotonic() + LINGER

    def _answer_and_close(self, conn: _Conn, head: RequestHead, page: Page) -> None:
        status, title, message, ok = page
        data = _response(
            status, render_page(title, message, ok=ok), head_only=head.method == "HEAD", allow=False
        )
        sock = conn.sock
        try:
            sock.settimeout(LINGER)
            sock.sendall(data)
            sock.shutdown(socket.SHUT_WR)
            end = time.monotonic() + LINGER
            while time.monotonic() < end and sock.recv(_RECV):
                pass
        except OSError:
            log.debug("loopback: the browser closed the connection early")
        finally:
            sock.close()

    def cancel(self) -> None:
        """Make a running :meth:`wait` raise :class:`AuthorizationError` (thread-safe)."""
        self._cancelled.set()
        wake = self._wake
        if wake is not None:
            with contextlib.suppress(OSError):  # the waiting side is gone; nothing to wake
                wake.send(b"!")

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
