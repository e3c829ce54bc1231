"""The development provider's device grant and verification page, spoken to directly."""

from __future__ import annotations

import re
from collections.abc import Iterator

import pytest
import requests

from oauthsmtp import ConfigurationError
from oauthsmtp.devserver import AuthServer

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"


NOW = [1_000_000.0]


def later(seconds: float = 6) -> None:
    """Move the server's clock on (polls then come after the interval)."""
    NOW[0] += seconds


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(mode="consent", user="user@example.test", clock=lambda: NOW[0]) as running:
        yield running


def start(server: AuthServer) -> tuple[dict[str, object], dict[str, str]]:
    client = server.register_client(public=True)
    answer = requests.post(
        server.device_authorization_endpoint,
        data={"client_id": client.client_id, "scope": f"{server.scope} openid"},
        timeout=10,
    )
    assert answer.status_code == 200, answer.text
    data = answer.json()
    poll = {"grant_type": DEVICE_GRANT, "device_code": data["device_code"],
            "client_id": client.client_id}  # fmt: skip
    return data, poll


def test_device_authorization_answer(server: AuthServer) -> None:
    data, _ = start(server)
    assert data["verification_uri"] == server.verification_uri
    assert data["verification_uri_complete"] == (
        f"{server.verification_uri}?user_code={data['user_code']}"
    )
    assert data["interval"] == 5
    assert data["expires_in"] == 900
    assert server.device_codes() == [data["user_code"]]
    meta = server.metadata()
    assert meta["device_authorization_endpoint"] == server.device_authorization_endpoint
    assert DEVICE_GRANT in meta["grant_types_supported"]


def test_polling_too_fast_is_slow_down_and_the_interval_grows(server: AuthServer) -> None:
    """Polls sooner than the interval get slow_down; each one adds 5 s (RFC 8628 §3.5)."""
    _, poll = start(server)
    later(4)  # sooner than 5 s
    answer = requests.post(server.token_endpoint, data=poll, timeout=10)
    assert answer.json()["error"] == "slow_down"
    later(6)  # the interval is 10 s now
    answer = requests.post(server.token_endpoint, data=poll, timeout=10)
    assert answer.json()["error"] == "slow_down"
    later(15)  # 15 s now; 15 s later is not too soon
    answer = requests.post(server.token_endpoint, data=poll, timeout=10)
    assert answer.json()["error"] == "authorization_pending"


def test_pending_then_denied(server: AuthServer) -> None:
    data, poll = start(server)
    later()
    assert requests.post(server.token_endpoint, data=poll, timeout=10).json()["error"] == (
        "authorization_pending"
    )
    page = requests.get(str(data["verification_uri_complete"]), timeout=10).text
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page)
    assert csrf
    answer = requests.post(
        server.verification_uri,
        data={"csrf_token": csrf.group(1), "user_code": data["user_code"], "decision": "deny"},
        timeout=10,
    )
    assert "Denied" in answer.text
    later()
    assert requests.post(server.token_endpoint, data=poll, timeout=10).json()["error"] == (
        "access_denied"
    )


def test_a_device_code_gives_tokens_once(server: AuthServer) -> None:
    server.mode = "auto"
    data, poll = start(server)
    requests.get(str(data["verification_uri_complete"]), timeout=10)
    later()
    first = requests.post(server.token_endpoint, data=poll, timeout=10)
    assert first.status_code == 200
    assert "id_token" in first.json()
    later()
    again = requests.post(server.token_endpoint, data=poll, timeout=10)
    assert again.status_code == 400


def test_expired_device_code(server: AuthServer) -> None:
    _, poll = start(server)
    later(901)
    answer = requests.post(server.token_endpoint, data=poll, timeout=10)
    assert answer.json()["error"] == "expired_token"


def test_verification_page_refuses_forgery_and_escapes_input(server: AuthServer) -> None:
    data, _ = start(server)
    hostile = '"><script>alert(1)</script>'
    page = requests.get(server.verification_uri, params={"user_code": hostile}, timeout=10)
    assert "<script>" not in page.text
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    forged = requests.post(
        server.verification_uri,
        data={
            "csrf_token": "forged",
            "user_code": data["user_code"],
            "decision": "approve",
            "email": "x@y.test",
        },
        timeout=10,
    )
    assert forged.status_code == 403
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
    assert csrf
    unknown = requests.post(
        server.verification_uri,
        data={
            "csrf_token": csrf.group(1),
            "user_code": "NOPE-NOPE",
            "decision": "approve",
            "email": "x@y.test",
        },
        timeout=10,
    )
    assert unknown.status_code == 400
    assert "Unknown or expired code" in unknown.text
    assert server.device_codes() == [data["user_code"]]  # still waiting, nothing decided


@pytest.mark.parametrize("bad", [0, -1, 61, True, "5"])
def test_device_interval_setting_is_checked(server: AuthServer, bad: object) -> None:
    with pytest.raises(ConfigurationError):
        server.device_interval = bad  # type: ignore[assignment]
