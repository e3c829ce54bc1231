"""auth_identify end to end against the development authorization server.

The browser is tests/fake_browser.py (via BROWSER), which follows the
authorization URL the way a browser does; the authorization server is the
project's own (authlib server-side grants) on loopback.
"""

from __future__ import annotations

import base64
import json
import re
import socket
import threading
import time
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from conftest import FakeBrowser

import oauthsmtp
from oauthsmtp import (
    AccessDenied,
    AuthorizationTimeout,
    CallbackError,
    LoginRequired,
    LoopbackError,
    MemoryStore,
)
from oauthsmtp.devserver import AuthServer

REDIRECT = "http://127.0.0.1:0/callback"


def login(server: AuthServer, store: Any = None, **kwargs: Any) -> oauthsmtp.AuthToken:
    client = server.register_client()
    params = server.parameters(client, redirect_url=kwargs.pop("redirect_url", REDIRECT))
    return oauthsmtp.auth_identify(
        params, store=store if store is not None else MemoryStore(), timeout=20, **kwargs
    )


def test_login_returns_a_usable_token(auth_server: AuthServer, fake_browser: FakeBrowser) -> None:
    """The whole flow: browser, consent, redirect, code exchange, token."""
    token = login(auth_server, account="user@example.test")
    assert token.valid
    assert token.refresh_token
    assert token.expires_at is not None
    assert token.expires_at.tzinfo is not None
    assert auth_server.scope in token.scope
    assert auth_server.validate_access_token(token.access_token) is not None
    assert auth_server.token_requests == 1
    seen = fake_browser.result()
    assert seen["status"] == 200
    assert "Login complete" in seen["body"]
    assert seen["favicon"] == 404  # a stray request did not end the flow


def test_authorization_url_has_pkce_state_and_verbatim_redirect(
    auth_server: AuthServer, fake_browser: FakeBrowser
) -> None:
    """The URL the browser opened carries S256, a state and the redirect URI as configured."""
    login(auth_server)
    opened = fake_browser.result()["opened"]
    assert "code_challenge_method=S256" in opened
    assert re.search(r"[?&]state=[A-Za-z0-9_-]{43}(&|$)", opened)
    assert "redirect_uri=http%3A%2F%2F127.0.0.1%3A" in opened


def test_second_login_on_the_same_port_right_after(
    auth_server: AuthServer, fake_browser: FakeBrowser
) -> None:
    """Two logins in a row on one fixed port both work (TIME_WAIT does not block)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    redirect = f"http://127.0.0.1:{port}/cb"
    store = MemoryStore()
    first = login(auth_server, store, account="a@example.test", redirect_url=redirect)
    fake_browser.reset()
    second = login(auth_server, store, account="a@example.test", redirect_url=redirect, force=True)
    assert first.state.access_token != second.state.access_token
    assert auth_server.token_requests == 2


def test_cached_token_needs_no_browser(auth_server: AuthServer, fake_browser: FakeBrowser) -> None:
    """With a token in the store, auth_identify returns it without a browser or request."""
    store = MemoryStore()
    client = auth_server.register_client()
    params = auth_server.parameters(client, redirect_url=REDIRECT)
    first = oauthsmtp.auth_identify(params, account="me@example.test", store=store, timeout=20)
    fake_browser.reset()
    again = oauthsmtp.auth_identify(
        params, account="me@example.test", store=store, interactive=False
    )
    assert again.state.access_token == first.state.access_token
    assert not fake_browser.opened
    assert auth_server.token_requests == 1


def test_non_interactive_without_token_raises_login_required(auth_server: AuthServer) -> None:
    """interactive=False never opens a browser: LoginRequired names the account and command."""
    client = auth_server.register_client()
    params = auth_server.parameters(client, redirect_url=REDIRECT)
    with pytest.raises(LoginRequired) as info:
        oauthsmtp.auth_identify(
            params, account="x@example.test", store=MemoryStore(), interactive=False
        )
    assert info.value.account == "x@example.test"
    assert "oauthsmtp login --account x@example.test" in str(info.value)


def test_denied_consent_raises_access_denied_and_requests_no_token(
    fake_browser: FakeBrowser,
) -> None:
    """error=access_denied: AccessDenied with the provider's words; 0 token requests (rule 10)."""
    with AuthServer(mode="deny") as server:
        with pytest.raises(AccessDenied) as info:
            login(server)
        assert server.token_requests == 0
    assert info.value.error == "access_denied"
    assert "access_denied" in str(info.value)
    assert "Login failed" in fake_browser.result()["body"]


def test_issuer_mismatch_aborts_before_any_token_request(
    auth_server: AuthServer, fake_browser: FakeBrowser
) -> None:
    """The server sends iss; a client expecting another issuer aborts (rule 4)."""
    client = auth_server.register_client()
    params = auth_server.parameters(
        client, redirect_url=REDIRECT, issuer="https://accounts.google.com"
    )
    with pytest.raises(CallbackError, match="issuer"):
        oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=20)
    assert auth_server.token_requests == 0


def test_port_in_use_fails_before_the_browser_opens(
    auth_server: AuthServer, fake_browser: FakeBrowser
) -> None:
    """A busy redirect port: LoopbackError naming it, and no browser (hostile-9)."""
    with socket.socket() as squatter:
        squatter.bind(("127.0.0.1", 0))
        squatter.listen()
        port = squatter.getsockname()[1]
        with pytest.raises(LoopbackError, match=str(port)):
            login(auth_server, redirect_url=f"http://127.0.0.1:{port}/cb")
    time.sleep(0.2)
    assert not fake_browser.opened
    assert auth_server.token_requests == 0


def test_timeout_gives_a_clear_error(
    auth_server: AuthServer, fake_browser: FakeBrowser, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nobody approves: AuthorizationTimeout after `timeout` seconds, port closed."""
    monkeypatch.setenv("FAKE_BROWSER_MODE", "record")
    client = auth_server.register_client()
    params = auth_server.parameters(client, redirect_url=REDIRECT)
    started = time.monotonic()
    with pytest.raises(AuthorizationTimeout, match="ssh -L"):
        oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=1)
    assert time.monotonic() - started < 5
    assert auth_server.token_requests == 0


def test_no_browser_prints_the_url_and_ssh_hint(
    auth_server: AuthServer, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    """open_browser=False prints the URL and the ssh -L hint to stderr, nothing to stdout."""
    monkeypatch.delenv("BROWSER", raising=False)
    client = auth_server.register_client()
    params = auth_server.parameters(client, redirect_url=REDIRECT)
    result: list[Any] = []
    thread = threading.Thread(
        target=lambda: result.append(
            oauthsmtp.auth_identify(params, store=MemoryStore(), open_browser=False, timeout=20)
        )
    )
    thread.start()
    err = ""
    for _ in range(200):
        out, chunk = capsys.readouterr()
        assert out == ""
        err += chunk
        if "Waiting up to" in err:
            break
        time.sleep(0.02)
    url = re.search(r"^  (http://\S+)$", err, re.M)
    assert url is not None, err
    assert re.search(r"ssh -L (\d+):127\.0\.0\.1:\1 ", err)
    with requests.get(url.group(1), timeout=10) as resp:  # we are the browser now
        assert resp.status_code == 200
    thread.join(20)
    assert result
    assert result[0].valid
    assert capsys.readouterr().out == ""


def test_secrets_do_not_reach_output_or_logs(
    auth_server: AuthServer,
    fake_browser: FakeBrowser,
    capfd: pytest.CaptureFixture[str],
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A full login writes no token, code, verifier or secret to stderr/stdout/logs (rule 12)."""
    import logging

    caplog.set_level(logging.DEBUG)
    client = auth_server.register_client()
    params = auth_server.parameters(client, redirect_url=REDIRECT)
    token = oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=20)
    captured = "".join(capfd.readouterr()) + caplog.text + repr(token) + repr(params)
    assert token.state.access_token not in captured
    assert token.refresh_token is not None
    assert token.refresh_token not in captured
    assert client.client_secret is not None
    assert client.client_secret not in captured
    assert "code=" not in captured.replace("code_challenge", "")


def test_s256_refusal_is_final_never_plain(fake_browser: FakeBrowser) -> None:
    """A server that refuses S256 ends the login; oauthsmtp never retries with plain (rule 1)."""
    import http.server
    from urllib.parse import parse_qs, urlencode, urlsplit

    seen: list[dict[str, list[str]]] = []

    class RefusesS256(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlsplit(self.path).query)
            seen.append(query)
            back = urlencode(
                {
                    "error": "invalid_request",
                    "error_description": "transform algorithm not supported",
                    "state": query["state"][0],
                }
            )
            self.send_response(302)
            self.send_header("Location", f"{query['redirect_uri'][0]}?{back}")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), RefusesS256)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        base = f"http://127.0.0.1:{server.server_address[1]}"
        params = oauthsmtp.OAuth2Parameters(
            client_id="cid",
            auth_url=f"{base}/authorize",
            token_url=f"{base}/token",
            scope="x",
            redirect_url=REDIRECT,
        )
        with pytest.raises(oauthsmtp.AuthorizationError) as info:
            oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=20)
    finally:
        server.shutdown()
        server.server_close()
    assert info.value.error == "invalid_request"
    assert len(seen) == 1
    assert seen[0]["code_challenge_method"] == ["S256"]


def test_missing_mail_scope_fails_before_smtp() -> None:
    """A login that asked for the mail scope but was not granted it fails (rule 17)."""
    from oauthsmtp._oauth.browser import check_granted_scope
    from oauthsmtp._oauth.tokenresponse import TokenState

    params = oauthsmtp.providers.gmail(client_id="id", client_secret="s")
    granted_less = TokenState(access_token="a", scope=("openid", "email"))
    with pytest.raises(oauthsmtp.AuthorizationError) as info:
        check_granted_scope(params, granted_less)
    assert info.value.error == "insufficient_scope"
    assert "https://mail.google.com/" in str(info.value)
    check_granted_scope(params, TokenState(access_token="a", scope=("https://mail.google.com/",)))


def test_open_browser_accepts_an_opener(auth_server: AuthServer) -> None:
    """open_browser may be a callable that opens the URL instead of webbrowser."""
    opened: list[str] = []

    def opener(url: str) -> bool:
        opened.append(url)
        threading.Thread(target=lambda: requests.get(url, timeout=10).close()).start()
        return True

    client = auth_server.register_client()
    params = auth_server.parameters(client, redirect_url=REDIRECT)
    token = oauthsmtp.auth_identify(params, store=MemoryStore(), open_browser=opener, timeout=20)
    assert token.valid
    assert len(opened) == 1
    assert opened[0].startswith(auth_server.authorization_endpoint)


@pytest.mark.parametrize(
    "timeout",
    [float("nan"), float("inf"), 1e309, -1, 0, True, "300", 10**9],
    ids=["nan", "inf", "1e309", "negative", "zero", "bool", "text", "huge"],
)
def test_unusable_login_timeouts_are_configuration_errors(timeout: object) -> None:
    """nan/inf/1e309/negative timeouts are refused before anything starts (issue 10 item 14)."""
    from oauthsmtp._oauth.browser import browser_login

    params = oauthsmtp.providers.gmail(client_id="id", client_secret="s", redirect_url=REDIRECT)
    with pytest.raises(oauthsmtp.ConfigurationError, match="timeout"):
        oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=timeout)  # type: ignore[arg-type]
    with pytest.raises(oauthsmtp.ConfigurationError, match="timeout"):
        browser_login(params, timeout=timeout, opener=lambda url: pytest.fail("browser opened"))  # type: ignore[arg-type]


def id_token(**claims: object) -> str:
    def part(data: object) -> str:
        return base64.urlsafe_b64encode(json.dumps(data).encode()).rstrip(b"=").decode()

    return f"{part({'alg': 'RS256'})}.{part(claims)}.c2ln"


def provider_redirect(url: str) -> bool:
    """Play the provider: send the browser straight back with a code and the state."""
    query = parse_qs(urlsplit(url).query)
    target = f"{query['redirect_uri'][0]}?code=C0DE&state={query['state'][0]}"
    threading.Thread(target=lambda: requests.get(target, timeout=10).close()).start()
    return True


@pytest.mark.parametrize(
    ("claims", "mismatch"),
    [
        ({"email": "other@example.com", "aud": "cid"}, True),
        ({"preferred_username": "Me@Example.com", "aud": "cid"}, False),
        ({"email": "other@example.com", "upn": "me@example.com", "aud": ["cid"]}, False),
        ({"email": "other@example.com", "aud": "another-client"}, False),
        ({"sub": "1234"}, False),
    ],
    ids=["other-account", "same-account-case", "upn-matches", "not-our-audience", "no-identity"],
)
def test_logging_in_to_another_account_is_refused_and_saves_nothing(
    scripted: Any, claims: dict[str, object], mismatch: bool
) -> None:
    """The id_token names who logged in: another account than account= is an AccountMismatch."""
    scripted.reply_json(
        {
            "access_token": "at",
            "token_type": "Bearer",
            "expires_in": 3600,
            "refresh_token": "rt",
            "id_token": id_token(**claims),
        }
    )
    params = oauthsmtp.OAuth2Parameters(
        client_id="cid",
        auth_url="https://auth.example.com/authorize",
        token_url=scripted.url("/token"),
        scope="openid email",
        redirect_url=REDIRECT,
    )
    store = MemoryStore()
    call = lambda: oauthsmtp.auth_identify(  # noqa: E731
        params, account="me@example.com", store=store, open_browser=provider_redirect, timeout=20
    )
    if not mismatch:
        assert call().access_token == "at"
        return
    with pytest.raises(oauthsmtp.AccountMismatch) as info:
        call()
    assert isinstance(info.value, oauthsmtp.AuthorizationError)
    assert info.value.expected == "me@example.com"
    assert info.value.actual == "other@example.com"
    assert "me@example.com" in str(info.value)
    assert "other@example.com" in str(info.value)
    with pytest.raises(LoginRequired):
        oauthsmtp.auth_identify(params, account="me@example.com", store=store, interactive=False)
