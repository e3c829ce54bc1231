"""The loopback redirect listener, driven by real HTTP requests (docs/security.md rules 2-12)."""

from __future__ import annotations

import http.client
import logging
import select
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from typing import Any

import pytest
from components import require_program

from oauthsmtp import (
    AccessDenied,
    AuthorizationTimeout,
    CallbackError,
    LoopbackError,
    OAuth2Parameters,
)
from oauthsmtp._oauth.authz import AuthorizationRequest, build_request
from oauthsmtp._oauth.loopback import LoopbackListener

STATE = "state-abcdefghijklmnopqrstuvwxyz0123456789"


def has_ipv6_loopback() -> bool:
    try:
        with socket.socket(socket.AF_INET6, socket.SOCK_STREAM) as s:
            s.bind(("::1", 0))
        return True
    except OSError:
        return False


def params_for(redirect: str) -> OAuth2Parameters:
    return OAuth2Parameters(
        client_id="cid",
        auth_url="https://auth.example.com/authorize",
        token_url="https://auth.example.com/token",
        scope="x",
        redirect_url=redirect,
    )


@dataclass
class Running:
    listener: LoopbackListener
    request: AuthorizationRequest
    thread: threading.Thread
    result: list[Any] = field(default_factory=list)

    @property
    def port(self) -> int:
        return self.listener.port

    def join(self, timeout: float = 10.0) -> Any:
        self.thread.join(timeout)
        assert not self.thread.is_alive(), "the flow did not finish"
        return self.result[0]


@contextmanager
def running(
    redirect: str = "http://127.0.0.1:0/callback",
    *,
    deadline: float = 10.0,
    finish: Callable[[str], Any] | None = None,
) -> Iterator[Running]:
    listener = LoopbackListener(redirect)
    listener.open()
    request = build_request(params_for(redirect), redirect_uri=listener.redirect_uri, state=STATE)
    run = Running(listener, request, threading.Thread(target=lambda: None))

    def target() -> None:
        try:
            run.result.append(
                listener.wait(request, deadline=time.monotonic() + deadline, finish=finish)
            )
        except BaseException as exc:
            run.result.append(exc)

    run.thread = threading.Thread(target=target, daemon=True)
    run.thread.start()
    try:
        yield run
    finally:
        listener.cancel()
        run.thread.join(deadline + 5)
        listener.close()


def get(
    port: int, target: str, method: str = "GET", host: str = "127.0.0.1", **kw: Any
) -> tuple[int, dict[str, str], str]:
    conn = http.client.HTTPConnection(host, port, timeout=10)
    try:
        conn.request(method, target, **kw)
        resp = conn.getresponse()
        body = resp.read().decode()
        return resp.status, {k.lower(): v for k, v in resp.getheaders()}, body
    finally:
        conn.close()


def raw(port: int, data: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as s:
        try:
            s.sendall(data)
            s.shutdown(socket.SHUT_WR)
        except OSError:
            pass  # the server may answer (414, 431) and close before reading everything
        chunks = []
        try:
            while chunk := s.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:
            pass
    return b"".join(chunks)


def test_valid_callback_returns_code_and_closes_port() -> None:
    """A valid redirect completes; the port refuses connections afterwards (rule 5)."""
    with running() as run:
        status, _headers, body = get(run.port, f"/callback?code=the-code&state={STATE}")
        assert run.join() == "the-code"
        assert status == 200
        assert "Login complete" in body
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", run.port), timeout=2).close()


def test_page_is_self_contained_and_uncached() -> None:
    """Callback pages: no-store, no-referrer, no external resources or links (rule 9)."""
    with running() as run:
        _, headers, body = get(run.port, f"/callback?code=c&state={STATE}&next=https://evil")
        run.join()
    assert headers["cache-control"] == "no-store"
    assert headers["referrer-policy"] == "no-referrer"
    assert "location" not in headers
    assert "default-src 'none'" in headers["content-security-policy"]
    for marker in ("src=", "href=", "http://", "https://", "<script", "evil"):
        assert marker not in body


def test_stray_requests_do_not_end_the_flow() -> None:
    """favicon, other paths and methods are answered and ignored (rules 3, 9)."""
    with running() as run:
        assert get(run.port, "/favicon.ico")[0] == 404
        assert get(run.port, f"/other?code=c&state={STATE}")[0] == 404
        status, headers, _ = get(run.port, f"/callback?code=c&state={STATE}", method="POST")
        assert status == 405
        assert headers["allow"] == "GET"
        assert get(run.port, f"/callback?code=c&state={STATE}", method="HEAD")[0] == 405
        assert get(run.port, f"/callback?code=c&state={STATE}", method="OPTIONS")[0] == 405
        assert get(run.port, "/callback")[0] == 400
        assert get(run.port, "/callback?code=c&state=wrong")[0] == 400
        assert run.thread.is_alive()
        assert get(run.port, f"/callback?code=real&state={STATE}")[0] == 200
        assert run.join() == "real"


def test_absolute_form_target_is_not_found() -> None:
    """`GET http://evil/callback` is not our path."""
    with running() as run:
        reply = raw(
            run.port, f"GET http://evil/callback?code=c&state={STATE} HTTP/1.1\r\n\r\n".encode()
        )
        assert reply.startswith(b"HTTP/1.0 404")
        assert run.thread.is_alive()


@pytest.mark.parametrize(
    ("request_bytes", "status"),
    [
        (b"GARBAGE\r\n\r\n", b"400"),
        (b"GET /%FF%FE HTTP/1.1\r\n\r\n", b"404"),
        (b"GET /callback?code=c&state=%FF%FE HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /callback?code=" + b"x" * 100_000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET / HTTP/1.1\r\n" + b"X-A: b\r\n" * 200 + b"\r\n", b"431"),
        (b"\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", b"400"),
        (b"GET //[ HTTP/1.1\r\n\r\n", b"400"),
        (b"GET /callback?" + b"a=1&" * 5000 + b" HTTP/1.1\r\n\r\n", b"414"),
        (b"GET /callback?" + b"a=1&" * 500 + b" HTTP/1.1\r\n\r\n", b"400"),
        (b"\xff\xfe garbage\r\n\r\n", b"400"),
    ],
    ids=[
        "garbage",
        "bad-utf8-path",
        "bad-utf8-state",
        "huge-line",
        "many-headers",
        "tls-hello",
        "unbalanced-bracket",
        "20k-query",
        "500-fields",
        "binary",
    ],
)
def test_malformed_requests_get_an_error_without_ending_the_flow(
    request_bytes: bytes, status: bytes, capfd: pytest.CaptureFixture[str]
) -> None:
    """Malformed or oversized requests: 4xx, no traceback, flow intact (hostile-3, -4)."""
    with running() as run:
        reply = raw(run.port, request_bytes)
        assert reply.split(b"\r\n", 1)[0].split(b" ")[1] == status
        assert run.thread.is_alive()
        assert get(run.port, f"/callback?code=ok&state={STATE}")[0] == 200
        assert run.join() == "ok"
    captured = capfd.readouterr()
    assert "Traceback" not in captured.err


def test_error_description_is_escaped() -> None:
    """error_description is HTML-escaped; error_uri is never a link (rule 10, hostile-5)."""
    with running() as run:
        target = (
            f"/callback?error=access_denied&state={STATE}"
            "&error_description=%3Cscript%3Ealert(1)%3C%2Fscript%3E"
            "&error_uri=javascript%3Aalert(1)"
        )
        status, _, body = get(run.port, target)
        error = run.join()
    assert isinstance(error, AccessDenied)
    assert "<script>" not in body
    assert "&lt;script&gt;" in body
    assert "javascript:" not in body
    assert status == 200


def test_issuer_mismatch_aborts_the_flow() -> None:
    """An iss from another server aborts (rule 4)."""
    with running() as run:
        get(run.port, f"/callback?code=c&state={STATE}&iss=https%3A%2F%2Fevil.example")
        assert isinstance(run.join(), CallbackError)


def test_finish_result_is_shown_to_the_browser() -> None:
    """The browser waits for the exchange and sees its real result."""

    def finish(code: str) -> tuple[int, str, str, bool]:
        assert code == "c"
        return 200, "All good", "saved", True

    with running(finish=finish) as run:
        _, _, body = get(run.port, f"/callback?code=c&state={STATE}")
        assert run.join() == "c"
    assert "All good" in body


def test_finish_failure_is_shown_and_raised() -> None:
    """When the exchange fails, the browser sees the failure and the error propagates."""

    def finish(code: str) -> tuple[int, str, str, bool]:
        raise AccessDenied("the token endpoint said no")

    with running(finish=finish) as run:
        status, _, body = get(run.port, f"/callback?code=c&state={STATE}")
        assert isinstance(run.join(), AccessDenied)
    assert status == 500
    assert "the token endpoint said no" in body


def test_idle_preconnection_does_not_block_the_redirect() -> None:
    """A browser's idle speculative connection does not delay the real request."""
    with running() as run:
        idle = socket.create_connection(("127.0.0.1", run.port), timeout=5)
        try:
            started = time.monotonic()
            assert get(run.port, f"/callback?code=c&state={STATE}")[0] == 200
            assert run.join() == "c"
            assert time.monotonic() - started < 5
        finally:
            idle.close()


def test_timeout_raises_and_closes_the_port() -> None:
    """No answer before the deadline: AuthorizationTimeout naming the ssh hint; port closed."""
    with running(deadline=0.5) as run:
        error = run.join()
        assert isinstance(error, AuthorizationTimeout)
        assert isinstance(error, TimeoutError)
        assert f"ssh -L {run.port}:127.0.0.1:{run.port}" in str(error)
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", run.port), timeout=2).close()


def test_replayed_callback_after_completion_is_refused() -> None:
    """Once the flow is done, a replayed valid callback finds nobody listening."""
    with running() as run:
        target = f"/callback?code=c&state={STATE}"
        get(run.port, target)
        run.join()
        with pytest.raises(ConnectionRefusedError):
            get(run.port, target)


def test_request_line_is_never_logged(
    caplog: pytest.LogCaptureFixture, capfd: pytest.CaptureFixture[str]
) -> None:
    """Neither stderr nor DEBUG logs carry the code or the state (rule 12)."""
    caplog.set_level(logging.DEBUG)
    with running() as run:
        get(run.port, "/callback?code=SECRET-CODE-123&state=wrong-state-xyz")
        get(run.port, f"/callback?code=SECRET-CODE-456&state={STATE}")
        run.join()
    text = caplog.text + "".join(capfd.readouterr())
    assert "SECRET-CODE" not in text
    assert STATE not in text
    assert "wrong-state-xyz" not in text


def test_second_bind_while_listening_fails() -> None:
    """Nobody else can take the port while the flow listens (rule 7)."""
    with running() as run:
        for reuse in (False, True):
            s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            if reuse:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            with s, pytest.raises(OSError, match="in use"):
                s.bind(("127.0.0.1", run.port))


def test_second_login_right_after_the_first_rebinds_the_port() -> None:
    """A TIME_WAIT connection from the first flow does not block the second (rule 7)."""
    with running() as first:
        get(first.port, f"/callback?code=one&state={STATE}")
        assert first.join() == "one"
        port = first.port
    with running(f"http://127.0.0.1:{port}/callback") as second:
        assert second.port == port
        get(port, f"/callback?code=two&state={STATE}")
        assert second.join() == "two"


def test_port_in_use_is_a_clear_error() -> None:
    """A busy port raises LoopbackError naming the port and what to do (hostile-9)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        listener = LoopbackListener(f"http://127.0.0.1:{port}/cb")
        with pytest.raises(LoopbackError) as info:
            listener.open()
    message = str(info.value)
    assert str(port) in message
    assert "already in use" in message
    assert info.value.port == port
    assert isinstance(info.value, OSError)


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_localhost_listens_on_both_loopback_addresses() -> None:
    """localhost means 127.0.0.1 and ::1, on the same port (rule 6)."""
    with running("http://localhost:0/callback") as run:
        hosts = sorted(h for h, _ in run.listener.addresses)
        assert hosts == ["127.0.0.1", "::1"]
        assert len({p for _, p in run.listener.addresses}) == 1
        assert run.listener.redirect_uri == f"http://localhost:{run.port}/callback"
        assert get(run.port, f"/callback?code=v6&state={STATE}", host="::1")[0] == 200
        assert run.join() == "v6"


@pytest.mark.skipif(not has_ipv6_loopback(), reason="this machine has no IPv6 loopback")
def test_localhost_with_ipv6_squatted_fails_before_anything() -> None:
    """Squat [::1]:port: localhost refuses to start rather than half-listen (rule 6)."""
    with socket.socket(socket.AF_INET6) as squatter:
        squatter.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        squatter.bind(("::1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        listener = LoopbackListener(f"http://localhost:{port}")
        with pytest.raises(LoopbackError, match=r"\[::1\]"):
            listener.open()
        # Nothing was left listening on IPv4 either.
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", port), timeout=2).close()


def test_listens_on_loopback_only() -> None:
    """`ss -ltn` shows the port on loopback addresses only, never 0.0.0.0 or :: (rule 5)."""
    require_program("ss", "iproute2")
    with running("http://localhost:0/callback") as run:
        out = subprocess.run(
            ["ss", "-ltnH", f"sport = :{run.port}"], capture_output=True, text=True, check=True
        ).stdout
        local = sorted(line.split()[3] for line in out.splitlines() if line.strip())
        get(run.port, f"/callback?code=c&state={STATE}")
        run.join()
    assert local
    assert all(addr.startswith(("127.0.0.1:", "[::1]:")) for addr in local), local


def test_explicit_redirect_uri_is_kept_verbatim() -> None:
    """With an explicit port the redirect URI is exactly the configured string."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    listener = LoopbackListener(f"http://127.0.0.1:{port}/cb")
    with listener:
        assert listener.redirect_uri == f"http://127.0.0.1:{port}/cb"


# -- hostile local processes and web pages (RFC 8252 §8; issue 10 item 12) -----------------

from oauthsmtp._oauth import loopback  # noqa: E402

_CHILD = """
import resource, sys, time
soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
from oauthsmtp._oauth.authz import AuthorizationRequest
from oauthsmtp._oauth.loopback import LoopbackListener
listener = LoopbackListener("http://127.0.0.1:0/cb")
listener.open()
print(listener.port, flush=True)
request = AuthorizationRequest(
    url="http://x/", redirect_uri=f"http://127.0.0.1:{listener.port}/cb",
    state=sys.argv[1], issuer="https://i.example", code_verifier="v" * 43,
)
try:
    print("code=" + listener.wait(request, deadline=time.monotonic() + 30), flush=True)
except BaseException as exc:
    print("failed:", type(exc).__name__, exc, flush=True)
"""


def hold(port: int, count: int) -> list[socket.socket]:
    """Open ``count`` connections that each send one byte of a request and then nothing."""
    held = []
    for _ in range(count):
        s = socket.create_connection(("127.0.0.1", port), timeout=5)
        s.sendall(b"G")
        held.append(s)
    return held


def test_running_out_of_file_descriptors_does_not_end_the_flow() -> None:
    """150 slow connections, 64 file descriptors: the redirect still lands (hostile-30)."""
    child = subprocess.Popen(
        [sys.executable, "-c", _CHILD, STATE], stdout=subprocess.PIPE, text=True
    )
    held: list[socket.socket] = []
    try:
        assert child.stdout is not None
        port = int(child.stdout.readline())
        held = hold(port, 150)
        status = get(port, f"/cb?code=C&state={STATE}")[0]
        out, _ = child.communicate(timeout=30)
    finally:
        for s in held:
            s.close()
        if child.poll() is None:
            child.kill()
            child.wait(10)
    assert out.strip() == "code=C"
    assert status == 200


def test_a_flood_of_connections_uses_no_thread_per_connection() -> None:
    """MAX_CONNECTIONS + 40 idle connections: no new threads, redirect served (rule 11)."""
    with running() as run:
        before = threading.active_count()
        held = hold(run.port, loopback.MAX_CONNECTIONS + 40)
        try:
            assert threading.active_count() <= before + 1
            assert get(run.port, f"/callback?code=c&state={STATE}")[0] == 200
            assert run.join() == "c"
        finally:
            for s in held:
                s.close()


def test_slow_request_is_cut_off_after_its_total_time(monkeypatch: pytest.MonkeyPatch) -> None:
    """Dripping bytes does not keep a connection: the head has one time limit (rule 11)."""
    monkeypatch.setattr(loopback, "REQUEST_TIMEOUT", 0.5)
    with running() as run, socket.create_connection(("127.0.0.1", run.port), timeout=5) as s:
        closed = False
        for byte in b"GET /callback?" + b"x" * 200:
            try:
                s.sendall(bytes([byte]))
            except OSError:
                closed = True
                break
            ready = select.select([s], [], [], 0.05)[0]
            if ready and s.recv(100) == b"":
                closed = True
                break
        assert closed, "a dripping client kept its connection for 10 s"
        assert get(run.port, f"/callback?code=c&state={STATE}")[0] == 200
        assert run.join() == "c"


@pytest.mark.parametrize(
    ("headers", "status"),
    [
        ({"Host": "evil.example:{port}"}, 421),
        ({"Host": "127.0.0.1:1"}, 421),
        ({"Sec-Fetch-Mode": "cors", "Sec-Fetch-Dest": "empty"}, 403),
        ({"Sec-Fetch-Mode": "no-cors", "Sec-Fetch-Dest": "image"}, 403),
        ({"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "iframe"}, 403),
        ({"Transfer-Encoding": "chunked"}, 400),
    ],
    ids=["dns-rebinding", "other-port", "fetch", "img", "iframe", "transfer-encoding"],
)
def test_requests_only_a_page_would_send_do_not_consume_the_flow(
    headers: dict[str, str], status: int
) -> None:
    """DNS rebinding, fetch()/img/iframe, smuggling: refused, flow intact (hostile-29)."""
    with running() as run:
        sent = {k: v.format(port=run.port) for k, v in headers.items()}
        conn = http.client.HTTPConnection("127.0.0.1", run.port, timeout=10)
        try:
            conn.putrequest("GET", f"/callback?code=stolen&state={STATE}", skip_host="Host" in sent)
            for name, value in sent.items():
                conn.putheader(name, value)
            conn.endheaders()
            resp = conn.getresponse()
            resp.read()
        finally:
            conn.close()
        assert resp.status == status
        assert run.thread.is_alive()
        navigate = {"Sec-Fetch-Mode": "navigate", "Sec-Fetch-Dest": "document"}
        assert get(run.port, f"/callback?code=real&state={STATE}", headers=navigate)[0] == 200
        assert run.join() == "real"


def test_cors_preflight_gets_no_cors_headers() -> None:
    """A page's preflight (and Private Network Access probe) is refused without CORS grants."""
    with running() as run:
        status, headers, _ = get(
            run.port,
            f"/callback?code=c&state={STATE}",
            method="OPTIONS",
            headers={
                "Origin": "https://evil.example",
                "Access-Control-Request-Method": "GET",
                "Access-Control-Request-Private-Network": "true",
            },
        )
        assert status == 405
        assert not [name for name in headers if name.startswith("access-control-")]
        assert run.thread.is_alive()


@pytest.mark.parametrize(
    "request_bytes",
    [
        b"GET /favicon.ico HTTP/1.1\r\n\r\nGET /callback?code=c&state={state} HTTP/1.1\r\n\r\n",
        b"GET /x HTTP/1.1\r\nHost: 127.0.0.1:{port}\r\nHost: evil\r\n\r\n",
        b"GET /x HTTP/1.1\r\nX-A: b\r\n folded: value\r\n\r\n",
    ],
    ids=["pipelined", "duplicate-host", "obs-fold"],
)
def test_smuggling_shapes_are_answered_once_and_closed(request_bytes: bytes) -> None:
    """One request per connection: nothing behind the first head is served (hostile-31)."""
    with running() as run:
        data = request_bytes.replace(b"{state}", STATE.encode()).replace(
            b"{port}", str(run.port).encode()
        )
        reply = raw(run.port, data)
        assert reply.count(b"HTTP/1.0 ") == 1
        assert not reply.startswith(b"HTTP/1.0 200")
        assert run.thread.is_alive()
        assert get(run.port, f"/callback?code=ok&state={STATE}")[0] == 200
        assert run.join() == "ok"
