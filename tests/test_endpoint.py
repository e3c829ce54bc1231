"""The token and revocation endpoints, against real HTTP servers on loopback.

Code exchange, refresh and revocation share one HTTP client; each is driven
against tests/scripted_http.py, which answers what a test scripts, including
answers no real token endpoint gives and hostile behaviours (dripping bytes,
resets, stalls, broken chunked encoding, a gzip bomb).
"""

from __future__ import annotations

import gzip
import json
import logging
import os
import select
import shutil
import socket
import subprocess
import sys
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from components import require
from scripted_http import ScriptedServer, drip, head, send_then

from oauthsmtp import OAuth2Parameters, TokenError
from oauthsmtp._oauth import endpoint, httpclient
from oauthsmtp._oauth.tokenresponse import TokenState

GOOD = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}
GOOD_BYTES = json.dumps(GOOD).encode()
WAIT = 20.0
"""Upper bound for any call under test; a call still running then counts as hung."""


def params(server: ScriptedServer, secret: str | None = "client-secret-xyz", **kw: Any) -> Any:
    values: dict[str, Any] = {
        "client_id": "client-1",
        "client_secret": secret,
        "auth_url": "https://auth.example.com/authorize",
        "token_url": server.url("/token"),
        "scope": "https://mail.google.com/",
        "redirect_url": "http://localhost:9000/cb",
        "revocation_url": server.url("/revoke"),
    }
    values.update(kw)
    return OAuth2Parameters(**values)


def exchange(p: OAuth2Parameters, **kw: Any) -> TokenState:
    return endpoint.exchange_code(
        p, code="the-code", code_verifier="v" * 43, redirect_uri="http://localhost:9000/cb", **kw
    )


def refresh(p: OAuth2Parameters, **kw: Any) -> TokenState:
    kw.setdefault("sleep", lambda _: None)
    return endpoint.refresh(p, TokenState("at-0", refresh_token="rt-secret"), **kw)


def revoke(p: OAuth2Parameters, **kw: Any) -> bool:
    return endpoint.revoke(p, "rt-secret", **kw)


CALLS: dict[str, Callable[..., Any]] = {"exchange": exchange, "refresh": refresh, "revoke": revoke}


def bounded(call: Callable[[], Any]) -> Any:
    """Run ``call`` in a thread; fail the test if it is still running after WAIT seconds."""
    box: list[Any] = []

    def target() -> None:
        try:
            box.append(call())
        except BaseException as exc:
            box.append(exc)

    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    thread.join(WAIT)
    assert not thread.is_alive(), "the call hung past its deadline"
    return box[0]


def endless(first: bytes) -> Any:
    """Send ``first`` then zeros as fast as the client reads, until it goes away."""

    def behave(conn: socket.socket, stop: threading.Event) -> None:
        try:
            conn.sendall(first)
            block = b"0" * 65536
            while not stop.is_set():
                conn.sendall(block)
        except OSError:
            return

    return behave


# -- what is sent --------------------------------------------------------------


def test_exchange_sends_code_verifier_and_identical_redirect_uri(scripted: ScriptedServer) -> None:
    """The token request repeats redirect_uri byte-for-byte and carries the verifier."""
    scripted.reply_json(GOOD)
    state = exchange(params(scripted))
    seen = scripted.seen[0]
    assert seen.path == "/token"
    assert seen.form["grant_type"] == ["authorization_code"]
    assert seen.form["code"] == ["the-code"]
    assert seen.form["code_verifier"] == ["v" * 43]
    assert seen.form["redirect_uri"] == ["http://localhost:9000/cb"]
    assert seen.form["client_id"] == ["client-1"]
    assert seen.form["client_secret"] == ["client-secret-xyz"]
    assert seen.headers["Accept"] == "application/json"
    assert seen.headers["Accept-Encoding"] == "identity"
    assert state.access_token == "at-1"


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_public_client_sends_no_secret(scripted: ScriptedServer, which: str) -> None:
    """A public client (Microsoft desktop) sends client_id and no secret at all."""
    scripted.reply_json(GOOD)
    CALLS[which](params(scripted, secret=None))
    seen = scripted.seen[0]
    assert seen.form["client_id"] == ["client-1"]
    assert "client_secret" not in seen.form
    assert "Authorization" not in seen.headers


def test_refresh_keeps_old_refresh_token_and_sends_scope(scripted: ScriptedServer) -> None:
    """No refresh_token in the answer: the old one is kept (Google); scope and client sent."""
    scripted.reply_json({"access_token": "at-2", "token_type": "Bearer", "expires_in": 60})
    new = refresh(params(scripted))
    assert new.access_token == "at-2"
    assert new.refresh_token == "rt-secret"
    sent = scripted.seen[0].form
    assert sent["grant_type"] == ["refresh_token"]
    assert sent["refresh_token"] == ["rt-secret"]
    assert sent["scope"] == ["https://mail.google.com/"]
    assert sent["client_id"] == ["client-1"]
    assert sent["client_secret"] == ["client-secret-xyz"]


def test_refresh_rotation_replaces_refresh_token(scripted: ScriptedServer) -> None:
    """A new refresh token replaces the old one (RFC 6749 §6)."""
    scripted.reply_json({**GOOD, "refresh_token": "rt-2"})
    assert refresh(params(scripted)).refresh_token == "rt-2"


def test_refresh_with_empty_refresh_token_is_an_error(scripted: ScriptedServer) -> None:
    """An empty refresh_token is malformed, not 'none'."""
    scripted.reply_json({**GOOD, "refresh_token": ""})
    with pytest.raises(TokenError, match="refresh_token"):
        refresh(params(scripted))


def test_revocation_sends_token_and_hint(scripted: ScriptedServer) -> None:
    """RFC 7009 §2.1: token and token_type_hint=refresh_token, client authentication."""
    scripted.reply(200)
    assert revoke(params(scripted)) is True
    seen = scripted.seen[0]
    assert seen.path == "/revoke"
    assert seen.form["token"] == ["rt-secret"]
    assert seen.form["token_type_hint"] == ["refresh_token"]
    assert seen.form["client_secret"] == ["client-secret-xyz"]


def test_revocation_503_means_retry_later(scripted: ScriptedServer) -> None:
    """RFC 7009 §2.2.1: 503 is 'try again later'."""
    scripted.reply(503)
    with pytest.raises(TokenError, match="try again later"):
        revoke(params(scripted))


def test_revocation_error_names_the_oauth_error(scripted: ScriptedServer) -> None:
    """A 400 with an RFC 7009 error says which, with the status."""
    scripted.reply_json({"error": "unsupported_token_type"}, status=400)
    with pytest.raises(TokenError, match="unsupported_token_type") as info:
        revoke(params(scripted))
    assert info.value.status == 400


def test_no_revocation_url_means_nothing_to_call(scripted: ScriptedServer) -> None:
    """Providers without RFC 7009 (Microsoft) are not called."""
    assert revoke(params(scripted, revocation_url=None)) is False
    assert scripted.seen == []


# -- what is refused ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("reply", "needle"),
    [
        ({"body": "<html>Please log in to the Wi-Fi</html>", "Content_Type": "text/html"}, "JSON"),
        ({"body": "[]"}, "JSON object"),
        ({"body": "null"}, "JSON object"),
        ({"body": json.dumps({"access_token": "a", "token_type": "mac"})}, "Bearer"),
        ({"body": json.dumps({"token_type": "Bearer"})}, "access_token"),
        ({"status": 302, "Location": "/evil"}, "redirect"),
        ({"status": 500, "body": "oops"}, "500"),
    ],
    ids=["html", "array", "null", "mac", "no-access-token", "redirect", "500"],
)
def test_unusable_answers(scripted: ScriptedServer, reply: dict[str, Any], needle: str) -> None:
    """Odd answers become TokenError, never a token; redirects are not followed."""
    status = reply.pop("status", 200)
    scripted.reply(status, **reply)
    scripted.reply_json(GOOD)
    with pytest.raises(TokenError, match=needle):
        exchange(params(scripted))
    assert [s.path for s in scripted.seen] == ["/token"]


def test_error_body_becomes_token_error_without_secrets(scripted: ScriptedServer) -> None:
    """RFC 6749 §5.2 errors carry error/description; secrets the server echoes are blanked."""
    scripted.reply_json(
        {"error": "invalid_grant", "error_description": "bad code the-code for client-secret-xyz"},
        status=400,
    )
    with pytest.raises(TokenError) as info:
        exchange(params(scripted))
    assert info.value.error == "invalid_grant"
    assert info.value.status == 400
    for secret in ("the-code", "v" * 43, "client-secret-xyz"):
        assert secret not in str(info.value)
        assert secret not in (info.value.error_description or "")


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_endless_body_is_capped(scripted: ScriptedServer, which: str) -> None:
    """A 10 GB answer is refused after reading about 1 MB, on every call (hostile-14)."""
    scripted.reply_raw(endless(head(200, Content_Length=str(10 * 1024**3))))
    scripted.reply_raw(endless(head(200, Content_Length=str(10 * 1024**3))))
    scripted.reply_raw(endless(head(200, Content_Length=str(10 * 1024**3))))
    result = bounded(
        lambda: CALLS[which](params(scripted), **({"attempts": 1} if which == "refresh" else {}))
    )
    if which == "revoke":
        assert result is True  # 200 is all RFC 7009 needs; the body is read capped and dropped
    else:
        assert isinstance(result, TokenError)
        assert "more than" in str(result)


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_compressed_answer_is_refused_unread(scripted: ScriptedServer, which: str) -> None:
    """A gzip bomb is never inflated: compression is refused unread (hostile-14)."""
    bomb = gzip.compress(b"\0" * (64 * 1024 * 1024), compresslevel=9)
    scripted.reply(200, body=bomb, Content_Encoding="gzip", Content_Type="application/json")
    result = bounded(
        lambda: CALLS[which](params(scripted), **({"attempts": 1} if which == "refresh" else {}))
    )
    assert isinstance(result, TokenError)
    assert "compressed" in str(result)
    assert len(scripted.seen) == 1


# -- deadlines (issue 10 item 6) -------------------------------------------------------


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
@pytest.mark.parametrize(
    "behaviour",
    [
        drip(head(200, Content_Length="100000") + GOOD_BYTES),
        drip(head(400, Content_Length="100000")),
        drip(b"HTTP/1.1 200 OK\r\nX-Slow: " + b"a" * 1000),
        send_then(head(500, Content_Length="100"), "stall"),
        drip(b""),
    ],
    ids=["drip-200-body", "drip-400-body", "drip-headers", "headers-then-silence", "drip-spaces"],
)
def test_every_call_has_a_total_deadline(
    scripted: ScriptedServer, which: str, behaviour: Any
) -> None:
    """A byte every 50 ms keeps per-read timeouts alive; the total deadline ends it (rule 13)."""
    for _ in range(3):
        scripted.reply_raw(behaviour)
    result = bounded(lambda: CALLS[which](params(scripted), timeout=0.5))
    assert isinstance(result, TokenError)
    assert "timed out" in str(result)
    assert "rt-secret" not in str(result)


def test_refresh_deadline_covers_every_attempt(scripted: ScriptedServer) -> None:
    """Retries and backoff stay inside the refresh's one deadline."""
    for _ in range(3):
        scripted.reply_raw(send_then(head(503, Content_Length="100"), "stall"))
    slept: list[float] = []
    result = bounded(lambda: refresh(params(scripted), timeout=1.5, sleep=slept.append))
    assert isinstance(result, TokenError)
    assert len(scripted.seen) == 1  # no time was left for another attempt


# -- odd answers become our own errors (issue 10 item 10) --------------------------------


@pytest.mark.parametrize(
    "behaviour",
    [
        send_then(head(500, Transfer_Encoding="chunked") + b"zz\r\nbroken", "close"),
        send_then(head(400, Transfer_Encoding="chunked") + b"5\r\nab", "close"),
        send_then(head(500, Content_Length="100") + b"{", "reset"),
        send_then(head(400, Content_Length="100"), "reset"),
        send_then(b"SMTP 220 hello\r\n\r\n", "close"),
        send_then(head(200, Content_Length="-5"), "close"),
    ],
    ids=[
        "5xx-chunked-garbage",
        "4xx-chunked-cut",
        "5xx-reset-mid-body",
        "4xx-reset",
        "not-http",
        "negative-length",
    ],
)
@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_broken_answers_are_token_errors(
    scripted: ScriptedServer, behaviour: Any, which: str
) -> None:
    """Broken chunking, resets and non-HTTP answers raise TokenError only (hostile-33)."""
    for _ in range(3):
        scripted.reply_raw(behaviour)
    result = bounded(lambda: CALLS[which](params(scripted), timeout=5.0))
    assert isinstance(result, TokenError), repr(result)


def test_broken_5xx_body_is_retried(scripted: ScriptedServer) -> None:
    """A 5xx whose body breaks is retried like any 5xx."""
    scripted.reply_raw(send_then(head(502, Transfer_Encoding="chunked") + b"zz\r\n", "close"))
    scripted.reply_json(GOOD)
    assert refresh(params(scripted)).access_token == "at-1"
    assert len(scripted.seen) == 2


@pytest.mark.parametrize(
    "value",
    [b"\xb2", "\u1369".encode(), b"9" * 5000, b"-3", b"Wed, 21 Oct 2015 07:28:00 GMT"],
    ids=["superscript-two", "ethiopic-one", "5000-digits", "negative", "http-date"],
)
def test_odd_retry_after_is_ignored(scripted: ScriptedServer, value: bytes) -> None:
    """Retry-After that is not plain ASCII seconds is ignored: backoff as usual."""
    scripted.reply_raw(
        send_then(b"HTTP/1.1 429 X\r\nContent-Length: 0\r\nRetry-After: " + value + b"\r\n\r\n")
    )
    scripted.reply_json(GOOD)
    delays: list[float] = []
    assert refresh(params(scripted), sleep=delays.append).access_token == "at-1"
    assert len(delays) == 1
    assert 0 < delays[0] <= endpoint.MAX_BACKOFF


# -- retries ---------------------------------------------------------------------------


@pytest.mark.parametrize("status", [429, 503, 500])
def test_refresh_retries_transient_failures_with_backoff(
    scripted: ScriptedServer, status: int
) -> None:
    """429/5xx are retried a bounded number of times with growing delays."""
    scripted.reply(status, body="busy")
    scripted.reply(status, body="busy")
    scripted.reply_json(GOOD)
    delays: list[float] = []
    new = refresh(params(scripted), sleep=delays.append)
    assert new.access_token == "at-1"
    assert len(scripted.seen) == 3
    assert len(delays) == 2
    assert 0 < delays[0] < delays[1] <= endpoint.MAX_BACKOFF


@pytest.mark.parametrize(("header", "expected"), [("4", 4.0), ("3600", endpoint.MAX_BACKOFF)])
def test_refresh_honours_retry_after_within_bounds(
    scripted: ScriptedServer, header: str, expected: float
) -> None:
    """429 with Retry-After: wait at least that long, never more than MAX_BACKOFF."""
    scripted.reply(429, body="slow down", Retry_After=header)
    scripted.reply_json(GOOD)
    delays: list[float] = []
    refresh(params(scripted), sleep=delays.append)
    assert delays == [expected]


def test_refresh_gives_up_after_bounded_attempts(scripted: ScriptedServer) -> None:
    """A server that keeps failing is asked REFRESH_ATTEMPTS times, then TokenError."""
    for _ in range(5):
        scripted.reply(503, body="down")
    with pytest.raises(TokenError) as info:
        refresh(params(scripted))
    assert info.value.status == 503
    assert len(scripted.seen) == endpoint.REFRESH_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error"), [(401, "invalid_client"), (400, "invalid_grant"), (400, "invalid_scope")]
)
def test_oauth_errors_are_not_retried(scripted: ScriptedServer, status: int, error: str) -> None:
    """401 invalid_client and other OAuth errors are final: exactly one request."""
    scripted.reply_json({"error": error}, status=status)
    with pytest.raises(TokenError) as info:
        refresh(params(scripted))
    assert info.value.error == error
    assert len(scripted.seen) == 1


def test_refresh_network_error_is_retried_then_reported(scripted: ScriptedServer) -> None:
    """Nobody listening: retried, then a TokenError naming the host (no secret)."""
    delays: list[float] = []
    with pytest.raises(TokenError, match=r"127\.0\.0\.1:9.*connection failed") as info:
        refresh(params(scripted, token_url="http://127.0.0.1:9/token"), sleep=delays.append)
    assert len(delays) == endpoint.REFRESH_ATTEMPTS - 1
    assert "rt-secret" not in str(info.value)


# -- where the bytes go (issue 10 item 13) ---------------------------------------------------


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_plain_http_never_goes_through_a_proxy(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """With http_proxy set and no no_proxy, loopback http still goes direct (hostile-32)."""
    proxy = ScriptedServer().start()
    try:
        for name in ("http_proxy", "HTTP_PROXY", "https_proxy", "all_proxy"):
            monkeypatch.setenv(name, proxy.base)
        monkeypatch.delenv("no_proxy", raising=False)
        monkeypatch.delenv("NO_PROXY", raising=False)
        scripted.reply_json(GOOD)
        CALLS[which](params(scripted))
        assert proxy.seen == []
        assert len(scripted.seen) == 1
    finally:
        proxy.stop()


def test_localhost_resolving_off_the_machine_gets_nothing(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """If "localhost" resolves to another host, no plain-http request is made at all."""
    real = socket.getaddrinfo

    def hostile(host: Any, port: Any, *args: Any, **kw: Any) -> Any:
        if host == "localhost":  # a broken /etc/hosts or resolver
            return real("192.0.2.10", port, *args, **kw)
        return real(host, port, *args, **kw)

    monkeypatch.setattr(socket, "getaddrinfo", hostile)
    local = scripted.base.replace("127.0.0.1", "localhost")
    p = params(scripted, token_url=local + "/token", revocation_url=local + "/revoke")
    for which in ("exchange", "refresh", "revoke"):
        result = bounded(lambda w=which: CALLS[w](p, timeout=5.0))
        assert isinstance(result, TokenError)
        assert "not a loopback address" in str(result)
        assert "192.0.2.10" in str(result)
    assert scripted.seen == []


def test_no_proxy_matching() -> None:
    """no_proxy names, .suffixes, ports and * are honoured for the https proxy."""
    assert httpclient.no_proxy_covers("a.example.com", "example.com")
    assert httpclient.no_proxy_covers("a.example.com", ".example.com")
    assert httpclient.no_proxy_covers("x", "*")
    assert httpclient.no_proxy_covers("host", "other, host:8080")
    assert not httpclient.no_proxy_covers("badexample.com", "example.com")


# -- TLS -------------------------------------------------------------------------------


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_tls_is_verified_and_ssl_cert_file_adds_a_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """An untrusted certificate fails; trusting its CA through SSL_CERT_FILE works."""
    from oauthsmtp.devserver._certs import make_certificates

    certs = make_certificates(tmp_path)
    server = ScriptedServer(tls=certs.server_context()).start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        kw: dict[str, Any] = {"attempts": 1} if which == "refresh" else {}
        with pytest.raises(TokenError, match="could not be verified"):
            CALLS[which](params(server), **kw)
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
        server.reply_json(GOOD)
        result = CALLS[which](params(server))
        assert result is True or result.access_token == "at-1"
        assert len(server.seen) == 1
    finally:
        server.stop()


def test_missing_ssl_cert_file_is_an_error_that_says_so(
    scripted: ScriptedServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """SSL_CERT_FILE naming a missing file is reported, not silently ignored."""
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    p = params(scripted, token_url="https://127.0.0.1:9/token")
    with pytest.raises(TokenError, match=r"SSL_CERT_FILE.*missing\.pem"):
        refresh(p, attempts=1)


# -- logs ------------------------------------------------------------------------------


def test_nothing_secret_is_logged(
    scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs of a full exchange, refresh and revocation hold no secret."""
    caplog.set_level(logging.DEBUG)
    scripted.reply_json(GOOD)
    scripted.reply_json({**GOOD, "access_token": "at-2", "refresh_token": "rt-2"})
    scripted.reply(200)
    p = params(scripted)
    exchange(p)
    refresh(p)
    revoke(p)
    for secret in ("the-code", "v" * 43, "client-secret-xyz", "at-1", "rt-1", "at-2", "rt-2"):
        assert secret not in caplog.text
    assert "rt-secret" not in caplog.text


_NETNS_CHILD = r"""
import json, socket, sys, threading
got = bytearray()
sink = socket.socket(); sink.bind(("10.99.0.1", 8080)); sink.listen(8)
def serve():
    while True:
        conn, _ = sink.accept()
        conn.settimeout(2)
        try:
            while data := conn.recv(65536):
                got.extend(data)
        except OSError:
            pass
        conn.close()
threading.Thread(target=serve, daemon=True).start()
from oauthsmtp import OAuth2Parameters, TokenError
from oauthsmtp._oauth import endpoint
from oauthsmtp._oauth.tokenresponse import TokenState
p = OAuth2Parameters(client_id="cid", client_secret="CLIENT-SECRET", auth_url="https://a.example/",
                     token_url="http://localhost:8080/token",
                     revocation_url="http://localhost:8080/revoke")
errors = []
for call in (
    lambda: endpoint.refresh(p, TokenState("x", refresh_token="SECRET-RT"), attempts=1),
    lambda: endpoint.exchange_code(p, code="SECRET-CODE", code_verifier="V" * 43,
                                   redirect_uri="http://localhost:9000"),
    lambda: endpoint.revoke(p, "SECRET-RT", timeout=3),
):
    try:
        call()
        errors.append("no error")
    except TokenError as exc:
        errors.append(str(exc))
print(json.dumps({"resolved": socket.gethostbyname("localhost"), "errors": errors,
                  "leaked": [s for s in ("SECRET-RT", "CLIENT-SECRET", "SECRET-CODE")
                             if s.encode() in got]}))
"""


def test_http_localhost_that_is_not_on_this_machine_gets_no_secret(tmp_path: Path) -> None:
    """In a network namespace where "localhost" is 10.99.0.1 (not loopback), nothing is sent."""
    unshare = shutil.which("unshare")
    require(
        unshare is not None
        and subprocess.run(["unshare", "-rnm", "true"], capture_output=True, check=False).returncode
        == 0,
        "unshare -rnm (user, network and mount namespaces)",
        "apt-get install util-linux iproute2, and user namespaces enabled",
    )
    hosts = tmp_path / "hosts"
    hosts.write_text("10.99.0.1 localhost\n")
    script = tmp_path / "child.py"
    script.write_text(_NETNS_CHILD)
    command = (
        "ip link set lo up && ip addr add 10.99.0.1/32 dev lo && "
        f"mount --bind {hosts} /etc/hosts && exec {sys.executable} {script}"
    )
    proc = subprocess.run(
        ["unshare", "-rnm", "sh", "-c", command],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["resolved"] == "10.99.0.1"
    assert result["leaked"] == []
    assert len(result["errors"]) == 3
    for message in result["errors"]:
        assert "not a loopback address" in message


class ConnectProxy:
    """A minimal https_proxy: answers CONNECT and pipes bytes both ways (or refuses, 407)."""

    def __init__(self, *, refuse: bool = False) -> None:
        self.heads: list[bytes] = []
        self._refuse = refuse
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(0.2)
        self.port = self._listener.getsockname()[1]
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                client, _ = self._listener.accept()
            except OSError:
                continue
            threading.Thread(target=self._pipe, args=(client,), daemon=True).start()

    def _pipe(self, client: socket.socket) -> None:
        with client:
            client.settimeout(5)
            head = b""
            while b"\r\n\r\n" not in head:
                chunk = client.recv(4096)
                if not chunk:
                    return
                head += chunk
            self.heads.append(head)
            if self._refuse:
                client.sendall(b"HTTP/1.1 407 Proxy Authentication Required\r\n\r\n")
                return
            host, _, port = head.split(b" ")[1].decode().rpartition(":")
            with socket.create_connection((host, int(port)), timeout=5) as upstream:
                client.sendall(b"HTTP/1.1 200 Connection established\r\n\r\n")
                while not self._stop.is_set():
                    ready = select.select([client, upstream], [], [], 0.2)[0]
                    for source in ready:
                        data = source.recv(65536)
                        if not data:
                            return
                        (upstream if source is client else client).sendall(data)

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._listener.close()


@pytest.fixture
def tls_server(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[ScriptedServer]:
    """An https ScriptedServer on localhost whose CA is trusted through SSL_CERT_FILE."""
    from oauthsmtp.devserver._certs import make_certificates

    certs = make_certificates(tmp_path)
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
    for name in ("no_proxy", "NO_PROXY", "https_proxy", "HTTPS_PROXY"):
        monkeypatch.delenv(name, raising=False)
    server = ScriptedServer(tls=certs.server_context()).start()
    yield server
    server.stop()


@pytest.mark.parametrize("which", ["exchange", "refresh", "revoke"])
def test_https_goes_through_https_proxy_as_a_tunnel(
    tls_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch, which: str
) -> None:
    """https_proxy is used through CONNECT (TLS end to end); its credentials are sent to it."""
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("https_proxy", f"http://proxyuser:proxy-pass@127.0.0.1:{proxy.port}")
        tls_server.reply_json(GOOD)
        CALLS[which](params(tls_server))
        assert len(tls_server.seen) == 1
        assert len(proxy.heads) == 1
        assert proxy.heads[0].startswith(
            f"CONNECT localhost:{tls_server.base.rsplit(':', 1)[1]} ".encode()
        )
        assert b"Proxy-Authorization: Basic " in proxy.heads[0]
        assert b"client-secret-xyz" not in proxy.heads[0]
    finally:
        proxy.close()


def test_no_proxy_skips_the_proxy(
    tls_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A host listed in no_proxy is reached directly."""
    proxy = ConnectProxy()
    try:
        monkeypatch.setenv("https_proxy", f"http://127.0.0.1:{proxy.port}")
        monkeypatch.setenv("no_proxy", "example.org,localhost")
        tls_server.reply_json(GOOD)
        refresh(params(tls_server))
        assert proxy.heads == []
        assert len(tls_server.seen) == 1
    finally:
        proxy.close()


def test_proxy_refusal_names_no_password(
    tls_server: ScriptedServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A 407 from the proxy is a TokenError that says so, without the proxy's password."""
    proxy = ConnectProxy(refuse=True)
    try:
        monkeypatch.setenv("https_proxy", f"http://proxyuser:proxy-pass@127.0.0.1:{proxy.port}")
        with pytest.raises(TokenError, match="407") as info:
            refresh(params(tls_server), attempts=1)
        assert "proxy-pass" not in str(info.value)
        assert tls_server.seen == []
    finally:
        proxy.close()
