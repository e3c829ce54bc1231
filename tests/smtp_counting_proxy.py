"""A plain-text TCP proxy in front of an SMTP server that counts what a fleet does to it.

The fleet tests point every worker at this proxy (``security="none"`` on loopback, so the
proxy can read the commands) and the proxy forwards to the development SMTP server. It
records:

* **connections open at once**: a connection counts from its accept until the client says
  ``QUIT`` (before the server could answer it) or either side closes, so a client that
  frees its connection slot only after the ``221`` reply can never be seen twice;
* **when each transaction began**: the time of each ``MAIL FROM`` line, for counting
  messages per window;
* on request (:meth:`cut_all`), it closes each connection open now at the start of its
  next transaction, before forwarding anything of it, so the client reconnects (and
  authenticates again) without any message being half sent.
"""

from __future__ import annotations

import contextlib
import socket
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass, field

__all__ = ["CountingProxy", "max_in_window"]


def max_in_window(times: Sequence[float], window: float) -> int:
    """The most ``times`` that fall in any half-open interval ``[t, t + window)``."""
    ordered = sorted(times)
    best = start = 0
    for end, t in enumerate(ordered):
        while ordered[start] <= t - window:
            start += 1
        best = max(best, end - start + 1)
    return best


@dataclass(eq=False)
class _Link:
    client: socket.socket
    server: socket.socket
    counted: bool = True
    cut_pending: bool = False
    closed: threading.Event = field(default_factory=threading.Event)


class CountingProxy:
    """Listens on 127.0.0.1 (a free port) and forwards to ``127.0.0.1:upstream_port``."""

    def __init__(self, upstream_port: int) -> None:
        self.upstream_port = upstream_port
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self._lock = threading.Lock()
        self._links: set[_Link] = set()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []
        self.open_now = 0
        self.max_open = 0
        self.connections = 0
        self.cuts = 0
        self.mail_times: list[float] = []

    def start(self) -> CountingProxy:
        thread = threading.Thread(target=self._accept, name="counting-proxy", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        with self._lock:
            links = list(self._links)
        for link in links:
            self._close(link)
        for thread in self._threads:
            thread.join(5)
        self._listener.close()

    def cut_all(self) -> int:
        """Close every connection open now at the start of its next transaction."""
        with self._lock:
            for link in self._links:
                link.cut_pending = True
            return len(self._links)

    def transactions(self) -> int:
        with self._lock:
            return len(self.mail_times)

    # -- internals ---------------------------------------------------------------------

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            try:
                server = socket.create_connection(("127.0.0.1", self.upstream_port), timeout=10)
            except OSError:
                client.close()
                continue
            client.settimeout(None)
            server.settimeout(None)
            link = _Link(client, server)
            with self._lock:
                self._links.add(link)
                self.connections += 1
                self.open_now += 1
                self.max_open = max(self.max_open, self.open_now)
            for target, name in ((self._upstream, "up"), (self._downstream, "down")):
                thread = threading.Thread(target=target, args=(link,), name=name, daemon=True)
                thread.start()

    def _uncount(self, link: _Link) -> None:
        with self._lock:
            if link.counted:
                link.counted = False
                self.open_now -= 1

    def _close(self, link: _Link) -> None:
        self._uncount(link)
        with self._lock:
            self._links.discard(link)
        for sock in (link.client, link.server):
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)
            sock.close()
        link.closed.set()

    def _upstream(self, link: _Link) -> None:
        try:
            while True:
                chunk = link.client.recv(65536)
                if not chunk:
                    break
                lines = chunk.upper().split(b"\r\n")
                if lines[0].startswith(b"MAIL FROM"):
                    with self._lock:
                        cut = link.cut_pending
                        if cut:
                            self.cuts += 1
                    if cut:
                        break  # nothing of this transaction reaches the server
                starts = sum(1 for line in lines if line.startswith(b"MAIL FROM"))
                if starts:
                    now = time.monotonic()
                    with self._lock:
                        self.mail_times.extend([now] * starts)
                if b"QUIT" in lines:
                    self._uncount(link)
                link.server.sendall(chunk)
        except OSError:
            pass
        self._close(link)

    def _downstream(self, link: _Link) -> None:
        try:
            while True:
                chunk = link.server.recv(65536)
                if not chunk:
                    break
                link.client.sendall(chunk)
        except OSError:
            pass
        self._close(link)
