"""The login: ``auth_identify``, explicit refresh and revocation (WinDev AuthIdentify).

:func:`auth_identify` returns a cached token when the store has one (refreshed
if needed) and otherwise runs the browser login: it binds the loopback
listener first (so a busy port fails before any browser opens), opens the
user's own browser (RFC 8252 §8.12: never an embedded view), waits for the
redirect, exchanges the code and saves the token before returning it.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from datetime import datetime, timezone

from oauthsmtp._errors import ConfigurationError, LoginRequired, TokenError, TokenStoreError
from oauthsmtp._oauth import endpoint as _endpoint
from oauthsmtp._oauth.browser import (
    DEFAULT_TIMEOUT,
    browser_login,
    check_account,
    check_granted_scope,
    check_login_timeout,
)
from oauthsmtp._oauth.device import check_device_flow, device_login
from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._oauth.paste import paste_login
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._tokens.stores.choose import TokenKey, TokenStore, default_store

from .token import AuthToken

__all__ = ["FLOWS", "auth_identify", "import_token", "refresh_token", "revoke_token"]

FLOWS = ("browser", "device", "paste")
"""The interactive logins ``auth_identify(flow=...)`` runs."""

log = logging.getLogger("oauthsmtp.login")


def _now() -> datetime:
    return datetime.now(timezone.utc)


def _login_hint(account: str | None) -> str:
    if account:
        return (
            f"oauthsmtp login --account {account} (from Python: "
            f"oauthsmtp.auth_identify(params, account={account!r}))"
        )
    return "oauthsmtp.auth_identify(params) again (or `oauthsmtp login --account ...`)"


def _invalid_grant(account: str | None, exc: TokenError) -> LoginRequired:
    who = f"for {account} " if account else ""
    said = f" ({exc.error_description})" if exc.error_description else ""
    return LoginRequired(
        f"the saved login {who}is no longer valid: the provider answered invalid_grant{said}. "
        "Likely causes: the user revoked the app's access; a Google OAuth app in "
        '"Testing" status issues refresh tokens that expire after 7 days (publish the app '
        "to avoid this); Microsoft refresh tokens lapse after about 90 days unused; a password "
        f"change. Log in again: {_login_hint(account)}",
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
                and not current.is_expired(_now())
            ):
                log.debug("token: another thread or process refreshed already")
                return current
            base = current if current is not None and current.refresh_token else held
            if base.refresh_token is None:
                raise LoginRequired(
                    "the token has expired and no refresh token is held (Google needs "
                    "access_type=offline and prompt=consent; Microsoft needs the offline_access "
                    f"scope). Log in again: {_login_hint(self.account)}",
                    account=self.account,
                )
            try:
                new = self._refresh(self.params, base)
            except TokenError as exc:
                if exc.error == "invalid_grant":
                    self.forget()
                    raise _invalid_grant(self.account, exc) from None
                raise
            self.save(new)
            return new


def auth_identify(
    params: OAuth2Parameters,
    *,
    account: str | None = None,
    store: TokenStore | None = None,
    interactive: bool = True,
    open_browser: bool | Callable[[str], bool] = True,
    timeout: float = DEFAULT_TIMEOUT,
    force: bool = False,
    flow: str = "browser",
    on_prompt: Callable[[str], None] | None = None,
    read_redirect: Callable[[str], str] | None = None,
) -> AuthToken:
    """Return a valid token for ``account``, logging in through the browser only if needed.

    With a cached token for (token URL, client id, account) in ``store``, it is
    returned (refreshed first if it is within the leeway of expiry) and no
    browser opens. Otherwise (or with ``force=True``) the authorization-code flow
    with PKCE runs through the user's browser and the loopback redirect URL,
    and the new token is saved.

    Args:
        params: the OAuth2 client.
        account: the mailbox the token is for (a key in the store).
        store: where tokens live; default: :func:`oauthsmtp.default_store`
            (the OS keyring, or the file store with ``OAUTHSMTP_STORE=file``).
        interactive: False raises :class:`LoginRequired` instead of opening a browser.
        open_browser: False prints the URL (to stderr) instead of opening a browser; a
            callable is used instead of :mod:`webbrowser` to open the URL (it returns
            whether it could; tests and kiosks use this).
        timeout: seconds to wait for the browser login.
        force: log in through the browser even when a token is cached.
        flow: how to log in when needed: ``"browser"`` (the loopback redirect),
            ``"device"`` (RFC 8628: the user enters a code on another device;
            polls until approved, bounded by ``timeout`` and the code's life) or
            ``"paste"`` (the user pastes back the address the browser ended on).
            See docs/device-login.md.
        on_prompt: device flow: called with the text telling the user where to go
            and which code to enter (default: printed to stderr).
        read_redirect: paste flow: called with a prompt, returns the pasted
            address (default: a line from stdin).

    Returns:
        an :class:`AuthToken` that refreshes itself through the store.

    Raises:
        LoginRequired: no usable token and ``interactive`` is False.
        LoopbackError: the redirect port is in use (raised before any browser opens).
        AuthorizationError: denied (:class:`AccessDenied`), timed out
            (:class:`AuthorizationTimeout`) or untrustworthy response.
        TokenError: the token endpoint failed.
        TokenStoreError: the store cannot be used.
    """
    timeout = check_login_timeout(timeout)
    if flow not in FLOWS:
        raise ConfigurationError(f"flow must be one of {', '.join(FLOWS)}, not {flow!r}")
    if flow == "device":
        check_device_flow(params)  # before any store or network: Gmail is refused at once
    store = store if store is not None else default_store()
    key = TokenKey(params.token_url, params.client_id, account or "")
    manager = TokenManager(params, store, key)
    cached = manager.load()  # also proves the store is usable before any browser opens
    if cached is not None and not force:
        token = AuthToken(cached, refresher=manager, account=account)
        if token.valid:
            return token
        try:
            token.refresh()
            return token
        except LoginRequired:
            if not interactive:
                raise
            log.info("the saved token for %r cannot be refreshed; logging in again", account)
    if not interactive:
        raise LoginRequired(
            f"no saved login{f' for {account}' if account else ''}: log in first with "
            f"{_login_hint(account)}",
            account=account,
        )
    if account and "login_hint" not in params.extra_auth_params:
        # OpenID Connect login_hint: Google and Microsoft preselect this account.
        params = dataclasses.replace(
            params, extra_auth_params={**params.extra_auth_params, "login_hint": account}
        )

    def check(state: TokenState) -> None:
        check_granted_scope(params, state)
        check_account(params, state, account)

    if flow == "device":
        state = device_login(
            params, timeout=timeout, on_prompt=on_prompt, check=check, save=manager.save
        )
        return AuthToken(state, refresher=manager, account=account)
    if flow == "paste":
        state = paste_login(params, read_redirect=read_redirect, check=check, save=manager.save)
        return AuthToken(state, refresher=manager, account=account)
    opener = open_browser if callable(open_browser) else None
    state = browser_login(
        params,
        open_browser=bool(open_browser),
        timeout=timeout,
        save=manager.save,
        opener=opener,
        account=account,
    )
    return AuthToken(state, refresher=manager, account=account)


def import_token(
    params: OAuth2Parameters,
    *,
    refresh_token: str,
    account: str,
    store: TokenStore | None = None,
) -> AuthToken:
    """Keep a refresh token obtained elsewhere (another tool, another machine).

    The refresh token is checked by one refresh at ``params.token_url`` before
    anything is saved; the answer goes through the same checks as a login
    (granted mail scope, and the account when the answer names one) and is
    saved under (token URL, client id, ``account``) like any other login, so
    ``auth_identify(params, account=account)`` and the command line find it.
    See docs/moving-a-login.md.

    Raises:
        ConfigurationError: ``refresh_token`` or ``account`` is empty or malformed.
        LoginRequired: the provider refused the refresh token (``invalid_grant``:
            dead, revoked, or issued to another client); nothing is saved.
        AccountMismatch: the answer names another account; nothing is saved.
        TokenError: the token endpoint failed otherwise.
    """
    if not isinstance(refresh_token, str) or not refresh_token.strip():
        raise ConfigurationError("refresh_token is empty: give the refresh token to import")
    refresh_value = refresh_token.strip()
    if not refresh_value.isascii() or not refresh_value.isprintable() or " " in refresh_value:
        raise ConfigurationError(
            "refresh_token has spaces or characters no refresh token has (was the right text "
            "copied?)"
        )
    if not isinstance(account, str) or not account.strip():
        raise ConfigurationError("account is required: the mailbox the refresh token is for")
    store = store if store is not None else default_store()
    key = TokenKey(params.token_url, params.client_id, account)
    manager = TokenManager(params, store, key)
    seed = TokenState(access_token="", refresh_token=refresh_value, expires_at=_now())
    try:
        with store.lock(key):
            state = _endpoint.refresh(params, seed)
            check_granted_scope(params, state)
            check_account(params, state, account)
            manager.save(state)
    except TokenError as exc:
        if exc.error == "invalid_grant":
            raise LoginRequired(
                f"the refresh token for {account} was refused (invalid_grant"
                f"{': ' + exc.error_description if exc.error_description else ''}): it has "
                "expired, was revoked or rotated since, or was issued to another client id. "
                "Nothing was saved. Log in on this machine instead: "
                f"{_login_hint(account)}",
                account=account,
            ) from None
        raise
    return AuthToken(state, refresher=manager, account=account)


def refresh_token(params: OAuth2Parameters, token: AuthToken) -> AuthToken:
    """Refresh ``token`` now (WinDev AuthRefreshToken); returns the same object.

    Tokens from :func:`auth_identify` refresh through their store (single
    flight, rotation persisted); other tokens are refreshed directly with
    ``params``.

    Raises:
        LoginRequired: the refresh token was refused (``invalid_grant``) or is missing.
        TokenError: the token endpoint failed.
    """
    if isinstance(token._refresher, TokenManager):
        return token.refresh()
    try:
        state = _endpoint.refresh(params, token.state)
    except TokenError as exc:
        if exc.error == "invalid_grant":
            raise _invalid_grant(token.account, exc) from None
        raise
    token._replace_state(state)
    return token


def revoke_state(params: OAuth2Parameters, state: TokenState) -> bool:
    """Revoke the refresh token of ``state`` (or its access token when it has none).

    Returns:
        True when the provider confirmed; False when it has no revocation endpoint.
    """
    if state.refresh_token:
        return _endpoint.revoke(params, state.refresh_token, hint="refresh_token")
    return _endpoint.revoke(params, state.access_token, hint="access_token")


def revoke_token(params: OAuth2Parameters, token: AuthToken) -> bool:
    """Revoke ``token`` at the provider (RFC 7009) and forget it locally.

    The refresh token is revoked (which revokes its access tokens at Google);
    without one, the access token. The stored copy is deleted whatever the
    provider answers.

    Returns:
        True when the provider confirmed; False when it has no revocation endpoint
        (the local copy is still deleted).

    Raises:
        TokenError: the provider refused or was unreachable (the local copy is
            deleted all the same).
    """
    try:
        return revoke_state(params, token.state)
    finally:
        manager = token._refresher
        if isinstance(manager, TokenManager):
            try:
                manager.forget()
            except TokenStoreError:
                log.warning("could not delete the stored token for %r", manager.account)
                raise
        token._attach(None)
