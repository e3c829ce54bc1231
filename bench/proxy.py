"""A TCP proxy that delays every chunk by a fixed one-way delay: a stand-in for ``tc netem``.

This machine's kernel has no ``netem``, so round trips are made visible this way: the proxy
listens on 127.0.0.1, connects to the real server for each client, and forwards every chunk
it reads after ``delay`` seconds, in each direction (10 ms each way = 20 ms round trip). It
is byte-transparent (TLS runs through it end to end) and keeps order. It does not limit
bandwidth: a chunk read while earlier ones are in flight is not held up by them.

Each direction of each connection has a reader thread (``recv`` and stamp with the time it
is due) and a writer thread (sleep until due, then ``sendall``). Every socket has
TCP_NODELAY, so Nagle's algorithm adds no delay of its own. A new connection waits one round
trip before the proxy connects onward, as a TCP handshake over the same link would.

Run it alone (the benchmark does, in its own process, so that no other Python thread holds
the GIL when a chunk is due)::

    python bench/proxy.py --target 127.0.0.1:2525 --delay-ms 10
    {"port": 40123, "delay": 0.01}      # then it serves until its stdin closes
"""

from __future__ import annotations

import argparse
import queue
import socket
import threading
import time

from harness import serve_commands

CHUNK = 256 * 1024


def _nodelay(sock: socket.socket) -> None:
    sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Link:
    """One proxied connection: the client socket, the server socket and two directions."""

    def __init__(self, client: socket.socket, target: tuple[str, int], delay: float) -> None:
        self.client = client
        self.target = target
        self.delay = delay
        self.server: socket.socket | None = None
        self._open_directions = 2
        self._lock = threading.Lock()

    def run(self) -> None:
        """Wait one round trip (the handshake), connect onward and start both directions."""
        time.sleep(2 * self.delay)
        try:
            self.server = socket.create_connection(self.target)
        except OSError:
            self.client.close()
            return
        _nodelay(self.server)
        self._direction(self.client, self.server)
        self._direction(self.server, self.client)

    def _direction(self, source: socket.socket, sink: socket.socket) -> None:
        due: queue.SimpleQueue[tuple[float, bytes]] = queue.SimpleQueue()
        threading.Thread(target=self._read, args=(source, due), daemon=True).start()
        threading.Thread(target=self._write, args=(sink, due), daemon=True).start()

    def _read(self, source: socket.socket, due: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        """Stamp each chunk with when it may leave; an empty chunk means end of stream."""
        while True:
            try:
                data = source.recv(CHUNK)
            except OSError:
                data = b""
            due.put((time.monotonic() + self.delay, data))
            if not data:
                return

    def _write(self, sink: socket.socket, due: queue.SimpleQueue[tuple[float, bytes]]) -> None:
        """Send each chunk when it is due; pass the end of stream on as a half-close."""
        while True:
            when, data = due.get()
            wait = when - time.monotonic()
            if wait > 0:
                time.sleep(wait)
            try:
                if not data:
                    sink.shutdown(socket.SHUT_WR)
                    break
                sink.sendall(data)
            except OSError:
                self.close()  # the other direction's reader wakes up with an error
                break
        self._finished()

    def _finished(self) -> None:
        with self._lock:
            self._open_directions -= 1
            done = self._open_directions == 0
        if done:
            self.close()

    def close(self) -> None:
        self.client.close()
        if self.server is not None:
            self.server.close()


class DelayProxy:
    """Listen on 127.0.0.1 and forward to ``target`` with ``delay`` seconds each way."""

    def __init__(self, target: tuple[str, int], delay: float) -> None:
        self.target = target
        self.delay = delay
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM, socket.IPPROTO_TCP)
        self._listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self.port: int = self._listener.getsockname()[1]
        self.connections = 0

    def start(self) -> DelayProxy:
        """Accept connections in a background thread; returns self."""
        threading.Thread(target=self._accept, name="delay-proxy", daemon=True).start()
        return self

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            _nodelay(client)
            self.connections += 1
            link = _Link(client, self.target, self.delay)
            threading.Thread(target=link.run, daemon=True).start()

    def stop(self) -> None:
        """Stop accepting (open connections end with the process)."""
        self._listener.close()


def main() -> None:
    """Run a proxy until stdin closes; print its port as JSON first."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--target", required=True, help="HOST:PORT of the real server")
    parser.add_argument("--delay-ms", type=float, default=10.0, help="one-way delay (ms)")
    args = parser.parse_args()
    host, _, port = args.target.rpartition(":")
    proxy = DelayProxy((host, int(port)), args.delay_ms / 1000).start()
    serve_commands(
        {"port": proxy.port, "delay": proxy.delay},
        {"stats": lambda: {"connections": proxy.connections}},
    )
    proxy.stop()


if __name__ == "__main__":
    main()
