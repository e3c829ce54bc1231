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

from oauthsmtp._oauth.scopes import first_resource

from ._authapps import DevClientCredentialsGrant, DevJWTBearerGrant, DevPrivateKeyJWT
from ._authgrants import (
    DevAuthorizationCodeGrant,
    DevDeviceAuthorizationEndpoint,
    DevDeviceCodeGrant,
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
    DeviceRecord,
    TokenRecord,
    TokenResponse,
    normalize_scope,
)

_CODE_RETENTION = 600  # seconds a used code is remembered (reuse detection)
_MAX_DEVICE_CODES = 256  # device authorizations kept at once (oldest dropped first)
DEVICE_INTERVAL = 5.0  # RFC 8628 §3.2's default polling interval
DEVICE_CODE_LIFETIME = 900  # seconds a device code lives (Microsoft's is 900 too)
ID_TOKEN_LIFETIME = 3600

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
        self.devices: dict[str, DeviceRecord] = {}
        self.device_interval = DEVICE_INTERVAL
        self.device_code_lifetime = DEVICE_CODE_LIFETIME
        self._signing_key: Any = None
        self.register_grant(DevAuthorizationCodeGrant, [S256CodeChallenge(required=True)])
        self.register_grant(DevDeviceCodeGrant)
        self.register_endpoint(DevDeviceAuthorizationEndpoint)
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
        # As Entra ID: a token serves one resource. A login that consented to the SMTP scope
        # and the Graph emulation's gets a token for the first named; a refresh with scope=
        # for the other redeems one for it (the refresh token keeps the whole consent).
        token["scope"] = " ".join(first_resource(tuple(normalize_scope(scope or SCOPE).split())))
        if user and "openid" in token["scope"].split():
            token["id_token"] = self.id_token(str(user), client.get_client_id())
        return token

    # -- OpenID Connect

    def signing_key(self) -> Any:
        """The server's ES256 key for id_tokens (made on first use; forgotten with the server)."""
        from joserfc.jwk import ECKey

        with self.lock:
            if self._signing_key is None:
                self._signing_key = ECKey.generate_key("P-256", parameters={"kid": "dev-1"})
            return self._signing_key

    def jwks(self) -> dict[str, Any]:
        """The public key set (``jwks_uri``) that verifies the id_tokens."""
        public = dict(self.signing_key().as_dict(private=False))
        public.update({"kid": "dev-1", "use": "sig", "alg": "ES256"})
        return {"keys": [public]}

    def id_token(self, user: str, client_id: str) -> str:
        """An OpenID Connect id_token naming ``user`` (OIDC Core §2), for ``client_id``."""
        from joserfc import jwt

        now = int(self.clock())
        claims = {
            "iss": self.issuer,
            "sub": user,
            "aud": client_id,
            "iat": now,
            "exp": now + ID_TOKEN_LIFETIME,
            "email": user,
            "email_verified": True,
            "preferred_username": user,
        }
        return str(jwt.encode({"alg": "ES256", "kid": "dev-1"}, claims, self.signing_key()))

    def save_token(self, token: Any, request: Any) -> None:
        device = getattr(request, "credential", None)
        if (
            request.authorization_code is None
            and request.refresh_token is None
            and not isinstance(device, DeviceRecord)
        ):
            self._save_app_token(token, request)
            return
        now = self.clock()
        client_id = request.client.client_id
        if request.authorization_code is not None:
            family = request.authorization_code.family
            refresh_scope = normalize_scope(request.authorization_code.scope or token["scope"])
        elif isinstance(device, DeviceRecord):
            family = device.family
            refresh_scope = normalize_scope(device.scope or token["scope"])
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
            if request.authorization_code is not None or isinstance(device, DeviceRecord):
                how = "" if request.authorization_code is not None else " with a device code"
                _EVENTS.info("login: %s signed in%s (client %s)", request.user, how, client_id)
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

    def dev_save_device(self, client_id: str, scope: str | None, data: dict[str, Any]) -> None:
        now = self.clock()
        record = DeviceRecord(
            device_code=data["device_code"],
            user_code=data["user_code"],
            client_id=client_id,
            scope=normalize_scope(scope or SCOPE),
            issued_at=now,
            expires_at=now + float(data["expires_in"]),
            interval=float(data["interval"]),
            clock=self.clock,
            family=secrets.token_urlsafe(16),
        )
        with self.lock:
            for key in [k for k, d in self.devices.items() if d.expires_at + _CODE_RETENTION < now]:
                del self.devices[key]
            while len(self.devices) >= _MAX_DEVICE_CODES:
                del self.devices[next(iter(self.devices))]
            self.devices[record.device_code] = record

    def dev_find_device(self, device_code: str) -> DeviceRecord | None:
        with self.lock:
            record = self.devices.get(device_code)
            return None if record is None or record.used else record

    def dev_device_by_user_code(self, user_code: str) -> DeviceRecord | None:
        """The pending, unexpired device authorization with this user code (any case, any dash)."""
        wanted = "".join(ch for ch in user_code.upper() if ch.isalnum())
        with self.lock:
            for record in self.devices.values():
                code = "".join(ch for ch in record.user_code if ch.isalnum())
                if (
                    wanted
                    and code == wanted
                    and not record.used
                    and record.decision is None
                    and not record.is_expired()
                ):
                    return record
            return None

    def dev_decide_device(self, record: DeviceRecord, user: str | None) -> None:
        """Approve as ``user``, or deny (None)."""
        with self.lock:
            record.decision = (user, True) if user is not None else ("", False)
        if user is not None:
            _EVENTS.info("device login: %s approved code %s", user, record.user_code)
        else:
            _EVENTS.info("device login: code %s denied", record.user_code)

    def dev_device_decision(self, user_code: str) -> tuple[str, bool] | None:
        with self.lock:
            for record in self.devices.values():
                if record.user_code == user_code and not record.used:
                    return record.decision
            return None

    def dev_device_polled(self, record: DeviceRecord) -> bool:
        """Record a poll; True (slow_down) when it came sooner than the interval allows.

        The interval is the one the client was given, or the server's current
        setting when that was raised since. On slow_down the interval the client
        was given grows by 5 s for all later polls (RFC 8628 §3.5).
        """
        now = self.clock()
        with self.lock:
            last = record.last_poll if record.last_poll is not None else record.issued_at
            record.last_poll = now
            record.polls += 1
            too_soon = now - last < max(record.interval, self.device_interval) - 0.001
            if too_soon:
                record.interval += 5
            return too_soon

    def dev_claim_device(self, record: DeviceRecord) -> None:
        with self.lock:
            record.used = True

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
