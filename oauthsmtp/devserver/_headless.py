"""Headless login: the real authorization-code flow, with a stand-in for the browser.

:func:`headless_login` runs :func:`oauthsmtp._oauth.browser.browser_login` (the same code as
``oauthsmtp.auth_identify``: loopback listener, PKCE, state, ``iss`` check, code exchange)
with a small HTTP client in a background thread as its ``opener`` (in place of the user's
browser): it follows the authorization URL and its redirects and, on a consent page, approves.
:meth:`~oauthsmtp.devserver.DevProvider.login` uses it against the development provider.

For development and tests only: nothing here protects anything.
"""

from __future__ import annotations

import html
import io
import logging
import re
import threading
from typing import TYPE_CHECKING
from urllib.parse import parse_qs, urlencode, urljoin, urlsplit

from oauthsmtp._errors import AccessDenied, AuthorizationError
from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._tokens.token import AuthToken

if TYPE_CHECKING:
    from oauthsmtp._tokens.stores.base import TokenStore

__all__ = ["headless_login"]

_LOG = logging.getLogger("oauthsmtp.devserver")

_MAX_HOPS = 10
_HIDDEN = re.compile(r'<input type="hidden" name="(request_id|csrf_token)" value="([^"]*)"')


class _HeadlessBrowser:
    """Follows an authorization URL the way a browser whose user approves would."""

    def __init__(self, params: OAuth2Parameters, *, email: str | None, timeout: float) -> None:
        self.params = params
        self.email = email
        self.timeout = timeout
        self.error: BaseException | None = None
        self.thread: threading.Thread | None = None

    def open(self, url: str) -> bool:
        """The ``opener`` of ``browser_login``: browse in a background thread; True."""
        self.thread = threading.Thread(
            target=self._run, args=(url,), name="oauthsmtp-headless-browser", daemon=True
        )
        self.thread.start()
        return True

    def join(self) -> None:
        if self.thread is not None:
            self.thread.join(self.timeout)

    def _run(self, url: str) -> None:
        query = parse_qs(urlsplit(url).query)
        redirect_uri = (query.get("redirect_uri") or [""])[0]
        try:
            self._browse(url, redirect_uri)
        except Exception as exc:
            self.error = exc
            _LOG.debug("headless browser failed: %s", type(exc).__name__)
            self._abort(redirect_uri, (query.get("state") or [""])[0])

    def describe_error(self) -> str:
        """The failure, without the URLs (they carry the state, and the code on the way back)."""
        error = self.error
        if isinstance(error, AuthorizationError):
            return str(error)
        where = urlsplit(self.params.auth_url)
        return (
            f"{type(error).__name__} while following the authorization URL "
            f"(is the server at {where.scheme}://{where.netloc} running?)"
        )

    def _browse(self, url: str, redirect_uri: str) -> None:
        import requests  # a runtime dependency; imported here like the rest of the login

        loopback = _origin(redirect_uri)
        method, data = "GET", None
        with requests.Session() as http:
            http.trust_env = False  # no proxy may stand between us and loopback
            for _ in range(_MAX_HOPS):
                with http.request(
                    method, url, data=data, allow_redirects=False, timeout=self.timeout
                ) as response:
                    if _origin(url) == loopback:
                        return  # the redirect reached the client: the flow decides the rest
                    if response.is_redirect:
                        url = urljoin(url, response.headers["Location"])
                        method, data = "GET", None
                        continue
                    fields = dict(_HIDDEN.findall(response.text))
                    if response.status_code != 200 or set(fields) != {"request_id", "csrf_token"}:
                        raise AuthorizationError(
                            f"the headless browser got HTTP {response.status_code} from "
                            f"{urlsplit(url).path} and does not know what to do with it"
                        )
                    email = self.email or _consent_email(response.text)
                    url = urljoin(url, "/authorize")
                    method = "POST"
                    data = {
                        "request_id": html.unescape(fields["request_id"]),
                        "csrf_token": html.unescape(fields["csrf_token"]),
                        "decision": "approve",
                        "email": email,
                    }
            raise AuthorizationError("the headless browser followed too many redirects")

    def _abort(self, redirect_uri: str, state: str) -> None:
        """End the waiting login at once (instead of at its timeout) with an error response."""
        if not redirect_uri or not state:
            return
        import requests

        values = {
            "error": "temporarily_unavailable",
            "error_description": "the headless browser failed",
            "state": state,
        }
        if self.params.issuer:
            values["iss"] = self.params.issuer
        separator = "&" if "?" in redirect_uri else "?"
        try:
            with requests.Session() as http:
                http.trust_env = False
                http.get(redirect_uri + separator + urlencode(values), timeout=5).close()
        except requests.RequestException:
            pass  # the login will time out instead


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}".lower()


def _consent_email(page: str) -> str:
    match = re.search(r'<input type="email" id="email" name="email" value="([^"]*)"', page)
    return html.unescape(match.group(1)) if match else ""


def headless_login(
    params: OAuth2Parameters,
    *,
    account: str | None = None,
    store: TokenStore | None = None,
    email: str | None = None,
    timeout: float = 30.0,
) -> AuthToken:
    """Log in through the real authorization-code flow, with no browser and no person.

    Runs the library's browser login (loopback listener on ``params.redirect_url``, PKCE,
    state and ``iss`` checks, code exchange, granted-scope check) and, in place of the
    user's browser, a small HTTP client in a background thread that follows the
    authorization URL and its redirects back to the loopback listener. On the development
    server's consent page it approves as ``email``. Meant for the development provider
    (or any provider that approves without a person); a real provider's login page would
    stop it.

    Args:
        params: the client; its ``redirect_url`` must be a loopback URL (port 0: any free port).
        account: the account the token is for (the store key, and ``AuthToken.account``).
        store: where the token is saved and refreshed through; a new
            :class:`~oauthsmtp.MemoryStore` when None.
        email: the address to approve as on a consent page; default ``account``, else the
            page's pre-filled address. Ignored when the server approves by itself.
        timeout: seconds allowed for the whole login.

    Returns:
        an :class:`~oauthsmtp.AuthToken` that refreshes itself through ``store``.

    Raises:
        AccessDenied: the server denied the request.
        AuthorizationError: the flow failed (including the headless browser's own failures).
        TokenError: the token endpoint refused the code.
    """
    from oauthsmtp._oauth.browser import browser_login
    from oauthsmtp._tokens.manager import TokenManager
    from oauthsmtp._tokens.stores.base import TokenKey
    from oauthsmtp._tokens.stores.memory import MemoryStore

    store = store if store is not None else MemoryStore()
    key = TokenKey(params.token_url, params.client_id, account or "")
    manager = TokenManager(params, store, key)
    browser = _HeadlessBrowser(params, email=email or account, timeout=timeout)
    try:
        state = browser_login(
            params, timeout=timeout, out=io.StringIO(), save=manager.save, opener=browser.open
        )
    except AuthorizationError as exc:
        browser.join()
        failure = browser.error
        if failure is not None and not isinstance(exc, AccessDenied):
            message = f"headless login failed: {browser.describe_error()}"
            raise AuthorizationError(message) from None
        raise
    browser.join()
    return AuthToken(state, refresher=manager, account=account)
