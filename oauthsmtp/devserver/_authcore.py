"""The development authorization server's core: authlib's AuthorizationServer and the store.

``Core`` is authlib's :class:`~authlib.oauth2.rfc6749.AuthorizationServer`
with this package's grants and endpoints registered, and the in-memory store of
clients, codes and tokens behind one reentrant lock. It issues and records
tokens, claims codes (single use, reuse revokes the whole grant), finds and
revokes tokens, and builds introspection answers. It reads the time only
through the clock it is given.
"""

from __future__ import annotations

import json
import logging
import secrets
import threading
from collections.abc import Callable
from typing import Any

from authlib.oauth2.rfc6749 import AuthorizationServer, JsonRequest, OAuth2Request

from ._authapps import DevClientCredentialsGrant, DevJWTBearerGrant, DevPrivateKeyJWT
from ._authgrants import (
    DevAuthorizationCodeGrant,
    DevIntrospectionEndpoint,
    DevJsonPayload,
    DevOAuth2Request,
    DevRefreshTokenGrant,
    DevRevocationEndpoint,
    S256CodeChallenge,
    StaticRefreshTokenGrant,
)
from ._authhttp import Response
from ._authmodels import (
    CODE_LIFETIME,
    EXTRA_SCOPES,
    SCOPE,
    ClientRecord,
    CodeRecord,
    TokenRecord,
    TokenResponse,
    normalize_scope,
)

_CODE_RETENTION = 600  # seconds a used code is remembered (reuse detection)

# What happened, for the dev server's console: who and which client, never a token or code.
_EVENTS = logging.getLogger("oauthsmtp.devserver.auth")


class Core(AuthorizationServer):  # type: ignore[misc]
    """authlib's AuthorizationServer adapted to this package's requests, plus the in-memory store.

    Every method named ``dev_*`` touches the store and takes :attr:`lock`
    (reentrant); the HTTP layer also holds it around each endpoint call so that
    a check and the change that follows it (claiming a code, rotating a refresh
    token) happen as one step. :attr:`clock` (seconds since the epoch) is the
    only source of the time, for the store and for the tokens it keeps.
    """

    def __init__(
        self,
        *,
        access_token_lifetime: int,
        rotate_refresh_tokens: bool,
        clock: Callable[[], float],
        refresh_token_lifetime: int | None = None,
    ) -> None:
        super().__init__(scopes_supported=[SCOPE, *EXTRA_SCOPES])
        self.lock = threading.RLock()
        self.clock = clock
        self.issuer = ""
        self.access_token_lifetime = access_token_lifetime
        self.refresh_token_lifetime = refresh_token_lifetime
        self.clients: dict[str, ClientRecord] = {}
        self.codes: dict[str, CodeRecord] = {}
        self.access_tokens: dict[str, TokenRecord] = {}
        self.refresh_tokens: dict[str, TokenRecord] = {}
        self.register_grant(DevAuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        if rotate_refresh_tokens:
            self.register_grant(DevRefreshTokenGrant)
        else:
            self.register_grant(StaticRefreshTokenGrant)
        self.register_endpoint(DevRevocationEndpoint)
        self.register_endpoint(DevIntrospectionEndpoint)
        # App-only grants (RFC 6749 §4.4 with RFC 7523 §2.2 client assertions; RFC 7523 §2.1).
        self.used_jtis: dict[tuple[str, str], float] = {}
        self.register_grant(DevClientCredentialsGrant)
        self.register_grant(DevJWTBearerGrant)
        self.register_client_auth_method("private_key_jwt", DevPrivateKeyJWT(self))

    # -- authlib framework hooks

    def query_client(self, client_id: str) -> ClientRecord | None:
        with self.lock:
            return self.clients.get(client_id)

    def create_oauth2_request(self, request: Any) -> Any:
        if isinstance(request, OAuth2Request):
            return request
        return DevOAuth2Request(request)

    def create_json_request(self, request: Any) -> Any:
        result = JsonRequest(request.method, request.uri, request.headers)
        result.payload = DevJsonPayload(dict(request.params))
        return result

    def handle_response(self, status: int, body: Any, headers: Any) -> Response:
        if isinstance(body, dict):
            data = json.dumps(dict(body), separators=(",", ":")).encode("utf-8")
        else:
            data = str(body or "").encode("utf-8")
        return Response(int(status), [(str(k), str(v)) for k, v in headers], data)

    def send_signal(self, name: str, *args: Any, **kwargs: Any) -> None:
        pass  # no signal system; nothing to log that would not leak

    def generate_token(
        self,
        grant_type: str,
        client: Any,
        user: Any = None,
        scope: str | None = None,
        expires_in: int | None = None,
        include_refresh_token: bool = True,
    ) -> TokenResponse:
        token = TokenResponse(
            access_token=secrets.token_urlsafe(32),
            token_type="Bearer",  # noqa: S106 - the token type, not a secret
            expires_in=int(expires_in or self.access_token_lifetime),
        )
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(32)
            if self.refresh_token_lifetime is not None:
                token["refresh_token_expires_in"] = self.refresh_token_lifetime
        token["scope"] = normalize_scope(scope or SCOPE)
        return token

    def save_token(self, token: Any, request: Any) -> None:
        if request.authorization_code is None and request.refresh_token is None:
            self._save_app_token(token, request)
            return
        now = self.clock()
        client_id = request.client.client_id
        if request.authorization_code is not None:
            family = request.authorization_code.family
            refresh_scope = token["scope"]
        else:  # refresh_token grant: RFC 6749 §6, a new refresh token keeps the old scope
            family = request.refresh_token.family
            refresh_scope = request.refresh_token.scope
        with self.lock:
            access = token["access_token"]
            self.access_tokens[access] = TokenRecord(
                kind="access_token",
                value=access,
                client_id=client_id,
                user=request.user,
                scope=token["scope"],
                family=family,
                issued_at=now,
                expires_at=now + int(token["expires_in"]),
                clock=self.clock,
            )
            refresh = token.get("refresh_token")
            if request.authorization_code is not None:
                _EVENTS.info("login: %s signed in (client %s)", request.user, client_id)
            else:
                rotated = " and a new refresh token" if refresh else ""
                _EVENTS.info(
                    "refresh: new access token%s for %s (client %s)",
                    rotated,
                    request.user,
                    client_id,
                )
            if refresh:
                self.refresh_tokens[refresh] = TokenRecord(
                    kind="refresh_token",
                    value=refresh,
                    client_id=client_id,
                    user=request.user,
                    scope=refresh_scope,
                    family=family,
                    issued_at=now,
                    expires_at=None,
                    clock=self.clock,
                )

    def _save_app_token(self, token: Any, request: Any) -> None:
        """An app-only token: client credentials (for the app's mailboxes) or a JWT bearer one."""
        now = self.clock()
        client = request.client
        delegated = request.user is not None
        user = str(request.user) if delegated else ""
        if not delegated and client.dev.email is not None:
            user = client.dev.email  # a service account's own token, no delegation
        access = token["access_token"]
        with self.lock:
            self.access_tokens[access] = TokenRecord(
                kind="access_token",
                value=access,
                client_id=client.client_id,
                user=user,
                scope=token["scope"],
                family=secrets.token_urlsafe(16),
                issued_at=now,
                expires_at=now + int(token["expires_in"]),
                clock=self.clock,
                mailboxes=() if user else tuple(client.dev.mailboxes),
            )
        if user:
            _EVENTS.info("app-only: token for %s (service account %s)", user, client.client_id)
        else:
            _EVENTS.info("app-only: token for app %s", client.client_id)

    # -- store

    def dev_use_jti(self, client_id: str, jti: object, exp: object) -> bool:
        """Record an assertion's ``jti``; False when it was seen before (a replay)."""
        if not isinstance(jti, str) or not jti or len(jti) > 256:
            return False
        now = self.clock()
        with self.lock:
            for key in [k for k, until in self.used_jtis.items() if until < now - 120]:
                del self.used_jtis[key]
            if (client_id, jti) in self.used_jtis:
                return False
            self.used_jtis[(client_id, jti)] = float(exp) if isinstance(exp, int) else now + 3600
            return True

    def dev_find_service_account(self, issuer: str) -> ClientRecord | None:
        with self.lock:
            for record in self.clients.values():
                if record.dev.email is not None and record.dev.email == issuer:
                    return record
            return None

    def dev_save_code(self, code: str, request: Any) -> None:
        now = self.clock()
        data = request.payload.data
        record = CodeRecord(
            code=code,
            client_id=request.client.client_id,
            redirect_uri=request.payload.redirect_uri,
            scope=request.scope,
            user=request.user,
            code_challenge=data["code_challenge"],
            code_challenge_method=data["code_challenge_method"],
            family=secrets.token_urlsafe(16),
            issued_at=now,
        )
        with self.lock:
            for key in [k for k, c in self.codes.items() if c.issued_at + _CODE_RETENTION < now]:
                del self.codes[key]
            self.codes[code] = record

    def dev_claim_code(self, code: str, client: Any) -> CodeRecord | None:
        """Return the code's record and mark it used; None when it cannot be redeemed.

        A code presented a second time also revokes every token issued from it
        (RFC 6749 §4.1.2, RFC 9700 §4.5).
        """
        with self.lock:
            record = self.codes.get(code)
            if record is None or record.client_id != client.client_id:
                return None
            if record.used:
                self._revoke_family(record.family)
                return None
            record.used = True
            if self.clock() >= record.issued_at + CODE_LIFETIME:
                return None
            return record

    def dev_find_refresh_token(self, value: str) -> TokenRecord | None:
        with self.lock:
            record = self.refresh_tokens.get(value)
            if record is None or record.revoked:
                return None
            return record

    def dev_find_token(self, value: str, hint: str | None) -> TokenRecord | None:
        with self.lock:
            stores = [self.access_tokens, self.refresh_tokens]
            if hint == "refresh_token":
                stores.reverse()
            for store in stores:
                record = store.get(value)
                if record is not None:
                    return record
            return None

    def dev_revoke(self, token: TokenRecord, *, family: bool) -> None:
        with self.lock:
            token.revoked = True
            if family:
                self._revoke_family(token.family)

    def _revoke_family(self, family: str) -> None:
        for store in (self.access_tokens, self.refresh_tokens):
            for record in store.values():
                if record.family == family:
                    record.revoked = True

    def dev_introspect(self, token: TokenRecord) -> dict[str, Any]:
        payload: dict[str, Any] = {
            "active": True,
            "scope": token.scope,
            "client_id": token.client_id,
            "username": token.user,
            "sub": token.user,
            "aud": token.client_id,
            "iss": self.issuer,
            "iat": int(token.issued_at),
        }
        if token.kind == "access_token":
            payload["token_type"] = "Bearer"  # noqa: S105 - the token type
        if token.expires_at is not None:
            payload["exp"] = int(token.expires_at)
        return payload
