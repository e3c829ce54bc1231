"""The token and revocation endpoints, with answers no real server gives.

The code exchange and revocation go through requests, mocked with `responses`;
the refresh goes through the standard library and is tested against a scripted
HTTP server on loopback (tests/scripted_http.py).
"""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs

import pytest
import requests
import responses
from scripted_http import ScriptedServer

from oauthsmtp import OAuth2Parameters, TokenError
from oauthsmtp._oauth import endpoint as _endpoint
from oauthsmtp._oauth.tokenresponse import TokenState

TOKEN_URL = "https://auth.example.com/token"
REVOKE_URL = "https://auth.example.com/revoke"
GOOD = {"access_token": "at-1", "token_type": "Bearer", "expires_in": 3600, "refresh_token": "rt-1"}


def params(secret: str | None = "client-secret-xyz", **kw: object) -> OAuth2Parameters:
    values: dict[str, object] = {
        "client_id": "client-1",
        "client_secret": secret,
        "auth_url": "https://auth.example.com/authorize",
        "token_url": TOKEN_URL,
        "scope": "https://mail.google.com/",
        "redirect_url": "http://localhost:9000/cb",
        "revocation_url": REVOKE_URL,
    }
    values.update(kw)
    return OAuth2Parameters(**values)  # type: ignore[arg-type]


@pytest.fixture
def mocked() -> Iterator[responses.RequestsMock]:
    with responses.RequestsMock(assert_all_requests_are_fired=False) as rsps:
        yield rsps


def form(call: responses.Call) -> dict[str, list[str]]:
    body = call.request.body
    assert body is not None
    text = body if isinstance(body, str) else body.decode()
    return parse_qs(text, keep_blank_values=True, strict_parsing=True)


def exchange(p: OAuth2Parameters | None = None) -> TokenState:
    return _endpoint.exchange_code(
        p or params(),
        code="the-code",
        code_verifier="v" * 43,
        redirect_uri="http://localhost:9000/cb",
    )


def test_exchange_sends_code_verifier_and_identical_redirect_uri(
    mocked: responses.RequestsMock,
) -> None:
    """The token request repeats redirect_uri byte-for-byte and carries the verifier (rule 3)."""
    mocked.post(TOKEN_URL, json=GOOD)
    state = exchange()
    sent = form(mocked.calls[0])
    assert sent["grant_type"] == ["authorization_code"]
    assert sent["code"] == ["the-code"]
    assert sent["code_verifier"] == ["v" * 43]
    assert sent["redirect_uri"] == ["http://localhost:9000/cb"]
    assert sent["client_id"] == ["client-1"]
    assert sent["client_secret"] == ["client-secret-xyz"]
    assert state.access_token == "at-1"
    assert mocked.calls[0].request.headers["Accept"] == "application/json"


def test_public_client_sends_no_secret(mocked: responses.RequestsMock) -> None:
    """A public client (Microsoft desktop) sends client_id and no secret at all."""
    mocked.post(TOKEN_URL, json=GOOD)
    exchange(params(secret=None))
    sent = form(mocked.calls[0])
    assert sent["client_id"] == ["client-1"]
    assert "client_secret" not in sent
    assert "Authorization" not in mocked.calls[0].request.headers


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"body": "<html>Please log in to the Wi-Fi</html>", "content_type": "text/html"}, "JSON"),
        ({"body": "[]"}, "JSON object"),
        ({"body": "null"}, "JSON object"),
        ({"json": {"access_token": "a", "token_type": "mac"}}, "Bearer"),
        ({"json": {"token_type": "Bearer"}}, "access_token"),
        ({"status": 302, "headers": {"Location": "https://evil.example/token"}}, "redirect"),
        ({"status": 500, "body": "oops"}, "500"),
    ],
    ids=["html", "array", "null", "mac", "no-access-token", "redirect", "500"],
)
def test_unusable_answers(
    mocked: responses.RequestsMock, kwargs: dict[str, object], needle: str
) -> None:
    """Odd answers become TokenError, never a token; redirects are not followed (rule 13)."""
    mocked.post(TOKEN_URL, **kwargs)  # type: ignore[arg-type]
    mocked.post("https://evil.example/token", json=GOOD)
    with pytest.raises(TokenError, match=needle):
        exchange()
    assert [c.request.url for c in mocked.calls] == [TOKEN_URL]


def test_error_body_becomes_token_error_without_secrets(mocked: responses.RequestsMock) -> None:
    """RFC 6749 §5.2 errors carry error/description; no secret in the message."""
    mocked.post(
        TOKEN_URL,
        status=400,
        json={"error": "invalid_grant", "error_description": "Bad Request"},
    )
    with pytest.raises(TokenError) as info:
        exchange()
    assert info.value.error == "invalid_grant"
    assert info.value.status == 400
    for secret in ("the-code", "v" * 43, "client-secret-xyz"):
        assert secret not in str(info.value)


def test_huge_body_is_capped(mocked: responses.RequestsMock) -> None:
    """A 10 MB answer is refused after reading about 1 MB (part (c) 14)."""
    mocked.post(TOKEN_URL, body=b"{" + b" " * (10 * 1024 * 1024))
    with pytest.raises(TokenError, match="more than"):
        exchange()


def test_network_error_names_the_host_only(mocked: responses.RequestsMock) -> None:
    """A connection failure says which host, not the request body."""
    mocked.post(TOKEN_URL, body=requests.exceptions.ConnectionError("boom"))
    with pytest.raises(TokenError, match=r"auth\.example\.com.*connection failed"):
        exchange()


def refresh_params(server: ScriptedServer, **kw: object) -> OAuth2Parameters:
    return params(token_url=server.url(), **kw)


def test_refresh_keeps_old_refresh_token_and_sends_scope(scripted: ScriptedServer) -> None:
    """No refresh_token in the answer: the old one is kept (Google); scope and client sent."""
    scripted.reply_json({"access_token": "at-2", "token_type": "Bearer", "expires_in": 60})
    old = TokenState(access_token="at-1", refresh_token="rt-1")
    new = _endpoint.refresh(refresh_params(scripted), old)
    assert new.access_token == "at-2"
    assert new.refresh_token == "rt-1"
    sent = scripted.seen[0].form
    assert sent["grant_type"] == ["refresh_token"]
    assert sent["refresh_token"] == ["rt-1"]
    assert sent["scope"] == ["https://mail.google.com/"]
    assert sent["client_id"] == ["client-1"]
    assert sent["client_secret"] == ["client-secret-xyz"]
    assert scripted.seen[0].headers["Accept"] == "application/json"


def test_public_client_refresh_sends_no_secret(scripted: ScriptedServer) -> None:
    """A public client refreshes with client_id only."""
    scripted.reply_json(GOOD)
    _endpoint.refresh(refresh_params(scripted, secret=None), TokenState("a", refresh_token="r"))
    assert "client_secret" not in scripted.seen[0].form
    assert "Authorization" not in scripted.seen[0].headers


def test_refresh_rotation_replaces_refresh_token(scripted: ScriptedServer) -> None:
    """A new refresh token replaces the old one (RFC 6749 §6)."""
    scripted.reply_json({**GOOD, "refresh_token": "rt-2"})
    new = _endpoint.refresh(refresh_params(scripted), TokenState("at-1", refresh_token="rt-1"))
    assert new.refresh_token == "rt-2"


def test_refresh_with_empty_refresh_token_is_an_error(scripted: ScriptedServer) -> None:
    """An empty refresh_token is malformed, not 'none'."""
    scripted.reply_json({**GOOD, "refresh_token": ""})
    with pytest.raises(TokenError, match="refresh_token"):
        _endpoint.refresh(refresh_params(scripted), TokenState("a", refresh_token="rt-1"))


@pytest.mark.parametrize(
    ("kwargs", "needle"),
    [
        ({"body": "<html>Wi-Fi login</html>", "Content_Type": "text/html"}, "JSON object"),
        ({"status": 302, "Location": "https://evil.example/token"}, "redirect"),
        ({"body": "{" + " " * (2 * 1024 * 1024)}, "more than"),
    ],
    ids=["html", "redirect", "huge"],
)
def test_refresh_refuses_odd_answers(
    scripted: ScriptedServer, kwargs: dict[str, Any], needle: str
) -> None:
    """The refresh path is as strict as the exchange: no redirects, capped, JSON only."""
    status = kwargs.pop("status", 200)
    scripted.reply(status, **kwargs)
    with pytest.raises(TokenError, match=needle):
        _endpoint.refresh(refresh_params(scripted), TokenState("a", refresh_token="r"), attempts=1)
    assert len(scripted.seen) == 1


@pytest.mark.parametrize("status", [429, 503, 500])
def test_refresh_retries_transient_failures_with_backoff(
    scripted: ScriptedServer, status: int
) -> None:
    """429/5xx are retried a bounded number of times with growing delays (part (c) 15)."""
    scripted.reply(status, body="busy")
    scripted.reply(status, body="busy")
    scripted.reply_json(GOOD)
    delays: list[float] = []
    new = _endpoint.refresh(
        refresh_params(scripted), TokenState("a", refresh_token="r"), sleep=delays.append
    )
    assert new.access_token == "at-1"
    assert len(scripted.seen) == 3
    assert len(delays) == 2
    assert 0 < delays[0] < delays[1] <= _endpoint.MAX_BACKOFF


@pytest.mark.parametrize(("header", "expected"), [("4", 4.0), ("3600", _endpoint.MAX_BACKOFF)])
def test_refresh_honours_retry_after_within_bounds(
    scripted: ScriptedServer, header: str, expected: float
) -> None:
    """429 with Retry-After: wait at least that long, never more than MAX_BACKOFF."""
    scripted.reply(429, body="slow down", Retry_After=header)
    scripted.reply_json(GOOD)
    delays: list[float] = []
    _endpoint.refresh(
        refresh_params(scripted), TokenState("a", refresh_token="r"), sleep=delays.append
    )
    assert delays == [expected]


def test_refresh_gives_up_after_bounded_attempts(scripted: ScriptedServer) -> None:
    """A server that keeps failing is asked REFRESH_ATTEMPTS times, then TokenError."""
    for _ in range(5):
        scripted.reply(503, body="down")
    delays: list[float] = []
    with pytest.raises(TokenError) as info:
        _endpoint.refresh(
            refresh_params(scripted), TokenState("a", refresh_token="r"), sleep=delays.append
        )
    assert info.value.status == 503
    assert len(scripted.seen) == _endpoint.REFRESH_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error"), [(401, "invalid_client"), (400, "invalid_grant"), (400, "invalid_scope")]
)
def test_oauth_errors_are_not_retried(scripted: ScriptedServer, status: int, error: str) -> None:
    """401 invalid_client and other OAuth errors are final: exactly one request."""
    scripted.reply_json({"error": error}, status=status)
    with pytest.raises(TokenError) as info:
        _endpoint.refresh(
            refresh_params(scripted), TokenState("a", refresh_token="r"), sleep=lambda _: None
        )
    assert info.value.error == error
    assert len(scripted.seen) == 1


def test_refresh_network_error_is_retried_then_reported() -> None:
    """Nobody listening: retried, then a TokenError naming the host (no secret)."""
    delays: list[float] = []
    with pytest.raises(TokenError, match=r"127\.0\.0\.1:9.*connection failed") as info:
        _endpoint.refresh(
            params(token_url="http://127.0.0.1:9/token"),
            TokenState("a", refresh_token="rt-secret"),
            sleep=delays.append,
        )
    assert len(delays) == _endpoint.REFRESH_ATTEMPTS - 1
    assert "rt-secret" not in str(info.value)


def test_refresh_verifies_tls_and_honours_ssl_cert_file(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted certificate fails; trusting its CA through SSL_CERT_FILE works."""
    from oauthsmtp.devserver._certs import make_certificates

    certs = make_certificates(tmp_path)
    server = ScriptedServer(tls=certs.server_context()).start()
    try:
        state = TokenState("a", refresh_token="r")
        with pytest.raises(TokenError, match="could not be verified"):
            _endpoint.refresh(params(token_url=server.url()), state, attempts=1)
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
        server.reply_json(GOOD)
        assert _endpoint.refresh(params(token_url=server.url()), state).access_token == "at-1"
    finally:
        server.stop()


def test_revocation_sends_token_and_hint(mocked: responses.RequestsMock) -> None:
    """RFC 7009 §2.1: token and token_type_hint=refresh_token."""
    mocked.post(REVOKE_URL, status=200)
    assert _endpoint.revoke(params(), "rt-1") is True
    sent = form(mocked.calls[0])
    assert sent["token"] == ["rt-1"]
    assert sent["token_type_hint"] == ["refresh_token"]


def test_revocation_503_means_retry_later(mocked: responses.RequestsMock) -> None:
    """RFC 7009 §2.2.1: 503 is 'try again later'."""
    mocked.post(REVOKE_URL, status=503)
    with pytest.raises(TokenError, match="try again later"):
        _endpoint.revoke(params(), "rt-1")


def test_no_revocation_url_means_nothing_to_call() -> None:
    """Providers without RFC 7009 (Microsoft) are not called."""
    assert _endpoint.revoke(params(revocation_url=None), "rt-1") is False


def test_slow_endpoint_times_out(monkeypatch: pytest.MonkeyPatch) -> None:
    """A token endpoint that never answers hits the read timeout (part (c) 14)."""
    monkeypatch.setattr(_endpoint, "READ_TIMEOUT", 0.3)
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    port = server.getsockname()[1]
    held: list[socket.socket] = []

    def accept() -> None:
        conn, _ = server.accept()
        held.append(conn)  # read nothing, answer nothing

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    try:
        with pytest.raises(TokenError, match="timed out"):
            exchange(params(token_url=f"http://127.0.0.1:{port}/token"))
    finally:
        thread.join(5)
        for conn in held:
            conn.close()
        server.close()


def test_nothing_secret_is_logged(
    mocked: responses.RequestsMock, scripted: ScriptedServer, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs of a full exchange and refresh hold no code, verifier, token or secret."""
    caplog.set_level(logging.DEBUG)
    mocked.post(TOKEN_URL, json=GOOD)
    state = exchange()
    mocked.add_passthru(scripted.base)
    scripted.reply_json({**GOOD, "access_token": "at-2", "refresh_token": "rt-2"})
    _endpoint.refresh(refresh_params(scripted), state)
    for secret in ("the-code", "v" * 43, "client-secret-xyz", "at-1", "rt-1", "at-2", "rt-2"):
        assert secret not in caplog.text
    assert json.dumps(GOOD) not in caplog.text
