"""App-only tokens: ``app_token``, renewed by the same grant, single-flight through the store.

An app token has no refresh token (RFC 6749 §4.4.3): when it nears expiry the
:class:`AppTokenRenewer` attached to it makes the app-only grant again. Like a
refresh, the renewal runs under the store's cross-process lock and first
re-reads the store, so however many threads or processes find the token
expired at once, one grant request is made and the others use its result.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from datetime import datetime, timedelta, timezone

from oauthsmtp._errors import ConfigurationError, TokenStoreError
from oauthsmtp._oauth.appgrants import ClientCredentials, request_app_token
from oauthsmtp._oauth.tokenresponse import DEFAULT_LEEWAY, TokenState
from oauthsmtp._tokens.stores.base import TokenKey, TokenStore
from oauthsmtp._tokens.stores.choose import default_store

from .token import AuthToken

__all__ = ["AppTokenRenewer", "app_token", "app_token_key"]

log = logging.getLogger("oauthsmtp.login")

Grant = Callable[[ClientCredentials], TokenState]


def _now() -> datetime:
    return datetime.now(timezone.utc)


def leeway_for(state: TokenState) -> timedelta:
    """How early an app token is renewed: the usual leeway, or half its life when shorter.

    A token the grant gives for less than twice the leeway would otherwise count as
    expired the moment it arrives, and every use would make the grant again.
    """
    if state.expires_at is None:
        return DEFAULT_LEEWAY
    return max(timedelta(0), min(DEFAULT_LEEWAY, (state.expires_at - state.obtained_at) / 2))


def _valid(state: TokenState, now: datetime) -> bool:
    return not state.is_expired(now, leeway_for(state))


def app_token_key(creds: ClientCredentials, account: str | None) -> TokenKey:
    """Where the app token for ``account`` is kept: (token URL, client id, account)."""
    return TokenKey.for_account(creds.token_url, creds.client_id, account or creds.subject)


class AppTokenRenewer:
    """Gets and renews one app token in a store, single-flight (an :class:`AuthToken` refresher).

    Calling it with the state a token holds returns a fresh state: under the
    store's lock it re-reads the store and returns the stored token when another
    thread or process renewed it already; otherwise it makes the grant and saves
    the answer before handing it out.
    """

    def __init__(
        self,
        creds: ClientCredentials,
        store: TokenStore,
        key: TokenKey,
        *,
        grant: Grant = request_app_token,
    ) -> None:
        self.creds = creds
        self.store = store
        self.key = key
        self._grant = grant
        self._thread_lock = threading.Lock()

    def __repr__(self) -> str:
        return f"AppTokenRenewer({self.creds!r}, account={self.key.account!r})"

    def load(self) -> TokenState | None:
        """The stored state, or None (an unreadable entry counts as absent)."""
        raw = self.store.load(self.key)
        if raw is None:
            return None
        try:
            return AuthToken.from_json(raw).state
        except ValueError:
            log.warning("the stored app token for %r is unreadable; getting a new one", self.key)
            return None

    def _renew(self) -> TokenState:
        state = self._grant(self.creds)
        try:
            self.store.save(self.key, AuthToken(state).to_json())
        except TokenStoreError as exc:
            # The token is good; only sharing it failed. The next use makes the grant again.
            log.warning("could not save the app token (%s); it is used unsaved", exc)
        return state

    def obtain(self) -> TokenState:
        """The stored token when it is still valid, else a new one from the grant."""
        with self._thread_lock, self.store.lock(self.key):
            current = self.load()
            if current is not None and _valid(current, _now()):
                return current
            return self._renew()

    def __call__(self, held: TokenState) -> TokenState:
        with self._thread_lock, self.store.lock(self.key):
            current = self.load()
            if (
                current is not None
                and current.access_token != held.access_token
                and _valid(current, _now())
            ):
                log.debug("token: another thread or process renewed the app token already")
                return current
            return self._renew()


def app_token(
    creds: ClientCredentials,
    *,
    account: str | None = None,
    store: TokenStore | None = None,
) -> AuthToken:
    """An app-only token (no person, no browser) that renews itself by the same grant.

    A valid token saved in ``store`` for (token URL, client id, account) is
    returned without a request; otherwise the grant is made (client
    credentials with a secret or a ``private_key_jwt`` assertion, or the JWT
    bearer grant) and the answer saved. When the token nears expiry, reading
    :attr:`AuthToken.access_token` renews it, one request across threads and
    processes sharing the store.

    Args:
        creds: the application, e.g. from :func:`oauthsmtp.providers.microsoft_app`
            or :func:`oauthsmtp.providers.google_service_account`.
        account: the mailbox the token is used for (the SMTP user name); default
            the delegated ``subject`` of a service account. For Microsoft the app
            must have been given that mailbox (``Add-MailboxPermission``).
        store: where the token is kept; default :func:`oauthsmtp.default_store`.

    Returns:
        an :class:`AuthToken` whose ``account`` is ``account`` (or the subject).

    Raises:
        ConfigurationError: ``account`` differs from the service account's subject.
        TokenError: the provider refused the grant or answered something unusable.
        TokenStoreError: the store cannot be used.
    """
    if not isinstance(creds, ClientCredentials):
        raise ConfigurationError(
            f"app_token needs ClientCredentials, not {type(creds).__name__} (for a person's "
            "login use auth_identify)"
        )
    if (
        account is not None
        and creds.subject is not None
        and account.casefold() != creds.subject.casefold()
    ):
        raise ConfigurationError(
            f"account {account!r} is not the delegated subject {creds.subject!r}: a "
            "service account's token acts for its subject only; pass subject=account"
        )
    account = account or creds.subject
    store = store if store is not None else default_store()
    renewer = AppTokenRenewer(creds, store, app_token_key(creds, account))
    state = renewer.obtain()
    return AuthToken(state, refresher=renewer, account=account, leeway=leeway_for(state))
