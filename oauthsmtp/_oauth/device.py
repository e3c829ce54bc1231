"""The device login: the device authorization grant for machines without a browser (RFC 8628).

The pure part: :func:`parse_device_authorization` judges the device
authorization response (§3.2), :func:`prompt_text` says what the user must do,
and :func:`next_interval` decides, from one token-endpoint error, whether to
poll again and after how long (§3.5). The I/O part, :func:`device_login`, asks
for a device code, shows the prompt, and polls the token endpoint with the
real clock until the user approves, refuses, or time runs out.

Polling follows docs/security.md ("Device flow"): the server's ``interval``
(5 s when it gives none, or 0, or a negative or unusable value), 5 s more on
every ``slow_down`` for that and all later polls, ``authorization_pending``
keeps going, ``access_denied`` and ``expired_token`` stop, and the login never
outlives the code's ``expires_in`` nor ``timeout``.
"""

from __future__ import annotations

import math
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import datetime, timezone
from urllib.parse import urlsplit

from oauthsmtp._errors import (
    AccessDenied,
    AuthorizationError,
    AuthorizationTimeout,
    ConfigurationError,
    TokenError,
)
from oauthsmtp._util.jsonobject import load_json_object

from .hosts import is_loopback_host
from .httpclient import REQUEST_TIMEOUT, post_form
from .params import OAuth2Parameters
from .tokenresponse import TokenState, parse_token_response

__all__ = [
    "DEFAULT_INTERVAL",
    "DEVICE_CODE_GRANT",
    "SLOW_DOWN_STEP",
    "DeviceAuthorization",
    "check_device_flow",
    "device_login",
    "next_interval",
    "parse_device_authorization",
    "prompt_text",
]

DEVICE_CODE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_INTERVAL = 5.0
"""Seconds between polls when the server says nothing usable (RFC 8628 §3.2)."""
SLOW_DOWN_STEP = 5.0
"""Seconds added to the interval on every ``slow_down`` (RFC 8628 §3.5)."""
MAX_INTERVAL = 300.0
_MAX_EXPIRES_IN = 24 * 3600.0
_MAX_BODY = 64 * 1024
_GOOGLE_HOSTS = ("accounts.google.com", "oauth2.googleapis.com", "www.googleapis.com")
_GMAIL_SCOPES = ("https://mail.google.com/",)

_GOOGLE_REFUSAL = (
    "the device login cannot be used with Gmail: Google refuses the mail scope "
    'https://mail.google.com/ in its device flow ("Invalid device flow scope"). On a machine '
    'without a browser use flow="paste" (`oauthsmtp login --flow paste`: open the printed URL '
    "in any browser and paste back the address it ends on), forward the redirect port over SSH "
    "(ssh -L 9000:127.0.0.1:9000), or log in on another machine and move the login with "
    "import_token (`oauthsmtp login --refresh-token-file`); see docs/device-login.md"
)


@dataclass(frozen=True)
class DeviceAuthorization:
    """A checked device authorization response (RFC 8628 §3.2).

    Attributes:
        device_code: the code the client polls with (secret; not in repr).
        user_code: the code the user types on the verification page.
        verification_uri: where the user goes.
        verification_uri_complete: the same page with the code filled in, if offered.
        expires_in: seconds the codes stay valid.
        interval: seconds to wait between polls.
    """

    device_code: str = field(repr=False)
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float


def _shown(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    return "".join(ch if ch.isprintable() else "?" for ch in text[:limit])


def check_device_flow(params: OAuth2Parameters) -> str:
    """The device authorization endpoint of ``params``, or ConfigurationError saying why not.

    Gmail is refused whatever the parameters say: Google rejects its mail scope
    in the device flow (docs/security.md, "Device flow").
    """
    token_host = urlsplit(params.token_url).hostname or ""
    device_host = urlsplit(params.device_authorization_url or "").hostname or ""
    google = token_host in _GOOGLE_HOSTS or device_host in _GOOGLE_HOSTS
    if google or any(scope in _GMAIL_SCOPES for scope in params.scopes):
        raise ConfigurationError(_GOOGLE_REFUSAL)
    if params.device_authorization_url is None:
        raise ConfigurationError(
            "these parameters have no device_authorization_url, so the device login cannot "
            "run: set it to the provider's RFC 8628 endpoint (providers.microsoft() does; "
            'OAuth2Parameters.from_issuer() finds it when published), or use flow="paste"'
        )
    return params.device_authorization_url


def _number(value: object) -> float | None:
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        if isinstance(value, str) and value.strip().isdigit() and len(value) < 10:
            return float(value)  # some servers send numbers as strings
        return None
    number = float(value)
    return number if math.isfinite(number) else None


def _uri(data: dict[str, object], *names: str) -> str | None:
    for name in names:
        value = data.get(name)
        if value is None:
            continue
        if not isinstance(value, str) or not value.isprintable() or len(value) > 2048:
            raise AuthorizationError(f"the device authorization endpoint sent a malformed {name}")
        try:
            parts = urlsplit(value)
        except ValueError:
            raise AuthorizationError(
                f"the device authorization endpoint sent a malformed {name}"
            ) from None
        host = parts.hostname or ""
        scheme = parts.scheme.lower()
        if not host or not (scheme == "https" or (scheme == "http" and is_loopback_host(host))):
            raise AuthorizationError(
                f"the device authorization endpoint sent {name} {_shown(value)}, which is not an "
                "https URL; it is not shown to you"
            )
        return value
    return None


def parse_device_authorization(status: int, body: bytes) -> DeviceAuthorization:
    """Judge a device authorization response (RFC 8628 §3.2; errors per RFC 6749 §5.2).

    ``interval`` missing, 0, negative or not a number means 5 seconds (never
    faster than the RFC's default); ``expires_in`` is required.

    Raises:
        AuthorizationError: an error answer (``error`` set), a body that is not
            a JSON object, or a missing or malformed field. The message never
            contains the device code.
    """
    data = load_json_object(body[:_MAX_BODY]) if len(body) <= _MAX_BODY else None
    if data is not None and isinstance(data.get("error"), str):
        error = _shown(data["error"], 100)
        raw = data.get("error_description")
        description = _shown(raw, 300) if isinstance(raw, str) else None
        message = f"the device authorization endpoint refused the request: {error}"
        if description:
            message += f" ({description})"
        if "device flow scope" in (description or "").lower():
            message += ". " + _GOOGLE_REFUSAL
        raise AuthorizationError(message, error=error, error_description=description)
    if data is None or status != 200:
        raise AuthorizationError(
            f"the device authorization endpoint did not answer a JSON object (HTTP {status}); "
            "check device_authorization_url"
        )
    device_code = data.get("device_code")
    if not isinstance(device_code, str) or not device_code or not device_code.isprintable():
        raise AuthorizationError("the device authorization endpoint sent no usable device_code")
    user_code = data.get("user_code")
    if (
        not isinstance(user_code, str)
        or not user_code.strip()
        or len(user_code) > 64
        or not user_code.isprintable()
    ):
        raise AuthorizationError("the device authorization endpoint sent no usable user_code")
    # Google (and drafts of RFC 8628) say verification_url.
    verification = _uri(data, "verification_uri", "verification_url")
    if verification is None:
        raise AuthorizationError(
            "the device authorization endpoint sent no verification_uri (where to enter the code)"
        )
    complete = _uri(data, "verification_uri_complete")
    expires_in = _number(data.get("expires_in"))
    if expires_in is None or expires_in <= 0:
        raise AuthorizationError(
            "the device authorization endpoint sent no usable expires_in (RFC 8628 §3.2 "
            "requires it)"
        )
    interval = _number(data.get("interval"))
    if interval is None or interval <= 0:
        interval = DEFAULT_INTERVAL
    return DeviceAuthorization(
        device_code=device_code,
        user_code=user_code.strip(),
        verification_uri=verification,
        verification_uri_complete=complete,
        expires_in=min(expires_in, _MAX_EXPIRES_IN),
        interval=min(interval, MAX_INTERVAL),
    )


def _duration(seconds: float) -> str:
    if seconds >= 120:
        return f"{round(seconds / 60)} minutes"
    return f"{round(seconds)} seconds"


def prompt_text(auth: DeviceAuthorization, *, valid_for: float | None = None) -> str:
    """What the user is told: where to go, the code, and for how long it is valid."""
    seconds = auth.expires_in if valid_for is None else min(auth.expires_in, valid_for)
    lines = [
        "oauthsmtp: to log in, open this page in a browser on any device:",
        f"  {auth.verification_uri}",
        f"and enter the code: {auth.user_code}",
    ]
    if auth.verification_uri_complete:
        lines += [
            "(or open this address, which has the code filled in:",
            f"  {auth.verification_uri_complete} )",
        ]
    lines.append(f"The code is valid for {_duration(seconds)}; waiting for you to approve...")
    return "\n".join(lines)


def next_interval(error: str | None, interval: float, description: str | None = None) -> float:
    """The interval for the next poll after a token-endpoint error (RFC 8628 §3.5).

    ``authorization_pending``: the same interval. ``slow_down``: 5 s more, for
    this and all later polls.

    Raises:
        AccessDenied: ``access_denied``.
        AuthorizationTimeout: ``expired_token``.
        AuthorizationError: any other error (it ends the login).
    """
    if error == "authorization_pending":
        return interval
    if error == "slow_down":
        return min(interval + SLOW_DOWN_STEP, MAX_INTERVAL)
    if error == "access_denied":
        raise AccessDenied(
            "the login was refused on the verification page (access_denied); nothing was saved",
            error="access_denied",
        )
    if error == "expired_token":
        raise AuthorizationTimeout(
            "the device code expired before the login was approved (expired_token); run the "
            "login again and enter the new code sooner",
            error="expired_token",
        )
    said = f" ({_shown(description, 300)})" if description else ""
    raise AuthorizationError(
        f"the token endpoint ended the device login: {_shown(error, 100)}{said}",
        error=error,
        error_description=description,
    )


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _scrubbed(exc: TokenError, secrets: tuple[str | None, ...]) -> TokenError:
    """``exc`` with any secret that was sent blanked out (servers echo what they got)."""
    message, description = str(exc), exc.error_description
    for secret in secrets:
        if secret and len(secret) >= 4:
            message = message.replace(secret, "[secret]")
            if description:
                description = description.replace(secret, "[secret]")
    if message == str(exc) and description == exc.error_description:
        return exc
    return TokenError(message, error=exc.error, error_description=description, status=exc.status)


def _client_form(params: OAuth2Parameters, form: dict[str, str]) -> dict[str, str]:
    form["client_id"] = params.client_id
    if params.client_secret is not None:
        form["client_secret"] = params.client_secret
    return form


def device_login(
    params: OAuth2Parameters,
    *,
    timeout: float,
    on_prompt: Callable[[str], None] | None = None,
    check: Callable[[TokenState], None] | None = None,
    save: Callable[[TokenState], None] | None = None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
) -> TokenState:
    """Run the device authorization grant once and return the new state.

    Asks ``params.device_authorization_url`` for a code, shows the prompt
    (``on_prompt(text)``, else standard error), then polls the token endpoint.
    ``check`` judges the answer (granted scope, account) before ``save``.
    ``sleep`` and ``clock`` are the real ones except in tests of the schedule.

    Raises:
        ConfigurationError: the parameters cannot run the device flow (Gmail, or
            no device endpoint).
        AccessDenied: the user refused. AuthorizationTimeout: the code expired, or
            ``timeout`` passed. AuthorizationError: another refusal or a malformed
            answer. TokenError: the token endpoint failed otherwise.
    """
    url = check_device_flow(params)
    start = clock()
    form = {"scope": " ".join(params.scopes)} if params.scopes else {}
    _client_form(params, form)
    answer = post_form(
        url, form, timeout=min(REQUEST_TIMEOUT, timeout), what="device authorization endpoint"
    )
    auth = parse_device_authorization(answer.status, answer.body)
    deadline = start + min(timeout, auth.expires_in)
    text = prompt_text(auth, valid_for=deadline - clock())
    if on_prompt is not None:
        on_prompt(text)
    else:
        print(text, file=sys.stderr, flush=True)
    poll = _client_form(params, {"grant_type": DEVICE_CODE_GRANT, "device_code": auth.device_code})
    interval = auth.interval
    while True:
        if clock() + interval > deadline:
            raise AuthorizationTimeout(
                "the device login was not approved in time (the code expired or the timeout "
                "passed); nothing was saved. Run the login again",
                error="expired_token",
            )
        sleep(interval)
        try:
            reply = post_form(
                params.token_url, poll, timeout=max(min(REQUEST_TIMEOUT, deadline - clock()), 1.0)
            )
            state = parse_token_response(
                reply.status,
                reply.content_type,
                reply.body,
                now=_now(),
                requested_scope=params.scopes,
                client_id=params.client_id,
            )
        except TokenError as raw:
            exc = _scrubbed(raw, (auth.device_code, params.client_secret))
            if exc.error is None and (exc.status is None or exc.status >= 500):
                # RFC 8628 §3.5: on a connection failure, poll less often.
                interval = min(interval * 2, MAX_INTERVAL)
                continue
            if exc.error is None:
                raise
            interval = next_interval(exc.error, interval, exc.error_description)
            continue
        if check is not None:
            check(state)
        if save is not None:
            save(state)
        return state
