"""OAuth2Parameters: the description of an OAuth2 client (WinDev ``OAuth2Parameters``).

A frozen value, validated on construction. It holds no token and does no I/O.
"""

from __future__ import annotations

import types
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal
from urllib.parse import SplitResult, urlsplit

from oauthsmtp._errors import ConfigurationError

from .hosts import is_loopback_host

__all__ = [
    "OAuth2Parameters",
    "ResponseType",
    "check_endpoint",
    "is_loopback_host",
    "normalize_scope",
]

ResponseType = Literal["code"]
"""The only response type oauthsmtp runs: the authorization-code flow."""

_FORBIDDEN_CHARS = frozenset("\r\n\x00")

_IMPLICIT_REFUSAL = (
    'response_type="token" (the implicit flow) is not supported: it returns the access '
    "token in the browser's URL, where history, extensions and referrers can read it, and it "
    "never yields a refresh token, so mail could only be sent for an hour. OAuth 2.0 Security "
    'Best Current Practice (RFC 9700 §2.1.2) says not to use it. Use response_type="code" '
    "(the default): oauthsmtp runs the authorization-code flow with PKCE."
)


def _check_text(name: str, value: object) -> str:
    if not isinstance(value, str):
        raise ConfigurationError(f"{name} must be a string, not {type(value).__name__}")
    if any(ch in _FORBIDDEN_CHARS for ch in value):
        raise ConfigurationError(f"{name} must not contain CR, LF or NUL characters")
    return value


def _split_url(name: str, value: object) -> SplitResult:
    url = _check_text(name, value)
    if not url:
        raise ConfigurationError(f"{name} is empty")
    if any(ch.isspace() for ch in url):
        raise ConfigurationError(f"{name} must not contain white space: {url!r}")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - evaluated for its validation
    except ValueError as exc:  # "http://[::1", "https://[zz]/", a port out of range
        what = "an invalid port" if "port" in str(exc).lower() else "an invalid host"
        raise ConfigurationError(f"{name} has {what} ({exc}): {url!r}") from None
    if not parts.scheme or not parts.netloc or not parts.hostname:
        raise ConfigurationError(f"{name} must be an absolute URL (scheme://host/...), got {url!r}")
    if parts.fragment:
        raise ConfigurationError(f"{name} must not have a #fragment: {url!r}")
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError(f"{name} must not carry credentials in the URL")
    return parts


def _check_endpoint(name: str, value: object) -> str:
    parts = _split_url(name, value)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    if scheme == "https":
        return parts.geturl()
    if scheme == "http" and is_loopback_host(host):
        return parts.geturl()
    if scheme == "http":
        raise ConfigurationError(
            f"{name} must use https (plain http is allowed only for loopback hosts such as a "
            f"local development server): {parts.geturl()!r}"
        )
    raise ConfigurationError(f"{name} must be an https URL, got scheme {parts.scheme!r}")


def _check_redirect(value: object) -> str:
    parts = _split_url("redirect_url", value)
    if parts.scheme.lower() != "http":
        raise ConfigurationError(
            "redirect_url must be a loopback http URL such as http://localhost:9000 "
            "(RFC 8252 §7.3: the browser hands the code to a local listener), "
            f"got {parts.geturl()!r}"
        )
    if not is_loopback_host(parts.hostname or ""):
        raise ConfigurationError(
            "redirect_url must point at this machine (localhost, 127.0.0.1 or [::1]) so that "
            f"oauthsmtp can receive the code itself, got host {parts.hostname!r}"
        )
    if parts.query:
        raise ConfigurationError("redirect_url must not have a query string")
    # The raw string is kept: it is sent verbatim as redirect_uri (RFC 6749 §4.1.3).
    return str(value)


def _normalize_scope(scope: str | Sequence[str] | None) -> tuple[str, ...]:
    if scope is None:
        return ()
    if isinstance(scope, str):
        items = scope.split()
    elif not isinstance(scope, (list, tuple, frozenset, set)):
        raise ConfigurationError(
            f"scope must be a string or a list of strings, not {type(scope).__name__}"
        )
    else:
        items = []
        for item in scope:
            if not isinstance(item, str):
                raise ConfigurationError(
                    f"scope entries must be strings, not {type(item).__name__}"
                )
            items.extend(item.split())
    for item in items:
        _check_text("scope", item)
        if '"' in item or "\\" in item or not item.isascii() or not item.isprintable():
            raise ConfigurationError(f"scope token {item!r} has characters RFC 6749 §3.3 forbids")
    return tuple(dict.fromkeys(items))


@dataclass(frozen=True)
class OAuth2Parameters:
    """An OAuth2 client: who it is, where to log in, what to ask for.

    Validated on construction; raises :class:`ConfigurationError` for anything
    that cannot work. The client secret never appears in ``repr``.

    Args:
        client_id: the client identifier issued by the provider.
        client_secret: the client secret, or None for a public client
            (Microsoft "Mobile and desktop" registrations must not send one).
        auth_url: the authorization endpoint (https, or http on loopback).
        token_url: the token endpoint (https, or http on loopback).
        scope: a space-separated string or a sequence of scope tokens.
        redirect_url: a loopback ``http`` URL; sent verbatim as ``redirect_uri``.
            ``localhost`` means both 127.0.0.1 and ::1 are listened on. Port 0
            asks for a free port (only for providers that accept any loopback
            port, RFC 8252 §7.3).
        response_type: must be ``"code"``; ``"token"`` (implicit flow) is refused.
        extra_auth_params: extra query parameters for the authorization URL
            (e.g. ``access_type=offline``, ``prompt=consent`` for Google).
        revocation_url: the RFC 7009 revocation endpoint, if the provider has one.
        issuer: the expected ``iss`` of authorization responses (RFC 9207). When
            None, the origin of ``auth_url`` is expected.
        device_authorization_url: the RFC 8628 device authorization endpoint, for
            ``auth_identify(..., flow="device")``; None when the provider has none.
    """

    client_id: str
    client_secret: str | None = field(default=None, repr=False)
    auth_url: str = ""
    token_url: str = ""
    scope: str | Sequence[str] = ()
    redirect_url: str = "http://localhost:9000"
    response_type: str = "code"
    extra_auth_params: Mapping[str, str] = field(
        default_factory=lambda: types.MappingProxyType({}), hash=False
    )
    revocation_url: str | None = None
    issuer: str | None = None
    device_authorization_url: str | None = None

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        client_id = _check_text("client_id", self.client_id)
        if not client_id.strip():
            raise ConfigurationError(
                "client_id is empty: copy it from the provider's app registration"
            )
        if not client_id.isprintable():
            raise ConfigurationError("client_id must not contain control characters")
        if self.client_secret is not None:
            _check_text("client_secret", self.client_secret)
            if not self.client_secret:
                set_(self, "client_secret", None)
        rt = self.response_type
        if rt == "token" or (isinstance(rt, str) and "token" in rt.split()):
            raise ConfigurationError(_IMPLICIT_REFUSAL)
        if rt != "code":
            raise ConfigurationError(
                f'response_type must be "code" (the authorization-code flow), got {rt!r}'
            )
        set_(self, "auth_url", _check_endpoint("auth_url", self.auth_url))
        set_(self, "token_url", _check_endpoint("token_url", self.token_url))
        if self.revocation_url is not None:
            set_(self, "revocation_url", _check_endpoint("revocation_url", self.revocation_url))
        if self.issuer is not None:
            _split_url("issuer", self.issuer)
        if self.device_authorization_url is not None:
            set_(
                self,
                "device_authorization_url",
                _check_endpoint("device_authorization_url", self.device_authorization_url),
            )
        set_(self, "redirect_url", _check_redirect(self.redirect_url))
        set_(self, "scope", _normalize_scope(self.scope))
        given: object = self.extra_auth_params
        if given is None:
            given = {}
        if not isinstance(given, Mapping):
            raise ConfigurationError(
                "extra_auth_params must be a mapping of strings to strings, not "
                f"{type(given).__name__}"
            )
        extra: dict[str, str] = {}
        reserved = {
            "response_type",
            "client_id",
            "redirect_uri",
            "state",
            "code_challenge",
            "code_challenge_method",
            "scope",
        }
        for key, val in dict(given).items():
            _check_text("extra_auth_params key", key)
            _check_text(f"extra_auth_params[{key!r}]", val)
            if key in reserved:
                raise ConfigurationError(
                    f"extra_auth_params must not set {key!r}: oauthsmtp sets it itself"
                )
            extra[key] = val
        set_(self, "extra_auth_params", types.MappingProxyType(extra))

    @classmethod
    def from_issuer(
        cls,
        issuer: str,
        *,
        client_id: str,
        scope: str | Sequence[str] = (),
        client_secret: str | None = None,
        timeout: float = 30.0,
        **overrides: object,
    ) -> OAuth2Parameters:
        """Parameters from the provider's published metadata (discovery).

        Fetches RFC 8414 metadata (``/.well-known/oauth-authorization-server``),
        then OpenID Connect Discovery (``/.well-known/openid-configuration``),
        and uses the first document whose ``issuer`` is byte-equal to ``issuer``
        (RFC 8414 §3.3); its endpoints must be https (http only on loopback).
        Microsoft's multi-tenant issuers (``/common``, ``/organizations``,
        ``/consumers``) are checked against the pinned template they publish.
        See docs/discovery.md.

        Args:
            issuer: the issuer identifier (an https URL without query or fragment).
            client_id / scope / client_secret: as for the constructor.
            timeout: seconds for each document request.
            overrides: any other field, replacing what the metadata says.

        Raises:
            ConfigurationError: no usable metadata (unreachable, not JSON, another
                issuer, a missing or non-https endpoint).
        """
        from .discovery import discover

        found = discover(issuer, timeout=timeout)
        values: dict[str, object] = {
            "client_id": client_id,
            "client_secret": client_secret,
            "auth_url": found.authorization_endpoint,
            "token_url": found.token_endpoint,
            "scope": scope,
            "revocation_url": found.revocation_endpoint,
            "issuer": found.issuer,
            "device_authorization_url": found.device_authorization_endpoint,
        }
        values.update(overrides)
        return cls(**values)  # type: ignore[arg-type]

    @property
    def scopes(self) -> tuple[str, ...]:
        """The requested scopes as a tuple of tokens."""
        scope = self.scope
        return scope if isinstance(scope, tuple) else tuple(scope)

    @property
    def expected_issuer(self) -> str:
        """The ``iss`` value an authorization response must carry when it carries one."""
        if self.issuer is not None:
            return self.issuer
        parts = urlsplit(self.auth_url)
        return f"{parts.scheme}://{parts.netloc}"

    @property
    def is_public_client(self) -> bool:
        """True when no client secret is configured (none is sent to the token endpoint)."""
        return self.client_secret is None


def check_endpoint(name: str, value: object) -> str:
    """An endpoint URL checked as :class:`OAuth2Parameters` checks its own.

    https, or plain http to a loopback host only; no credentials, no fragment.

    Raises:
        ConfigurationError: naming ``name`` and what is wrong.
    """
    return _check_endpoint(name, value)


def normalize_scope(scope: str | Sequence[str] | None) -> tuple[str, ...]:
    """Scope tokens from a space-separated string or a sequence (RFC 6749 §3.3), deduplicated.

    Raises:
        ConfigurationError: a token holds characters RFC 6749 §3.3 forbids.
    """
    return _normalize_scope(scope)
