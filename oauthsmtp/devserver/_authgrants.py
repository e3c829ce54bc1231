"""The development authorization server's adaptation of authlib's server-side classes.

authlib's OAuth2 server is framework-independent: it needs request and payload
objects (``HTTPRequest`` as the HTTP layer builds it, wrapped as
``DevOAuth2Request``), and grant and endpoint subclasses that say where codes and
tokens live. These subclasses hold the policy (PKCE with S256 only, ``state``
required, refresh-token rotation, who may introspect what) and reach the store
only through the ``dev_*`` methods of ``_authcore._Core``.
"""

from __future__ import annotations

import secrets
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from email.message import Message
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    InvalidRequestError,
    JsonPayload,
    OAuth2Payload,
    OAuth2Request,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint
from authlib.oauth2.rfc8628 import DeviceAuthorizationEndpoint, DeviceCodeGrant

from ._authmodels import AUTH_METHODS, CodeRecord, DeviceRecord, TokenRecord


class _Payload(OAuth2Payload):  # type: ignore[misc]
    def __init__(self, pairs: Sequence[tuple[str, str]]) -> None:
        self._data: dict[str, str] = {}
        self._datalist: dict[str, list[str]] = {}
        for key, value in pairs:
            self._data.setdefault(key, value)
            self._datalist.setdefault(key, []).append(value)

    @property
    def data(self) -> dict[str, str]:
        return self._data

    @property
    def datalist(self) -> dict[str, list[str]]:
        return self._datalist


@dataclass
class HTTPRequest:
    """What the HTTP layer hands to the authlib adaptation."""

    method: str
    uri: str  # issuer + path: no query string
    headers: Message | dict[str, str]
    params: list[tuple[str, str]]


class DevOAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: HTTPRequest) -> None:
        super().__init__(request.method, request.uri, headers=request.headers)
        self.payload = _Payload(request.params)
        params = dict(request.params)
        self._args = params if request.method == "GET" else {}
        self._form = params if request.method == "POST" else {}

    @property
    def args(self) -> dict[str, str]:
        return self._args

    @property
    def form(self) -> dict[str, str]:
        return self._form


class DevJsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
    """PKCE, mandatory for every client, with S256 only (RFC 7636 §4.2, RFC 9700 §2.1.1)."""

    DEFAULT_CODE_CHALLENGE_METHOD = "S256"
    SUPPORTED_CODE_CHALLENGE_METHOD: ClassVar[list[str]] = ["S256"]
    CODE_CHALLENGE_METHODS: ClassVar[dict[str, Callable[[str, str], bool]]] = {
        "S256": compare_s256_code_challenge
    }

    def validate_code_challenge(self, grant: Any, redirect_uri: str) -> None:
        data = grant.request.payload.data
        if not data.get("code_challenge"):
            raise InvalidRequestError("PKCE is required: missing 'code_challenge'.")
        if data.get("code_challenge_method") != "S256":
            raise InvalidRequestError("'code_challenge_method' must be S256 (plain is refused).")
        super().validate_code_challenge(grant, redirect_uri)


class DevAuthorizationCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    @staticmethod
    def validate_authorization_redirect_uri(request: Any, client: Any) -> str:
        # Replaces authlib's version, whose error message quotes the URI (and
        # refuses to build itself when the URI contains a quote or backslash).
        uri = request.payload.redirect_uri
        if uri:
            if not client.check_redirect_uri(uri):
                raise InvalidRequestError(
                    "The redirect_uri is not allowed for this client: it must be an http URI "
                    "on localhost, 127.0.0.1 or [::1], or one the client registered."
                )
            return str(uri)
        default = client.get_default_redirect_uri()
        if not default:
            raise InvalidRequestError("Missing 'redirect_uri'.")
        return str(default)

    def validate_authorization_request(self) -> str:
        redirect_uri = str(super().validate_authorization_request())
        if not self.request.payload.state:
            raise InvalidRequestError("Missing 'state'.", redirect_uri=redirect_uri)
        return redirect_uri

    def generate_authorization_code(self) -> str:
        return secrets.token_urlsafe(32)

    def save_authorization_code(self, code: str, request: Any) -> None:
        self.server.dev_save_code(code, request)

    def query_authorization_code(self, code: str, client: Any) -> CodeRecord | None:
        result: CodeRecord | None = self.server.dev_claim_code(code, client)
        return result

    def delete_authorization_code(self, authorization_code: Any) -> None:
        pass  # already consumed by query_authorization_code (single use even on failure)

    def authenticate_user(self, authorization_code: Any) -> str:
        return str(authorization_code.user)


class DevRefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    """refresh_token grant with rotation: a new refresh token each time, the old one revoked."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> TokenRecord | None:
        result: TokenRecord | None = self.server.dev_find_refresh_token(refresh_token)
        return result

    def authenticate_user(self, refresh_token: Any) -> str:
        return str(refresh_token.user)

    def revoke_old_credential(self, refresh_token: Any) -> None:
        if self.INCLUDE_NEW_REFRESH_TOKEN:
            self.server.dev_revoke(refresh_token, family=False)


class StaticRefreshTokenGrant(DevRefreshTokenGrant):
    """refresh_token grant without rotation: no new refresh token, the old one stays valid."""

    INCLUDE_NEW_REFRESH_TOKEN = False


class DevRevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        result: TokenRecord | None = self.server.dev_find_token(token_string, token_type_hint)
        return result

    def revoke_token(self, token: Any, request: Any) -> None:
        # RFC 7009 §2.1: revoking a refresh token also invalidates the access
        # tokens of the same grant.
        self.server.dev_revoke(token, family=token.kind == "refresh_token")


class DevIntrospectionEndpoint(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> TokenRecord | None:
        result: TokenRecord | None = self.server.dev_find_token(token_string, token_type_hint)
        return result

    def check_permission(self, token: Any, client: Any, request: Any) -> bool:
        # Confidential clients act as resource servers and may look at any
        # token; a public client may only look at its own.
        return bool(not client.public or token.client_id == client.client_id)

    def introspect_token(self, token: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.server.dev_introspect(token)
        return result


class DevDeviceAuthorizationEndpoint(DeviceAuthorizationEndpoint):  # type: ignore[misc]
    """RFC 8628 §3.1-3.2: a device code and a user code; the interval is the server's setting."""

    CLIENT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    @property
    def INTERVAL(self) -> float:
        interval: float = self.server.device_interval
        return interval

    @property
    def EXPIRES_IN(self) -> int:
        lifetime: int = self.server.device_code_lifetime
        return lifetime

    def get_verification_uri(self) -> str:
        return str(self.server.issuer) + "/device"

    def save_device_credential(self, client_id: str, scope: str, data: dict[str, Any]) -> None:
        self.server.dev_save_device(client_id, scope, data)


class DevDeviceCodeGrant(DeviceCodeGrant):  # type: ignore[misc]
    """RFC 8628 §3.4-3.5: the device code grant; slow_down when polled faster than the interval."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = AUTH_METHODS

    def query_device_credential(self, device_code: str) -> DeviceRecord | None:
        result: DeviceRecord | None = self.server.dev_find_device(device_code)
        return result

    def query_user_grant(self, user_code: str) -> tuple[str, bool] | None:
        result: tuple[str, bool] | None = self.server.dev_device_decision(user_code)
        return result

    def should_slow_down(self, credential: Any) -> bool:
        return bool(self.server.dev_device_polled(credential))

    def validate_device_credential(self, credential: Any) -> Any:
        user = super().validate_device_credential(credential)
        self.server.dev_claim_device(credential)  # a device code gives tokens once
        return user
