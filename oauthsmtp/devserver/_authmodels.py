"""The development authorization server's data: clients, codes and tokens.

The public values (:class:`DevClient`, :class:`TokenInfo`), the records the
in-memory store keeps (``ClientRecord``, ``CodeRecord``, ``TokenRecord``, shaped as authlib's
ClientMixin, AuthorizationCodeMixin and TokenMixin expect), the scopes the
server grants, and the checks those values go through. No I/O and no locking:
the store that holds these records is ``_authcore._Core``.
"""

from __future__ import annotations

import hmac
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any
from urllib.parse import urlsplit

from oauthsmtp._errors import ConfigurationError

SCOPE = "https://mail.oauthsmtp.test/smtp"
"""The scope that grants sending mail through the development SMTP server."""

GMAIL_API_SCOPE = "https://mail.oauthsmtp.test/gmail.send"
"""The scope the emulated Gmail API wants (Google's ``.../auth/gmail.send``)."""

GRAPH_API_SCOPE = "https://mail.oauthsmtp.test/Mail.Send"
"""The scope the emulated Microsoft Graph wants (``https://graph.microsoft.com/Mail.Send``)."""

EXTRA_SCOPES = ("offline_access", "openid", "email", GMAIL_API_SCOPE, GRAPH_API_SCOPE)
"""Other scopes the server accepts (and grants unchanged); only the API emulation reads the
two API scopes (``_apiserver``), the rest carry no meaning here."""

CODE_LIFETIME = 60
"""Seconds an authorization code stays redeemable."""

MAX_VALUE = 4096  # characters accepted in one parameter value
AUTH_METHODS = ["client_secret_basic", "client_secret_post", "none"]
DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
GRANT_TYPES = ("authorization_code", "refresh_token", DEVICE_CODE_GRANT)
CLIENT_CREDENTIALS = "client_credentials"
JWT_BEARER = "urn:ietf:params:oauth:grant-type:jwt-bearer"
_REDIRECT_HOSTS = frozenset({"localhost", "127.0.0.1", "::1"})
_VSCHAR = re.compile(r"^[\x20-\x7e]+$")
_URI_CHARS = re.compile(r"^[A-Za-z0-9\-._~:/?#\[\]@!$&'()*+,;=%]+$")
_EMAIL = re.compile(r"^[^\s@\x00-\x1f\x7f]+@[^\s@\x00-\x1f\x7f]+$")


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
        grant_types: the grants it may use (apps: ``client_credentials``;
            service accounts: the JWT bearer grant).
        public_key: an app's or service account's public key (PEM), which
            verifies its signed assertions.
        thumbprint: the ``x5t#S256`` of an app's registered certificate.
        email: a service account's address (the ``iss`` of its assertions).
        mailboxes: the mailboxes an app may send as (``Add-MailboxPermission``),
            or the users a service account may act for (domain-wide delegation).
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    redirect_uris: tuple[str, ...] = ()
    grant_types: tuple[str, ...] = GRANT_TYPES
    public_key: str | None = field(default=None, repr=False)
    thumbprint: str | None = None
    email: str | None = None
    mailboxes: tuple[str, ...] = ()

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
        mailboxes: for an app-only token (client credentials), the mailboxes
            it may be used for; ``user`` is then ``""``.
    """

    user: str
    client_id: str
    scope: tuple[str, ...]
    expires_at: datetime
    mailboxes: tuple[str, ...] = ()


def is_loopback_redirect(uri: str) -> bool:
    """True for an ``http`` URI on localhost, 127.0.0.1 or [::1] (any port, any path)."""
    if not isinstance(uri, str) or len(uri) > MAX_VALUE or not _URI_CHARS.match(uri):
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


def normalize_scope(scope: str) -> str:
    return " ".join(dict.fromkeys(scope.split()))


def check_token_text(name: str, value: object) -> str:
    if not isinstance(value, str) or not value or len(value) > 255 or not _VSCHAR.match(value):
        raise ConfigurationError(f"{name} must be 1 to 255 printable ASCII characters")
    return value


def valid_email(value: str) -> bool:
    return 3 <= len(value) <= 254 and _EMAIL.match(value) is not None


# --------------------------------------------------------------------------- authlib models


class ClientRecord:
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
        return normalize_scope(scope) if scope else SCOPE

    def check_redirect_uri(self, redirect_uri: str) -> bool:
        if self.dev.redirect_uris:
            return redirect_uri in self.dev.redirect_uris
        return is_loopback_redirect(redirect_uri)

    def check_client_secret(self, client_secret: str) -> bool:
        secret = self.dev.client_secret
        if secret is None or not isinstance(client_secret, str):
            return False
        return hmac.compare_digest(secret.encode("utf-8"), client_secret.encode("utf-8"))

    def check_endpoint_auth_method(self, method: str, endpoint: str) -> bool:
        if self.dev.public_key is not None and self.dev.thumbprint is not None:
            return method == "private_key_jwt"  # an app with a certificate
        if self.public:
            return method == "none"
        return method in ("client_secret_basic", "client_secret_post")

    def check_response_type(self, response_type: str) -> bool:
        return response_type == "code"

    def check_grant_type(self, grant_type: str) -> bool:
        return grant_type in self.dev.grant_types


@dataclass(eq=False)
class CodeRecord:
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
class DeviceRecord:
    """A device authorization (RFC 8628) and its state (authlib's DeviceCredentialMixin).

    ``decision`` is None while pending, then (user, approved). ``interval`` grows
    by 5 s on each ``slow_down`` (§3.5); ``last_poll`` is when the client last polled.
    """

    device_code: str = field(repr=False)
    user_code: str
    client_id: str
    scope: str
    issued_at: float
    expires_at: float
    interval: float
    clock: Callable[[], float] = field(repr=False)
    family: str = field(repr=False, default="")
    last_poll: float | None = None
    polls: int = 0
    decision: tuple[str, bool] | None = None
    used: bool = False

    def get_client_id(self) -> str:
        return self.client_id

    def get_scope(self) -> str:
        return self.scope

    def get_user_code(self) -> str:
        return self.user_code

    def is_expired(self) -> bool:
        return self.clock() >= self.expires_at


@dataclass(eq=False)
class TokenRecord:
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
    clock: Callable[[], float] = field(repr=False)  # the server's clock (Core.clock)
    revoked: bool = False
    mailboxes: tuple[str, ...] = ()  # app-only tokens: the mailboxes they may be used for

    def check_client(self, client: Any) -> bool:
        return bool(client is not None and client.client_id == self.client_id)

    def get_scope(self) -> str:
        return self.scope

    def is_expired(self) -> bool:
        return self.expires_at is not None and self.clock() >= self.expires_at

    def is_revoked(self) -> bool:
        return self.revoked


class TokenResponse(dict[str, Any]):
    """A token response whose repr hides the token values.

    authlib logs ``"Issue token %r"`` at DEBUG; this keeps tokens out of logs.
    """

    def __repr__(self) -> str:
        return "<token response: " + ", ".join(sorted(self)) + ">"
