"""Talking to the token and revocation endpoints.

The code exchange and revocation go through authlib and requests: authlib
builds the requests (grant parameters, client authentication, PKCE
``code_verifier``) and a compliance hook reads each answer with a size cap and
hands it to :func:`oauthsmtp._oauth.tokenresponse.parse_token_response`, so nothing
authlib-parsed is trusted. The refresh, which runs in every short-lived
process, is one form POST made with the standard library (see
:func:`_form_post`) and parsed by the same function. Token requests are never
redirected, always carry a timeout and verify TLS certificates (SECURITY.md
rule 13).
"""

from __future__ import annotations

import logging
import os
import random
import time
from collections.abc import Callable
from datetime import datetime, timezone
from typing import Any
from urllib.parse import urlsplit

from oauthsmtp._errors import TokenError

from .params import OAuth2Parameters
from .tokenresponse import MAX_TOKEN_RESPONSE_BYTES, TokenState, parse_token_response

__all__ = ["exchange_code", "refresh", "revoke"]

log = logging.getLogger("oauthsmtp.token")

CONNECT_TIMEOUT = 10.0
READ_TIMEOUT = 30.0
REFRESH_ATTEMPTS = 3
"""Refresh tries on network errors, 5xx and 429 (with backoff); other errors are final."""
MAX_BACKOFF = 10.0

_HEADERS = {
    "Accept": "application/json",
    "Content-Type": "application/x-www-form-urlencoded;charset=UTF-8",
}

Sleep = Callable[[float], None]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _host(url: str) -> str:
    return urlsplit(url).netloc


def _session(params: OAuth2Parameters) -> Any:
    from authlib.integrations.requests_client import OAuth2Session

    method = "none" if params.client_secret is None else "client_secret_post"
    session = OAuth2Session(
        client_id=params.client_id,
        client_secret=params.client_secret,
        token_endpoint_auth_method=method,
        revocation_endpoint_auth_method=method,
    )
    session.trust_env = True
    # requests reads REQUESTS_CA_BUNDLE / CURL_CA_BUNDLE; honour SSL_CERT_FILE as OpenSSL
    # (and the SMTP side) do, so one setting trusts a private CA everywhere.
    cafile = os.environ.get("SSL_CERT_FILE")
    if cafile and not (os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")):
        session.verify = cafile
    return session


def _read_capped(resp: Any) -> bytes:
    """Read at most MAX_TOKEN_RESPONSE_BYTES + 1 bytes of a streamed response."""
    chunks: list[bytes] = []
    size = 0
    for chunk in resp.iter_content(chunk_size=65536):
        chunks.append(chunk)
        size += len(chunk)
        if size > MAX_TOKEN_RESPONSE_BYTES:
            break
    resp.close()
    return b"".join(chunks)


class _StrictHook:
    """authlib compliance hook: parse the answer ourselves, strictly."""

    def __init__(self, params: OAuth2Parameters, previous_refresh_token: str | None) -> None:
        self._params = params
        self._previous = previous_refresh_token
        self.state: TokenState | None = None

    def __call__(self, resp: Any) -> Any:
        body = _read_capped(resp)
        self.state = parse_token_response(
            resp.status_code,
            resp.headers.get("Content-Type", ""),
            body,
            now=_now(),
            requested_scope=self._params.scopes,
            previous_refresh_token=self._previous,
        )
        # authlib parses the body again; give it the validated object only.
        import json

        resp._content = json.dumps(dict(self.state.server_response)).encode("utf-8")
        resp._content_consumed = True
        return resp


def _network_error(params: OAuth2Parameters, exc: Exception) -> TokenError:
    import requests

    if isinstance(exc, requests.exceptions.SSLError):
        reason = "the TLS certificate could not be verified"
    elif isinstance(exc, requests.exceptions.Timeout):
        reason = "the request timed out"
    elif isinstance(exc, requests.exceptions.ConnectionError):
        reason = "the connection failed"
    else:
        reason = type(exc).__name__
    return TokenError(
        f"could not reach the token endpoint at {_host(params.token_url)}: {reason}; "
        "check the network and token_url"
    )


def _post(
    params: OAuth2Parameters, call: Callable[[Any, _StrictHook], Any], hook: _StrictHook
) -> TokenState:
    import requests

    session = _session(params)
    try:
        session.register_compliance_hook("access_token_response", hook)
        session.register_compliance_hook("refresh_token_response", hook)
        try:
            call(session, hook)
        except TokenError:
            raise
        except requests.exceptions.RequestException as exc:
            raise _network_error(params, exc) from None
        except Exception as exc:  # authlib's own errors after our hook accepted the body
            raise TokenError(
                f"the token endpoint's answer could not be used ({type(exc).__name__})"
            ) from None
    finally:
        session.close()
    if hook.state is None:  # pragma: no cover - the hook always runs before parsing
        raise TokenError("the token endpoint gave no answer")
    return hook.state


def exchange_code(
    params: OAuth2Parameters, *, code: str, code_verifier: str, redirect_uri: str
) -> TokenState:
    """Exchange an authorization code for tokens (RFC 6749 §4.1.3, RFC 7636 §4.5).

    The ``redirect_uri`` is repeated byte-for-byte as sent in the authorization
    request. Not retried: a code is single-use.

    Raises:
        TokenError: the endpoint refused or answered something unusable.
    """
    hook = _StrictHook(params, None)

    def call(session: Any, _: _StrictHook) -> Any:
        return session.fetch_token(
            params.token_url,
            grant_type="authorization_code",
            code=code,
            code_verifier=code_verifier,
            redirect_uri=redirect_uri,
            headers=dict(_HEADERS),
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            allow_redirects=False,
            stream=True,
        )

    log.debug("token: exchanging an authorization code at %s", _host(params.token_url))
    return _post(params, call, hook)


def _retry_after(value: str | None) -> float:
    """Seconds from a ``Retry-After`` header given in seconds (dates are ignored)."""
    if value and value.strip().isdigit():
        return float(value.strip())
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


def _opener(url: str) -> Any:
    """A urllib opener that never follows redirects; verified TLS for https URLs."""
    import urllib.request

    class NoRedirect(urllib.request.HTTPRedirectHandler):
        def redirect_request(self, *args: Any, **kwargs: Any) -> None:
            return None  # the 3xx then surfaces as an HTTPError and is refused

    handlers: list[Any] = [NoRedirect()]
    if url.lower().startswith("https:"):  # building a TLS context costs ~20 ms: only when used
        handlers.append(urllib.request.HTTPSHandler(context=_tls_context()))
    return urllib.request.build_opener(*handlers)


def _tls_context() -> Any:
    """Verified TLS with the system's trust store (and ``SSL_CERT_FILE``).

    ``REQUESTS_CA_BUNDLE`` is honoured as well, as on the requests path. Where
    Python finds no system trust store at all (python.org builds on macOS),
    certifi's bundle is loaded instead.
    """
    import ssl

    context = ssl.create_default_context()
    extra = os.environ.get("REQUESTS_CA_BUNDLE")
    if extra:
        context.load_verify_locations(cafile=extra)
    paths = ssl.get_default_verify_paths()
    if not (paths.cafile or paths.capath):
        bundle = _certifi_bundle()
        if bundle:
            context.load_verify_locations(cafile=bundle)
    return context


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return None
    return str(certifi.where())


def _form_post(
    url: str, form: dict[str, str], *, what: str = "token endpoint"
) -> tuple[int, str, bytes, str | None]:
    """POST a form with the standard library.

    The refresh runs in short-lived processes (``oauthsmtp token`` as a password
    command, cron jobs), where importing requests and authlib would cost more than
    the request itself, so this one RFC 6749 §6 request is made with urllib. Like
    the authlib path: TLS verified, no redirects followed, a timeout, at most
    MAX_TOKEN_RESPONSE_BYTES + 1 bytes read.

    Returns:
        (status, content type, body capped at MAX_TOKEN_RESPONSE_BYTES + 1 bytes,
        the ``Retry-After`` header or None).

    Raises:
        TokenError: the endpoint could not be reached.
    """
    import http.client
    import ssl
    import urllib.error
    import urllib.request
    from urllib.parse import urlencode

    request = urllib.request.Request(  # noqa: S310 - the URL was validated as https/loopback
        url, data=urlencode(form).encode("ascii"), headers=dict(_HEADERS), method="POST"
    )
    try:
        with _opener(url).open(request, timeout=READ_TIMEOUT) as resp:
            headers = resp.headers
            return (
                resp.status,
                headers.get("Content-Type", ""),
                _read_limited(resp),
                headers.get("Retry-After"),
            )
    except urllib.error.HTTPError as exc:
        with exc:
            content_type = exc.headers.get("Content-Type", "") if exc.headers else ""
            retry_after = exc.headers.get("Retry-After") if exc.headers else None
            return exc.code, content_type, _read_limited(exc), retry_after
    except (urllib.error.URLError, OSError, http.client.HTTPException) as exc:
        reason = getattr(exc, "reason", exc)
        if isinstance(reason, ssl.SSLError):
            why = "the TLS certificate could not be verified"
        elif isinstance(reason, TimeoutError):
            why = "the request timed out"
        else:
            why = "the connection failed"
        raise TokenError(
            f"could not reach the {what} at {_host(url)}: {why}; check the network and the URL"
        ) from None


def _read_limited(resp: Any) -> bytes:
    data: bytes = resp.read(MAX_TOKEN_RESPONSE_BYTES + 1)
    return data


def refresh(
    params: OAuth2Parameters,
    state: TokenState,
    *,
    sleep: Sleep = time.sleep,
    attempts: int = REFRESH_ATTEMPTS,
) -> TokenState:
    """Use ``state``'s refresh token (RFC 6749 §6); return the new state.

    A refresh token in the answer replaces the old one (rotation); when the
    answer carries none, the old one is kept. Network errors, 5xx and 429 are
    retried ``attempts`` times in all with exponential backoff; OAuth errors
    such as ``invalid_grant`` or ``invalid_client`` are not retried. The client
    authenticates as on the code exchange: ``client_id`` and, when configured,
    ``client_secret`` in the body (``client_secret_post``).

    Raises:
        TokenError: the refresh failed (``error`` tells ``invalid_grant`` apart).
    """
    if state.refresh_token is None:
        raise TokenError("no refresh token is held; log in again", error="invalid_grant")
    form = {"grant_type": "refresh_token", "refresh_token": state.refresh_token}
    if params.scopes:
        form["scope"] = " ".join(params.scopes)
    form["client_id"] = params.client_id
    if params.client_secret is not None:
        form["client_secret"] = params.client_secret
    last: TokenError | None = None
    for attempt in range(attempts):
        log.debug("token: refreshing at %s (attempt %d)", _host(params.token_url), attempt + 1)
        retry_after: str | None = None
        try:
            status, content_type, body, retry_after = _form_post(params.token_url, form)
            return parse_token_response(
                status,
                content_type,
                body,
                now=_now(),
                requested_scope=params.scopes,
                previous_refresh_token=state.refresh_token,
            )
        except TokenError as exc:
            last = exc
            delay = _retry_delay(exc, attempt, _retry_after(retry_after))
            if delay is None or attempt + 1 >= attempts:
                raise
            log.debug("token: refresh failed (%s); retrying in %.1f s", exc.status, delay)
            sleep(delay)
    assert last is not None  # noqa: S101 - the loop ran at least once
    raise last


def revoke(params: OAuth2Parameters, token: str, *, hint: str = "refresh_token") -> bool:
    """Revoke ``token`` at the provider (RFC 7009 §2.1).

    Returns:
        True when the provider confirmed (200: revoked or already invalid);
        False when the parameters have no revocation URL.

    Raises:
        TokenError: the provider refused or could not be reached (503 means
            "try again later", RFC 7009 §2.2.1).
    """
    if params.revocation_url is None:
        return False
    import requests

    session = _session(params)
    try:
        resp = session.revoke_token(
            params.revocation_url,
            token=token,
            token_type_hint=hint,
            timeout=(CONNECT_TIMEOUT, READ_TIMEOUT),
            allow_redirects=False,
        )
        status = resp.status_code
        resp.close()
    except requests.exceptions.RequestException as exc:
        raise TokenError(
            f"could not reach the revocation endpoint at {_host(params.revocation_url)} "
            f"({type(exc).__name__})"
        ) from None
    finally:
        session.close()
    if status == 200:
        return True
    if status == 503:
        raise TokenError(
            "the provider could not revoke the token now (HTTP 503); try again later", status=status
        )
    raise TokenError(f"the provider refused to revoke the token (HTTP {status})", status=status)
