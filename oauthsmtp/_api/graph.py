"""GraphSession: sending through Microsoft Graph's ``sendMail`` with a MIME body.

The request is ``POST {base_url}/me/sendMail`` (delegated token) or
``POST {base_url}/users/{user}/sendMail`` (app-only token, ``user=`` a user id or user
principal name) with ``Content-Type: text/plain`` and the RFC 5322 message, base64-encoded,
as the body. Graph answers ``202 Accepted`` with no body (and no message id). A request
must stay under 4 MB, which holds about 3 MB of message once base64-encoded.
"""

from __future__ import annotations

import base64
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING
from urllib.parse import quote

from oauthsmtp._errors import ConfigurationError

from .answers import API
from .http import check_base_url
from .session import MAX_RETRY_WAIT, APISession

if TYPE_CHECKING:
    from oauthsmtp._smtp.auth import TokenSource

__all__ = ["GRAPH_API_URL", "GRAPH_MAX_REQUEST_BYTES", "GraphEndpoint", "GraphSession"]

GRAPH_API_URL = "https://graph.microsoft.com/v1.0"
"""Microsoft Graph's base URL (national clouds have their own: pass ``base_url=``)."""

GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Graph's limit on one sendMail request: 4 MB, the base64-encoded message included."""


def check_user(user: object) -> str | None:
    """``user=`` for GraphSession: None, or a user id / principal name usable in a path.

    Raises:
        ConfigurationError: not a string, empty, or with characters a path cannot hold.
    """
    if user is None:
        return None
    if (
        not isinstance(user, str)
        or not user
        or len(user) > 320
        or any(c in user for c in "/\\?#%")
        or not user.isprintable()
        or user != user.strip()
    ):
        raise ConfigurationError(
            f"user must be a mailbox's user id or user principal name, not {user!r}"
        )
    return user


class GraphEndpoint:
    """``sendMail`` with a MIME body on the wire."""

    api: API = "graph"
    name = "Microsoft Graph"
    limit = GRAPH_MAX_REQUEST_BYTES
    limit_text = (
        "Microsoft Graph accepts sendMail requests of at most 4 MB (4,194,304 bytes), "
        "the base64-encoded message included (about 3 MB of message)"
    )

    def __init__(self, base_url: str, user: str | None) -> None:
        path = "/me" if user is None else "/users/" + quote(user, safe="@.-_")
        self.url = base_url + path + "/sendMail"

    def size(self, raw: bytes) -> int:
        return 4 * ((len(raw) + 2) // 3)

    def request(self, raw: bytes) -> tuple[str, dict[str, str], bytes]:
        return self.url, {"Content-Type": "text/plain"}, base64.b64encode(raw)


class GraphSession(APISession):
    """Send through Microsoft Graph with the contract of :class:`~oauthsmtp.SMTPSession`.

    For Microsoft 365 tenants where SMTP AUTH is off. A delegated token
    (``providers.microsoft(..., api=True)``: ``Mail.Send offline_access``) sends as the
    signed-in user through ``/me``; an app-only token (``providers.microsoft_app(...)``,
    application permission ``Mail.Send``) needs ``user=`` and sends through
    ``/users/{user}``.

    Args:
        auth_token: an :class:`~oauthsmtp.AuthToken`; a 401 refreshes it once and retries once.
        user: None for ``/me`` (delegated); else the mailbox's user id or user principal name.
        base_url: Graph's base URL (default :data:`GRAPH_API_URL`; national clouds differ);
            https, or http to a loopback address (the development provider's
            ``graph_api_url``).
        timeout, max_retry_wait, retries, ssl_context, sleep: as for
            :class:`~oauthsmtp.GmailAPISession`.

    Raises:
        ConfigurationError: a malformed option.
    """

    def __init__(
        self,
        *,
        auth_token: TokenSource,
        user: str | None = None,
        base_url: str = GRAPH_API_URL,
        timeout: float = 60,
        max_retry_wait: float = MAX_RETRY_WAIT,
        retries: int = 3,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] | None = None,
    ) -> None:
        extra = {} if sleep is None else {"sleep": sleep}
        self.user = check_user(user)
        super().__init__(
            GraphEndpoint(check_base_url(base_url), self.user),
            auth_token=auth_token,
            timeout=timeout,
            max_retry_wait=max_retry_wait,
            retries=retries,
            ssl_context=ssl_context,
            **extra,
        )
