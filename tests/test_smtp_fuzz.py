"""Hostile peers chosen at random: whatever a server sends, only oauthsmtp's errors come out.

A raw-socket server answers every command with a reply drawn from a seeded random source:
valid codes, replies to the wrong command (``354`` to ``RCPT``, ``250`` to ``DATA``), codes
outside 200-599, changing codes in a multi-line reply, invalid UTF-8 and NUL, lines over the
cap, hostile EHLO keywords (``SIZE ²``, a 5,000-digit ``SIZE``), ``421`` and ``432 4.3.2``,
or a connection closed mid-reply. For every seed, ``send_many`` either returns one
:class:`~oauthsmtp.SendResult` per message or raises an :class:`~oauthsmtp.OAuthSMTPError`;
``send`` likewise. The pure parsers get the same treatment with random bytes.
"""

from __future__ import annotations

import contextlib
import random
import socket
import threading

import pytest

from oauthsmtp import Email, OAuthSMTPError, SendResult, SMTPError, SMTPSession
from oauthsmtp._smtp.sasl import classify_auth_failure, decode_error_challenge
from oauthsmtp._smtp.wire import Reply, ReplyParser, parse_ehlo, parse_size

ROUNDS = 60

KEYWORDS = [
    b"PIPELINING",
    b"8BITMIME",
    b"SMTPUTF8",
    b"SIZE 10",
    b"SIZE \xc2\xb2",
    b"SIZE " + b"9" * 5000,
    b"SIZE 99999999999999999999999",
    b"SIZE -1",
    b"SIZE",
    b"AUTH",
    b"AUTH=",
    b"\x00\xff\xfe",
    b"\x1b[2J",
    b"X" * 9000,
]

REPLIES = [
    b"250 2.0.0 ok\r\n",
    b"250 2.0.0 ok\r\n",
    b"250 2.0.0 ok\r\n",
    b"354 go ahead\r\n",
    b"550 5.1.1 no\r\n",
    b"421 4.3.2 bye\r\n",
    b"432 4.3.2 Concurrent connections limit exceeded\r\n",
    b"25\r\n",
    b"2500 x\r\n",
    b"199 too low\r\n",
    b"999 too high\r\n",
    b"250-a\r\n251 b\r\n",
    b"250-\xff\xfe\x00\r\n250 \xc2\xb2\r\n",
    b"\xff\xfe\r\n",
    b"",  # close without a reply
    b"250 cut sh",  # a reply cut short, then close
    b"250-" + b"y" * 9000 + b"\r\n",
]


class FuzzServer:
    """An SMTP server whose every answer is drawn from a seeded random source."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.05)
        self.port = self.listener.getsockname()[1]
        self.stopping = threading.Event()
        self.threads: list[threading.Thread] = []
        self.accepted = 0
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while not self.stopping.is_set():
            try:
                sock, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            rng = random.Random(self.seed * 1000 + self.accepted)  # noqa: S311 - reproducible
            self.accepted += 1
            thread = threading.Thread(target=self._serve, args=(sock, rng), daemon=True)
            self.threads.append(thread)
            thread.start()

    def _serve(self, sock: socket.socket, rng: random.Random) -> None:
        sock.settimeout(3)
        buffer = b""
        data_mode = False
        try:
            sock.sendall(rng.choice([b"220 fuzz ready\r\n"] * 8 + REPLIES))
            while not self.stopping.is_set():
                while b"\n" not in buffer:
                    chunk = sock.recv(65536)
                    if not chunk:
                        return
                    buffer += chunk
                line, _, buffer = buffer.partition(b"\n")
                if data_mode:
                    data_mode = line != b".\r"
                    if not data_mode:
                        sock.sendall(rng.choice(REPLIES))
                    continue
                verb = line[:4].upper()
                if verb == b"EHLO":
                    chosen = rng.sample(KEYWORDS, rng.randint(0, 4))
                    if rng.random() < 0.5:
                        chosen.append(b"PIPELINING")
                    lines = [b"fuzz", *chosen]
                    reply = b"".join(b"250-" + x + b"\r\n" for x in lines[:-1])
                    reply += b"250 " + lines[-1] + b"\r\n"
                    if rng.random() < 0.2:
                        reply = rng.choice(REPLIES)
                elif verb == b"QUIT":
                    sock.sendall(b"221 bye\r\n")
                    return
                elif verb == b"DATA" and rng.random() < 0.7:
                    reply = b"354 go ahead\r\n"
                else:
                    reply = rng.choice(REPLIES)
                if reply in (b"", b"250 cut sh") or reply.startswith(b"421"):
                    sock.sendall(reply)
                    return
                data_mode = reply.startswith(b"354")
                sock.sendall(reply)
        except OSError:
            pass
        finally:
            sock.close()

    def stop(self) -> None:
        self.stopping.set()
        self.thread.join(5)
        for thread in self.threads:
            thread.join(5)
        self.listener.close()


def mail(n: int) -> Email:
    return Email(sender="alice@example.org", to=["bob@example.org"], subject=f"m{n}", text="hi")


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_random_hostile_server(seed: int) -> None:
    """send_many returns one result per message or raises one of our errors; send too."""
    server = FuzzServer(seed)
    try:
        s = SMTPSession(
            "127.0.0.1", server.port, security="none", timeout=0.5, connections=1 + seed % 2
        )
        try:
            results = s.send_many([mail(i) for i in range(3)])
        except OAuthSMTPError:
            pass
        else:
            assert len(results) == 3
            assert all(isinstance(r, SendResult) for r in results)
            assert all(r.status in ("sent", "failed", "unknown") for r in results)
        with contextlib.suppress(OAuthSMTPError):
            assert isinstance(s.send(mail(9)), SendResult)
        s.close()
    finally:
        server.stop()


@pytest.mark.parametrize("seed", range(20))
def test_parsers_take_any_bytes(seed: int) -> None:
    """The pure readers of server data raise nothing but SMTPError, whatever they are fed."""
    rng = random.Random(seed)  # noqa: S311 - reproducible, not secret
    pieces = [*KEYWORDS, *REPLIES, b"\r\n", b"\n", b"-", b" ", b"334 ", b"235 ", b"2", b"5"]
    for _ in range(200):
        data = b"".join(rng.choice(pieces) for _ in range(rng.randint(1, 12)))
        if rng.random() < 0.3:
            data += bytes(rng.randrange(256) for _ in range(rng.randint(0, 40)))
        parser = ReplyParser()
        try:
            replies = parser.feed(data)
        except SMTPError:
            continue
        for reply in replies:
            assert not any(c in line for line in reply.lines for c in "\r\n\x00\x1b")
            assert 200 <= reply.code < 600
            parse_ehlo(reply)
            classify_auth_failure(reply.code, reply.text)
            decode_error_challenge(reply.text.encode("ascii", "replace"))
        text = data.decode("utf-8", "replace")
        parse_size(text)
        parse_ehlo(Reply(250, ("fuzz", *text.split("\n"))))
        classify_auth_failure(535, text, decode_error_challenge(data))
