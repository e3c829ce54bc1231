"""OAuth2Parameters.from_issuer: RFC 8414 metadata, then OpenID Connect Discovery, used only
for the exact issuer asked for (RFC 8414 §3.3), with https endpoints."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest
import requests
from scripted_http import ScriptedServer

from oauthsmtp import ConfigurationError, MemoryStore, OAuth2Parameters, auth_identify
from oauthsmtp._oauth.discovery import metadata_urls, parse_metadata
from oauthsmtp.devserver import AuthServer


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(user="user@example.test") as running:
        yield running


def test_from_issuer_against_the_dev_provider(server: AuthServer) -> None:
    """The endpoints come from the RFC 8414 document; the parameters log in for real."""
    client = server.register_client()
    params = OAuth2Parameters.from_issuer(
        server.issuer,
        client_id=client.client_id,
        client_secret=client.client_secret,
        scope=server.scope,
        redirect_url="http://127.0.0.1:0/cb",
    )
    assert params.auth_url == server.authorization_endpoint
    assert params.token_url == server.token_endpoint
    assert params.revocation_url == server.revocation_endpoint
    assert params.device_authorization_url == server.device_authorization_endpoint
    assert params.issuer == server.issuer
    assert ("GET", "/.well-known/oauth-authorization-server") in server.requests_log
    # The parameters work: a device login (approved automatically once the page is visited).
    server.device_interval = 0.05
    token = auth_identify(
        params,
        account="user@example.test",
        store=MemoryStore(),
        flow="device",
        on_prompt=lambda text: requests.get(text.split("filled in:\n  ")[1].split()[0], timeout=10),
    )
    assert server.validate_access_token(token.access_token) is not None


def test_openid_configuration_is_served(server: AuthServer) -> None:
    data = requests.get(server.openid_configuration_url, timeout=10).json()
    assert data["issuer"] == server.issuer
    assert data["id_token_signing_alg_values_supported"] == ["ES256"]
    keys = requests.get(data["jwks_uri"], timeout=10).json()["keys"]
    assert keys[0]["kty"] == "EC"
    assert "d" not in keys[0]  # the public half only


def metadata(base: str, issuer: str | None = None, **changes: object) -> dict[str, object]:
    data: dict[str, object] = {
        "issuer": issuer if issuer is not None else base,
        "authorization_endpoint": base + "/authorize",
        "token_endpoint": base + "/token",
    }
    data.update(changes)
    return data


def test_falls_back_to_openid_configuration(scripted: ScriptedServer) -> None:
    scripted.reply(404, body="not here")
    scripted.reply_json(metadata(scripted.base, device_authorization_endpoint=None))
    params = OAuth2Parameters.from_issuer(scripted.base, client_id="cid", scope="s")
    assert params.token_url == scripted.base + "/token"
    assert params.device_authorization_url is None
    assert [seen.path for seen in scripted.seen] == [
        "/.well-known/oauth-authorization-server",
        "/.well-known/openid-configuration",
    ]


@pytest.mark.parametrize(
    ("first", "second", "message"),
    [
        ("other", "other", "is for issuer"),
        ("trailing", "trailing", "is for issuer"),
        ("http-endpoint", "http-endpoint", "endpoints must be https"),
        ("no-token", "no-token", "no usable token_endpoint"),
        ("html", "html", "not a JSON object"),
    ],
)
def test_unusable_metadata_is_refused(
    scripted: ScriptedServer, first: str, second: str, message: str
) -> None:
    """A document for another issuer (even one slash apart), an http endpoint off loopback,
    a missing endpoint, or HTML: ConfigurationError, and no parameters."""
    base = scripted.base
    bodies = {
        "other": metadata(base, issuer="https://evil.example"),
        "trailing": metadata(base, issuer=base + "/"),
        "http-endpoint": metadata(base, token_endpoint="http://evil.example/token"),
        "no-token": metadata(base, token_endpoint=None),
    }
    for kind in (first, second):
        if kind == "html":
            scripted.reply(200, body="<html>portal</html>", Content_Type="text/html")
        else:
            scripted.reply(200, body=json.dumps(bodies[kind]), Content_Type="application/json")
    with pytest.raises(ConfigurationError, match=message):
        OAuth2Parameters.from_issuer(base, client_id="cid")


@pytest.mark.parametrize(
    "issuer",
    ["http://idp.example.com", "https://idp.example.com?x=1", "https://idp.example.com/#f",
     "not a url", "ftp://idp.example.com", ""],
)  # fmt: skip
def test_bad_issuers_are_refused_before_any_request(issuer: str) -> None:
    with pytest.raises(ConfigurationError):
        OAuth2Parameters.from_issuer(issuer, client_id="cid")


def test_unreachable_issuer_is_a_configuration_error() -> None:
    with pytest.raises(ConfigurationError, match="could not discover"):
        OAuth2Parameters.from_issuer("http://127.0.0.1:9", client_id="cid", timeout=5)


def test_metadata_urls() -> None:
    assert metadata_urls("https://idp.example/tenant/v2.0") == (
        "https://idp.example/.well-known/oauth-authorization-server/tenant/v2.0",
        "https://idp.example/tenant/v2.0/.well-known/openid-configuration",
    )
    assert metadata_urls("https://idp.example") == (
        "https://idp.example/.well-known/oauth-authorization-server",
        "https://idp.example/.well-known/openid-configuration",
    )


MS = "https://login.microsoftonline.com"


def microsoft_document(tenant: str) -> bytes:
    return json.dumps(
        {
            "issuer": MS + "/{tenantid}/v2.0",
            "authorization_endpoint": f"{MS}/{tenant}/oauth2/v2.0/authorize",
            "token_endpoint": f"{MS}/{tenant}/oauth2/v2.0/token",
            "device_authorization_endpoint": f"{MS}/{tenant}/oauth2/v2.0/devicecode",
        }
    ).encode()


def test_microsoft_multi_tenant_issuer_is_pinned_not_disabled() -> None:
    """/common publishes the {tenantid} template: accepted for the multi-tenant issuers,
    with endpoints pinned to the tenant asked for; never for a specific tenant."""
    found = parse_metadata(MS + "/common/v2.0", microsoft_document("common"), source="x")
    assert found.token_endpoint == MS + "/common/oauth2/v2.0/token"
    assert found.device_authorization_endpoint == MS + "/common/oauth2/v2.0/devicecode"
    with pytest.raises(ConfigurationError, match="outside"):
        parse_metadata(MS + "/common/v2.0", microsoft_document("evil"), source="x")
    with pytest.raises(ConfigurationError, match="is for issuer"):
        parse_metadata(MS + "/contoso.com/v2.0", microsoft_document("contoso.com"), source="x")
