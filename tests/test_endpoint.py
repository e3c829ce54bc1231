"""The token and revocation endpoints, with answers no real server gives (`responses`)."""

from __future__ import annotations

import json
import logging
import socket
import threading
from collections.abc import Iterator
from urllib.parse import parse_qs

import pytest
import requests
import responses

from oauthsmtp import OAuth2Parameters, TokenError, _endpoint
from oauthsmtp._token import TokenState

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


def test_refresh_keeps_old_refresh_token_and_sends_scope(mocked: responses.RequestsMock) -> None:
    """No refresh_token in the answer: the old one is kept (Google); scope is sent."""
    mocked.post(TOKEN_URL, json={"access_token": "at-2", "token_type": "Bearer", "expires_in": 60})
    old = TokenState(access_token="at-1", refresh_token="rt-1")
    new = _endpoint.refresh(params(), old)
    assert new.access_token == "at-2"
    assert new.refresh_token == "rt-1"
    sent = form(mocked.calls[0])
    assert sent["grant_type"] == ["refresh_token"]
    assert sent["refresh_token"] == ["rt-1"]
    assert sent["scope"] == ["https://mail.google.com/"]


def test_refresh_rotation_replaces_refresh_token(mocked: responses.RequestsMock) -> None:
    """A new refresh token replaces the old one (RFC 6749 §6)."""
    mocked.post(TOKEN_URL, json={**GOOD, "refresh_token": "rt-2"})
    new = _endpoint.refresh(params(), TokenState(access_token="at-1", refresh_token="rt-1"))
    assert new.refresh_token == "rt-2"


def test_refresh_with_empty_refresh_token_is_an_error(mocked: responses.RequestsMock) -> None:
    """An empty refresh_token is malformed, not 'none'."""
    mocked.post(TOKEN_URL, json={**GOOD, "refresh_token": ""})
    with pytest.raises(TokenError, match="refresh_token"):
        _endpoint.refresh(params(), TokenState(access_token="a", refresh_token="rt-1"))


@pytest.mark.parametrize("status", [429, 503, 500])
def test_refresh_retries_transient_failures_with_backoff(
    mocked: responses.RequestsMock, status: int
) -> None:
    """429/5xx are retried a bounded number of times with growing delays (part (c) 15)."""
    mocked.post(TOKEN_URL, status=status, body="busy", headers={"Retry-After": "1"})
    mocked.post(TOKEN_URL, status=status, body="busy")
    mocked.post(TOKEN_URL, json=GOOD)
    delays: list[float] = []
    new = _endpoint.refresh(
        params(), TokenState(access_token="a", refresh_token="r"), sleep=delays.append
    )
    assert new.access_token == "at-1"
    assert len(mocked.calls) == 3
    assert len(delays) == 2
    assert 0 < delays[0] < delays[1] <= _endpoint.MAX_BACKOFF


def test_refresh_gives_up_after_bounded_attempts(mocked: responses.RequestsMock) -> None:
    """A server that keeps failing is asked REFRESH_ATTEMPTS times, then TokenError."""
    mocked.post(TOKEN_URL, status=503, body="down")
    delays: list[float] = []
    with pytest.raises(TokenError) as info:
        _endpoint.refresh(
            params(), TokenState(access_token="a", refresh_token="r"), sleep=delays.append
        )
    assert info.value.status == 503
    assert len(mocked.calls) == _endpoint.REFRESH_ATTEMPTS


@pytest.mark.parametrize(
    ("status", "error"), [(401, "invalid_client"), (400, "invalid_grant"), (400, "invalid_scope")]
)
def test_oauth_errors_are_not_retried(
    mocked: responses.RequestsMock, status: int, error: str
) -> None:
    """401 invalid_client and other OAuth errors are final: exactly one request."""
    mocked.post(TOKEN_URL, status=status, json={"error": error})
    with pytest.raises(TokenError) as info:
        _endpoint.refresh(
            params(), TokenState(access_token="a", refresh_token="r"), sleep=lambda _: None
        )
    assert info.value.error == error
    assert len(mocked.calls) == 1


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
    mocked: responses.RequestsMock, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs of a full exchange and refresh hold no code, verifier, token or secret."""
    caplog.set_level(logging.DEBUG)
    mocked.post(TOKEN_URL, json=GOOD)
    state = exchange()
    mocked.post(TOKEN_URL, json={**GOOD, "access_token": "at-2", "refresh_token": "rt-2"})
    _endpoint.refresh(params(), state)
    for secret in ("the-code", "v" * 43, "client-secret-xyz", "at-1", "rt-1", "at-2", "rt-2"):
        assert secret not in caplog.text
    assert json.dumps(GOOD) not in caplog.text
