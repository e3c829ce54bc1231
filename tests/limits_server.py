"""An SMTP server on loopback that records what sending limits must hold.

Like smtp_sink.py (PIPELINING, no TLS, no AUTH), and it also records:

* ``peak``: the most connections open at once, counted from accept until the server's
  last word (``221`` to QUIT, or the ``432`` refusal; else the close): a client gives its
  slot back only after that word reached it, so the count has no race with the client;
* ``starts``: the time of every MAIL FROM (``time.monotonic`` of this process), so a test
  counts how many fall in any window;
* ``ids``: the Message-ID of every message accepted (a Counter: exactly once is ``== 1``).

It can refuse, as providers do: ``max_connections=N`` answers a connection beyond N with
``432 4.3.2 Concurrent connections limit exceeded`` and closes it (Microsoft 365);
``transient_mail=K`` answers the first K MAIL FROM with ``451 4.7.500 Server busy``;
``transient_data=K`` answers the first K ends of data with ``451 4.3.0`` (not accepted).

``mail_delay=D`` plays a network that delays some messages more than others: each MAIL FROM
the server reads is *seen* (its time recorded, then answered) only after a random delay
from 0 to D seconds (seeded; ``seed=``), as if it had spent that long on the way. Without
a cap that counts what the server may have seen, such delays bunch the arrivals of evenly
paced messages: a late one lands in the window of the punctual ones after it.
"""

from __future__ import annotations

import random
import socket
import threading
import time
from collections import Counter
from typing import BinaryIO


class LimitsServer:
    """Listens on 127.0.0.1 (an ephemeral port) until :meth:`stop`."""

    def __init__(
        self,
        *,
        max_connections: int | None = None,
        transient_mail: int = 0,
        transient_data: int = 0,
        mail_delay: float = 0.0,
        seed: int = 15,
    ) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(64)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.max_connections = max_connections
        self.transient_mail = transient_mail
        self.transient_data = transient_data
        self.mail_delay = mail_delay
        self._rng = random.Random(seed)  # noqa: S311 - delays, not secrets
        self.open = 0
        self.peak = 0
        self.connections = 0
        self.refused_connections = 0
        self.refused_mail = 0
        self.refused_data = 0
        self.starts: list[float] = []
        self.ids: Counter[str] = Counter()
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> LimitsServer:
        thread = threading.Thread(target=self._accept, name="limits-server", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._listener.close()

    def __enter__(self) -> LimitsServer:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def most_in_window(self, window: float) -> int:
        """The most MAIL FROMs that fell in any half-open interval of ``window`` seconds."""
        with self._lock:
            starts = sorted(self.starts)
        most, first = 0, 0
        for last, when in enumerate(starts):
            while when - starts[first] >= window:
                first += 1
            most = max(most, last - first + 1)
        return most

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        with self._lock:
            self.connections += 1
            self.open += 1
            self.peak = max(self.peak, self.open)
            refuse = self.max_connections is not None and self.open > self.max_connections
            if refuse:
                self.refused_connections += 1
        sock.settimeout(30)
        reader = sock.makefile("rb")
        ended = threading.Event()
        try:
            if refuse:
                self._end(ended)
                sock.sendall(b"432 4.3.2 Concurrent connections limit exceeded\r\n")
                return
            self._converse(sock, reader, ended)
        except OSError:
            return
        finally:
            reader.close()
            sock.close()
            self._end(ended)

    def _end(self, ended: threading.Event) -> None:
        with self._lock:
            if not ended.is_set():
                ended.set()
                self.open -= 1

    def _converse(self, sock: socket.socket, reader: BinaryIO, ended: threading.Event) -> None:
        sock.sendall(b"220 limits ESMTP\r\n")
        in_mail = False
        while True:
            line = reader.readline(4096)
            if not line:
                return
            verb = line[:4].upper()
            if verb in (b"EHLO", b"HELO"):
                sock.sendall(b"250-limits\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
            elif verb == b"MAIL":
                if self.mail_delay:
                    with self._lock:
                        delay = self._rng.random() * self.mail_delay
                    self._stopping.wait(delay)  # on its way: seen only now
                with self._lock:
                    self.starts.append(time.monotonic())
                    busy = self.refused_mail < self.transient_mail
                    if busy:
                        self.refused_mail += 1
                in_mail = not busy
                sock.sendall(
                    b"451 4.7.500 Server busy, try again later\r\n" if busy else b"250 OK\r\n"
                )
            elif verb in (b"RCPT", b"DATA") and not in_mail:
                sock.sendall(b"503 5.5.1 MAIL first\r\n")
            elif verb == b"RSET":
                in_mail = False
                sock.sendall(b"250 OK\r\n")
            elif verb == b"DATA":
                in_mail = False
                sock.sendall(b"354 go ahead\r\n")
                message_id = ""
                while (body := reader.readline(1 << 16)) not in (b".\r\n", b""):
                    if not message_id and body.lower().startswith(b"message-id:"):
                        message_id = body.split(b":", 1)[1].strip().decode("ascii", "replace")
                with self._lock:
                    refuse = self.refused_data < self.transient_data
                    if refuse:
                        self.refused_data += 1
                    else:
                        self.ids[message_id] += 1
                sock.sendall(
                    b"451 4.3.0 try again later\r\n" if refuse else b"250 2.0.0 queued\r\n"
                )
            elif verb == b"QUIT":
                self._end(ended)
                sock.sendall(b"221 bye\r\n")
                return
            else:
                sock.sendall(b"250 OK\r\n")
