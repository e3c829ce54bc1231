"""A fast SMTP sink on loopback for batch and memory tests: PIPELINING, no TLS, no AUTH.

It counts messages and bytes and keeps nothing else, so a test can send 100k messages
without the server's memory growing. Each connection is served by a thread that reads
lines and answers at once (MAIL, RCPT, RSET, NOOP: 250; DATA: 354, then the body up to
the end-of-data line, then 250; QUIT: 221).
"""

from __future__ import annotations

import socket
import threading


class SMTPSink:
    """Listens on 127.0.0.1 (an ephemeral port) until :meth:`stop`."""

    def __init__(self) -> None:
        self._listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self._listener.bind(("127.0.0.1", 0))
        self._listener.listen(16)
        self._listener.settimeout(0.2)
        self.port: int = self._listener.getsockname()[1]
        self.messages = 0
        self.bytes = 0
        self.connections = 0
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._threads: list[threading.Thread] = []

    def start(self) -> SMTPSink:
        """Start accepting connections."""
        thread = threading.Thread(target=self._accept, name="smtp-sink", daemon=True)
        thread.start()
        self._threads.append(thread)
        return self

    def stop(self) -> None:
        """Stop accepting and wait (bounded) for the threads."""
        self._stopping.set()
        for thread in list(self._threads):
            thread.join(timeout=10)
        self._listener.close()

    def __enter__(self) -> SMTPSink:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def _accept(self) -> None:
        while not self._stopping.is_set():
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with self._lock:
                self.connections += 1
            thread = threading.Thread(target=self._serve, args=(sock,), daemon=True)
            thread.start()
            self._threads.append(thread)

    def _serve(self, sock: socket.socket) -> None:
        sock.settimeout(30)
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        try:
            sock.sendall(b"220 sink ESMTP\r\n")
            while True:
                line = reader.readline(4096)
                if not line:
                    return
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    sock.sendall(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"DATA":
                    sock.sendall(b"354 go ahead\r\n")
                    size = 0
                    while (body := reader.readline(1 << 16)) not in (b".\r\n", b""):
                        size += len(body)
                    with self._lock:
                        self.messages += 1
                        self.bytes += size
                    sock.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"250 OK\r\n")
        except OSError:
            return
        finally:
            reader.close()
            sock.close()
