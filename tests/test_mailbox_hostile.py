"""imap_authenticate and pop3_authenticate against servers that misbehave (scripted, TLS, loopback).

Dovecot behaves; these do not: a challenge that is not base64, endless challenges, a
challenge after the failure response, a line of a megabyte, a connection closed mid-way,
and Gmail's error challenge. Everything the client sent is recorded, so the tests assert
what crossed the wire, and that the token did not cross it twice when it should not have.
"""

from __future__ import annotations

import base64
import contextlib
import imaplib
import json
import poplib
import socket
import ssl
import threading
from collections.abc import Callable, Iterator

import pytest

import oauthsmtp
from oauthsmtp.devserver import CertificateSet, make_certificates

USER = "user@example.test"
TOKEN = "hostile-test-token-0123456789"
TIMEOUT = 10
GMAIL_CHALLENGE = base64.b64encode(
    json.dumps({"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"}).encode()
)

Script = Callable[["Peer"], None]


class Peer:
    """The server's side of one connection: read client lines, write server lines."""

    def __init__(self, sock: ssl.SSLSocket) -> None:
        self.sock = sock
        self.reader = sock.makefile("rb")
        self.received: list[bytes] = []

    def send(self, line: bytes) -> None:
        self.sock.sendall(line + b"\r\n")

    def expect(self) -> bytes:
        line = self.reader.readline(1 << 20).rstrip(b"\r\n")
        self.received.append(line)
        return line

    def greet_and_capa(self) -> None:
        self.send(b"+OK ready")
        assert self.expect() == b"CAPA"
        self.send(b"+OK\r\nUSER\r\nSASL XOAUTH2\r\n.")
        assert self.expect() == b"AUTH XOAUTH2"
        self.send(b"+ ")
        self.expect()  # the initial response


class ScriptedServer:
    """One TLS connection on 127.0.0.1, answered by ``script`` in a thread."""

    def __init__(self, certificates: CertificateSet, script: Script) -> None:
        self.context = certificates.server_context()
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port: int = self.listener.getsockname()[1]
        self.script = script
        self.peer: Peer | None = None
        self.error: BaseException | None = None
        self.thread = threading.Thread(target=self._serve, daemon=True)
        self.thread.start()

    def _serve(self) -> None:
        self.listener.settimeout(TIMEOUT)
        try:
            raw, _ = self.listener.accept()
            raw.settimeout(TIMEOUT)
            with self.context.wrap_socket(raw, server_side=True) as sock:
                self.peer = Peer(sock)
                try:
                    self.script(self.peer)
                finally:
                    self.peer.reader.close()  # else the socket stays open behind it
        except AssertionError as exc:  # the client did not send what the script expected
            self.error = exc
        except OSError:
            pass  # the client went away first (a test that ends the connection early)
        finally:
            self.listener.close()


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture
def serve(certificates: CertificateSet) -> Iterator[Callable[[Script], poplib.POP3_SSL]]:
    """Start a scripted server and return a POP3_SSL connected to it (closed afterwards)."""
    opened: list[poplib.POP3_SSL] = []
    servers: list[ScriptedServer] = []

    def start(script: Script) -> poplib.POP3_SSL:
        server = ScriptedServer(certificates, script)
        servers.append(server)
        pop = poplib.POP3_SSL(
            "127.0.0.1", server.port, context=certificates.client_context(), timeout=TIMEOUT
        )
        opened.append(pop)
        return pop

    yield start
    for pop in opened:
        pop.close()
    for server in servers:
        server.thread.join(TIMEOUT)
        assert not server.thread.is_alive()
        assert server.error is None, f"the client did not follow the script: {server.error}"


def _sasl(received: list[bytes]) -> list[bytes]:
    """The client's lines after AUTH, the initial response masked as <IR>."""
    lines = received[received.index(b"AUTH XOAUTH2") + 1 :]
    return [b"<IR>" if i == 0 else line for i, line in enumerate(lines)]


def test_gmail_error_challenge_gets_an_empty_line_and_a_decoded_error(
    serve: Callable[[Script], poplib.POP3_SSL],
) -> None:
    """Gmail's 400 JSON challenge: an empty response (XOAUTH2), the JSON on the error."""
    peers: list[Peer] = []

    def script(peer: Peer) -> None:
        peers.append(peer)
        peer.greet_and_capa()
        peer.send(b"+ " + GMAIL_CHALLENGE)
        assert peer.expect() == b""
        peer.send(b"-ERR [AUTH] Invalid credentials.")

    pop = serve(script)
    with pytest.raises(oauthsmtp.MailboxAuthError) as info:
        oauthsmtp.pop3_authenticate(pop, TOKEN, USER)
    error = info.value
    assert error.provider_error == {
        "status": "400",
        "schemes": "Bearer",
        "scope": "https://mail.google.com/",
    }
    assert error.retryable  # a string token cannot be refreshed: no second attempt
    assert "https://mail.google.com/" in str(error)  # the Google hint, from the JSON's scope
    assert _sasl(peers[0].received) == [b"<IR>", b""]


def test_a_challenge_that_is_not_base64_is_cancelled(
    serve: Callable[[Script], poplib.POP3_SSL],
) -> None:
    """RFC 5034 §4: the client cancels with ``*``; the error says why; no retry."""
    peers: list[Peer] = []

    def script(peer: Peer) -> None:
        peers.append(peer)
        peer.greet_and_capa()
        peer.send(b"+ this is not base64!")
        assert peer.expect() == b"*"
        peer.send(b"-ERR [AUTH] Cancelled.")

    pop = serve(script)
    with pytest.raises(oauthsmtp.MailboxAuthError, match=r"cancelled.*not base64") as info:
        oauthsmtp.pop3_authenticate(pop, TOKEN, USER)
    assert not info.value.retryable
    assert _sasl(peers[0].received) == [b"<IR>", b"*"]


def test_endless_challenges_are_cancelled_then_refused(
    serve: Callable[[Script], poplib.POP3_SSL],
) -> None:
    """A challenge after the failure response is cancelled; more after ``*`` end it."""
    peers: list[Peer] = []

    def script(peer: Peer) -> None:
        peers.append(peer)
        peer.greet_and_capa()
        peer.send(b"+ " + GMAIL_CHALLENGE)
        assert peer.expect() == b""
        peer.send(b"+ " + GMAIL_CHALLENGE)
        assert peer.expect() == b"*"
        peer.send(b"+ " + GMAIL_CHALLENGE)  # ignores the cancel

    pop = serve(script)
    with pytest.raises(poplib.error_proto, match="went on challenging"):
        oauthsmtp.pop3_authenticate(pop, TOKEN, USER)
    assert _sasl(peers[0].received) == [b"<IR>", b"", b"*"]


def test_a_huge_line_is_refused(serve: Callable[[Script], poplib.POP3_SSL]) -> None:
    """A 1 MB challenge line: refused at the cap, not buffered."""

    def script(peer: Peer) -> None:
        peer.greet_and_capa()
        peer.send(b"+ " + b"A" * (1 << 20))

    pop = serve(script)
    with pytest.raises(poplib.error_proto, match="over 8192 octets"):
        oauthsmtp.pop3_authenticate(pop, TOKEN, USER)


def test_a_connection_closed_during_auth(serve: Callable[[Script], poplib.POP3_SSL]) -> None:
    """EOF in the middle of the exchange: poplib's own error_proto, as poplib raises."""

    def script(peer: Peer) -> None:
        peer.greet_and_capa()

    pop = serve(script)
    with pytest.raises(poplib.error_proto, match="closed the connection"):
        oauthsmtp.pop3_authenticate(pop, TOKEN, USER)


def test_no_token_mechanism_means_a_clear_error_and_nothing_sent(
    serve: Callable[[Script], poplib.POP3_SSL],
) -> None:
    """CAPA offers SASL PLAIN only: MailboxAuthError, and no AUTH command at all."""
    peers: list[Peer] = []

    def script(peer: Peer) -> None:
        peers.append(peer)
        peer.send(b"+OK ready")
        assert peer.expect() == b"CAPA"
        peer.send(b"+OK\r\nUSER\r\nSASL PLAIN\r\n.")
        assert peer.expect() == b"QUIT"
        peer.send(b"+OK bye")

    pop = serve(script)
    with pytest.raises(oauthsmtp.MailboxAuthError, match="SASL PLAIN"):
        oauthsmtp.pop3_authenticate(pop, TOKEN, USER)
    pop.quit()
    assert peers[0].received == [b"CAPA", b"QUIT"]


# --------------------------------------------------------------------------- IMAP


def imap_greet(peer: Peer) -> str:
    """Greet, answer CAPABILITY (XOAUTH2 only, as Microsoft 365), read AUTHENTICATE, send '+'.

    Returns the tag of the AUTHENTICATE command.
    """
    peer.send(b"* OK ready")
    tag, command = peer.expect().split(b" ", 1)
    assert command == b"CAPABILITY"
    peer.send(b"* CAPABILITY IMAP4rev1 AUTH=XOAUTH2\r\n" + tag + b" OK done")
    tag, command = peer.expect().split(b" ", 1)
    assert command == b"AUTHENTICATE XOAUTH2"
    peer.send(b"+ ")
    peer.expect()  # the initial response
    return tag.decode()


@pytest.fixture
def serve_imap(certificates: CertificateSet) -> Iterator[Callable[[Script], imaplib.IMAP4_SSL]]:
    opened: list[imaplib.IMAP4_SSL] = []
    servers: list[ScriptedServer] = []

    def start(script: Script) -> imaplib.IMAP4_SSL:
        server = ScriptedServer(certificates, script)
        servers.append(server)
        imap = imaplib.IMAP4_SSL(
            "127.0.0.1", server.port, ssl_context=certificates.client_context(), timeout=TIMEOUT
        )
        opened.append(imap)
        return imap

    yield start
    for imap in opened:
        with contextlib.suppress(OSError):  # already closed by logout()
            imap.shutdown()
    for server in servers:
        server.thread.join(TIMEOUT)
        assert not server.thread.is_alive()
        assert server.error is None, f"the client did not follow the script: {server.error}"


class Tokens:
    """A token source: each refresh moves to the next access token."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = tokens
        self.account = USER
        self.refreshes = 0

    @property
    def access_token(self) -> str:
        return self.tokens[self.refreshes]

    def refresh(self) -> None:
        self.refreshes += 1


def test_imap_refused_without_challenge_is_refreshed_and_retried(
    serve_imap: Callable[[Script], imaplib.IMAP4_SSL],
) -> None:
    """Microsoft's bare ``NO AUTHENTICATE failed.``: one refresh, a second AUTHENTICATE."""
    seen: list[bytes] = []

    def script(peer: Peer) -> None:
        tag = imap_greet(peer)
        seen.append(base64.b64decode(peer.received[-1]))
        peer.send(f"{tag} NO AUTHENTICATE failed.".encode())
        again, command = peer.expect().split(b" ", 1)
        assert command == b"AUTHENTICATE XOAUTH2"
        peer.send(b"+ ")
        seen.append(base64.b64decode(peer.expect()))
        peer.send(again + b" OK authenticated")
        assert peer.expect().endswith(b"LOGOUT")
        peer.send(b"* BYE\r\n" + peer.received[-1].split(b" ")[0] + b" OK bye")

    tokens = Tokens("first-token-0123", "second-token-4567")
    imap = serve_imap(script)
    assert oauthsmtp.imap_authenticate(imap, tokens) == "XOAUTH2"
    assert imap.state == "AUTH"
    imap.logout()
    assert tokens.refreshes == 1
    assert b"auth=Bearer first-token-0123\x01" in seen[0]
    assert b"auth=Bearer second-token-4567\x01" in seen[1]


@pytest.mark.parametrize(
    ("answer", "retryable"),
    [("BAD Invalid SASL response", False), ("NO [UNAVAILABLE] Try later", False)],
)
def test_imap_refusals_a_token_cannot_cure_are_not_retried(
    serve_imap: Callable[[Script], imaplib.IMAP4_SSL], answer: str, retryable: bool
) -> None:
    def script(peer: Peer) -> None:
        tag = imap_greet(peer)
        peer.send(f"{tag} {answer}".encode())
        peer.expect()  # EOF: the test closes the connection

    tokens = Tokens("first-token-0123", "second-token-4567")
    imap = serve_imap(script)
    with pytest.raises(oauthsmtp.MailboxAuthError) as info:
        oauthsmtp.imap_authenticate(imap, tokens)
    assert info.value.retryable is retryable
    assert tokens.refreshes == 0
    assert "first-token" not in str(info.value)


def test_imap_server_that_goes_on_challenging_is_dropped(
    serve_imap: Callable[[Script], imaplib.IMAP4_SSL],
) -> None:
    """After the failure response, then ``*``, a further challenge ends it: IMAP4.abort
    (imaplib itself would answer '*' forever)."""
    sent: list[bytes] = []

    def script(peer: Peer) -> None:
        imap_greet(peer)
        for _ in range(3):
            peer.send(b"+ " + GMAIL_CHALLENGE)
            sent.append(peer.expect())

    imap = serve_imap(script)
    with pytest.raises(imaplib.IMAP4.abort, match="went on challenging"):
        oauthsmtp.imap_authenticate(imap, TOKEN, USER)
    assert sent[:2] == [b"", b"*"]
