"""GmailAPISession: sending through the Gmail API's ``users.messages.send``.

The request is ``POST {base_url}/users/me/messages/send`` with the JSON body
``{"raw": "<the RFC 5322 message, base64url>"}`` and a bearer token that carries the
``https://www.googleapis.com/auth/gmail.send`` scope (``https://mail.google.com/`` works
too). A message over :data:`GMAIL_SIMPLE_MAX_BYTES` goes to the method's media-upload URI
instead (``POST /upload/gmail/v1/users/me/messages/send?uploadType=media``, the message
itself as ``message/rfc822``), which the API documents for messages up to 35 MB. The
answer is the sent message's resource, ``{"id": ..., "threadId": ..., "labelIds":
["SENT"]}``; its ``id`` is what the :class:`~oauthsmtp.SendResult` reports.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING

from oauthsmtp._limits.rules import SendLimits

from .answers import API
from .http import check_base_url
from .limits import check_mailbox
from .session import MAX_RETRY_WAIT, APISession

if TYPE_CHECKING:
    from oauthsmtp._smtp.auth import TokenSource

__all__ = [
    "GMAIL_API_URL",
    "GMAIL_MAX_MESSAGE_BYTES",
    "GMAIL_SIMPLE_MAX_BYTES",
    "GmailAPISession",
    "GmailEndpoint",
]

GMAIL_API_URL = "https://gmail.googleapis.com/gmail/v1"
"""The Gmail API's base URL."""

GMAIL_MAX_MESSAGE_BYTES = 36_700_160
"""The largest message ``users.messages.send`` takes: 35 MB, as its reference states."""

GMAIL_SIMPLE_MAX_BYTES = 5 * 1024 * 1024
"""Larger messages use the media-upload URI (Google's guide keeps the other for about 5 MB)."""


class GmailEndpoint:
    """``users.messages.send`` on the wire."""

    api: API = "gmail"
    name = "the Gmail API"
    limit = GMAIL_MAX_MESSAGE_BYTES
    limit_text = "the Gmail API accepts messages of at most 35 MB (36,700,160 bytes)"

    def __init__(self, base_url: str) -> None:
        from urllib.parse import urlsplit

        self.url = base_url + "/users/me/messages/send"
        parts = urlsplit(base_url)
        self.upload_url = (
            f"{parts.scheme}://{parts.netloc}/upload{parts.path}"
            "/users/me/messages/send?uploadType=media"
        )

    def size(self, raw: bytes) -> int:
        return len(raw)

    def request(self, raw: bytes) -> tuple[str, dict[str, str], bytes]:
        if len(raw) > GMAIL_SIMPLE_MAX_BYTES:
            return self.upload_url, {"Content-Type": "message/rfc822"}, raw
        encoded = base64.urlsafe_b64encode(raw).decode("ascii")
        body = json.dumps({"raw": encoded}).encode("ascii")
        return self.url, {"Content-Type": "application/json"}, body


class GmailAPISession(APISession):
    """Send through the Gmail API with the contract of :class:`~oauthsmtp.SMTPSession`.

    For Gmail apps that should not hold the restricted ``https://mail.google.com/`` scope:
    a token from ``providers.gmail(..., api=True)`` (scope ``gmail.send``) is enough.

    Args:
        auth_token: an :class:`~oauthsmtp.AuthToken` (anything with ``access_token`` and
            ``refresh()``); a 401 refreshes it once and retries once.
        base_url: the API's base URL (default :data:`GMAIL_API_URL`); https, or http to a
            loopback address (the development provider's ``gmail_api_url``).
        timeout: the total deadline of one HTTP request, in seconds.
        max_retry_wait: the longest ``Retry-After`` (429/503) honoured, in seconds; a
            longer one makes the message ``"failed"`` at once.
        retries: how many times one message is retried after 429/503.
        ssl_context: the TLS context; default the system's trust store plus
            ``SSL_CERT_FILE`` (certificates and host names verified).
        sleep: the function that waits (for tests).
        limits: the mailbox's :class:`~oauthsmtp.SendLimits` (e.g.
            ``oauthsmtp.providers.GMAIL_API_LIMITS``), kept across sessions as for
            :class:`~oauthsmtp.SMTPSession`: ``connections`` caps requests in flight at
            once, ``per_minute`` messages sent per ``window``, ``recipients_per_message``
            fails a message, a daily cap or a wait past ``max_wait`` defers it
            (docs/limits.md).
        limits_store: shares the budget (a :class:`~oauthsmtp.RedisStore`: many
            processes); None: this process's sessions share it.
        mailbox: the name the budget is kept under (default ``"me"``): give the address
            when one store serves several mailboxes.

    Raises:
        ConfigurationError: a malformed option.
    """

    def __init__(
        self,
        *,
        auth_token: TokenSource,
        base_url: str = GMAIL_API_URL,
        timeout: float = 60,
        max_retry_wait: float = MAX_RETRY_WAIT,
        retries: int = 3,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] | None = None,
        limits: SendLimits | None = None,
        limits_store: object = None,
        mailbox: str | None = None,
    ) -> None:
        extra = {} if sleep is None else {"sleep": sleep}
        super().__init__(
            GmailEndpoint(check_base_url(base_url)),
            auth_token=auth_token,
            timeout=timeout,
            max_retry_wait=max_retry_wait,
            retries=retries,
            ssl_context=ssl_context,
            limits=limits,
            limits_store=limits_store,
            mailbox=check_mailbox(mailbox) or "me",
            **extra,
        )
