"""TokenManager: one account's token in a store, refreshed exactly once however many ask.

An :class:`~oauthsmtp._tokens.token.AuthToken` returned by
:func:`oauthsmtp.auth_identify` holds a :class:`TokenManager` as its refresher.
Data flows token endpoint -> manager -> store: the manager refreshes under the
store's cross-process lock and saves what the endpoint answered before handing
it out.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from oauthsmtp._errors import LoginRequired, TokenError
from oauthsmtp._oauth import endpoint as _endpoint
from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._util.clock import utcnow

from .stores.base import TokenKey, TokenStore
from .token import AuthToken

__all__ = ["TokenManager", "invalid_grant_error", "login_hint"]

log = logging.getLogger("oauthsmtp.login")


def login_hint(account: str | None) -> str:
    """How to log in again, for messages: the command, and the Python call."""
    if account:
        return (
            f"oauthsmtp login --account {account} (from Python: "
            f"oauthsmtp.auth_identify(params, account={account!r}))"
        )
    return "oauthsmtp.auth_identify(params) again (or `oauthsmtp login --account ...`)"


def invalid_grant_error(account: str | None, exc: TokenError) -> LoginRequired:
    """The LoginRequired for a refresh token the provider refused (``invalid_grant``)."""
    who = f"for {account} " if account else ""
    said = f" ({exc.error_description})" if exc.error_description else ""
    return LoginRequired(
        f"the saved login {who}is no longer valid: the provider answered invalid_grant{said}. "
        "Likely causes: the user revoked the app's access; a Google OAuth app in "
        '"Testing" status issues refresh tokens that expire after 7 days (publish the app '
        "to avoid this); Microsoft refresh tokens lapse after about 90 days unused; a password "
        f"change. Log in again: {login_hint(account)}",
        account=account,
    )


class TokenManager:
    """Loads, saves and refreshes one account's token in a store, single-flight.

    Used as an :class:`AuthToken` refresher: calling it with the state the
    caller holds returns a fresh state. Under the store's cross-process lock it
    first re-reads the store: when another thread or process already refreshed
    (the stored access token differs from the caller's and is still valid),
    that token is returned and no request is made. A rotated refresh token is
    saved before the new access token is handed out (RFC 6749 §6).
    """

    def __init__(
        self,
        params: OAuth2Parameters,
        store: TokenStore,
        key: TokenKey,
        *,
        refresh: Callable[[OAuth2Parameters, TokenState], TokenState] = _endpoint.refresh,
    ) -> None:
        self.params = params
        self.store = store
        self.key = key
        self._refresh = refresh
        self._thread_lock = threading.Lock()

    @property
    def account(self) -> str | None:
        return self.key.account or None

    def load(self) -> TokenState | None:
        """The stored state, or None (an unreadable entry counts as absent)."""
        raw = self.store.load(self.key)
        if raw is None:
            return None
        try:
            return AuthToken.from_json(raw).state
        except ValueError:
            log.warning("stored token for %r is unreadable; a new login is needed", self.account)
            return None

    def save(self, state: TokenState) -> None:
        self.store.save(self.key, AuthToken(state).to_json())

    def forget(self) -> None:
        """Delete the stored token."""
        self.store.delete(self.key)

    def __call__(self, held: TokenState) -> TokenState:
        with self._thread_lock, self.store.lock(self.key):
            current = self.load()
            if (
                current is not None
                and current.access_token != held.access_token
                and not current.is_expired(utcnow())
            ):
                log.debug("token: another thread or process refreshed already")
                return current
            base = current if current is not None and current.refresh_token else held
            if base.refresh_token is None:
                raise LoginRequired(
                    "the token has expired and no refresh token is held (Google needs "
                    "access_type=offline and prompt=consent; Microsoft needs the offline_access "
                    f"scope). Log in again: {login_hint(self.account)}",
                    account=self.account,
                )
            try:
                new = self._refresh(self.params, base)
            except TokenError as exc:
                if exc.error == "invalid_grant":
                    self.forget()
                    raise invalid_grant_error(self.account, exc) from None
                raise
            self.save(new)
            return new
