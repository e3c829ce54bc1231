"""The authorization request and the validation of its response. Pure logic.

:func:`build_request` makes the URL the browser opens (PKCE S256, fresh
``state``); :func:`check_callback` judges one request that arrived on the
loopback listener and says whether it completes the flow, ends it with an
error, or must be ignored (the flow goes on waiting).
"""

from __future__ import annotations

import enum
import hmac
from dataclasses import dataclass, field
from urllib.parse import parse_qsl, urlencode, urlsplit, urlunsplit

from oauthsmtp._errors import AccessDenied, AuthorizationError, CallbackError

from .params import OAuth2Parameters
from .pkce import make_state, make_verifier, s256_challenge

__all__ = [
    "MAX_CODE_LENGTH",
    "AuthorizationRequest",
    "CallbackVerdict",
    "Outcome",
    "build_request",
    "check_callback",
]

MAX_CODE_LENGTH = 2048
"""Longest authorization code accepted (real codes are a few hundred characters)."""

_MAX_FIELDS = 32


@dataclass(frozen=True)
class AuthorizationRequest:
    """One pending authorization request. Used once.

    Attributes:
        url: the URL the browser opens.
        redirect_uri: the exact ``redirect_uri`` sent (repeated in the token request).
        state: the ``state`` sent; the callback must return it unchanged.
        issuer: the ``iss`` a callback must carry when it carries one (RFC 9207).
        code_verifier: the PKCE verifier (secret; not in repr).
    """

    url: str = field(repr=False)
    redirect_uri: str
    state: str = field(repr=False)
    issuer: str
    code_verifier: str = field(repr=False)

    @property
    def callback_path(self) -> str:
        """The path the response must arrive on (RFC 8252 §8.10)."""
        return urlsplit(self.redirect_uri).path or "/"


def build_request(
    params: OAuth2Parameters,
    *,
    redirect_uri: str | None = None,
    state: str | None = None,
    code_verifier: str | None = None,
) -> AuthorizationRequest:
    """Build the authorization URL for ``params``.

    Args:
        params: the client.
        redirect_uri: the redirect URI to send; defaults to ``params.redirect_url``
            verbatim (a listener on port 0 passes the URI with its real port).
        state: for tests only; a fresh random value by default.
        code_verifier: for tests only; a fresh random verifier by default.
    """
    state = state if state is not None else make_state()
    verifier = code_verifier if code_verifier is not None else make_verifier()
    redirect = redirect_uri if redirect_uri is not None else params.redirect_url
    query: dict[str, str] = {
        "response_type": "code",
        "client_id": params.client_id,
        "redirect_uri": redirect,
    }
    if params.scopes:
        query["scope"] = " ".join(params.scopes)
    query["state"] = state
    query["code_challenge"] = s256_challenge(verifier)
    query["code_challenge_method"] = "S256"
    query.update(params.extra_auth_params)
    parts = urlsplit(params.auth_url)
    existing = parts.query
    encoded = urlencode(query)
    url = urlunsplit(parts._replace(query=f"{existing}&{encoded}" if existing else encoded))
    return AuthorizationRequest(
        url=url,
        redirect_uri=redirect,
        state=state,
        issuer=params.expected_issuer,
        code_verifier=verifier,
    )


class Outcome(enum.Enum):
    """What a request on the loopback listener means for the flow."""

    CODE = "code"  # a valid authorization response: exchange the code
    ERROR = "error"  # a valid error response, or an untrustworthy one: end the flow
    IGNORE = "ignore"  # not a response to this request: answer it, keep waiting


@dataclass(frozen=True)
class CallbackVerdict:
    """The judgement on one loopback request.

    Attributes:
        outcome: what the flow does next.
        status: the HTTP status to answer the browser with.
        message: a short, human message for the page (never contains the code).
        code: the authorization code (only with ``Outcome.CODE``; not in repr).
        error: the exception that ends the flow (only with ``Outcome.ERROR``).
    """

    outcome: Outcome
    status: int
    message: str
    code: str | None = field(default=None, repr=False)
    error: AuthorizationError | None = None


def _ignore(status: int, message: str) -> CallbackVerdict:
    return CallbackVerdict(Outcome.IGNORE, status, message)


def _shown(value: str, limit: int) -> str:
    """A provider-sent text made safe for a terminal or a log: printable, bounded."""
    text = "".join(ch if ch.isprintable() else "?" for ch in value[:limit])
    return text + ("..." if len(value) > limit else "")


def _printable(value: str) -> bool:
    return value.isprintable() and value.isascii()


def check_callback(request: AuthorizationRequest, method: str, target: str) -> CallbackVerdict:
    """Judge one HTTP request that arrived on the loopback listener.

    Rules (RFC 6749 §4.1.2, RFC 8252 §8.9-8.10, RFC 9207 §2.4):

    * only ``GET`` on the exact redirect path is considered; anything else is
      answered (404/405) and ignored without consuming the flow;
    * a request without exactly one ``state`` equal to the pending one is
      ignored (400): it is not a response to this request;
    * with a matching ``state``, an ``iss`` other than the expected issuer,
      a duplicated parameter, or an ``error`` ends the flow with an error;
    * with a matching ``state`` and exactly one well-formed ``code``, the flow
      completes.

    Args:
        request: the pending authorization request.
        method: the HTTP method of the request.
        target: the request target (path and query) as received.
    """
    try:
        parts = urlsplit(target)
    except ValueError:  # e.g. "//[": an unbalanced IPv6 bracket in what looks like a host
        return _ignore(400, "This request is malformed.")
    if parts.scheme or parts.netloc or not target.startswith("/"):
        return _ignore(404, "Not found.")
    if parts.path != request.callback_path:
        return _ignore(404, "Not found.")
    if method != "GET":
        return _ignore(405, "Method not allowed.")
    try:
        pairs = parse_qsl(
            parts.query,
            keep_blank_values=True,
            strict_parsing=False,
            errors="strict",
            max_num_fields=_MAX_FIELDS,
        )
    except (ValueError, UnicodeDecodeError):
        return _ignore(400, "This request is malformed.")
    values: dict[str, list[str]] = {}
    for key, value in pairs:
        values.setdefault(key, []).append(value)
    states = values.get("state", [])
    if len(states) != 1 or not hmac.compare_digest(
        states[0].encode("utf-8", "surrogateescape"), request.state.encode("ascii")
    ):
        return _ignore(
            400,
            "This response does not belong to the login in progress (missing or wrong state). "
            "It was ignored.",
        )
    duplicated = sorted(key for key, vals in values.items() if len(vals) > 1)
    if duplicated:
        return CallbackVerdict(
            Outcome.ERROR,
            400,
            "The response repeats parameters; the login was stopped.",
            error=CallbackError(
                "the authorization response repeats parameter(s) "
                f"{', '.join(duplicated)}; refusing to guess which one is real"
            ),
        )
    issuers = values.get("iss")
    if issuers is not None and issuers[0] != request.issuer:
        return CallbackVerdict(
            Outcome.ERROR,
            400,
            "The response came from an unexpected issuer; the login was stopped.",
            error=CallbackError(
                f"the authorization response names issuer {issuers[0]!r} but the request went "
                f"to {request.issuer!r} (possible mix-up attack, RFC 9700 §4.4); log in again"
            ),
        )
    errors = values.get("error")
    if errors is not None:
        code = _shown(errors[0], 100)
        raw_description = values.get("error_description", [None])[0]
        description = _shown(raw_description, 300) if raw_description is not None else None
        text = f"the provider refused the authorization: {code}"
        if description:
            text += f" ({description})"
        exc_type = AccessDenied if code == "access_denied" else AuthorizationError
        return CallbackVerdict(
            Outcome.ERROR,
            200,
            "The provider refused the authorization.",
            error=exc_type(text, error=code, error_description=description),
        )
    codes = values.get("code")
    if codes is None:
        return _ignore(400, "This response carries neither a code nor an error. It was ignored.")
    code = codes[0]
    if not code or len(code) > MAX_CODE_LENGTH or not _printable(code):
        return _ignore(400, "This response carries a malformed code. It was ignored.")
    return CallbackVerdict(Outcome.CODE, 200, "Login complete.", code=code)
