"""The strict parsing of token endpoint responses (pure).

:func:`parse_token_response` turns the bytes a token endpoint answered into a
:class:`TokenState` or a :class:`TokenError` (RFC 6749 §5.1-5.2, §7.1). It is
pure: the clock is an argument. :class:`AuthToken` wraps the current state and,
when it was given a refresher, refreshes itself when the access token is
within the leeway of its expiry.
"""

from __future__ import annotations

import base64
import math
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from typing import Any

from oauthsmtp._errors import TokenError
from oauthsmtp._util.clock import utcnow
from oauthsmtp._util.jsonobject import load_json_object

__all__ = [
    "DEFAULT_LEEWAY",
    "IDENTITY_CLAIMS",
    "MAX_TOKEN_RESPONSE_BYTES",
    "ServerResponse",
    "TokenState",
    "lifetime",
    "parse_token_response",
    "refresh_lifetime",
    "token_identity",
]

DEFAULT_LEEWAY = timedelta(seconds=60)
"""A token this close to its expiry counts as expired and is refreshed first."""

MISSING_EXPIRY_LIFETIME = timedelta(hours=1)
"""A response without ``expires_in`` is trusted for at most this long."""

MAX_TOKEN_RESPONSE_BYTES = 1024 * 1024
"""Token endpoint bodies larger than this are refused unread."""

MAX_EXPIRES_IN = 10 * 365 * 24 * 3600

BEARER = "Bearer"

_SECRET_KEYS = frozenset({"access_token", "refresh_token", "id_token", "code", "client_secret"})


class ServerResponse(Mapping[str, Any]):
    """A read-only view of the token endpoint's answer; its repr masks secrets."""

    __slots__ = ("_data",)

    def __init__(self, data: Mapping[str, Any]) -> None:
        self._data = dict(data)

    def __getitem__(self, key: str) -> Any:
        return self._data[key]

    def __iter__(self) -> Iterator[str]:
        return iter(self._data)

    def __len__(self) -> int:
        return len(self._data)

    def __repr__(self) -> str:
        shown = {k: ("***" if k in _SECRET_KEYS else v) for k, v in self._data.items()}
        return f"ServerResponse({shown!r})"

    def __eq__(self, other: object) -> bool:
        if isinstance(other, ServerResponse):
            return self._data == other._data
        if isinstance(other, Mapping):
            return self._data == dict(other)
        return NotImplemented

    __hash__ = None  # type: ignore[assignment]


@dataclass(frozen=True)
class TokenState:
    """One token endpoint answer, validated. Secrets are kept out of repr.

    Attributes:
        access_token: the bearer token.
        token_type: always ``"Bearer"`` (other types are refused, RFC 6749 §7.1).
        refresh_token: the refresh token, or None.
        expires_at: when the access token expires (aware, UTC).
        scope: the granted scope tokens; the requested ones when the server
            did not say (RFC 6749 §5.1: omitted means "as requested").
        obtained_at: when the answer was received (aware, UTC).
        refresh_expires_at: when the refresh token itself lapses (aware, UTC), from the
            server's ``refresh_token_expires_in``; None where that is not known.
        identity: the accounts the OpenID Connect ``id_token`` of the login named (see
            :func:`token_identity`), kept across refreshes that send none; () when unknown.
        server_response: the whole answer, read-only and masked in repr.
    """

    access_token: str = field(repr=False)
    token_type: str = BEARER
    refresh_token: str | None = field(default=None, repr=False)
    expires_at: datetime | None = None
    scope: tuple[str, ...] = ()
    obtained_at: datetime = field(default_factory=utcnow)
    refresh_expires_at: datetime | None = None
    identity: tuple[str, ...] = ()
    server_response: ServerResponse = field(
        default_factory=lambda: ServerResponse({}), repr=False, compare=False
    )

    def is_expired(self, now: datetime, leeway: timedelta = DEFAULT_LEEWAY) -> bool:
        """True when the access token must not be used at ``now`` (within ``leeway``)."""
        if self.expires_at is None:
            return False
        return now + leeway >= self.expires_at

    def to_dict(self) -> dict[str, Any]:
        """The JSON-ready form used by token stores."""
        data: dict[str, Any] = {
            "access_token": self.access_token,
            "token_type": self.token_type,
            "refresh_token": self.refresh_token,
            "expires_at": self.expires_at.isoformat() if self.expires_at else None,
            "scope": " ".join(self.scope),
            "obtained_at": self.obtained_at.isoformat(),
        }
        if self.refresh_expires_at is not None:  # absent in tokens stored before it existed
            data["refresh_expires_at"] = self.refresh_expires_at.isoformat()
        if self.identity:  # the same
            data["identity"] = list(self.identity)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> TokenState:
        """Rebuild a state from :meth:`to_dict` output; raises ValueError when malformed."""
        if not isinstance(data, Mapping):
            raise ValueError("token data must be a JSON object")
        access = data.get("access_token")
        if not isinstance(access, str) or not access:
            raise ValueError("token data has no access_token")
        refresh = data.get("refresh_token")
        if refresh is not None and (not isinstance(refresh, str) or not refresh):
            raise ValueError("token data has a malformed refresh_token")
        token_type = data.get("token_type", BEARER)
        if not isinstance(token_type, str) or token_type.lower() != "bearer":
            raise ValueError("token data has an unsupported token_type")
        scope = data.get("scope", "")
        if not isinstance(scope, str):
            raise ValueError("token data has a malformed scope")

        def _when(key: str) -> datetime | None:
            raw = data.get(key)
            if raw is None:
                return None
            if not isinstance(raw, str):
                raise ValueError(f"token data has a malformed {key}")
            value = datetime.fromisoformat(raw)
            if value.tzinfo is None:
                raise ValueError(f"token data has a naive {key}")
            return value.astimezone(timezone.utc)

        identity = data.get("identity", [])
        if (
            not isinstance(identity, list)
            or len(identity) > _MAX_NAMES
            or not all(_is_name(name) for name in identity)
        ):
            raise ValueError("token data has a malformed identity")
        obtained = _when("obtained_at") or utcnow()
        return cls(
            access_token=access,
            token_type=BEARER,
            refresh_token=refresh,
            expires_at=_when("expires_at"),
            scope=tuple(scope.split()),
            obtained_at=obtained,
            refresh_expires_at=_when("refresh_expires_at"),
            identity=tuple(identity),
        )


def _hint(error: str, description: str) -> str:
    """What to do for a known provider error, from the explain table (the fix is written once).

    Looked up in :data:`oauthsmtp._explain.TABLE` (also ``oauthsmtp explain`` and
    docs/troubleshooting.md); "" when the table knows nothing of it.
    """
    from oauthsmtp._explain import lookup  # error paths only: the table loads when needed

    entry = lookup(f"{error} {description}")
    if entry is None:
        return ""
    return f". Hint: {entry.title} {entry.fix.replace('{account}', '<mailbox>')}"


def _describe_body(content_type: str, body: bytes) -> str:
    kind = content_type.split(";")[0].strip().lower() or "no content type"
    return f"{kind}, {len(body)} bytes"


_NUMBER_TEXT = re.compile(r"[0-9]{1,30}(?:\.[0-9]{1,30})?")


def lifetime(expires_in: object) -> timedelta:
    """How long an access token is trusted, from a server's ``expires_in`` (RFC 6749 §5.1).

    Liberal where the answer is harmless, so that a usable token is never
    refused: a number or a string of ASCII digits is taken, negative counts
    as 0 and anything above MAX_EXPIRES_IN is clamped to it; an absent or
    unreadable value (another type, ``"²"``, ``"soon"``) counts as absent:
    at most MISSING_EXPIRY_LIFETIME.
    """
    seconds: float | None = None
    if isinstance(expires_in, bool):
        seconds = None
    elif isinstance(expires_in, (int, float)):
        seconds = float(expires_in) if not isinstance(expires_in, float) else expires_in
    elif isinstance(expires_in, str) and _NUMBER_TEXT.fullmatch(expires_in.strip()):
        seconds = float(expires_in.strip())
    if seconds is None or math.isnan(seconds):
        return MISSING_EXPIRY_LIFETIME
    return timedelta(seconds=min(max(seconds, 0.0), float(MAX_EXPIRES_IN)))


def refresh_lifetime(expires_in: object) -> timedelta | None:
    """How long a refresh token lasts, from a server's ``refresh_token_expires_in``.

    Read as liberally as :func:`lifetime` (a number or a string of ASCII digits; negative
    counts as 0, clamped to MAX_EXPIRES_IN), but an absent or unreadable value gives None:
    nothing is known, nothing is guessed.
    """
    if expires_in is None:
        return None
    if not isinstance(expires_in, bool) and isinstance(expires_in, (int, float, str)):
        if isinstance(expires_in, str) and not _NUMBER_TEXT.fullmatch(expires_in.strip()):
            return None
        if isinstance(expires_in, float) and math.isnan(expires_in):
            return None
        return lifetime(expires_in)
    return None


def _clean(text: str, limit: int = 300) -> str:
    """A server-sent string made safe to show: printable, bounded."""
    shown = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return shown + ("..." if len(text) > limit else "")


def _str_field(data: Mapping[str, Any], key: str) -> str | None:
    value = data.get(key)
    return value if isinstance(value, str) else None


def parse_token_response(
    status: int,
    content_type: str,
    body: bytes,
    *,
    now: datetime,
    requested_scope: tuple[str, ...] = (),
    previous_refresh_token: str | None = None,
    previous_refresh_expires_at: datetime | None = None,
    client_id: str | None = None,
    previous_identity: tuple[str, ...] = (),
) -> TokenState:
    """Validate a token endpoint answer (RFC 6749 §5.1, §5.2, §7.1).

    Args:
        status: the HTTP status code.
        content_type: the ``Content-Type`` header ("" when absent).
        body: the raw body (already capped by the caller).
        now: when the answer arrived (aware).
        requested_scope: used when the server omits ``scope`` (§5.1).
        previous_refresh_token: kept when a refresh answer carries none (§6).
        previous_refresh_expires_at: the kept refresh token's lapse time, kept with it
            unless the answer gives a new ``refresh_token_expires_in``.
        client_id: the client the token was issued to; with it, the accounts an
            ``id_token`` for this client names become the state's ``identity``.
        previous_identity: kept when the answer names no identity (a refresh usually
            carries no ``id_token``).

    Returns:
        the validated :class:`TokenState`.

    Raises:
        TokenError: for error answers (with ``error``/``error_description``),
            non-JSON or non-object bodies, redirects, a missing or malformed
            ``access_token``, a ``token_type`` other than Bearer, or a
            malformed ``refresh_token`` or ``scope``. An odd ``expires_in`` is
            never a reason to refuse a token (see :func:`lifetime`). The
            message never contains the body's secrets.
    """
    if len(body) > MAX_TOKEN_RESPONSE_BYTES:
        raise TokenError(
            f"the token endpoint answered more than {MAX_TOKEN_RESPONSE_BYTES} bytes; refused",
            status=status,
        )
    data = load_json_object(body)
    if 300 <= status < 400:
        raise TokenError(
            f"the token endpoint answered a redirect (HTTP {status}); token requests are never "
            "redirected (check token_url)",
            status=status,
        )
    if data is not None and isinstance(data.get("error"), str):
        error = _clean(data["error"], 100)
        raw_description = _str_field(data, "error_description")
        description = _clean(raw_description, 1000) if raw_description is not None else None
        message = f"the token endpoint refused the request: {error}"
        if description:
            message += f" ({_clean(description)})"
        message += _hint(error, description or "")
        raise TokenError(message, error=error, error_description=description, status=status)
    if status != 200:
        raise TokenError(
            f"the token endpoint answered HTTP {status} ({_describe_body(content_type, body)}) "
            "without an OAuth error; try again later or check token_url",
            status=status,
        )
    if data is None:
        raise TokenError(
            "the token endpoint did not answer a JSON object "
            f"({_describe_body(content_type, body)}): is a proxy or captive portal in the way? "
            "Check token_url",
            status=status,
        )
    access = data.get("access_token")
    if not isinstance(access, str) or not access.strip():
        raise TokenError("the token endpoint's answer has no usable access_token", status=status)
    if not access.isascii() or not access.isprintable() or "\x01" in access:
        raise TokenError(
            "the token endpoint's access_token has forbidden characters", status=status
        )
    token_type = data.get("token_type")
    if not isinstance(token_type, str) or token_type.lower() != "bearer":
        shown = token_type if isinstance(token_type, str) else None
        raise TokenError(
            f"the token endpoint issued token_type {shown!r}; only Bearer tokens can be used "
            "(RFC 6749 §7.1)",
            status=status,
        )
    expires_at = now + lifetime(data.get("expires_in"))
    refresh = data.get("refresh_token", None)
    refresh_expires_at: datetime | None = None
    refresh_lasts = refresh_lifetime(data.get("refresh_token_expires_in"))
    if refresh_lasts is not None:
        refresh_expires_at = now + refresh_lasts
    if refresh is None:
        refresh = previous_refresh_token
        if refresh_lasts is None:
            refresh_expires_at = previous_refresh_expires_at
    elif not isinstance(refresh, str) or not refresh.strip():
        raise TokenError(
            "the token endpoint sent an empty or malformed refresh_token", status=status
        )
    scope_raw = data.get("scope")
    if scope_raw is None:
        scope = requested_scope
    elif isinstance(scope_raw, str):
        scope = tuple(scope_raw.split())
    elif isinstance(scope_raw, list) and all(isinstance(item, str) for item in scope_raw):
        scope = tuple(token for item in scope_raw for token in item.split())
    else:
        raise TokenError("the token endpoint sent a malformed scope", status=status)
    return TokenState(
        access_token=access,
        token_type=BEARER,
        refresh_token=refresh,
        expires_at=expires_at,
        scope=scope,
        obtained_at=now,
        refresh_expires_at=refresh_expires_at if refresh is not None else None,
        identity=(token_identity(data, client_id=client_id) if client_id else ())
        or previous_identity,
        server_response=ServerResponse(data),
    )


IDENTITY_CLAIMS = ("email", "preferred_username", "upn")
"""OpenID Connect claims that name the account that logged in (Google: email;
Microsoft: preferred_username / upn / email)."""

_MAX_ID_TOKEN = 64 * 1024


def token_identity(response: Mapping[str, Any], *, client_id: str) -> tuple[str, ...]:
    """The accounts an OpenID Connect ``id_token`` in a token answer names.

    The signature is not checked: the answer came straight from the token
    endpoint over verified TLS (or from a loopback server), which OpenID
    Connect Core §3.1.3.7 (6) accepts in place of the signature. An id_token
    issued to another client (``aud``), unreadable, or naming no mailbox-like
    identity gives ``()``: nothing is known, nothing is compared.
    """
    raw = response.get("id_token")
    if not isinstance(raw, str) or len(raw) > _MAX_ID_TOKEN or raw.count(".") != 2:
        return ()
    payload = raw.split(".")[1]
    try:
        text = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    except ValueError:
        return ()
    claims = load_json_object(text)
    if claims is None:
        return ()
    audience = claims.get("aud")
    audiences = audience if isinstance(audience, list) else [audience]
    if audience is not None and client_id not in audiences:
        return ()
    found = [
        value
        for value in (claims.get(name) for name in IDENTITY_CLAIMS)
        if isinstance(value, str) and _is_name(value)
    ]
    return tuple(dict.fromkeys(found))


_MAX_NAMES = len(IDENTITY_CLAIMS)


def _is_name(value: object) -> bool:
    """A mailbox-like identity: printable text with an ``@``, of a sane length."""
    return isinstance(value, str) and "@" in value and value.isprintable() and len(value) < 320
