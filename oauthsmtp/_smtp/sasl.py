"""SASL encoders for SMTP AUTH and the reading of SASL failures (pure).

Everything here takes values and returns values: no sockets, no clocks.

* :func:`xoauth2_initial` and :func:`oauthbearer_initial` build the base64 client
  responses of Google's XOAUTH2 and of OAUTHBEARER (RFC 7628 §3.1).
* :func:`plain_initial` and :func:`login_responses` build PLAIN (RFC 4616) and
  LOGIN responses for password sessions.
* :func:`decode_error_challenge` reads the base64 JSON that XOAUTH2 and
  OAUTHBEARER servers send in a ``334`` reply when they refuse a token
  (RFC 7628 §3.2.2); it is diagnostics only.
* :func:`classify_auth_failure` tells a token problem (refresh once and retry)
  from a configuration problem (never retry) and says what to fix.

The values returned by the encoders are secrets: never log them.
"""

from __future__ import annotations

import base64
import binascii
import re
from collections.abc import Mapping
from dataclasses import dataclass

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._util.jsonobject import load_json_object

__all__ = [
    "OAUTHBEARER_FAILURE_RESPONSE",
    "XOAUTH2_FAILURE_RESPONSE",
    "AuthFailure",
    "classify_auth_failure",
    "decode_error_challenge",
    "gs2_escape",
    "is_base64",
    "login_responses",
    "oauthbearer_initial",
    "plain_initial",
    "xoauth2_initial",
]

XOAUTH2_FAILURE_RESPONSE = b""
"""What a client answers to an XOAUTH2 error challenge: an empty line."""

OAUTHBEARER_FAILURE_RESPONSE = base64.b64encode(b"\x01")
"""What a client answers to an OAUTHBEARER error challenge: ``%x01`` (RFC 7628 §3.2.3)."""

_FORBIDDEN_IN_SASL = frozenset("\x00\x01\r\n")
_MAX_CHALLENGE_JSON = 64 * 1024


def _check(what: str, value: str, *, ascii_only: bool = False) -> bytes:
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the SASL {what} must be a non-empty string")
    if any(ch in _FORBIDDEN_IN_SASL for ch in value):
        raise ConfigurationError(
            f"the SASL {what} contains a control character (NUL, ^A, CR or LF); refused"
        )
    if ascii_only and not (value.isascii() and value.isprintable() and " " not in value):
        raise ConfigurationError(
            f"the SASL {what} must be printable ASCII without spaces (RFC 6750 §2.1 b64token)"
        )
    return value.encode("utf-8")


def gs2_escape(name: str) -> str:
    """Escape a ``saslname`` for a GS2 header (RFC 5801 §4): ``=`` -> ``=3D``, ``,`` -> ``=2C``."""
    return name.replace("=", "=3D").replace(",", "=2C")


def xoauth2_initial(user: str, token: str) -> bytes:
    """Return the base64 XOAUTH2 client response for ``user`` and a bearer ``token``.

    The decoded form is ``user={user}^Aauth=Bearer {token}^A^A`` (Google, "OAuth 2.0
    Mechanism"). The user is encoded as UTF-8, so internationalized addresses work.

    Raises:
        ConfigurationError: ``user`` or ``token`` is empty or contains NUL, ``^A``, CR or LF
            (they would inject SMTP commands, docs/security.md), or the token is not
            printable ASCII.
    """
    raw = b"user=" + _check("user", user) + b"\x01auth=Bearer "
    raw += _check("token", token, ascii_only=True) + b"\x01\x01"
    return base64.b64encode(raw)


def oauthbearer_initial(user: str, token: str, host: str, port: int) -> bytes:
    """Return the base64 OAUTHBEARER client response (RFC 7628 §3.1).

    The decoded form is ``n,a={user},^Ahost={host}^Aport={port}^Aauth=Bearer {token}^A^A``;
    ``host`` and ``port`` must be the server the connection really goes to (§3.2), and the
    user is GS2-escaped (RFC 5801 §4).

    Raises:
        ConfigurationError: a value is empty or contains NUL, ``^A``, CR or LF, the token is
            not printable ASCII, or the port is out of range.
    """
    if isinstance(port, bool) or not isinstance(port, int) or not 0 < port < 65536:
        raise ConfigurationError(f"the OAUTHBEARER port must be 1-65535, got {port!r}")
    _check("user", user)
    host_bytes = _check("host", host)
    raw = b"n,a=" + gs2_escape(user).encode("utf-8") + b",\x01host=" + host_bytes
    raw += b"\x01port=" + str(port).encode("ascii") + b"\x01auth=Bearer "
    raw += _check("token", token, ascii_only=True) + b"\x01\x01"
    return base64.b64encode(raw)


def plain_initial(user: str, password: str) -> bytes:
    """Return the base64 PLAIN client response ``\\0user\\0password`` (RFC 4616 §2).

    Raises:
        ConfigurationError: ``user`` or ``password`` is empty or contains NUL, ``^A``, CR or LF.
    """
    raw = b"\x00" + _check("user", user) + b"\x00" + _check("password", password)
    return base64.b64encode(raw)


def login_responses(user: str, password: str) -> tuple[bytes, bytes]:
    """Return the two base64 LOGIN responses (user name, then password).

    Raises:
        ConfigurationError: as :func:`plain_initial`.
    """
    return (
        base64.b64encode(_check("user", user)),
        base64.b64encode(_check("password", password)),
    )


def decode_error_challenge(b64: bytes) -> dict[str, object] | None:
    """Decode the JSON of an XOAUTH2/OAUTHBEARER error challenge (RFC 7628 §3.2.2).

    Gmail sends for example ``{"status":"400","schemes":"Bearer","scope":
    "https://mail.google.com/"}``. The result is diagnostics only: it decides nothing.

    Args:
        b64: the text after ``334 `` in the server's reply.

    Returns:
        The JSON object, or None when the challenge is not strict base64 of a UTF-8 JSON
        object (no NaN, at most 64 KiB).
    """
    data = b64.strip()
    if not data or len(data) > _MAX_CHALLENGE_JSON:
        return None
    try:
        decoded = base64.b64decode(data, validate=True)
    except binascii.Error:
        return None
    return load_json_object(decoded)


def is_base64(b64: bytes) -> bool:
    """True when ``b64`` is strict base64 (possibly empty), as SASL challenges must be."""
    try:
        base64.b64decode(b64, validate=True)
    except binascii.Error:
        return False
    return True


@dataclass(frozen=True)
class AuthFailure:
    """What an AUTH refusal means.

    Attributes:
        retryable: a fresh OAuth token may help (refresh once and retry, docs/sending.md).
        hint: one or two sentences saying what to check or fix.
    """

    retryable: bool
    hint: str


_ENHANCED = re.compile(r"\b([245])\.(\d{1,3})\.(\d{1,3})\b", re.ASCII)

_HINT_MS_DISABLED = (
    "SMTP AUTH is disabled for this Microsoft 365 tenant or mailbox: an administrator must "
    "enable authenticated SMTP for the mailbox (Exchange admin center > mailbox > Email apps, "
    "or Set-CASMailbox -SmtpClientAuthenticationDisabled $false) and allow it for the tenant; "
    "see https://aka.ms/smtp_auth_disabled. Retrying or refreshing the token will not help."
)
_HINT_BASIC_REFUSED = (
    "the server does not accept password authentication here; use an OAuth2 token "
    "(auth_token=) instead of password=."
)
_HINT_MICROSOFT = (
    "Microsoft refused the token: check that it was issued for the scope "
    "https://outlook.office.com/SMTP.Send (Graph scopes do not work for SMTP), that username "
    "is the mailbox the token belongs to (or one it may send as), and that SMTP AUTH is "
    "enabled for that mailbox."
)
_HINT_GOOGLE = (
    "Google refused the token: check that it was issued for the scope https://mail.google.com/ "
    "and that username is the Google account that logged in."
)
_HINT_GENERIC = (
    "the server refused the token: check the token's scope and that username is the account "
    "the token was issued for."
)


def classify_auth_failure(
    code: int,
    text: str,
    provider_error: Mapping[str, object] | None = None,
    *,
    oauth: bool = True,
) -> AuthFailure:
    """Say whether an AUTH refusal may be cured by a fresh token, and what to fix.

    Configuration errors are never retryable (docs/security.md, "Retry policy"): Microsoft's
    ``535 5.7.139 ... SmtpClientAuthentication is disabled for the Tenant`` (or "for the
    Mailbox") and ``550 5.7.30 Basic authentication is not supported``.

    Args:
        code: the SMTP reply code (RFC 4954 §6: 535, 534, 454, 530, 504, ...).
        text: the reply text (all lines).
        provider_error: the decoded JSON of a preceding error challenge, if any.
        oauth: True for XOAUTH2/OAUTHBEARER, False for password mechanisms.

    Returns:
        An :class:`AuthFailure`.
    """
    failure = _classify(code, text, provider_error, oauth=oauth)
    from oauthsmtp._explain import lookup  # error paths only: the table loads when needed

    entry = lookup(f"{code} {text}") if oauth else None
    if entry is None or entry.kind != "smtp":
        return failure
    # The advice is the explain table's (oauthsmtp explain, docs/troubleshooting.md), written
    # once; whether a refresh may help stays this function's own judgement.
    fix = entry.fix.replace("{account}", "<mailbox>")
    return AuthFailure(failure.retryable, f"{entry.cause} Fix: {fix}")


def _classify(
    code: int,
    text: str,
    provider_error: Mapping[str, object] | None,
    *,
    oauth: bool,
) -> AuthFailure:
    match = _ENHANCED.search(text)
    enhanced = match.group(0) if match else ""
    lowered = text.lower()
    if enhanced == "5.7.139" or "smtpclientauthentication is disabled" in lowered:
        return AuthFailure(False, _HINT_MS_DISABLED)
    if enhanced == "5.7.30" or "basic authentication is not supported" in lowered:
        return AuthFailure(False, _HINT_BASIC_REFUSED)
    if enhanced == "5.7.9" or "application-specific password" in lowered:
        return AuthFailure(
            False,
            "Google wants an app password for password logins on accounts with 2-step "
            "verification; better, use OAuth2 (auth_token=).",
        )
    if enhanced == "5.7.14" or "log in via your web browser" in lowered:
        return AuthFailure(
            False,
            "Google blocked the sign-in: log in to the account in a browser once, "
            "then use OAuth2 (auth_token=).",
        )
    if code == 454 or code == 432:
        return AuthFailure(False, "a temporary failure on the server side; try again later.")
    if code == 530:
        return AuthFailure(False, "the server wants TLS or another step before AUTH.")
    if code in (500, 501, 502, 504):
        return AuthFailure(
            False, "the server does not accept this mechanism or its syntax; try mechanism=."
        )
    if code == 534:
        return AuthFailure(False, "the server considers this mechanism too weak for the account.")
    if not oauth:
        return AuthFailure(False, "check the user name and password.")
    if enhanced == "5.7.3" or "outlook.com" in lowered or "office365" in lowered:
        return AuthFailure(True, _HINT_MICROSOFT)
    if enhanced == "5.7.8" or "google.com" in lowered or "gsmtp" in lowered:
        return AuthFailure(True, _HINT_GOOGLE)
    if provider_error is not None:
        scope = provider_error.get("scope")
        if isinstance(scope, str) and "mail.google.com" in scope:
            return AuthFailure(True, _HINT_GOOGLE)
    return AuthFailure(code == 535 or provider_error is not None, _HINT_GENERIC)
