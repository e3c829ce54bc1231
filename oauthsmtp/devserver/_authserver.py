"""A local OAuth2 authorization server for development and tests (not for production).

:class:`AuthServer` is a small, in-memory OAuth2 provider that listens on a
loopback address. It lets oauthsmtp (its demo, its tests, and its users' tests)
run the real authorization-code flow without Google or Microsoft:

* ``GET /authorize``: authorization endpoint (RFC 6749 §4.1). Only
  ``response_type=code``, PKCE with ``S256`` is mandatory (RFC 7636; ``plain``
  is refused), ``state`` is mandatory and returned unchanged, and every
  redirect back to the client carries ``iss`` (RFC 9207). Depending on
  :attr:`AuthServer.mode` the request is approved at once, denied at once, or
  shown on a consent page (``POST /authorize`` receives its form).
* ``POST /token``: token endpoint, grants ``authorization_code`` (codes are
  single-use, live 60 s, are bound to the client, the redirect URI and the PKCE
  challenge) and ``refresh_token`` (rotated by default, RFC 6749 §6).
* ``POST /revoke``: RFC 7009 revocation. ``POST /introspect``: RFC 7662
  introspection. ``GET /.well-known/oauth-authorization-server``: RFC 8414
  metadata.

It is built on authlib's framework-independent server classes; this module
adapts them to :mod:`http.server` (one thread per connection) and keeps
clients, codes and tokens in memory behind one lock.

What it is not: it has no users or passwords (whoever reaches the consent page
can approve as any address), no TLS, no persistence, and it only listens on
loopback. Use it to test clients, never to protect anything.
"""

from __future__ import annotations

import contextlib
import hmac
import json
import logging
import re
import secrets
import socket
import socketserver
import sys
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from email.message import Message
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from types import TracebackType
from typing import Any, ClassVar
from urllib.parse import parse_qsl, urlencode, urlsplit

from authlib.oauth2.rfc6749 import (
    AuthorizationCodeGrant,
    AuthorizationServer,
    InvalidRequestError,
    JsonPayload,
    JsonRequest,
    OAuth2Error,
    OAuth2Payload,
    OAuth2Request,
    RefreshTokenGrant,
)
from authlib.oauth2.rfc7009 import RevocationEndpoint
from authlib.oauth2.rfc7636 import CodeChallenge
from authlib.oauth2.rfc7636.challenge import compare_s256_code_challenge
from authlib.oauth2.rfc7662 import IntrospectionEndpoint

from .._errors import ConfigurationError
from .._params import OAuth2Parameters, is_loopback_host
from ._pages import CONTENT_SECURITY_POLICY, render_consent, render_error

__all__ = ["AuthServer", "DevClient", "PageHandler", "PageResult", "TokenInfo"]

_LOG = logging.getLogger("oauthsmtp.devserver")

SCOPE = "https://mail.oauthsmtp.test/smtp"
"""The scope that grants sending mail through the development SMTP server."""

EXTRA_SCOPES = ("offline_access", "openid", "email")
"""Other scopes the server accepts (and grants unchanged); they carry no meaning here."""

CODE_LIFETIME = 60
"""Seconds an authorization code stays redeemable."""

MODES = ("auto", "deny", "consent")

_CONSENT_LIFETIME = 600  # seconds a consent page stays answerable
_MAX_PENDING = 256  # consent pages kept at once (oldest dropped first)
_CODE_RETENTION = 600  # seconds a used code is remembered (reuse detection)
_MAX_BODY = 64 * 1024  # bytes accepted in a POST body
_MAX_FIELDS = 64  # parameters accepted in one query or body
_MAX_VALUE = 4096  # characters accepted in one parameter value
_HANDLER_TIMEOUT = 30  # seconds a connection may stay silent
_AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
_GRANT_TYPES = ("authorization_code", "refresh_token")
_REDIRECT_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_VSCHAR = re.compile(r"^[\x20-\x7e]+$")
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_PARAM_NAME = re.compile(r"^[A-Za-z0-9_.\-]{1,64}$")
_EMAIL = re.compile(r"^[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+$")

_PATH_AUTHORIZE = "/authorize"
_PATH_TOKEN = "/token"  # noqa: S105 - a URL path, not a secret
_PATH_REVOKE = "/revoke"
_PATH_INTROSPECT = "/introspect"
_PATH_METADATA = "/.well-known/oauth-authorization-server"
_PATH_FAVICON = "/favicon.ico"
_ALLOWED_METHODS = {
    _PATH_AUTHORIZE: ("GET", "POST"),
    _PATH_TOKEN: ("POST",),
    _PATH_REVOKE: ("POST",),
    _PATH_INTROSPECT: ("POST",),
    _PATH_METADATA: ("GET",),
}
_COMMON_HEADERS = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
)
_JSON_HEADERS = (("Content-Type", "application/json"),)
_HTML_HEADERS = (
    ("Content-Type", "text/html; charset=utf-8"),
    ("Content-Security-Policy", CONTENT_SECURITY_POLICY),
    ("X-Frame-Options", "DENY"),
)
_PAGE_PREFIX = re.compile(r"^(/[A-Za-z0-9_\-]+)+$")
_PAGE_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})

PageResult = tuple[int, str, bytes] | tuple[int, str, bytes, Sequence[tuple[str, str]]]
"""What a page handler returns: ``(status, content_type, body)``, optionally plus extra headers."""

PageHandler = Callable[[str, str], PageResult]
"""A page handler added with :meth:`AuthServer.add_page`: ``handler(path, query) -> result``."""


# --------------------------------------------------------------------------- public values


@dataclass(frozen=True)
class DevClient:
    """A client registered with :meth:`AuthServer.register_client`.

    Attributes:
        client_id: the client identifier.
        client_secret: the secret of a confidential client; None for a public
            client (which authenticates with ``token_endpoint_auth_method=none``).
            Not shown in ``repr``.
        redirect_uris: the exact redirect URIs this client may use; empty means
            any loopback ``http`` URI (RFC 8252 §7.3).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_uris: tuple[str, ...] = ()

    @property
    def public(self) -> bool:
        """True for a public client (no secret)."""
        return self.client_secret is None


@dataclass(frozen=True)
class TokenInfo:
    """What :meth:`AuthServer.validate_access_token` knows about a live access token.

    Attributes:
        user: the mailbox identity the resource owner approved as.
        client_id: the client the token was issued to.
        scope: the granted scope tokens.
        expires_at: when the token stops being valid (timezone-aware, UTC).
    """

    user: str
    client_id: str
    scope: tuple[str, ...]
    expires_at: datetime


# --------------------------------------------------------------------------- helpers


def _is_loopback_redirect(uri: str) -> bool:
    """True for an ``http`` URI on localhost, 127.0.0.1 or [::1] (any port, any path)."""
    if not isinstance(uri, str) or len(uri) > _MAX_VALUE or not _URI_CHARS.match(uri):
        return False
    if "#" in uri:
        return False  # RFC 6749 §3.1.2: no fragment
    try:
        parts = urlsplit(uri)
        port = parts.port
    except ValueError:
        return False
    if parts.scheme != "http" or port == 0:
        return False
    if parts.username is not None or parts.password is not None:
        return False
    return (parts.hostname or "") in _REDIRECT_HOSTS


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _host_name(host: str) -> str:
    """The name part of a Host header, lower case: ``[::1]:8080`` -> ``[::1]``."""
    host = host.lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


def _page_covers(prefix: str, path: str) -> bool:
    """True when ``path`` is ``prefix`` itself or lies below it (``/p/...`` or ``/p.ext``)."""
    return path == prefix or path.startswith((prefix + "/", prefix + "."))


def _normalize_scope(scope: str) -> str:
    return " ".join(dict.fromkeys(scope.split()))


def _check_token_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 255 or not _VSCHAR.match(value):
        raise ConfigurationError(f"{name} must be 1 to 255 printable ASCII characters")
    return value


def _valid_email(value: str) -> bool:
    return 3 <= len(value) <= 254 and _EMAIL.match(value) is not None


class _BadRequest(Exception):
    """A request the HTTP layer refuses before authlib sees it."""

    def __init__(self, description: str, status: int = 400) -> None:
        super().__init__(description)
        self.description = description
        self.status = status


def _parse_params(text: str) -> list[tuple[str, str]]:
    """Parse a query string or form body; blank values count as absent (RFC 6749 §3.1)."""
    try:
        pairs = parse_qsl(
            text,
            keep_blank_values=False,
            encoding="utf-8",
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except ValueError:
        raise _BadRequest("The parameters are not valid form encoding.") from None
    seen: set[str] = set()
    for key, value in pairs:
        if len(key) > 256 or len(value) > _MAX_VALUE:
            raise _BadRequest("A parameter is too long.")
        if any(ord(ch) < 0x20 or ord(ch) == 0x7F for ch in key + value):
            raise _BadRequest("Control characters are not allowed in parameters.")
        if key in seen:  # RFC 6749 §3.1, §3.2
            name = key if _PARAM_NAME.match(key) else "a parameter"
            raise _BadRequest(f"The parameter {name} is repeated.")
        seen.add(key)
    return pairs


@dataclass
class _Response:
    status: int
    headers: list[tuple[str, str]]
    body: bytes = b""


def _json_response(status: int, data: object, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    body = json.dumps(data, separators=(",", ":")).encode("utf-8")
    return _Response(status, [*_JSON_HEADERS, *headers], body)


def _json_error(status: int, error: str, description: str) -> _Response:
    return _json_response(status, {"error": error, "error_description": description})


def _html_response(status: int, page: str) -> _Response:
    return _Response(status, list(_HTML_HEADERS), page.encode("utf-8"))


def _text_response(status: int, text: str, headers: Iterable[tuple[str, str]] = ()) -> _Response:
    return _Response(
        status,
        [("Content-Type", "text/plain; charset=utf-8"), *headers],
        text.encode("utf-8"),
    )


# --------------------------------------------------------------------------- authlib models


class _Client:
    """The server-side view of a :class:`DevClient` (authlib's ClientMixin contract)."""

    def __init__(self, dev: DevClient) -> None:
        self.dev = dev
        self.client_id = dev.client_id
        self.public = dev.public

    def __repr__(self) -> str:
        return f"<DevClient {self.client_id!r}>"

    def get_client_id(self) -> str:
        return self.client_id

    def get_default_redirect_uri(self) -> str | None:
        uris = self.dev.redirect_uris
        return uris[0] if len(uris) == 1 else None

    def get_allowed_scope(self, scope: str | None) -> str:
        # The server already checked that the scope is a subset of scopes_supported.
        return _normalize_scope(scope) if scope else SCOPE

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.dev.redirect_uris:
            return redirect_uri in self.dev.redirect_uris
        return _is_loopback_redirect(redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.dev.client_secret
        if secret is None or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(secret.encode("utf-8"), client_secret.encode("utf-8"))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in _GRANT_TYPES


@dataclass(eq=False)
class _Code:
    """An authorization code and what it is bound to (authlib's AuthorizationCodeMixin)."""

    code: str = field(repr=False)
    client_id: str
    redirect_uri: str | None
    scope: str
    user: str
    code_challenge: str = field(repr=False)
    code_challenge_method: str
    family: str = field(repr=False)
    issued_at: float
    used: bool = False

    def get_redirect_uri(self) -> str | None:
        return self.redirect_uri

    def get_scope(self) -> str:
        return self.scope


@dataclass(eq=False)
class _Token:
    """An access or refresh token (authlib's TokenMixin, as revocation and introspection use it).

    ``family`` ties together every token issued from one authorization code, so
    that revoking a refresh token (or replaying its code) revokes them all.
    """

    kind: str  # "access_token" | "refresh_token"
    value: str = field(repr=False)
    client_id: str
    user: str
    scope: str
    family: str = field(repr=False)
    issued_at: float
    expires_at: float | None  # None: no expiry (refresh tokens)
    revoked: bool = False

    def check_client(self, client: Any) -> bool:
        return bool(client is not None and client.client_id == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at is not None and time.time() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


class _TokenResponse(dict[str, Any]):
    """A token response whose repr hides the token values.

    authlib logs ``"Issue token %r"`` at DEBUG; this keeps tokens out of logs.
    """

    def __repr__(self) -> str:
        return "<token response: " + ", ".join(sorted(self)) + ">"


# --------------------------------------------------------------------------- authlib adaptation


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
class _HTTPRequest:
    """What the HTTP layer hands to the authlib adaptation."""

    method: str
    uri: str  # issuer + path: no query string
    headers: Message | dict[str, str]
    params: list[tuple[str, str]]


class _OAuth2Request(OAuth2Request):  # type: ignore[misc]
    def __init__(self, request: _HTTPRequest) -> None:
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


class _JsonPayload(JsonPayload):  # type: ignore[misc]
    def __init__(self, data: dict[str, Any]) -> None:
        self._data = data

    @property
    def data(self) -> dict[str, Any]:
        return self._data


class _S256CodeChallenge(CodeChallenge):  # type: ignore[misc]
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


class _AuthorizationCodeGrant(AuthorizationCodeGrant):  # type: ignore[misc]
    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = _AUTH_METHODS

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

    def query_authorization_code(self, code: str, client: Any) -> _Code | None:
        result: _Code | None = self.server.dev_claim_code(code, client)
        return result

    def delete_authorization_code(self, authorization_code: Any) -> None:
        pass  # already consumed by query_authorization_code (single use even on failure)

    def authenticate_user(self, authorization_code: Any) -> str:
        return str(authorization_code.user)


class _RefreshTokenGrant(RefreshTokenGrant):  # type: ignore[misc]
    """refresh_token grant with rotation: a new refresh token each time, the old one revoked."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = _AUTH_METHODS
    INCLUDE_NEW_REFRESH_TOKEN = True

    def authenticate_refresh_token(self, refresh_token: str) -> _Token | None:
        result: _Token | None = self.server.dev_find_refresh_token(refresh_token)
        return result

    def authenticate_user(self, refresh_token: Any) -> str:
        return str(refresh_token.user)

    def revoke_old_credential(self, refresh_token: Any) -> None:
        if self.INCLUDE_NEW_REFRESH_TOKEN:
            self.server.dev_revoke(refresh_token, family=False)


class _StaticRefreshTokenGrant(_RefreshTokenGrant):
    """refresh_token grant without rotation: no new refresh token, the old one stays valid."""

    INCLUDE_NEW_REFRESH_TOKEN = False


class _RevocationEndpoint(RevocationEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = _AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> _Token | None:
        result: _Token | None = self.server.dev_find_token(token_string, token_type_hint)
        return result

    def revoke_token(self, token: Any, request: Any) -> None:
        # RFC 7009 §2.1: revoking a refresh token also invalidates the access
        # tokens of the same grant.
        self.server.dev_revoke(token, family=token.kind == "refresh_token")


class _IntrospectionEndpoint(IntrospectionEndpoint):  # type: ignore[misc]
    CLIENT_AUTH_METHODS: ClassVar[list[str]] = _AUTH_METHODS

    def query_token(self, token_string: str, token_type_hint: str | None) -> _Token | None:
        result: _Token | None = self.server.dev_find_token(token_string, token_type_hint)
        return result

    def check_permission(self, token: Any, client: Any, request: Any) -> bool:
        # Confidential clients act as resource servers and may look at any
        # token; a public client may only look at its own.
        return bool(not client.public or token.client_id == client.client_id)

    def introspect_token(self, token: Any) -> dict[str, Any]:
        result: dict[str, Any] = self.server.dev_introspect(token)
        return result


class _Core(AuthorizationServer):  # type: ignore[misc]
    """authlib's AuthorizationServer adapted to this module's requests, plus the in-memory store.

    Every method named ``dev_*`` touches the store and takes :attr:`lock`
    (reentrant); the HTTP layer also holds it around each endpoint call so that
    a check and the change that follows it (claiming a code, rotating a refresh
    token) happen as one step.
    """

    def __init__(self, *, access_token_lifetime: int, rotate_refresh_tokens: bool) -> None:
        super().__init__(scopes_supported=[SCOPE, *EXTRA_SCOPES])
        self.lock = threading.RLock()
        self.issuer = ""
        self.access_token_lifetime = access_token_lifetime
        self.clients: dict[str, _Client] = {}
        self.codes: dict[str, _Code] = {}
        self.access_tokens: dict[str, _Token] = {}
        self.refresh_tokens: dict[str, _Token] = {}
        self.register_grant(_AuthorizationCodeGrant, [_S256CodeChallenge(required=True)])
        if rotate_refresh_tokens:
            self.register_grant(_RefreshTokenGrant)
        else:
            self.register_grant(_StaticRefreshTokenGrant)
        self.register_endpoint(_RevocationEndpoint)
        self.register_endpoint(_IntrospectionEndpoint)

    # -- authlib framework hooks

    def query_client(self, client_id: str) -> _Client | None:
        with self.lock:
            return self.clients.get(client_id)

    def create_oauth2_request(self, request: Any) -> Any:
        if isinstance(request, OAuth2Request):
            return request
        return _OAuth2Request(request)

    def create_json_request(self, request: Any) -> Any:
        result = JsonRequest(request.method, request.uri, request.headers)
        result.payload = _JsonPayload(dict(request.params))
        return result

    def handle_response(self, status: int, body: Any, headers: Any) -> _Response:
        if isinstance(body, dict):
            data = json.dumps(dict(body), separators=(",", ":")).encode("utf-8")
        else:
            data = str(body or "").encode("utf-8")
        return _Response(int(status), [(str(k), str(v)) for k, v in headers], data)

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
    ) -> _TokenResponse:
        token = _TokenResponse(
            access_token=secrets.token_urlsafe(32),
            token_type="Bearer",  # noqa: S106 - the token type, not a secret
            expires_in=int(expires_in or self.access_token_lifetime),
        )
        if include_refresh_token:
            token["refresh_token"] = secrets.token_urlsafe(32)
        token["scope"] = _normalize_scope(scope or SCOPE)
        return token

    def save_token(self, token: Any, request: Any) -> None:
        now = time.time()
        client_id = request.client.client_id
        if request.authorization_code is not None:
            family = request.authorization_code.family
            refresh_scope = token["scope"]
        else:  # refresh_token grant: RFC 6749 §6, a new refresh token keeps the old scope
            family = request.refresh_token.family
            refresh_scope = request.refresh_token.scope
        with self.lock:
            access = token["access_token"]
            self.access_tokens[access] = _Token(
                kind="access_token",
                value=access,
                client_id=client_id,
                user=request.user,
                scope=token["scope"],
                family=family,
                issued_at=now,
                expires_at=now + int(token["expires_in"]),
            )
            refresh = token.get("refresh_token")
            if refresh:
                self.refresh_tokens[refresh] = _Token(
                    kind="refresh_token",
                    value=refresh,
                    client_id=client_id,
                    user=request.user,
                    scope=refresh_scope,
                    family=family,
                    issued_at=now,
                    expires_at=None,
                )

    # -- store

    def dev_save_code(self, code: str, request: Any) -> None:
        now = time.time()
        data = request.payload.data
        record = _Code(
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

    def dev_claim_code(self, code: str, client: Any) -> _Code | None:
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
            if time.time() >= record.issued_at + CODE_LIFETIME:
                return None
            return record

    def dev_find_refresh_token(self, value: str) -> _Token | None:
        with self.lock:
            record = self.refresh_tokens.get(value)
            if record is None or record.revoked:
                return None
            return record

    def dev_find_token(self, value: str, hint: str | None) -> _Token | None:
        with self.lock:
            stores = [self.access_tokens, self.refresh_tokens]
            if hint == "refresh_token":
                stores.reverse()
            for store in stores:
                record = store.get(value)
                if record is not None:
                    return record
            return None

    def dev_revoke(self, token: _Token, *, family: bool) -> None:
        with self.lock:
            token.revoked = True
            if family:
                self._revoke_family(token.family)

    def _revoke_family(self, family: str) -> None:
        for store in (self.access_tokens, self.refresh_tokens):
            for record in store.values():
                if record.family == family:
                    record.revoked = True

    def dev_introspect(self, token: _Token) -> dict[str, Any]:
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


# --------------------------------------------------------------------------- HTTP layer


@dataclass(eq=False)
class _Pending:
    """An authorization request waiting on the consent page."""

    request_id: str
    csrf_token: str = field(repr=False)
    params: tuple[tuple[str, str], ...] = field(repr=False)
    client_id: str
    scopes: tuple[str, ...]
    redirect_origin: str
    created_at: float


class _HTTPServer(ThreadingHTTPServer):
    """A ThreadingHTTPServer that knows its AuthServer and can cut its open connections."""

    daemon_threads = True
    block_on_close = True
    # SO_REUSEADDR is safe on POSIX (no port stealing); on Windows it is not.
    allow_reuse_address = sys.platform != "win32"

    def __init__(self, address: tuple[str, int], app: AuthServer, family: socket.AddressFamily):
        self.address_family = family
        self.app = app
        self._connections: set[socket.socket] = set()
        self._connections_lock = threading.Lock()
        super().__init__(address, _Handler)

    def server_bind(self) -> None:
        # HTTPServer.server_bind calls socket.getfqdn(), a reverse lookup that
        # can take seconds; a loopback server has no use for it.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)

    def handle_error(self, request: Any, client_address: Any) -> None:
        # The default prints a traceback to stderr; exception texts may quote
        # request data, so only the type is logged.
        exc = sys.exc_info()[1]
        _LOG.debug("connection error: %s", type(exc).__name__)

    def track(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.add(connection)

    def untrack(self, connection: socket.socket) -> None:
        with self._connections_lock:
            self._connections.discard(connection)

    def cut_connections(self) -> None:
        with self._connections_lock:
            connections = list(self._connections)
        for connection in connections:
            with contextlib.suppress(OSError):
                connection.shutdown(socket.SHUT_RDWR)


class _Handler(BaseHTTPRequestHandler):
    """Routes each request to the AuthServer; one response per connection (HTTP/1.0)."""

    server: _HTTPServer
    server_version = "oauthsmtp-devserver"
    sys_version = ""
    protocol_version = "HTTP/1.0"
    timeout = _HANDLER_TIMEOUT

    def version_string(self) -> str:
        return self.server_version

    def setup(self) -> None:
        super().setup()
        self.server.track(self.connection)

    def finish(self) -> None:
        try:
            super().finish()
        finally:
            self.server.untrack(self.connection)

    def _path_only(self) -> str:
        raw = getattr(self, "path", "") or ""
        return raw.split("?", 1)[0].split("#", 1)[0]

    def log_message(self, format: str, *args: Any) -> None:
        # Never the request line (its query string carries codes and state).
        _LOG.debug("%s %s", getattr(self, "command", None) or "-", self._path_only())

    def log_request(self, code: int | str = "-", size: int | str = "-") -> None:
        status = getattr(code, "value", code)
        _LOG.debug("%s %s -> %s", self.command or "-", self._path_only(), status)

    def do_GET(self) -> None:
        self._dispatch()

    def do_POST(self) -> None:
        self._dispatch()

    def do_HEAD(self) -> None:
        self._dispatch()

    def do_PUT(self) -> None:
        self._dispatch()

    def do_DELETE(self) -> None:
        self._dispatch()

    def do_PATCH(self) -> None:
        self._dispatch()

    def do_OPTIONS(self) -> None:
        self._dispatch()

    def _read_body(self) -> str:
        length_text = self.headers.get("Content-Length")
        if length_text is None:
            raise _BadRequest("A Content-Length header is required.", 411)
        try:
            length = int(length_text)
        except ValueError:
            raise _BadRequest("Content-Length is not a number.") from None
        if length < 0:
            raise _BadRequest("Content-Length is negative.")
        if length > _MAX_BODY:
            raise _BadRequest("The request body is too large.", 413)
        if self.headers.get_content_type() != "application/x-www-form-urlencoded":
            raise _BadRequest("The body must be application/x-www-form-urlencoded.", 415)
        charset = self.headers.get_content_charset()
        if charset is not None and charset.lower() not in ("utf-8", "utf8", "us-ascii"):
            raise _BadRequest("The body must be UTF-8.", 415)
        body = self.rfile.read(length)
        if len(body) != length:
            raise _BadRequest("The request body is truncated.")
        try:
            return body.decode("utf-8")
        except UnicodeDecodeError:
            raise _BadRequest("The request body is not UTF-8.") from None

    def _dispatch(self) -> None:
        path = self._path_only()
        app = self.server.app
        app._record(self.command, path)
        try:
            if not path.startswith("/"):
                response = _text_response(400, "Bad request target.\n")
            else:
                query = urlsplit(self.path).query
                response = app._route(self.command, path, query, self.headers, self._read_body)
        except Exception as exc:
            _LOG.debug("%s %s failed: %s", self.command, path, type(exc).__name__)
            response = _text_response(500, "Internal error in the development server.\n")
        self._send(response)

    def _send(self, response: _Response) -> None:
        self.send_response(response.status)
        names: set[str] = set()
        for name, value in response.headers:
            self.send_header(name, value)
            names.add(name.lower())
        for name, value in _COMMON_HEADERS:
            if name.lower() not in names:
                self.send_header(name, value)
        self.send_header("Content-Length", str(len(response.body)))
        self.end_headers()
        if self.command != "HEAD":
            self.wfile.write(response.body)


# --------------------------------------------------------------------------- public server


class AuthServer:
    """A local OAuth2 authorization server for development and tests (see the module docstring).

    Start it with :meth:`start` (or ``with AuthServer() as server:``), register
    a client, and point an OAuth2 client at :attr:`authorization_endpoint` and
    :attr:`token_endpoint`, or take ready-made parameters from :meth:`parameters`.

    Args:
        host: the loopback address to listen on: ``127.0.0.1`` (default), ``::1``
            or ``localhost`` (binds 127.0.0.1; the issuer then says ``localhost``).
            Other addresses are refused.
        port: the TCP port; 0 picks a free one (read it back from :attr:`issuer`).
        mode: how ``GET /authorize`` answers a valid request: ``"auto"`` approves
            at once as ``user`` (302 back to the client with a code), ``"deny"``
            redirects back with ``error=access_denied``, ``"consent"`` shows an
            HTML page with an ``#email`` field and ``#approve`` / ``#deny`` buttons.
            Can be changed while running.
        user: the mailbox identity auto mode approves as, and the consent page's
            default. Can be changed while running.
        access_token_lifetime: seconds an access token lives (``expires_in``).
        rotate_refresh_tokens: when True, each refresh returns a new refresh token
            and revokes the one used; when False, refresh responses carry no
            refresh token and the old one stays valid.

    Raises:
        ConfigurationError: for a non-loopback host or an invalid option.

    Every method is thread-safe. The server keeps everything in memory and
    forgets it when the object goes away.
    """

    SCOPE: ClassVar[str] = SCOPE
    """The mail-sending scope (also :attr:`scope`)."""

    EXTRA_SCOPES: ClassVar[tuple[str, ...]] = EXTRA_SCOPES
    """Other scopes accepted: ``offline_access``, ``openid``, ``email``."""

    CODE_LIFETIME: ClassVar[int] = CODE_LIFETIME
    """Seconds an authorization code stays redeemable."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: str = "auto",
        user: str = "user@example.test",
        access_token_lifetime: int = 3600,
        rotate_refresh_tokens: bool = True,
    ) -> None:
        if not isinstance(host, str) or not is_loopback_host(host):
            raise ConfigurationError(
                f"the development server only listens on loopback (127.0.0.1, ::1 or "
                f"localhost), not {host!r}"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be an integer from 0 to 65535, not {port!r}")
        if (
            isinstance(access_token_lifetime, bool)
            or not isinstance(access_token_lifetime, int)
            or access_token_lifetime <= 0
        ):
            raise ConfigurationError("access_token_lifetime must be a positive number of seconds")
        self._host = host.strip("[]")
        self._port = port
        self._mode = self._check_mode(mode)
        self._user = self._check_user(user)
        self._rotate = bool(rotate_refresh_tokens)
        self._core = _Core(
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=self._rotate,
        )
        self._lock = self._core.lock
        self._pending: dict[str, _Pending] = {}
        self._token_requests = 0
        self._requests_log: list[tuple[str, str]] = []
        self._state_lock = threading.Lock()
        self._httpd: _HTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._issuer: str | None = None
        self._pages: dict[str, PageHandler] = {}

    def __repr__(self) -> str:
        where = self._issuer or "not started"
        return f"<AuthServer {where} mode={self._mode!r}>"

    # -- lifecycle

    def start(self) -> AuthServer:
        """Bind the port and serve in a daemon thread. Returns self.

        Raises:
            RuntimeError: when called a second time (a server runs once).
            OSError: when the port cannot be bound.
        """
        with self._state_lock:
            if self._started:
                raise RuntimeError("this AuthServer was already started; create a new one")
            bind_host = "127.0.0.1" if self._host.lower() == "localhost" else self._host
            family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
            httpd = _HTTPServer((bind_host, self._port), self, family)
            port = int(httpd.server_address[1])
            url_host = f"[{self._host}]" if ":" in self._host else self._host.lower()
            self._issuer = f"http://{url_host}:{port}"
            self._core.issuer = self._issuer
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"oauthsmtp-authserver-{port}",
                daemon=True,
            )
            self._httpd, self._thread, self._started = httpd, thread, True
            thread.start()
        _LOG.debug("authorization server listening on %s", self._issuer)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the socket, join the threads.

        Safe to call more than once, and before :meth:`start`.
        """
        with self._state_lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.cut_connections()
        httpd.server_close()
        if thread is not None:
            thread.join()
        _LOG.debug("authorization server on %s stopped", self._issuer)

    def __enter__(self) -> AuthServer:
        """Start the server (unless :meth:`start` was already called) and return it."""
        with self._state_lock:
            running = self._httpd is not None
        return self if running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def issuer(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); the ``iss`` of every authorization response.

        Raises:
            RuntimeError: before :meth:`start` when the port is 0 (not yet known).
        """
        if self._issuer is not None:
            return self._issuer
        if self._port == 0:
            raise RuntimeError("the port is chosen by start(): start the server first")
        url_host = f"[{self._host}]" if ":" in self._host else self._host.lower()
        return f"http://{url_host}:{self._port}"

    @property
    def authorization_endpoint(self) -> str:
        """The authorization endpoint URL (``issuer + "/authorize"``)."""
        return self.issuer + _PATH_AUTHORIZE

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL (``issuer + "/token"``)."""
        return self.issuer + _PATH_TOKEN

    @property
    def revocation_endpoint(self) -> str:
        """The RFC 7009 revocation endpoint URL (``issuer + "/revoke"``)."""
        return self.issuer + _PATH_REVOKE

    @property
    def introspection_endpoint(self) -> str:
        """The RFC 7662 introspection endpoint URL (``issuer + "/introspect"``)."""
        return self.issuer + _PATH_INTROSPECT

    @property
    def metadata_url(self) -> str:
        """The RFC 8414 metadata URL (``issuer + "/.well-known/oauth-authorization-server"``)."""
        return self.issuer + _PATH_METADATA

    @property
    def scope(self) -> str:
        """The mail-sending scope, ``https://mail.oauthsmtp.test/smtp``."""
        return SCOPE

    # -- settings

    @staticmethod
    def _check_mode(mode: object) -> str:
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        return str(mode)

    @staticmethod
    def _check_user(user: object) -> str:
        if not isinstance(user, str) or not _valid_email(user):
            raise ConfigurationError(f"user must be an email address, not {user!r}")
        return user

    @property
    def mode(self) -> str:
        """``"auto"``, ``"deny"`` or ``"consent"``; settable while running."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = self._check_mode(value)

    @property
    def user(self) -> str:
        """The identity auto mode approves as (and the consent page's default); settable."""
        return self._user

    @user.setter
    def user(self, value: str) -> None:
        self._user = self._check_user(value)

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Whether refresh tokens are rotated (fixed at construction)."""
        return self._rotate

    # -- clients

    def register_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        public: bool = False,
        redirect_uris: Sequence[str] | None = None,
    ) -> DevClient:
        """Register a client and return it.

        Args:
            client_id: the identifier; a random ``dev-...`` one when None.
            client_secret: the secret of a confidential client; a random one when
                None. Must be None for a public client.
            public: a public client has no secret and authenticates with
                ``token_endpoint_auth_method=none`` (its ``client_id`` in the body);
                a confidential one uses ``client_secret_post`` or ``client_secret_basic``.
            redirect_uris: when given, the only redirect URIs accepted (compared
                exactly); each must be a loopback ``http`` URI. When None, any
                ``http`` URI on localhost, 127.0.0.1 or [::1] is accepted, any
                port and path (RFC 8252 §7.3).

        Raises:
            ConfigurationError: for an invalid or already registered client id,
                a secret given for a public client, or a non-loopback redirect URI.
        """
        if public and client_secret is not None:
            raise ConfigurationError("a public client has no client_secret")
        client_id = _check_token_text(
            "client_id", client_id if client_id is not None else "dev-" + secrets.token_urlsafe(12)
        )
        secret: str | None = None
        if not public:
            secret = _check_token_text(
                "client_secret",
                client_secret if client_secret is not None else secrets.token_urlsafe(32),
            )
        uris: tuple[str, ...] = ()
        if redirect_uris is not None:
            if isinstance(redirect_uris, str):
                raise ConfigurationError("redirect_uris must be a list of URIs, not one string")
            uris = tuple(redirect_uris)
            if not uris:
                raise ConfigurationError("redirect_uris is empty; pass None to accept any loopback")
            for uri in uris:
                if not _is_loopback_redirect(uri):
                    raise ConfigurationError(
                        f"redirect URI {uri!r} is not an http URI on localhost, 127.0.0.1 or "
                        "[::1] (without a fragment)"
                    )
        dev = DevClient(client_id=client_id, client_secret=secret, redirect_uris=uris)
        with self._lock:
            if client_id in self._core.clients:
                raise ConfigurationError(f"client_id {client_id!r} is already registered")
            self._core.clients[client_id] = _Client(dev)
        return dev

    def parameters(
        self,
        client: DevClient,
        redirect_url: str = "http://localhost:9000",
        **overrides: Any,
    ) -> OAuth2Parameters:
        """Return :class:`~oauthsmtp.OAuth2Parameters` for ``client`` against this server.

        Sets ``client_id``, ``client_secret``, ``auth_url``, ``token_url``,
        ``scope`` (:attr:`scope`), ``redirect_url``, ``revocation_url`` and
        ``issuer``; any keyword in ``overrides`` replaces the value given here.
        The server must be started (or have a fixed port).
        """
        values: dict[str, Any] = {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "auth_url": self.authorization_endpoint,
            "token_url": self.token_endpoint,
            "scope": SCOPE,
            "redirect_url": redirect_url,
            "revocation_url": self.revocation_endpoint,
            "issuer": self.issuer,
        }
        values.update(overrides)
        return OAuth2Parameters(**values)

    # -- extra pages

    def add_page(self, path_prefix: str, handler: PageHandler) -> None:
        """Serve ``GET`` (and ``HEAD``) requests under ``path_prefix`` with ``handler``.

        A small extension hook for development tools that want a page next to the
        authorization endpoints (the development provider's received-messages
        page uses it). ``handler(path, query)`` is called, in an HTTP thread, for
        ``path_prefix`` itself and for every path below it (``path_prefix + "/..."``
        or ``path_prefix + ".ext"``), with the path and the raw query string, and
        returns ``(status, content_type, body)`` or ``(status, content_type, body,
        headers)``. HTML answers get the same Content-Security-Policy as the
        server's own pages (no scripts, nothing loaded from elsewhere).

        Pages are served only to requests whose ``Host`` header names loopback
        (``localhost``, ``127.0.0.1`` or ``[::1]``), which keeps DNS-rebinding web
        pages from reading them; other methods get ``405``. The authorization
        server's own paths cannot be replaced.

        Args:
            path_prefix: an absolute path such as ``/messages`` (letters, digits,
                ``-`` and ``_`` segments; no trailing slash).
            handler: the function that answers.

        Raises:
            ConfigurationError: for a malformed prefix, or one that would cover
                one of the server's own paths or an already added page.
        """
        if not isinstance(path_prefix, str) or not _PAGE_PREFIX.match(path_prefix):
            raise ConfigurationError(
                f"path_prefix must look like /name or /name/sub, not {path_prefix!r}"
            )
        own = (*_ALLOWED_METHODS, _PATH_FAVICON)
        with self._lock:
            taken = (*own, *self._pages)
            for path in taken:
                if _page_covers(path_prefix, path) or _page_covers(path, path_prefix):
                    raise ConfigurationError(f"path_prefix {path_prefix!r} overlaps {path!r}")
            self._pages[path_prefix] = handler

    def _page_for(self, path: str) -> PageHandler | None:
        with self._lock:
            for prefix, handler in self._pages.items():
                if _page_covers(prefix, path):
                    return handler
        return None

    def _serve_page(
        self, handler: PageHandler, method: str, path: str, query: str, headers: Message
    ) -> _Response:
        if method not in ("GET", "HEAD"):
            return _text_response(405, "Method not allowed.\n", [("Allow", "GET, HEAD")])
        host = str(headers.get("Host") or "").strip()
        if host and _host_name(host) not in _PAGE_HOSTS:
            return _text_response(421, "This page is served to loopback host names only.\n")
        result = handler(path, query)
        status, content_type, body = result[0], result[1], result[2]
        extra = list(result[3]) if len(result) == 4 else []
        if content_type.split(";", 1)[0].strip().lower() == "text/html":
            base = [(n, v) for n, v in _HTML_HEADERS if n != "Content-Type"]
        else:
            base = []
        return _Response(status, [("Content-Type", content_type), *base, *extra], body)

    # -- tokens

    def validate_access_token(self, token: str) -> TokenInfo | None:
        """Return what is known about a live access token, or None.

        None when the token was never issued here, has expired or was revoked.
        Thread-safe: an SMTP server may call it from any thread.
        """
        if not isinstance(token, str) or not token:
            return None
        with self._lock:
            record = self._core.access_tokens.get(token)
            if record is None or record.revoked or record.is_expired():
                return None
            expires_at = record.expires_at
            info = (record.user, record.client_id, tuple(record.scope.split()))
        assert expires_at is not None  # noqa: S101 - access tokens always expire
        return TokenInfo(
            user=info[0],
            client_id=info[1],
            scope=info[2],
            expires_at=datetime.fromtimestamp(expires_at, tz=timezone.utc),
        )

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (refresh tokens are untouched)."""
        now = time.time()
        with self._lock:
            for record in self._core.access_tokens.values():
                if record.expires_at is None or record.expires_at > now - 1:
                    record.expires_at = now - 1

    def revoke_all_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far: refreshing gives ``invalid_grant``."""
        with self._lock:
            for record in self._core.refresh_tokens.values():
                record.revoked = True

    @property
    def token_requests(self) -> int:
        """How many POST requests reached ``/token`` (valid or not)."""
        with self._lock:
            return self._token_requests

    @property
    def requests_log(self) -> list[tuple[str, str]]:
        """A copy of the ``(method, path)`` of every request received, oldest first.

        Paths carry no query string; bodies are never recorded.
        """
        with self._lock:
            return list(self._requests_log)

    # -- request handling (called from the HTTP threads)

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._requests_log.append((method, path))

    def _route(
        self,
        method: str,
        path: str,
        query: str,
        headers: Message,
        read_body: Callable[[], str],
    ) -> _Response:
        if path == _PATH_FAVICON:
            return _text_response(404, "Not found.\n")
        allowed = _ALLOWED_METHODS.get(path)
        if allowed is None:
            page = self._page_for(path)
            if page is not None:
                return self._serve_page(page, method, path, query, headers)
            return _text_response(404, "Not found.\n")
        if method not in allowed:
            return _text_response(405, "Method not allowed.\n", [("Allow", ", ".join(allowed))])
        if path == _PATH_METADATA:
            return _json_response(200, self.metadata())
        if path == _PATH_AUTHORIZE and method == "GET":
            return self._authorize(query, headers)
        if path == _PATH_TOKEN:
            with self._lock:
                self._token_requests += 1
        try:
            form = _parse_params(read_body())
        except _BadRequest as exc:
            if path == _PATH_AUTHORIZE:
                return _html_response(exc.status, render_error("invalid_request", exc.description))
            return _json_error(exc.status, "invalid_request", exc.description)
        if path == _PATH_AUTHORIZE:
            return self._consent_answer(form)
        request = _HTTPRequest("POST", self.issuer + path, headers, form)
        try:
            with self._lock:
                if path == _PATH_TOKEN:
                    response: _Response = self._core.create_token_response(request)
                elif path == _PATH_REVOKE:
                    response = self._core.create_endpoint_response("revocation", request)
                else:
                    response = self._core.create_endpoint_response("introspection", request)
        except ValueError:
            # authlib refuses to build an error whose text would quote bad input.
            return _json_error(400, "invalid_request", "The request is malformed.")
        return response

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata served at the well-known URL."""
        methods = list(_AUTH_METHODS)
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "revocation_endpoint": self.revocation_endpoint,
            "introspection_endpoint": self.introspection_endpoint,
            "scopes_supported": [SCOPE, *EXTRA_SCOPES],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            "grant_types_supported": list(_GRANT_TYPES),
            "token_endpoint_auth_methods_supported": methods,
            "revocation_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_methods_supported": methods,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }

    def _authorize(self, query: str, headers: Message) -> _Response:
        """GET /authorize: validate, then approve, deny or show the consent page."""
        try:
            params = _parse_params(query)
        except _BadRequest as exc:
            return _html_response(400, render_error("invalid_request", exc.description))
        mode = self._mode
        request = _HTTPRequest("GET", self.issuer + _PATH_AUTHORIZE, headers, params)
        with self._lock:
            try:
                grant = self._core.get_consent_grant(request)
            except OAuth2Error as error:
                return self._authorization_error(error)
            except ValueError:
                return _html_response(
                    400, render_error("invalid_request", "The authorization request is malformed.")
                )
            if mode == "consent":
                return self._consent_page(grant, params)
            return self._complete(grant, self._user if mode == "auto" else None)

    def _complete(self, grant: Any, user: str | None) -> _Response:
        """Issue the code (user given) or access_denied (user None) as a redirect with ``iss``."""
        response: _Response = self._core.create_authorization_response(
            request=grant.request, grant_user=user, grant=grant
        )
        if response.status != 302:
            return _html_response(
                400, render_error("invalid_request", "The authorization request is invalid.")
            )
        return self._add_issuer(response)

    def _authorization_error(self, error: Any) -> _Response:
        """Redirect an error to the client when its redirect URI is trusted, else show it."""
        if error.redirect_uri:
            status, body, headers = error()
            return self._add_issuer(self._core.handle_response(status, body, headers))
        description = str(error.get_error_description() or "The request was refused.")
        return _html_response(400, render_error(str(error.error), description))

    def _add_issuer(self, response: _Response) -> _Response:
        """Add ``iss`` to the Location of an authorization response (RFC 9207)."""
        headers = []
        for name, value in response.headers:
            if name.lower() == "location":
                separator = "&" if "?" in value else "?"
                value = value + separator + urlencode({"iss": self.issuer})
            headers.append((name, value))
        return _Response(response.status, headers, response.body)

    def _consent_page(self, grant: Any, params: list[tuple[str, str]]) -> _Response:
        now = time.time()
        pending = _Pending(
            request_id=secrets.token_urlsafe(16),
            csrf_token=secrets.token_urlsafe(32),
            params=tuple(params),
            client_id=grant.request.client.client_id,
            scopes=tuple(str(grant.request.scope).split()),
            redirect_origin=_origin(grant.redirect_uri),
            created_at=now,
        )
        with self._lock:
            for key in [
                k for k, p in self._pending.items() if p.created_at + _CONSENT_LIFETIME < now
            ]:
                del self._pending[key]
            while len(self._pending) >= _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[pending.request_id] = pending
        return self._render_consent(pending, self._user, None, 200)

    @staticmethod
    def _render_consent(
        pending: _Pending, email: str, message: str | None, status: int
    ) -> _Response:
        page = render_consent(
            client_id=pending.client_id,
            scopes=pending.scopes,
            redirect_origin=pending.redirect_origin,
            email=email,
            request_id=pending.request_id,
            csrf_token=pending.csrf_token,
            message=message,
        )
        return _html_response(status, page)

    def _consent_answer(self, form: list[tuple[str, str]]) -> _Response:
        """POST /authorize: the consent form's Approve or Deny."""
        fields = dict(form)
        request_id = fields.get("request_id", "")
        csrf_token = fields.get("csrf_token", "")
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is not None and time.time() > pending.created_at + _CONSENT_LIFETIME:
                del self._pending[request_id]
                pending = None
        if pending is None:
            return _html_response(
                400,
                render_error(
                    "invalid_request",
                    "This consent form has expired or was already answered. "
                    "Start the login again from the application.",
                ),
            )
        if not hmac.compare_digest(pending.csrf_token.encode(), csrf_token.encode("utf-8")):
            return _html_response(
                403, render_error("invalid_request", "The consent form's CSRF token is wrong.")
            )
        decision = fields.get("decision")
        user: str | None
        if decision == "approve":
            email = fields.get("email", "").strip()
            if not _valid_email(email):
                return self._render_consent(pending, email, "Enter an email address.", 400)
            user = email
        elif decision == "deny":
            user = None
        else:
            return _html_response(
                400, render_error("invalid_request", "The consent form has no decision.")
            )
        request = _HTTPRequest("GET", self.issuer + _PATH_AUTHORIZE, {}, list(pending.params))
        with self._lock:
            if self._pending.pop(request_id, None) is None:
                return _html_response(
                    400, render_error("invalid_request", "This consent form was already answered.")
                )
            try:
                grant = self._core.get_consent_grant(request)
            except OAuth2Error as error:
                return self._authorization_error(error)
            return self._complete(grant, user)
