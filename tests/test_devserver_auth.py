"""The development authorization server (oauthsmtp.devserver.AuthServer), over real HTTP."""

from __future__ import annotations

import base64
import hashlib
import html
import logging
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import requests
from authlib.oauth2.rfc8414 import AuthorizationServerMetadata

from oauthsmtp import OAuth2Parameters
from oauthsmtp.devserver import AuthServer, DevClient, TokenInfo

REDIRECT = "http://127.0.0.1:9000/callback"
TIMEOUT = 10


# --------------------------------------------------------------------------- helpers


def _verifier() -> str:
    return base64.urlsafe_b64encode(secrets.token_bytes(32)).rstrip(b"=").decode()


def _challenge(verifier: str) -> str:
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def _authorize(
    server: AuthServer,
    client: DevClient,
    *,
    verifier: str | None = None,
    redirect_uri: str = REDIRECT,
    state: str = "state-123",
    **extra: str,
) -> requests.Response:
    """GET /authorize without following the redirect."""
    params = {
        "response_type": "code",
        "client_id": client.client_id,
        "redirect_uri": redirect_uri,
        "state": state,
        "code_challenge": _challenge(verifier or _verifier()),
        "code_challenge_method": "S256",
        "scope": server.scope,
    }
    params.update(extra)
    params = {k: v for k, v in params.items() if v is not None}
    return requests.get(
        server.authorization_endpoint, params=params, allow_redirects=False, timeout=TIMEOUT
    )


def _location_params(response: requests.Response) -> dict[str, str]:
    assert response.status_code == 302, response.text
    query = parse_qs(urlsplit(response.headers["Location"]).query, keep_blank_values=True)
    assert all(len(v) == 1 for v in query.values()), query
    return {k: v[0] for k, v in query.items()}


def _get_code(
    server: AuthServer, client: DevClient, verifier: str, redirect_uri: str = REDIRECT
) -> str:
    params = _location_params(
        _authorize(server, client, verifier=verifier, redirect_uri=redirect_uri)
    )
    return params["code"]


def _client_auth(client: DevClient) -> dict[str, str]:
    if client.client_secret is None:
        return {"client_id": client.client_id}
    return {"client_id": client.client_id, "client_secret": client.client_secret}


def _exchange(
    server: AuthServer,
    client: DevClient,
    code: str,
    verifier: str,
    redirect_uri: str = REDIRECT,
) -> requests.Response:
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": redirect_uri,
        "code_verifier": verifier,
        **_client_auth(client),
    }
    return requests.post(server.token_endpoint, data=data, timeout=TIMEOUT)


def _login(server: AuthServer, client: DevClient) -> dict[str, Any]:
    verifier = _verifier()
    response = _exchange(server, client, _get_code(server, client, verifier), verifier)
    assert response.status_code == 200, response.text
    body: dict[str, Any] = response.json()
    return body


def _refresh(server: AuthServer, client: DevClient, refresh_token: str) -> requests.Response:
    data = {"grant_type": "refresh_token", "refresh_token": refresh_token, **_client_auth(client)}
    return requests.post(server.token_endpoint, data=data, timeout=TIMEOUT)


def _assert_error(response: requests.Response, status: int, error: str) -> None:
    assert response.status_code == status, response.text
    assert response.headers["Content-Type"].startswith("application/json")
    assert response.headers["Cache-Control"] == "no-store"
    assert response.json()["error"] == error


def _consent_fields(page: str) -> dict[str, str]:
    fields = dict(re.findall(r'<input type="hidden" name="(\w+)" value="([^"]*)">', page))
    return {k: html.unescape(v) for k, v in fields.items()}


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer() as srv:
        yield srv


@pytest.fixture
def client(server: AuthServer) -> DevClient:
    return server.register_client()


# --------------------------------------------------------------------------- the happy path


def test_full_authorization_code_flow_by_hand(server: AuthServer, client: DevClient) -> None:
    verifier = _verifier()
    response = _authorize(server, client, verifier=verifier, state="s t/a+te=&x")
    assert response.status_code == 302
    location = response.headers["Location"]
    parts = urlsplit(location)
    assert (parts.scheme, parts.netloc, parts.path) == ("http", "127.0.0.1:9000", "/callback")
    params = _location_params(response)
    assert set(params) == {"code", "state", "iss"}
    assert params["state"] == "s t/a+te=&x"  # returned unchanged
    assert params["iss"] == server.issuer  # RFC 9207
    assert response.headers["Cache-Control"] == "no-store"
    assert response.headers["Referrer-Policy"] == "no-referrer"

    token = _exchange(server, client, params["code"], verifier)
    assert token.status_code == 200, token.text
    assert token.headers["Cache-Control"] == "no-store"
    assert token.headers["Content-Type"] == "application/json"
    body = token.json()
    assert body["token_type"] == "Bearer"
    assert body["expires_in"] == 3600
    assert body["scope"] == server.scope
    assert body["access_token"]
    assert body["refresh_token"]
    assert body["access_token"] != body["refresh_token"]

    info = server.validate_access_token(body["access_token"])
    assert isinstance(info, TokenInfo)
    assert info.user == "user@example.test"
    assert info.client_id == client.client_id
    assert info.scope == (server.scope,)
    assert info.expires_at.tzinfo is not None
    remaining = info.expires_at - datetime.now(timezone.utc)
    assert timedelta(seconds=3590) < remaining <= timedelta(seconds=3600)
    assert server.validate_access_token(body["refresh_token"]) is None  # not an access token


def test_endpoint_urls_and_scope(server: AuthServer) -> None:
    assert re.fullmatch(r"http://127\.0\.0\.1:\d+", server.issuer)
    assert server.authorization_endpoint == server.issuer + "/authorize"
    assert server.token_endpoint == server.issuer + "/token"
    assert server.revocation_endpoint == server.issuer + "/revoke"
    assert server.introspection_endpoint == server.issuer + "/introspect"
    assert server.scope == AuthServer.SCOPE == "https://mail.oauthsmtp.test/smtp"


def test_client_secret_basic_is_accepted(server: AuthServer, client: DevClient) -> None:
    verifier = _verifier()
    code = _get_code(server, client, verifier)
    assert client.client_secret is not None
    response = requests.post(
        server.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "code_verifier": verifier,
        },
        auth=(client.client_id, client.client_secret),
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text


def test_public_client_without_secret(server: AuthServer) -> None:
    public = server.register_client(public=True)
    assert public.client_secret is None
    assert public.public
    tokens = _login(server, public)
    info = server.validate_access_token(tokens["access_token"])
    assert info is not None
    assert info.client_id == public.client_id
    refreshed = _refresh(server, public, tokens["refresh_token"])
    assert refreshed.status_code == 200, refreshed.text


def test_public_client_must_send_the_verifier(server: AuthServer) -> None:
    public = server.register_client(public=True)
    code = _get_code(server, public, _verifier())
    response = requests.post(
        server.token_endpoint,
        data={
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": REDIRECT,
            "client_id": public.client_id,
        },
        timeout=TIMEOUT,
    )
    _assert_error(response, 400, "invalid_request")


def test_given_client_id_and_secret_are_used(server: AuthServer) -> None:
    client = server.register_client(client_id="my-app", client_secret="s3cret-value")
    assert (client.client_id, client.client_secret) == ("my-app", "s3cret-value")
    assert "s3cret-value" not in repr(client)
    _login(server, client)


def test_parameters_are_ready_for_this_server(server: AuthServer, client: DevClient) -> None:
    params = server.parameters(client, redirect_url="http://localhost:9123")
    assert isinstance(params, OAuth2Parameters)
    assert params.client_id == client.client_id
    assert params.client_secret == client.client_secret
    assert params.auth_url == server.authorization_endpoint
    assert params.token_url == server.token_endpoint
    assert params.revocation_url == server.revocation_endpoint
    assert params.expected_issuer == server.issuer
    assert params.scopes == (server.scope,)
    assert params.redirect_url == "http://localhost:9123"
    wider = server.parameters(client, scope=[server.scope, "offline_access"])
    assert wider.scopes == (server.scope, "offline_access")
    assert wider.redirect_url == "http://localhost:9000"


def test_metadata_favicon_and_unknown_paths(server: AuthServer) -> None:
    meta = requests.get(server.issuer + "/.well-known/oauth-authorization-server", timeout=TIMEOUT)
    assert meta.status_code == 200
    data = meta.json()
    assert data["issuer"] == server.issuer
    assert data["authorization_endpoint"] == server.authorization_endpoint
    assert data["token_endpoint"] == server.token_endpoint
    assert data["revocation_endpoint"] == server.revocation_endpoint
    assert data["introspection_endpoint"] == server.introspection_endpoint
    assert data["code_challenge_methods_supported"] == ["S256"]
    assert data["response_types_supported"] == ["code"]
    assert data["authorization_response_iss_parameter_supported"] is True
    assert server.scope in data["scopes_supported"]
    AuthorizationServerMetadata(data).validate()  # RFC 8414, as authlib checks it
    assert requests.get(server.issuer + "/favicon.ico", timeout=TIMEOUT).status_code == 404
    assert requests.get(server.issuer + "/nowhere", timeout=TIMEOUT).status_code == 404
    wrong_method = requests.get(server.token_endpoint, timeout=TIMEOUT)
    assert wrong_method.status_code == 405
    assert wrong_method.headers["Allow"] == "POST"
    assert server.token_requests == 0  # a GET is not a token request


# --------------------------------------------------------------------------- authorization endpoint


def test_plain_pkce_is_refused(server: AuthServer, client: DevClient) -> None:
    verifier = _verifier()
    response = _authorize(
        server, client, code_challenge=verifier, code_challenge_method="plain", state="p1"
    )
    params = _location_params(response)
    assert "code" not in params
    assert params["error"] == "invalid_request"
    assert params["state"] == "p1"
    assert params["iss"] == server.issuer


def test_missing_pkce_is_refused(server: AuthServer, client: DevClient) -> None:
    for extra in (
        {"code_challenge": None, "code_challenge_method": None},
        {"code_challenge_method": None},
    ):
        params = _location_params(_authorize(server, client, **extra))  # type: ignore[arg-type]
        assert "code" not in params
        assert params["error"] == "invalid_request"


def test_missing_state_is_refused(server: AuthServer, client: DevClient) -> None:
    params = _location_params(_authorize(server, client, state=""))
    assert "code" not in params
    assert params["error"] == "invalid_request"


def test_response_type_token_is_refused(server: AuthServer, client: DevClient) -> None:
    params = _location_params(_authorize(server, client, response_type="token"))
    assert "code" not in params
    assert "access_token" not in params
    assert params["error"] == "unsupported_response_type"


def test_unknown_scope_is_refused_and_known_ones_granted(
    server: AuthServer, client: DevClient
) -> None:
    params = _location_params(_authorize(server, client, scope=f"{server.scope} admin"))
    assert params["error"] == "invalid_scope"
    assert "code" not in params

    verifier = _verifier()
    scope = f"{server.scope} offline_access email openid"
    code = _location_params(_authorize(server, client, verifier=verifier, scope=scope))["code"]
    body = _exchange(server, client, code, verifier).json()
    assert body["scope"] == scope
    info = server.validate_access_token(body["access_token"])
    assert info is not None
    assert info.scope == tuple(scope.split())


def test_missing_scope_defaults_to_the_mail_scope(server: AuthServer, client: DevClient) -> None:
    verifier = _verifier()
    code = _location_params(_authorize(server, client, verifier=verifier, scope=None))["code"]  # type: ignore[arg-type]
    assert _exchange(server, client, code, verifier).json()["scope"] == server.scope


@pytest.mark.parametrize(
    "redirect_uri",
    [
        "https://evil.example/callback",
        "http://evil.example:9000/callback",
        "http://127.0.0.1.evil.example/",
        "http://localhost:9000@evil.example/",
        "javascript:alert(1)",
        "http://127.0.0.1:9000/cb#fragment",
        'http://127.0.0.1:9000/"quoted"',
    ],
)
def test_untrusted_redirect_uri_gets_an_error_page_not_a_redirect(
    server: AuthServer, client: DevClient, redirect_uri: str
) -> None:
    response = _authorize(server, client, redirect_uri=redirect_uri)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert response.headers["Content-Type"].startswith("text/html")
    assert "evil" not in response.text


def test_loopback_redirect_uris_any_port_and_path(server: AuthServer, client: DevClient) -> None:
    for uri in ("http://localhost:1234/a/b", "http://127.0.0.1:65000", "http://[::1]:9000/x"):
        response = _authorize(server, client, redirect_uri=uri)
        assert response.headers["Location"].startswith(uri), uri
        assert "code" in _location_params(response)


def test_registered_redirect_uris_are_matched_exactly(server: AuthServer) -> None:
    strict = server.register_client(redirect_uris=["http://localhost:8080/cb"])
    assert "code" in _location_params(
        _authorize(server, strict, redirect_uri="http://localhost:8080/cb")
    )
    for other in (
        "http://localhost:8081/cb",
        "http://localhost:8080/cb/",
        "http://127.0.0.1:8080/cb",
    ):
        response = _authorize(server, strict, redirect_uri=other)
        assert response.status_code == 400
        assert "Location" not in response.headers


def test_unknown_client_gets_an_error_page(server: AuthServer) -> None:
    ghost = DevClient(client_id="nobody")
    response = _authorize(server, ghost)
    assert response.status_code == 400
    assert "Location" not in response.headers
    assert "invalid_client" in response.text


def test_repeated_parameters_are_refused(server: AuthServer, client: DevClient) -> None:
    url = server.authorization_endpoint + "?state=a&state=b&client_id=" + client.client_id
    response = requests.get(url, allow_redirects=False, timeout=TIMEOUT)
    assert response.status_code == 400
    assert "Location" not in response.headers


def test_deny_mode_redirects_with_access_denied(client: DevClient, server: AuthServer) -> None:
    server.mode = "deny"
    params = _location_params(_authorize(server, client, state="d-1"))
    assert params["error"] == "access_denied"
    assert params["state"] == "d-1"
    assert params["iss"] == server.issuer
    assert "code" not in params


def test_auto_mode_approves_as_the_configured_user() -> None:
    with AuthServer(user="alice@example.org") as srv:
        tokens = _login(srv, srv.register_client())
        info = srv.validate_access_token(tokens["access_token"])
        assert info is not None
        assert info.user == "alice@example.org"


# --------------------------------------------------------------------------- consent page


def _consent_page(server: AuthServer, client: DevClient, **kw: str) -> tuple[str, dict[str, str]]:
    response = _authorize(server, client, **kw)
    assert response.status_code == 200, response.text
    assert response.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in response.headers["Content-Security-Policy"]
    assert response.headers["X-Frame-Options"] == "DENY"
    assert response.headers["Cache-Control"] == "no-store"
    return response.text, _consent_fields(response.text)


def _answer(server: AuthServer, form: dict[str, str]) -> requests.Response:
    return requests.post(
        server.authorization_endpoint, data=form, allow_redirects=False, timeout=TIMEOUT
    )


def test_consent_page_approve() -> None:
    with AuthServer(mode="consent", user="default@example.test") as server:
        client = server.register_client(client_id="app<b>&co")
        verifier = _verifier()
        page, fields = _consent_page(server, client, verifier=verifier, state="c-1")
        assert 'id="approve"' in page
        assert 'id="deny"' in page
        assert 'id="email"' in page
        assert 'value="default@example.test"' in page
        assert "app&lt;b&gt;&amp;co" in page
        assert "app<b>" not in page
        assert server.scope in page
        assert "<script" not in page
        assert "<link" not in page
        assert "src=" not in page
        assert set(fields) == {"request_id", "csrf_token"}

        answer = _answer(server, {**fields, "email": "chosen@example.org", "decision": "approve"})
        params = _location_params(answer)
        assert params["state"] == "c-1"
        assert params["iss"] == server.issuer
        token = _exchange(server, client, params["code"], verifier)
        assert token.status_code == 200, token.text
        info = server.validate_access_token(token.json()["access_token"])
        assert info is not None
        assert info.user == "chosen@example.org"

        # The form is single-use.
        replay = _answer(server, {**fields, "email": "chosen@example.org", "decision": "approve"})
        assert replay.status_code == 400
        assert "Location" not in replay.headers


def test_consent_page_deny() -> None:
    with AuthServer(mode="consent") as server:
        client = server.register_client()
        _, fields = _consent_page(server, client, state="c-2")
        params = _location_params(_answer(server, {**fields, "decision": "deny"}))
        assert params["error"] == "access_denied"
        assert params["state"] == "c-2"
        assert params["iss"] == server.issuer
        assert "code" not in params


def test_consent_form_with_wrong_csrf_token_is_refused() -> None:
    with AuthServer(mode="consent") as server:
        client = server.register_client()
        _, fields = _consent_page(server, client)
        forged = _answer(
            server, {**fields, "csrf_token": "x" * 43, "email": "a@b.c", "decision": "approve"}
        )
        assert forged.status_code == 403
        assert "Location" not in forged.headers
        unknown = _answer(
            server, {**fields, "request_id": "nope", "email": "a@b.c", "decision": "approve"}
        )
        assert unknown.status_code == 400
        # The genuine form still works after the forgery attempts.
        assert "code" in _location_params(
            _answer(server, {**fields, "email": "a@b.c", "decision": "approve"})
        )


def test_consent_form_with_invalid_email_is_shown_again() -> None:
    with AuthServer(mode="consent") as server:
        client = server.register_client()
        _, fields = _consent_page(server, client)
        again = _answer(server, {**fields, "email": "not an email", "decision": "approve"})
        assert again.status_code == 400
        assert "Location" not in again.headers
        assert _consent_fields(again.text) == fields
        assert "code" in _location_params(
            _answer(server, {**fields, "email": "ok@example.test", "decision": "approve"})
        )


def test_consent_mode_still_redirects_errors(server: AuthServer, client: DevClient) -> None:
    server.mode = "consent"
    params = _location_params(_authorize(server, client, code_challenge_method="plain"))
    assert params["error"] == "invalid_request"


# --------------------------------------------------------------------------- token endpoint


def test_wrong_verifier_is_invalid_grant(server: AuthServer, client: DevClient) -> None:
    code = _get_code(server, client, _verifier())
    _assert_error(_exchange(server, client, code, _verifier()), 400, "invalid_grant")


def test_code_is_single_use_and_reuse_revokes_its_tokens(
    server: AuthServer, client: DevClient
) -> None:
    verifier = _verifier()
    code = _get_code(server, client, verifier)
    first = _exchange(server, client, code, verifier)
    assert first.status_code == 200
    tokens = first.json()
    _assert_error(_exchange(server, client, code, verifier), 400, "invalid_grant")
    # RFC 6749 §4.1.2: tokens issued from a replayed code are revoked.
    assert server.validate_access_token(tokens["access_token"]) is None
    _assert_error(_refresh(server, client, tokens["refresh_token"]), 400, "invalid_grant")


@pytest.mark.parametrize(
    "sent",
    [
        "http://127.0.0.1:9000/callback/",
        "http://127.0.0.1:9001/callback",
        "http://localhost:9000/callback",
        "http://127.0.0.1:9000/Callback",
        None,
    ],
)
def test_redirect_uri_mismatch_is_invalid_grant(
    server: AuthServer, client: DevClient, sent: str | None
) -> None:
    verifier = _verifier()
    code = _get_code(server, client, verifier)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "code_verifier": verifier,
        **_client_auth(client),
    }
    if sent is not None:
        data["redirect_uri"] = sent
    response = requests.post(server.token_endpoint, data=data, timeout=TIMEOUT)
    _assert_error(response, 400, "invalid_grant")


def test_code_of_another_client_is_invalid_grant(server: AuthServer, client: DevClient) -> None:
    other = server.register_client()
    verifier = _verifier()
    code = _get_code(server, client, verifier)
    _assert_error(_exchange(server, other, code, verifier), 400, "invalid_grant")


def test_code_expires_after_60_seconds() -> None:
    """A code redeemed 61 s after it was issued (on the server's clock) is invalid_grant."""
    skew = [0.0]
    with AuthServer(clock=lambda: time.time() + skew[0]) as server:
        client = server.register_client()
        verifier = _verifier()
        code = _get_code(server, client, verifier)
        skew[0] = 61.0
        _assert_error(_exchange(server, client, code, verifier), 400, "invalid_grant")


def test_wrong_secret_is_invalid_client_401(server: AuthServer, client: DevClient) -> None:
    verifier = _verifier()
    code = _get_code(server, client, verifier)
    data = {
        "grant_type": "authorization_code",
        "code": code,
        "redirect_uri": REDIRECT,
        "code_verifier": verifier,
        "client_id": client.client_id,
        "client_secret": "wrong",
    }
    response = requests.post(server.token_endpoint, data=data, timeout=TIMEOUT)
    _assert_error(response, 401, "invalid_client")
    assert response.headers["WWW-Authenticate"].startswith("Basic")
    basic = requests.post(
        server.token_endpoint,
        data={k: v for k, v in data.items() if k not in ("client_id", "client_secret")},
        auth=(client.client_id, "wrong"),
        timeout=TIMEOUT,
    )
    _assert_error(basic, 401, "invalid_client")
    # A confidential client may not pretend to be public.
    no_secret = {k: v for k, v in data.items() if k != "client_secret"}
    _assert_error(
        requests.post(server.token_endpoint, data=no_secret, timeout=TIMEOUT), 401, "invalid_client"
    )
    # The code was not touched by the failed attempts.
    assert _exchange(server, client, code, verifier).status_code == 200


def test_unsupported_grant_type_and_malformed_bodies(server: AuthServer, client: DevClient) -> None:
    password = requests.post(
        server.token_endpoint,
        data={"grant_type": "password", "username": "u", "password": "p", **_client_auth(client)},
        timeout=TIMEOUT,
    )
    _assert_error(password, 400, "unsupported_grant_type")
    as_json = requests.post(server.token_endpoint, json={"grant_type": "x"}, timeout=TIMEOUT)
    assert as_json.status_code == 415
    assert as_json.json()["error"] == "invalid_request"
    repeated = requests.post(
        server.token_endpoint,
        data="grant_type=refresh_token&refresh_token=a&refresh_token=b",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=TIMEOUT,
    )
    _assert_error(repeated, 400, "invalid_request")
    bad_utf8 = requests.post(
        server.token_endpoint,
        data="grant_type=%FF%FE",
        headers={"Content-Type": "application/x-www-form-urlencoded"},
        timeout=TIMEOUT,
    )
    _assert_error(bad_utf8, 400, "invalid_request")
    assert server.token_requests == 4


def test_refresh_rotation(server: AuthServer, client: DevClient) -> None:
    first = _login(server, client)
    second = _refresh(server, client, first["refresh_token"])
    assert second.status_code == 200, second.text
    body = second.json()
    assert body["token_type"] == "Bearer"
    assert body["scope"] == server.scope
    assert body["refresh_token"]
    assert body["refresh_token"] != first["refresh_token"]
    assert body["access_token"] != first["access_token"]
    assert server.validate_access_token(body["access_token"]) is not None
    # The old refresh token is gone; the new one works, once.
    _assert_error(_refresh(server, client, first["refresh_token"]), 400, "invalid_grant")
    third = _refresh(server, client, body["refresh_token"])
    assert third.status_code == 200
    _assert_error(_refresh(server, client, body["refresh_token"]), 400, "invalid_grant")


def test_refresh_without_rotation_keeps_the_old_token() -> None:
    with AuthServer(rotate_refresh_tokens=False) as server:
        client = server.register_client()
        first = _login(server, client)
        for _ in range(3):
            response = _refresh(server, client, first["refresh_token"])
            assert response.status_code == 200, response.text
            assert "refresh_token" not in response.json()
            assert server.validate_access_token(response.json()["access_token"]) is not None


def test_refresh_token_of_another_client_is_invalid_grant(
    server: AuthServer, client: DevClient
) -> None:
    tokens = _login(server, client)
    other = server.register_client()
    _assert_error(_refresh(server, other, tokens["refresh_token"]), 400, "invalid_grant")


def test_refresh_with_narrower_scope(server: AuthServer, client: DevClient) -> None:
    verifier = _verifier()
    scope = f"{server.scope} offline_access"
    code = _location_params(_authorize(server, client, verifier=verifier, scope=scope))["code"]
    tokens = _exchange(server, client, code, verifier).json()
    data = {
        "grant_type": "refresh_token",
        "refresh_token": tokens["refresh_token"],
        "scope": server.scope,
        **_client_auth(client),
    }
    narrow = requests.post(server.token_endpoint, data=data, timeout=TIMEOUT).json()
    assert narrow["scope"] == server.scope
    wide = _refresh(server, client, narrow["refresh_token"]).json()
    assert wide["scope"] == scope  # RFC 6749 §6: the new refresh token keeps the grant's scope
    data["refresh_token"] = wide["refresh_token"]
    data["scope"] = f"{server.scope} email"
    _assert_error(
        requests.post(server.token_endpoint, data=data, timeout=TIMEOUT), 400, "invalid_scope"
    )


def test_concurrent_refreshes_with_one_token_succeed_once(
    server: AuthServer, client: DevClient
) -> None:
    tokens = _login(server, client)
    statuses: list[int] = []
    lock = threading.Lock()
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait(timeout=TIMEOUT)
        status = _refresh(server, client, tokens["refresh_token"]).status_code
        with lock:
            statuses.append(status)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(TIMEOUT * 2)
    assert sorted(statuses) == [200] + [400] * 7
    assert server.token_requests == 1 + 8


def test_server_side_helpers_expire_and_revoke(server: AuthServer, client: DevClient) -> None:
    tokens = _login(server, client)
    assert server.validate_access_token(tokens["access_token"]) is not None
    server.expire_access_tokens()
    assert server.validate_access_token(tokens["access_token"]) is None
    refreshed = _refresh(server, client, tokens["refresh_token"])
    assert refreshed.status_code == 200
    assert server.validate_access_token(refreshed.json()["access_token"]) is not None
    server.revoke_all_refresh_tokens()
    _assert_error(_refresh(server, client, refreshed.json()["refresh_token"]), 400, "invalid_grant")


def test_validate_access_token_unknown_values(server: AuthServer) -> None:
    assert server.validate_access_token("") is None
    assert server.validate_access_token("no-such-token") is None
    assert server.validate_access_token(None) is None  # type: ignore[arg-type]


def test_access_token_lifetime_is_configurable() -> None:
    with AuthServer(access_token_lifetime=120) as server:
        tokens = _login(server, server.register_client())
        assert tokens["expires_in"] == 120
        info = server.validate_access_token(tokens["access_token"])
        assert info is not None
        assert info.expires_at - datetime.now(timezone.utc) <= timedelta(seconds=120)


def test_token_requests_counts_every_post(server: AuthServer, client: DevClient) -> None:
    assert server.token_requests == 0
    tokens = _login(server, client)
    assert server.token_requests == 1
    _refresh(server, client, tokens["refresh_token"])
    _refresh(server, client, "garbage")
    assert server.token_requests == 3
    _authorize(server, client)  # not a token request
    assert server.token_requests == 3


# --------------------------------------------------------------------------- revoke, introspect


def test_revoking_a_refresh_token_makes_refresh_fail(server: AuthServer, client: DevClient) -> None:
    tokens = _login(server, client)
    response = requests.post(
        server.revocation_endpoint,
        data={
            "token": tokens["refresh_token"],
            "token_type_hint": "refresh_token",
            **_client_auth(client),
        },
        timeout=TIMEOUT,
    )
    assert response.status_code == 200, response.text
    _assert_error(_refresh(server, client, tokens["refresh_token"]), 400, "invalid_grant")
    # RFC 7009 §2.1: the access tokens of the same grant go too.
    assert server.validate_access_token(tokens["access_token"]) is None


def test_revoking_an_access_token(server: AuthServer, client: DevClient) -> None:
    tokens = _login(server, client)
    response = requests.post(
        server.revocation_endpoint,
        data={"token": tokens["access_token"], **_client_auth(client)},
        timeout=TIMEOUT,
    )
    assert response.status_code == 200
    assert server.validate_access_token(tokens["access_token"]) is None
    assert _refresh(server, client, tokens["refresh_token"]).status_code == 200


def test_revoking_an_unknown_token_is_ok_and_needs_client_auth(
    server: AuthServer, client: DevClient
) -> None:
    unknown = requests.post(
        server.revocation_endpoint,
        data={"token": "unknown", **_client_auth(client)},
        timeout=TIMEOUT,
    )
    assert unknown.status_code == 200
    anonymous = requests.post(
        server.revocation_endpoint,
        data={"token": "unknown", "client_id": client.client_id, "client_secret": "bad"},
        timeout=TIMEOUT,
    )
    _assert_error(anonymous, 401, "invalid_client")


def test_introspection(server: AuthServer, client: DevClient) -> None:
    tokens = _login(server, client)

    def introspect(token: str) -> dict[str, Any]:
        response = requests.post(
            server.introspection_endpoint,
            data={"token": token, **_client_auth(client)},
            timeout=TIMEOUT,
        )
        assert response.status_code == 200, response.text
        body: dict[str, Any] = response.json()
        return body

    active = introspect(tokens["access_token"])
    assert active["active"] is True
    assert active["client_id"] == client.client_id
    assert active["username"] == "user@example.test"
    assert active["scope"] == server.scope
    assert active["iss"] == server.issuer
    assert active["exp"] > time.time()
    assert introspect(tokens["refresh_token"])["active"] is True
    assert introspect("unknown") == {"active": False}
    server.expire_access_tokens()
    assert introspect(tokens["access_token"]) == {"active": False}


# --------------------------------------------------------------------------- hygiene


def test_logs_and_request_log_carry_no_secrets(
    server: AuthServer, client: DevClient, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    verifier = _verifier()
    state = "state-" + secrets.token_urlsafe(16)
    response = _authorize(server, client, verifier=verifier, state=state)
    code = _location_params(response)["code"]
    tokens = _exchange(server, client, code, verifier).json()
    _refresh(server, client, tokens["refresh_token"])
    assert server.requests_log == [
        ("GET", "/authorize"),
        ("POST", "/token"),
        ("POST", "/token"),
    ]
    secrets_seen = [code, verifier, state, tokens["access_token"], tokens["refresh_token"]]
    assert client.client_secret is not None
    secrets_seen.append(client.client_secret)
    # Only the server side: urllib3 (the test's own client) logs full URLs.
    server_records = [
        r for r in caplog.records if r.name.startswith(("oauthsmtp.devserver", "authlib"))
    ]
    text = "\n".join(r.getMessage() for r in server_records)
    assert "GET /authorize" in text  # the server does log, at DEBUG
    for value in secrets_seen:
        assert value not in text
        assert value not in repr(server.requests_log)


def test_hostile_authorization_requests_get_an_error_page(
    server: AuthServer, client: DevClient
) -> None:
    base = server.authorization_endpoint
    for query in (
        "response_type=%FF%FE",  # not UTF-8
        "client_id=a%00b",  # NUL
        "response_type=co%22de&client_id=" + client.client_id,  # a quote in an error message
        "state=" + "x" * 5000,  # too long
        "&".join(f"p{i}=1" for i in range(100)),  # too many parameters
    ):
        response = requests.get(f"{base}?{query}", allow_redirects=False, timeout=TIMEOUT)
        assert response.status_code == 400, query
        assert "Location" not in response.headers
        assert response.headers["Content-Type"].startswith("text/html")
    for method in ("PUT", "DELETE", "HEAD"):
        assert requests.request(method, base, timeout=TIMEOUT).status_code == 405


def test_requests_log_has_no_query_string(server: AuthServer) -> None:
    requests.get(server.issuer + "/favicon.ico?x=1", timeout=TIMEOUT)
    requests.get(server.authorization_endpoint + "?client_id=zz&code=abc", timeout=TIMEOUT)
    assert server.requests_log == [("GET", "/favicon.ico"), ("GET", "/authorize")]


def test_stop_closes_the_port() -> None:
    server = AuthServer()
    server.start()
    port = int(urlsplit(server.issuer).port or 0)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        pass  # listening
    server.stop()
    server.stop()  # idempotent
    with (
        pytest.raises(ConnectionRefusedError),
        socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT),
    ):
        pass
    with pytest.raises(RuntimeError):
        server.start()


def test_stop_does_not_wait_for_idle_connections() -> None:
    server = AuthServer().start()
    port = int(urlsplit(server.issuer).port or 0)
    with socket.create_connection(("127.0.0.1", port), timeout=TIMEOUT):
        time.sleep(0.1)  # the handler thread now waits for a request line
        started = time.monotonic()
        server.stop()
        assert time.monotonic() - started < 5


def test_ipv6_loopback() -> None:
    if not socket.has_ipv6:
        pytest.skip("no IPv6")
    try:
        server = AuthServer(host="::1").start()
    except OSError:
        pytest.skip("::1 is not available")
    with server:
        assert server.issuer.startswith("http://[::1]:")
        _login(server, server.register_client())


def test_configuration_errors() -> None:
    from oauthsmtp import ConfigurationError

    with pytest.raises(ConfigurationError):
        AuthServer(host="0.0.0.0")
    with pytest.raises(ConfigurationError):
        AuthServer(mode="maybe")
    with pytest.raises(ConfigurationError):
        AuthServer(user="not-an-email")
    with pytest.raises(ConfigurationError):
        AuthServer(access_token_lifetime=0)
    server = AuthServer()
    with pytest.raises(RuntimeError):
        _ = server.issuer  # port 0: unknown before start
    with pytest.raises(ConfigurationError):
        server.register_client(public=True, client_secret="x")
    with pytest.raises(ConfigurationError):
        server.register_client(redirect_uris=["https://app.example/cb"])
    with pytest.raises(ConfigurationError):
        server.register_client(redirect_uris="http://localhost/cb")
    server.register_client(client_id="dup")
    with pytest.raises(ConfigurationError):
        server.register_client(client_id="dup")
    with pytest.raises(ConfigurationError):
        server.mode = "never"
