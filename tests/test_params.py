"""OAuth2Parameters validation and the provider presets."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

import oauthsmtp
from oauthsmtp import ConfigurationError, OAuth2Parameters, providers

BASE = {
    "client_id": "cid",
    "client_secret": "s3cr3t-value",
    "auth_url": "https://accounts.google.com/o/oauth2/auth",
    "token_url": "https://accounts.google.com/o/oauth2/token",
    "scope": "https://mail.google.com/",
}


def make(**overrides: object) -> OAuth2Parameters:
    return OAuth2Parameters(**{**BASE, **overrides})  # type: ignore[arg-type]


def test_defaults_match_the_contract() -> None:
    """Redirect defaults to http://localhost:9000 and response type to code."""
    params = make()
    assert params.redirect_url == "http://localhost:9000"
    assert params.response_type == "code"
    assert params.scopes == ("https://mail.google.com/",)
    assert params.revocation_url is None


def test_is_frozen() -> None:
    """Parameters are an immutable value."""
    params = make()
    with pytest.raises(dataclasses.FrozenInstanceError):
        params.client_id = "other"  # type: ignore[misc]
    assert hash(params) == hash(make())


def test_repr_hides_the_client_secret() -> None:
    """The client secret never appears in repr or str."""
    params = make()
    assert "s3cr3t-value" not in repr(params)
    assert "s3cr3t-value" not in str(params)
    assert "cid" in repr(params)


@pytest.mark.parametrize(
    ("scope", "expected"),
    [
        ("a b  c", ("a", "b", "c")),
        (["a", "b"], ("a", "b")),
        (("a b", "c", "a"), ("a", "b", "c")),
    ],
    ids=["string", "list", "dedup"],
)
def test_scope_forms(scope: object, expected: tuple[str, ...]) -> None:
    """Scope may be a space-separated string or a sequence."""
    assert make(scope=scope).scopes == expected


def test_implicit_flow_is_refused_with_an_explanation() -> None:
    """response_type=token explains why the implicit flow is not supported."""
    with pytest.raises(ConfigurationError) as info:
        make(response_type="token")
    message = str(info.value)
    assert "implicit" in message
    assert "refresh token" in message
    assert 'response_type="code"' in message


@pytest.mark.parametrize(
    ("field", "value", "needle"),
    [
        ("auth_url", "accounts.google.com/o/oauth2/auth", "absolute"),
        ("auth_url", "/relative", "absolute"),
        ("token_url", "http://example.com/token", "https"),
        ("token_url", "ftp://example.com/token", "https"),
        ("token_url", "https://user:pw@example.com/token", "credentials"),
        ("auth_url", "https://example.com/a#frag", "fragment"),
        ("redirect_url", "https://localhost:9000", "loopback http"),
        ("redirect_url", "http://example.com:9000", "this machine"),
        ("redirect_url", "http://localhost:9000/?x=1", "query"),
        ("redirect_url", "http://localhost:99999", "port"),
        ("client_id", "", "client_id"),
        ("client_id", "a\r\nb", "CR, LF"),
        ("response_type", "id_token", "code"),
        ("scope", "a\nb c\x00", "CR, LF"),
        ("token_url", "http://[::1", "invalid host"),
        ("redirect_url", "http://[::1", "invalid host"),
        ("auth_url", "https://[zz]/a", "invalid host"),
        ("revocation_url", "http://localhost:-1/r", "invalid port"),
        ("scope", 123, "string or a list"),
        ("scope", "caf\u00e9", "RFC 6749"),
        ("extra_auth_params", [("a", "b")], "mapping"),
        ("client_id", "a\x1bb", "control characters"),
    ],
)
def test_invalid_values_are_refused(field: str, value: object, needle: str) -> None:
    """Every URL and text field is validated on construction; only ConfigurationError."""
    with pytest.raises(ConfigurationError, match=None) as info:
        make(**{field: value})
    assert needle in str(info.value)


def test_absent_scope_and_extra_params_mean_none() -> None:
    """scope=None and extra_auth_params=None are the same as leaving them out."""
    params = make(scope=None, extra_auth_params=None)
    assert params.scopes == ()
    assert dict(params.extra_auth_params) == {}


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/token", "http://localhost/token", "http://[::1]:5/t"],
)
def test_http_is_allowed_for_loopback_endpoints(url: str) -> None:
    """A local development server may use plain http."""
    assert make(token_url=url).token_url == url


@pytest.mark.parametrize(
    "url",
    [
        "http://localhost:9000",
        "http://127.0.0.1:9000/callback",
        "http://[::1]:9000/cb",
        "http://localhost",
        "http://localhost:0/cb",
    ],
)
def test_loopback_redirects_are_accepted_verbatim(url: str) -> None:
    """Loopback redirect URLs are kept byte-for-byte."""
    assert make(redirect_url=url).redirect_url == url


def test_extra_auth_params_cannot_override_protocol_parameters() -> None:
    """state, PKCE and redirect_uri are oauthsmtp's to set."""
    with pytest.raises(ConfigurationError, match="state"):
        make(extra_auth_params={"state": "fixed"})
    params = make(extra_auth_params={"prompt": "consent"})
    assert dict(params.extra_auth_params) == {"prompt": "consent"}
    with pytest.raises(TypeError):
        params.extra_auth_params["x"] = "y"  # type: ignore[index]


def test_empty_secret_means_public_client() -> None:
    """An empty secret is the same as none: nothing is sent."""
    assert make(client_secret="").is_public_client
    assert not make().is_public_client


def test_expected_issuer_defaults_to_auth_url_origin() -> None:
    """iss is compared with the authorization server's origin unless given."""
    assert make().expected_issuer == "https://accounts.google.com"
    assert make(issuer="https://issuer.example").expected_issuer == "https://issuer.example"


def test_gmail_preset() -> None:
    """Gmail: endpoints, scope, offline access with consent, revocation URL."""
    params = providers.gmail(client_id="id.apps.googleusercontent.com", client_secret="x")
    assert params.auth_url == "https://accounts.google.com/o/oauth2/v2/auth"
    assert params.token_url == "https://oauth2.googleapis.com/token"
    assert params.revocation_url == "https://oauth2.googleapis.com/revoke"
    assert params.scopes == ("https://mail.google.com/", "openid", "email")
    assert dict(params.extra_auth_params) == {"access_type": "offline", "prompt": "consent"}
    assert params.redirect_url == "http://localhost:9000"
    assert params.expected_issuer == "https://accounts.google.com"


def test_microsoft_preset() -> None:
    """Microsoft: tenant in the endpoints, SMTP.Send + offline_access, public client."""
    params = providers.microsoft(client_id="00000000-1111", tenant="consumers")
    assert params.auth_url == ("https://login.microsoftonline.com/consumers/oauth2/v2.0/authorize")
    assert params.token_url == "https://login.microsoftonline.com/consumers/oauth2/v2.0/token"
    assert params.scopes == (
        "https://outlook.office.com/SMTP.Send",
        "offline_access",
        "openid",
        "email",
    )
    assert params.client_secret is None
    assert params.is_public_client
    assert providers.microsoft(client_id="x").auth_url.startswith(
        "https://login.microsoftonline.com/common/"
    )
    with pytest.raises(ConfigurationError, match="tenant"):
        providers.microsoft(client_id="x", tenant="a/b")
    for bad in (None, "\u00e9" * 10, "x" * 300, "../evil", "x?y"):
        with pytest.raises(ConfigurationError, match="tenant"):
            providers.microsoft(client_id="x", tenant=bad)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "call",
    [
        lambda: providers.gmail(client_id="x", client_secret="s", bogus=1),
        lambda: providers.microsoft(client_id="x", scopes="typo"),
        lambda: providers.custom(auth_url="https://a/", token_url="https://t/"),
    ],
    ids=["gmail-unknown", "microsoft-unknown", "custom-no-client-id"],
)
def test_preset_keyword_mistakes_are_configuration_errors(call: Any) -> None:
    """A misspelt or missing keyword is a ConfigurationError naming it, not a TypeError."""
    with pytest.raises(ConfigurationError, match=r"bogus|scopes|client_id"):
        call()


def test_presets_are_reachable_from_the_package() -> None:
    """oauthsmtp.providers.gmail works without a separate import."""
    assert oauthsmtp.providers.gmail is providers.gmail
    assert set(providers.PROVIDERS) == {"gmail", "microsoft"}
