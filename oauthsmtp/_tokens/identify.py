"""The login: ``auth_identify``, explicit refresh, revocation and logout (WinDev AuthIdentify).

:func:`auth_identify` returns a cached token when the store has one (refreshed
if needed) and otherwise runs the browser login: it binds the loopback
listener first (so a busy port fails before any browser opens), opens the
user's own browser (RFC 8252 §8.12: never an embedded view), waits for the
redirect, exchanges the code and saves the token (under the store's lock)
before returning it. :func:`logout` and :func:`revoke_token` revoke (RFC 7009)
and delete under the same lock, so a refresh in flight elsewhere can neither
outlive nor undo them.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime, timezone

from oauthsmtp._errors import (
    ConfigurationError,
    LoginRequired,
    OAuthSMTPError,
    TokenError,
    TokenStoreError,
)
from oauthsmtp._oauth import endpoint as _endpoint
from oauthsmtp._oauth.browser import (
    DEFAULT_TIMEOUT,
    browser_login,
    check_account,
    check_granted_scope,
    check_login_timeout,
)
from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._oauth.tokenresponse import TokenState

from .manager import TokenManager, audience_key, invalid_grant_error, login_hint
from .stores.base import TokenKey, TokenStore
from .stores.choose import default_store
from .token import AuthToken

__all__ = [
    "FLOWS",
    "LogoutResult",
    "auth_identify",
    "import_token",
    "logout",
    "refresh_token",
    "revoke_state",
    "revoke_token",
]

FLOWS = ("browser", "device", "paste")
"""The interactive logins ``auth_identify(flow=...)`` runs."""

log = logging.getLogger("oauthsmtp.login")


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
        # The interactive flows are imported when used: a cached token needs none of them.
        from oauthsmtp._oauth.device import check_device_flow

        check_device_flow(params)  # before any store or network: Gmail is refused at once
    store = store if store is not None else default_store()
    key = TokenKey.for_account(params.token_url, params.client_id, account)
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
            f"{login_hint(account)}",
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
        from oauthsmtp._oauth.device import device_login

        state = device_login(
            params, timeout=timeout, on_prompt=on_prompt, check=check, save=manager.save
        )
        return AuthToken(state, refresher=manager, account=account)
    if flow == "paste":
        from oauthsmtp._oauth.paste import paste_login

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
    key = TokenKey.for_account(params.token_url, params.client_id, account)
    manager = TokenManager(params, store, key)
    seed = TokenState(
        access_token="", refresh_token=refresh_value, expires_at=datetime.now(timezone.utc)
    )
    try:
        state = _endpoint.refresh(params, seed)
    except TokenError as exc:
        if exc.error == "invalid_grant":
            raise LoginRequired(
                f"the refresh token for {account} was refused (invalid_grant"
                f"{': ' + exc.error_description if exc.error_description else ''}): it has "
                "expired, was revoked or rotated since, or was issued to another client id. "
                "Nothing was saved. Log in on this machine instead: "
                f"{login_hint(account)}",
                account=account,
            ) from None
        raise
    check_granted_scope(params, state)
    check_account(params, state, account)
    manager.save(state)  # under the store's lock; a rotated refresh token is kept (RFC 6749 §6)
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
            raise invalid_grant_error(token.account, exc) from None
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


@dataclass(frozen=True)
class LogoutResult:
    """What :func:`logout` did.

    Attributes:
        removed: a value was stored for the key and is deleted now.
        revoked: None when revocation was not asked for or there was nothing
            to revoke; True when the provider confirmed; False when it has no
            revocation endpoint.
        revoke_error: why revocation failed (the local copy is deleted all the same).
    """

    removed: bool
    revoked: bool | None = None
    revoke_error: OAuthSMTPError | None = None


def logout(
    store: TokenStore,
    key: TokenKey,
    *,
    revoke_with: OAuth2Parameters | None = None,
    held: TokenState | None = None,
) -> LogoutResult:
    """Revoke (optionally) and delete the token stored for ``key``, under the store's lock.

    Holding the lock means a refresh in flight in another process either
    finishes first (and its new refresh token is the one revoked and deleted)
    or starts after (and finds the entry gone, so it does not bring it back).

    Args:
        store: the token store.
        key: the token's key (or any other key, e.g. the one of a client secret).
        revoke_with: revoke at the provider first (RFC 7009), with these parameters.
        held: a state the caller holds; revoked too when its refresh token is
            not the stored one (a token whose save had failed).

    Returns:
        a :class:`LogoutResult`.

    Raises:
        TokenStoreError: the store could not be locked, read or changed.
    """
    with store.lock(key):
        raw = store.load(key)
        try:
            stored = AuthToken.from_json(raw).state if raw is not None else None
        except ValueError:
            stored = None
        revoked: bool | None = None
        error: OAuthSMTPError | None = None
        try:
            if revoke_with is not None:
                states = [s for s in (stored, held) if s is not None]
                if (
                    stored is not None
                    and held is not None
                    and (
                        held.refresh_token == stored.refresh_token
                        or (held.refresh_token is None and held.access_token == stored.access_token)
                    )
                ):
                    states = [stored]
                for state in states:
                    try:
                        done = revoke_state(revoke_with, state)
                    except OAuthSMTPError as exc:
                        error = error or exc
                        continue
                    revoked = done if revoked is None else revoked and done
        finally:
            store.delete(key)
            store.delete(audience_key(key))  # a token redeemed for another resource, if any
    return LogoutResult(removed=raw is not None, revoked=revoked, revoke_error=error)


def revoke_token(params: OAuth2Parameters, token: AuthToken) -> bool:
    """Revoke ``token`` at the provider (RFC 7009) and forget it locally.

    The refresh token is revoked (which revokes its access tokens at Google);
    without one, the access token. For a token from :func:`auth_identify` the
    revocation and the deletion happen under the store's lock (see
    :func:`logout`), so the newest stored refresh token is the one revoked and
    deleted. The stored copy is deleted whatever the provider answers.

    Returns:
        True when the provider confirmed; False when it has no revocation endpoint
        (the local copy is still deleted).

    Raises:
        TokenError: the provider refused or was unreachable (the local copy is
            deleted all the same).
        TokenStoreError: the stored copy could not be deleted.
    """
    manager = token._refresher
    try:
        if not isinstance(manager, TokenManager):
            return revoke_state(params, token.state)
        try:
            result = logout(manager.store, manager.key, revoke_with=params, held=token.state)
        except TokenStoreError:
            log.warning("could not delete the stored token for %r", manager.account)
            raise
    finally:
        token._attach(None)
    if result.revoke_error is not None:
        raise result.revoke_error
    return bool(result.revoked)
