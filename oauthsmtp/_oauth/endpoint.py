"""Talking to the token and revocation endpoints: code exchange, refresh, revocation.

Each call builds its form (RFC 6749 §4.1.3, §6; RFC 7009 §2.1; client
authentication ``client_secret_post``, or ``client_id`` alone for a public
client), sends it through the one HTTP client
(:func:`oauthsmtp._oauth.httpclient.post_form`: a total deadline, bounded
reads, no compression, no redirects, verified TLS, plain http only to a
loopback peer and never through a proxy) and hands the answer to
:func:`oauthsmtp._oauth.tokenresponse.parse_token_response`. Nothing but
:class:`~oauthsmtp.TokenError` leaves this module, and no message carries a
secret that was sent (docs/security.md, "The token endpoint").
"""

from __future__ import annotations

import logging
import random
import time
from collections.abc import Callable, Iterable
from urllib.parse import urlsplit

from oauthsmtp._errors import TokenError
from oauthsmtp._util.clock import utcnow
from oauthsmtp._util.jsonobject import load_json_object

from .httpclient import REQUEST_TIMEOUT, post_form
from .params import OAuth2Parameters
from .scopes import first_resource
from .tokenresponse import TokenState, parse_token_response

__all__ = [
    "MAX_BACKOFF",
    "REFRESH_ATTEMPTS",
    "REFRESH_TIMEOUT",
    "REQUEST_TIMEOUT",
    "exchange_code",
    "refresh",
    "revoke",
]

log = logging.getLogger("oauthsmtp.token")

REFRESH_ATTEMPTS = 3
"""Refresh tries on network errors, 5xx and 429 (with backoff); other errors are final."""

REFRESH_TIMEOUT = 60.0
"""Seconds a whole refresh may take, every attempt and every backoff included."""

MAX_BACKOFF = 10.0

_MIN_ATTEMPT = 1.0
"""A retry is not started with less time than this left."""

Sleep = Callable[[float], None]


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _client_auth(params: OAuth2Parameters, form: dict[str, str]) -> dict[str, str]:
    form["client_id"] = params.client_id
    if params.client_secret is not None:
        form["client_secret"] = params.client_secret
    return form


_SECRET_FIELDS = ("code", "code_verifier", "refresh_token", "client_secret", "token")


def _secrets(form: dict[str, str]) -> list[str]:
    return [form[name] for name in _SECRET_FIELDS if name in form]


def _scrub(exc: TokenError, secrets: Iterable[str | None]) -> TokenError:
    """The same error with any secret that was sent blanked out (servers echo them)."""
    message = str(exc)
    description = exc.error_description
    found = False
    for secret in secrets:
        if secret and len(secret) >= 4:
            if secret in message:
                message, found = message.replace(secret, "[secret]"), True
            if description and secret in description:
                description, found = description.replace(secret, "[secret]"), True
    if not found:
        return exc
    return TokenError(message, error=exc.error, error_description=description, status=exc.status)


def _check_timeout(timeout: float) -> float:
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)) or not timeout > 0:
        raise TokenError(f"the token request timeout must be a positive number, got {timeout!r}")
    return float(min(timeout, 24 * 3600.0))


def exchange_code(
    params: OAuth2Parameters,
    *,
    code: str,
    code_verifier: str,
    redirect_uri: str,
    timeout: float = REQUEST_TIMEOUT,
) -> TokenState:
    """Exchange an authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5).

    The ``redirect_uri`` is repeated byte-for-byte as sent in the authorization
    request. Not retried: a code is single-use.

    Args:
        timeout: seconds for the whole request (connect, send, answer).

    Raises:
        TokenError: the endpoint refused, answered something unusable, or did
            not answer in time.
    """
    form = _client_auth(
        params,
        {
            "grant_type": "authorization_code",
            "code": code,
            "redirect_uri": redirect_uri,
            "code_verifier": code_verifier,
        },
    )
    log.debug("token: exchanging an authorization code at %s", _host(params.token_url))
    try:
        answer = post_form(params.token_url, form, timeout=_check_timeout(timeout))
        return parse_token_response(
            answer.status,
            answer.content_type,
            answer.body,
            now=utcnow(),
            requested_scope=params.scopes,
            client_id=params.client_id,
        )
    except TokenError as exc:
        raise _scrub(exc, _secrets(form)) from None


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header given in seconds (dates and junk are ignored)."""
    text = (value or "").strip()
    if text and len(text) <= 10 and text.isascii() and text.isdigit():
        return float(text)
    return 0.0


def _retry_delay(exc: TokenError, attempt: int, retry_after: float = 0.0) -> float | None:
    """Seconds to wait before retrying, or None when the error is final.

    Exponential backoff with jitter, at least what ``Retry-After`` asked for,
    at most MAX_BACKOFF.
    """
    retryable = exc.status is None or exc.status == 429 or exc.status >= 500
    if not retryable or exc.error in {"invalid_grant", "invalid_client", "unauthorized_client"}:
        return None
    if exc.error is not None and exc.status is not None and exc.status < 500:
        return None
    backoff = 0.5 * (2**attempt) + random.uniform(0, 0.25)  # noqa: S311 - jitter, not secrets
    return float(min(MAX_BACKOFF, max(backoff, retry_after)))


def refresh(
    params: OAuth2Parameters,
    state: TokenState,
    *,
    sleep: Sleep = time.sleep,
    attempts: int = REFRESH_ATTEMPTS,
    timeout: float = REFRESH_TIMEOUT,
) -> TokenState:
    """Use ``state``'s refresh token (RFC 6749 §6); return the new state.

    A refresh token in the answer replaces the old one (rotation); when the
    answer carries none, the old one is kept. Network errors, 5xx and 429 are
    retried ``attempts`` times in all with exponential backoff (honouring
    ``Retry-After`` up to MAX_BACKOFF); OAuth errors such as ``invalid_grant``
    or ``invalid_client`` are not retried. The client authenticates as on the
    code exchange.

    Args:
        timeout: seconds for the whole refresh, every attempt and backoff
            included; each request gets at most REQUEST_TIMEOUT of it.

    Raises:
        TokenError: the refresh failed (``error`` tells ``invalid_grant`` apart).
    """
    if state.refresh_token is None:
        raise TokenError("no refresh token is held; log in again", error="invalid_grant")
    end = time.monotonic() + _check_timeout(timeout)
    form = {"grant_type": "refresh_token", "refresh_token": state.refresh_token}
    # One resource per token request (Entra refuses more): a login that consented to two
    # renews the token of the first; the other's is redeemed with its own scopes.
    scopes = first_resource(params.scopes)
    if scopes:
        form["scope"] = " ".join(scopes)
    _client_auth(params, form)
    attempt = 0
    while True:
        log.debug("token: refreshing at %s (attempt %d)", _host(params.token_url), attempt + 1)
        retry_after: str | None = None
        try:
            left = max(end - time.monotonic(), 0.001)
            answer = post_form(params.token_url, form, timeout=min(REQUEST_TIMEOUT, left))
            retry_after = answer.retry_after
            return parse_token_response(
                answer.status,
                answer.content_type,
                answer.body,
                now=utcnow(),
                requested_scope=scopes,
                previous_refresh_token=state.refresh_token,
                previous_refresh_expires_at=state.refresh_expires_at,
                client_id=params.client_id,
                previous_identity=state.identity,
            )
        except TokenError as exc:
            error = _scrub(exc, _secrets(form))
            delay = _retry_delay(error, attempt, _retry_after(retry_after))
            attempt += 1
            if delay is None or attempt >= attempts:
                raise error from None
            if end - time.monotonic() - delay < _MIN_ATTEMPT:
                raise error from None
            log.debug("token: refresh failed (%s); retrying in %.1f s", error.status, delay)
            sleep(delay)


def revoke(
    params: OAuth2Parameters,
    token: str,
    *,
    hint: str = "refresh_token",
    timeout: float = REQUEST_TIMEOUT,
) -> bool:
    """Revoke ``token`` at the provider (RFC 7009 §2.1).

    Args:
        timeout: seconds for the whole request.

    Returns:
        True when the provider confirmed (200: revoked or already invalid);
        False when the parameters have no revocation URL.

    Raises:
        TokenError: the provider refused or could not be reached (503 means
            "try again later", RFC 7009 §2.2.1).
    """
    if params.revocation_url is None:
        return False
    form = _client_auth(params, {"token": token, "token_type_hint": hint})
    try:
        answer = post_form(
            params.revocation_url,
            form,
            timeout=_check_timeout(timeout),
            what="revocation endpoint",
        )
    except TokenError as exc:
        raise _scrub(exc, _secrets(form)) from None
    status = answer.status
    if status == 200:
        return True
    if status == 503:
        raise TokenError(
            "the provider could not revoke the token now (HTTP 503); try again later", status=status
        )
    data = load_json_object(answer.body) if len(answer.body) <= 65536 else None
    error = data.get("error") if data is not None else None
    if isinstance(error, str) and error.isascii() and error.isprintable() and len(error) <= 100:
        raise _scrub(
            TokenError(
                f"the provider refused to revoke the token (HTTP {status}: {error})",
                error=error,
                status=status,
            ),
            _secrets(form),
        )
    raise TokenError(f"the provider refused to revoke the token (HTTP {status})", status=status)
