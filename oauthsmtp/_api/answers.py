"""Reading an HTTP sending API's answer (pure): what it means and what to do next.

:func:`read_answer` takes the status, the content type, the ``Retry-After`` header and the
(capped) body of one answer and returns a :class:`Verdict`: the message was sent, it failed
alone, it may or may not have been sent, the token must be refreshed, the client must wait,
or the whole session is misconfigured. No socket, clock or token is touched here.

Both APIs answer errors as JSON ``{"error": {...}}``:

* Gmail API (Google's JSON error format, AIP-193): ``{"error": {"code": 403, "message": ...,
  "status": "PERMISSION_DENIED", "errors": [{"reason": "insufficientPermissions"}],
  "details": [{"@type": "...ErrorInfo", "reason": "SERVICE_DISABLED"}]}}``;
* Microsoft Graph: ``{"error": {"code": "ErrorAccessDenied", "message": ...,
  "innerError": {"request-id": ...}}}``.

Rules (docs/api.md, "Results and retries"):

* 401: refresh the token once and retry once; an "invalid audience" 401 is a token for
  another API, which no refresh cures: a configuration error.
* 403 (and Graph's 400 for ``/me`` with an app-only token) that means configuration (API
  not enabled, scope or permission missing, mailbox without a licence or not hosted in
  Exchange Online): never retried, the error names the fix.
* 429 and 503: the request was not processed; wait ``Retry-After`` (within a cap) and retry.
* 502 and 504: a gateway lost the answer; the message may have been sent: ``unknown``.
* any other 4xx/5xx: this message failed (status and the API's error kept).
* a 2xx that is not the API's success answer (HTML from a portal, no message id): the
  request may have reached the API, so ``unknown``, never sent again.
"""

from __future__ import annotations

from dataclasses import dataclass
from email.utils import parsedate_to_datetime
from typing import Literal

from oauthsmtp._util.jsonobject import load_json_object

__all__ = [
    "DEFAULT_RETRY_WAIT",
    "Verdict",
    "api_error",
    "read_answer",
    "retry_after_seconds",
]

DEFAULT_RETRY_WAIT = 1.0
"""Seconds to wait after a 429/503 that carries no usable ``Retry-After``."""

API = Literal["gmail", "graph"]
Kind = Literal["sent", "failed", "unknown", "refresh", "wait", "config"]

_GMAIL_FIXES = {
    "SERVICE_DISABLED": "enable the Gmail API for the Google Cloud project of this client "
    "(APIs & Services > Library > Gmail API > Enable), then wait a few minutes",
    "accessNotConfigured": "enable the Gmail API for the Google Cloud project of this client "
    "(APIs & Services > Library > Gmail API > Enable), then wait a few minutes",
    "ACCESS_TOKEN_SCOPE_INSUFFICIENT": "the token lacks the gmail.send scope: log in again "
    "with providers.gmail(..., api=True) (oauthsmtp login --transport api)",
    "insufficientPermissions": "the token lacks the gmail.send scope: log in again "
    "with providers.gmail(..., api=True) (oauthsmtp login --transport api)",
    "domainPolicy": "the Google Workspace administrator has disabled the Gmail API for this "
    "domain: ask them to allow it",
    "failedPrecondition": "this account cannot send through the Gmail API (no Gmail service?)",
}

_GRAPH_FIXES = {
    "ErrorAccessDenied": "the app lacks the Mail.Send permission: add it in Entra ID "
    "(API permissions > Microsoft Graph > Mail.Send; application permission and admin "
    "consent for app-only), then get a new token",
    "Authorization_RequestDenied": "the app lacks the Mail.Send permission: add it in Entra ID "
    "(API permissions > Microsoft Graph > Mail.Send), grant consent, then get a new token",
    "MailboxNotEnabledForRESTAPI": "the mailbox has no Exchange Online licence or is hosted "
    "on-premises: assign an Exchange Online licence, or send over SMTP",
    "MailboxNotEnabledForRESTAPI.": "the mailbox has no Exchange Online licence or is hosted "
    "on-premises: assign an Exchange Online licence, or send over SMTP",
    "ErrorSendAsDenied": "the mailbox may not send as this From address: grant Send As, "
    "or send with the mailbox's own address",
    "ResourceNotFound": "no such mailbox: check user= (a user id or user principal name)",
    "ErrorInvalidUser": "no such mailbox: check user= (a user id or user principal name)",
}

_AUDIENCE_FIX = {
    "gmail": "the token was issued for another API (SMTP's https://mail.google.com/ works, "
    "but a token without gmail.send does not): log in with providers.gmail(..., api=True)",
    "graph": "the token was issued for another API (e.g. Outlook SMTP), not Microsoft Graph: "
    "log in with providers.microsoft(..., api=True) (scope https://graph.microsoft.com/"
    "Mail.Send) or, app-only, scope https://graph.microsoft.com/.default",
}


@dataclass(frozen=True)
class Verdict:
    """What one answer means.

    Attributes:
        kind: ``"sent"``, ``"failed"`` (this message only), ``"unknown"`` (may have been
            sent), ``"refresh"`` (a 401: refresh the token and retry once), ``"wait"``
            (429/503: retry after :attr:`wait` seconds) or ``"config"`` (nothing will be
            sent until the configuration changes).
        status: the HTTP status.
        error: the API's error code, when it gave one.
        text: the API's own words (or a description of the answer), for messages.
        fix: what to do, for ``"config"`` (and an audience 401).
        message_id: the API's id of the sent message (Gmail), else None.
        wait: seconds to wait before retrying, for ``"wait"``.
    """

    kind: Kind
    status: int
    error: str | None = None
    text: str = ""
    fix: str | None = None
    message_id: str | None = None
    wait: float | None = None


@dataclass(frozen=True)
class APIErrorBody:
    """The parts of a JSON error body we use."""

    code: str | None
    message: str
    reasons: tuple[str, ...]


def api_error(body: bytes, content_type: str) -> APIErrorBody | None:
    """Parse ``{"error": {...}}`` from either API; None when the body is not such JSON."""
    if "json" not in content_type.lower():
        return None
    data = load_json_object(body)
    error = data.get("error") if data is not None else None
    if not isinstance(error, dict):
        return None
    reasons: list[str] = []
    for key in ("status", "code"):
        value = error.get(key)
        if isinstance(value, str) and value:
            reasons.append(value)
    for item in error.get("errors") or ():
        if isinstance(item, dict) and isinstance(item.get("reason"), str):
            reasons.append(item["reason"])
    for item in error.get("details") or ():
        if isinstance(item, dict) and isinstance(item.get("reason"), str):
            reasons.append(item["reason"])
    inner = error.get("innerError") or error.get("innererror")
    if isinstance(inner, dict) and isinstance(inner.get("code"), str):
        reasons.append(inner["code"])
    code = error.get("code")
    message = error.get("message")
    return APIErrorBody(
        code=str(code) if isinstance(code, (str, int)) and not isinstance(code, bool) else None,
        message=_clip(message if isinstance(message, str) else ""),
        reasons=tuple(reasons),
    )


def retry_after_seconds(value: str | None, *, now: float) -> float | None:
    """``Retry-After`` (RFC 9110 §10.2.3) as seconds from ``now`` (a POSIX time), or None.

    Accepts delay-seconds and an HTTP-date; anything else (negative, NaN, garbage) is None.
    """
    if value is None:
        return None
    value = value.strip()
    if value.isdigit():
        return float(int(value))
    try:
        when = parsedate_to_datetime(value)
    except (TypeError, ValueError, IndexError):
        return None
    if when.tzinfo is None:
        return None
    return max(0.0, when.timestamp() - now)


def read_answer(
    api: API,
    status: int,
    content_type: str,
    body: bytes,
    *,
    retry_after: str | None = None,
    now: float = 0.0,
) -> Verdict:
    """Classify one answer to a send request (see the module's rules).

    Args:
        api: ``"gmail"`` or ``"graph"``.
        status: the HTTP status.
        content_type: the ``Content-Type`` header ("" when absent).
        body: the body, already capped by the caller.
        retry_after: the ``Retry-After`` header, if any.
        now: the current POSIX time, for an HTTP-date ``Retry-After``.
    """
    html = _is_html(content_type, body)
    if 200 <= status < 300:
        if html:
            return Verdict(
                "unknown",
                status,
                text=f"the server answered {status} with an HTML page, not the API's answer "
                "(a captive portal or proxy?); the message may or may not have been sent, "
                "so it was not sent again",
            )
        return _success(api, status, content_type, body)
    parsed = None if html else api_error(body, content_type)
    error = parsed.code if parsed else None
    reasons = parsed.reasons if parsed else ()
    said = parsed.message if parsed else _describe(status, content_type, body, html)
    if status == 401:
        if "audience" in said.lower():
            return Verdict("config", status, error, said, fix=_AUDIENCE_FIX[api])
        return Verdict("refresh", status, error, said)
    if status in (429, 503):
        wait = retry_after_seconds(retry_after, now=now)
        return Verdict(
            "wait", status, error, said, wait=DEFAULT_RETRY_WAIT if wait is None else wait
        )
    fix = _config_fix(api, status, reasons, said)
    if fix is not None:
        return Verdict("config", status, error, said, fix=fix)
    if status in (502, 504):
        return Verdict(
            "unknown",
            status,
            error,
            f"{said} (a gateway answered {status}: the message may or may not have been "
            "sent, so it was not sent again)",
        )
    return Verdict("failed", status, error, said)


def _success(api: API, status: int, content_type: str, body: bytes) -> Verdict:
    if api == "graph":
        # sendMail answers 202 Accepted with no body and no message id.
        if status == 202:
            return Verdict("sent", status, text="accepted (202)")
        return Verdict(
            "unknown",
            status,
            text=f"Microsoft Graph answered {status} instead of 202 Accepted; the message may "
            "or may not have been sent, so it was not sent again",
        )
    message_id = None
    if "json" in content_type.lower():
        data = load_json_object(body)
        value = data.get("id") if data is not None else None
        if isinstance(value, str) and value and len(value) <= 256 and value.isprintable():
            message_id = value
    if message_id is None:
        return Verdict(
            "unknown",
            status,
            text=f"the Gmail API answered {status} without a message id; the message may or "
            "may not have been sent, so it was not sent again",
        )
    return Verdict("sent", status, text=f"sent, id {message_id}", message_id=message_id)


def _config_fix(api: API, status: int, reasons: tuple[str, ...], said: str) -> str | None:
    if api == "graph" and status == 400 and "/me request is only valid" in said:
        return (
            "an app-only token cannot use /me: pass user='mailbox@example.com' "
            "(GraphSession(user=...)) or use a delegated login"
        )
    if status != 403:
        return None
    table = _GMAIL_FIXES if api == "gmail" else _GRAPH_FIXES
    for reason in reasons:
        if reason in table:
            return table[reason]
    if api == "graph" and "not enabled for rest" in said.lower():
        return _GRAPH_FIXES["MailboxNotEnabledForRESTAPI"]
    return None


def _is_html(content_type: str, body: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    start = body[:64].lstrip().lower()
    return start.startswith((b"<!doctype html", b"<html"))


def _describe(status: int, content_type: str, body: bytes, html: bool) -> str:
    if html:
        return f"the server answered {status} with an HTML page, not the API's JSON"
    if not body:
        return f"the server answered {status} with no body"
    return f"the server answered {status} ({content_type or 'no content type'}), not the API's JSON"


def _clip(text: str, limit: int = 300) -> str:
    text = " ".join(text.split())
    text = "".join(c if c.isprintable() else "?" for c in text)
    return text if len(text) <= limit else text[: limit - 3] + "..."
