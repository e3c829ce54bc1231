"""TokenManager: one account's token in a store, refreshed exactly once however many ask.

An :class:`~oauthsmtp._tokens.token.AuthToken` returned by
:func:`oauthsmtp.auth_identify` holds a :class:`TokenManager` as its refresher.
Data flows token endpoint -> manager -> store: the manager refreshes under the
store's cross-process lock and saves what the endpoint answered before handing
it out.
"""

from __future__ import annotations

import dataclasses
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass

from oauthsmtp._errors import LoginRequired, TokenError, TokenStoreError
from oauthsmtp._oauth import endpoint as _endpoint
from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._util.clock import utcnow

from .stores.base import RefreshNotes, TokenKey, TokenStore
from .token import AuthToken

__all__ = [
    "AUDIENCE_SUFFIX",
    "TokenManager",
    "UnsavedState",
    "audience_key",
    "invalid_grant_error",
    "login_hint",
]

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
    from oauthsmtp._explain import by_key  # error paths only: the table loads when needed

    entry = by_key("oauth-invalid-grant")  # the explain table: the advice is written once
    publish = entry.fix.split(". ", 1)[-1]  # the fix's advice beyond "log in again"
    return LoginRequired(
        f"the saved login {who}is no longer valid: the provider answered invalid_grant{said}. "
        f"Likely causes: {entry.cause} {publish} Log in again: {login_hint(account)}",
        account=account,
    )


AUDIENCE_SUFFIX = "#audience"

_NOT_RESOURCES = frozenset({"offline_access", "openid", "email", "profile"})


def audience_key(key: TokenKey) -> TokenKey:
    """Where the access token for a login's other resource is kept (see
    :meth:`TokenManager.redeem`): beside the login's own entry, with no refresh token in it."""
    return TokenKey(key.token_url, key.client_id, f"{key.account}{AUDIENCE_SUFFIX}")


def _serves(state: TokenState, scopes: tuple[str, ...]) -> bool:
    """True when ``state`` was granted every scope of ``scopes`` that names a permission."""
    wanted = [s for s in scopes if s not in _NOT_RESOURCES]
    return all(s in state.scope for s in wanted)


@dataclass(frozen=True)
class UnsavedState:
    """A refreshed state the store refused to take, kept in memory until it does.

    Attributes:
        state: what the token endpoint answered (with a possibly rotated refresh token).
        replaces: the stored text it was meant to replace (None: there was none
            readable); a retry saves only while the store still holds exactly
            that, so a newer login or a logout is never overwritten.
    """

    state: TokenState
    replaces: str | None


class TokenManager:
    """Loads, saves and refreshes one account's token in a store, single-flight.

    Used as an :class:`AuthToken` refresher: calling it with the state the
    caller holds returns a fresh state. Every write (the login's save, a
    refresh, :meth:`forget`) holds the store's cross-process lock.

    Under the lock a refresh first re-reads the store: when another thread or
    process already refreshed (the stored access token differs from the
    caller's and is still valid), that token is returned and no request is
    made. When the entry is gone (a logout in another process), the refresh
    raises :class:`LoginRequired` rather than bring it back. A rotated refresh
    token is saved before the new access token is handed out (RFC 6749 §6).

    When that save fails (a locked keyring, a full disk), the new state is
    handed out all the same and kept in memory (the provider may already have
    revoked the old refresh token, so dropping the new one would end the
    login); the save is retried on the token's next use and before the next
    refresh. A refresh token the provider refuses (``invalid_grant``) ends the
    login only after the store was read again and holds no other refresh token
    (another process may have rotated it).
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
        self._unsaved: UnsavedState | None = None

    @property
    def account(self) -> str | None:
        """The account of the key, None for the key without an account."""
        return self.key.account or None

    @property
    def save_pending(self) -> bool:
        """True while a refreshed token is held in memory because its save failed."""
        return self._unsaved is not None

    def read(self) -> tuple[str | None, TokenState | None]:
        """The stored text and the state it holds (None for both when absent).

        An unreadable entry (not a token, or a value out of range) gives
        ``(text, None)`` and a WARNING without its content.

        Raises:
            TokenStoreError: the store cannot be read.
        """
        raw = self.store.load(self.key)
        if raw is None:
            return None, None
        try:
            return raw, AuthToken.from_json(raw).state
        except ValueError:
            log.warning("the stored token for %s is unreadable", self.key.describe())
            return raw, None

    def load(self) -> TokenState | None:
        """The stored state, or None (an unreadable entry counts as absent)."""
        return self.read()[1]

    def save(self, state: TokenState) -> None:
        """Save a new login's state, under the store's lock.

        Raises:
            TokenStoreError: the store refused it.
        """
        with self._thread_lock, self.store.lock(self.key):
            self.store.save(self.key, AuthToken(state).to_json())
            self._unsaved = None
            try:  # a token the previous login redeemed for another resource is not this one's
                self.store.delete(audience_key(self.key))
            except TokenStoreError as exc:
                log.debug("could not delete the token kept for another resource: %s", exc)

    def forget(self) -> None:
        """Delete the stored token, under the store's lock.

        Raises:
            TokenStoreError: the store refused.
        """
        with self._thread_lock, self.store.lock(self.key):
            self._unsaved = None
            self.store.delete(self.key)
            self.store.delete(audience_key(self.key))

    def retry_save(self) -> None:
        """Save a refreshed token whose save failed earlier; never raises.

        Does nothing when no save is pending, and drops the pending state
        when the store has moved on (a new login, or a logout) meanwhile.
        """
        if self._unsaved is None:
            return
        try:
            with self._thread_lock, self.store.lock(self.key):
                raw, _ = self.read()
                self._settle(raw)
        except TokenStoreError as exc:
            log.debug("the refreshed token for %s is still unsaved: %s", self.key.describe(), exc)

    def _try_save(self, state: TokenState, replaces: str | None) -> str | None:
        """Save under the (held) lock; on failure keep ``state`` for a retry.

        Returns:
            The text now stored, or None when the save failed (the store still
            holds ``replaces``).
        """
        text = AuthToken(state).to_json()
        try:
            self.store.save(self.key, text)
        except TokenStoreError as exc:
            if self._unsaved is None:
                log.warning(
                    "could not save the refreshed token (%s); it is kept in memory and the save "
                    "is retried on its next use",
                    exc,
                )
            self._unsaved = UnsavedState(state, replaces)
            return None
        self._unsaved = None
        return text

    def _settle(self, raw: str | None) -> tuple[TokenState | None, str | None]:
        """Under the lock: resolve a pending unsaved state against the stored text ``raw``.

        Returns:
            The pending state when it is still the newest (saved now, or kept
            pending when the save fails again), else None; and the text the
            store holds now.
        """
        unsaved = self._unsaved
        if unsaved is None:
            return None, raw
        if raw is None or raw != unsaved.replaces:
            # A logout removed the entry, or a login or another process replaced it.
            self._unsaved = None
            return None, raw
        saved = self._try_save(unsaved.state, raw)
        return unsaved.state, (saved if saved is not None else raw)

    def _logged_out(self) -> LoginRequired:
        return LoginRequired(
            f"the saved login{f' for {self.account}' if self.account else ''} was removed "
            f"(a logout in another process?). Log in again: {login_hint(self.account)}",
            account=self.account,
        )

    def __call__(self, held: TokenState) -> TokenState:
        with self._thread_lock, self.store.lock(self.key):
            raw, current = self.read()
            if raw is None:
                self._unsaved = None
                raise self._logged_out()  # never resurrect a deleted login
            pending, raw = self._settle(raw)
            if pending is not None:
                current = pending
            if (
                current is not None
                and current.access_token != held.access_token
                and not current.is_expired(utcnow())
            ):
                log.debug("token: another thread or process refreshed already")
                return current
            base = current if current is not None and current.refresh_token else held
            return self._refresh_from(base, raw)

    def redeem(self, scopes: tuple[str, ...], held: TokenState | None = None) -> TokenState:
        """An access token for ``scopes``, another resource this login consented to.

        Microsoft issues one access token per resource: a login that consented to
        ``SMTP.Send`` and Graph's ``Mail.Send`` at once gets a token for the first, and its
        refresh token redeems one for the other when the refresh names its scopes (RFC 6749
        §6). Under this login's locks (the same single flight as :meth:`__call__`): the
        token kept under :func:`audience_key` is returned when it serves ``scopes``, is not
        ``held`` (the one the caller found wanting) and has not expired (another thread or
        process redeemed it already). Otherwise the stored refresh token is redeemed; the
        refresh token that comes back (Microsoft rotates it on every use) is saved into the
        login's own entry before anything else, exactly as a refresh of the login saves it
        (a failed save is kept and retried, never dropped), and the new access token is
        kept under :func:`audience_key` without any refresh token.

        Returns:
            The state for ``scopes`` (its ``refresh_token`` is None: the login keeps it).

        Raises:
            LoginRequired: the login was removed, holds no refresh token, or the provider
                refused it (``invalid_grant``).
            TokenError: the token endpoint refused (e.g. ``invalid_scope``: the login did
                not consent to ``scopes``) or failed.
            TokenStoreError: the store could not be locked or read.
        """
        other = audience_key(self.key)
        with self._thread_lock, self.store.lock(self.key):
            raw, current = self.read()
            if raw is None:
                self._unsaved = None
                raise self._logged_out()
            pending, raw = self._settle(raw)
            if pending is not None:
                current = pending
            cached = self._cached_audience(other, scopes)
            if (
                cached is not None
                and (held is None or cached.access_token != held.access_token)
                and not cached.is_expired(utcnow())
            ):
                return cached
            base = current
            if base is None or base.refresh_token is None:
                raise LoginRequired(
                    "a token for another resource is redeemed with the login's refresh token, "
                    f"and none is held. Log in again: {login_hint(self.account)}",
                    account=self.account,
                )
            params = dataclasses.replace(self.params, scope=scopes)
            new = self._refresh_from(base, raw, params=params, login=False)
            state = dataclasses.replace(new, refresh_token=None, refresh_expires_at=None)
            try:
                self.store.save(other, AuthToken(state).to_json())
            except TokenStoreError as exc:  # only an access token: the next use redeems again
                log.debug("could not keep the token for %s: %s", " ".join(scopes), exc)
            return state

    def _cached_audience(self, key: TokenKey, scopes: tuple[str, ...]) -> TokenState | None:
        try:
            raw = self.store.load(key)
            state = AuthToken.from_json(raw).state if raw is not None else None
        except (ValueError, TokenStoreError):
            return None
        return state if state is not None and _serves(state, scopes) else None

    def _refresh_from(
        self,
        base: TokenState,
        raw: str | None,
        *,
        params: OAuth2Parameters | None = None,
        login: bool = True,
    ) -> TokenState:
        """Refresh ``base`` (under the lock); ``raw`` is the stored text the result replaces.

        ``login=False`` redeems a token for ``params``' other resource: the login's entry
        then keeps its access token and takes only the rotated refresh token.
        """
        params = params or self.params
        tried: set[str] = set()
        while True:
            if base.refresh_token is None:
                raise LoginRequired(
                    "the token has expired and no refresh token is held (Google needs "
                    "access_type=offline and prompt=consent; Microsoft needs the offline_access "
                    f"scope). Log in again: {login_hint(self.account)}",
                    account=self.account,
                )
            tried.add(base.refresh_token)
            if isinstance(self.store, RefreshNotes):  # fenced, noted for the other workers
                self.store.begin_refresh(self.key, raw)
            try:
                new = self._refresh(params, base)
            except TokenError as exc:
                if exc.error != "invalid_grant":
                    raise
                # Read the store again before declaring the login dead: a writer that does
                # not share our lock may have rotated the refresh token meanwhile.
                raw_now, stored = self.read()
                if stored is not None and stored.refresh_token not in tried:
                    if login and not stored.is_expired(utcnow()):
                        self._unsaved = None
                        return stored
                    base, raw = stored, raw_now or raw
                    continue
                if raw_now is not None and (stored is None or stored.refresh_token in tried):
                    # The provider refused the very refresh token the store holds. In a shared
                    # store, another worker may have refreshed it and lost its lease before
                    # saving: the provider rotated it, the new one is in that worker's hands.
                    if isinstance(self.store, RefreshNotes) and self.store.refresh_in_doubt(
                        self.key, raw_now
                    ):
                        raise TokenError(
                            "the refresh token was just used by another worker whose refresh "
                            "was interrupted (it lost the store's lock); it may still save the "
                            "new one: try again shortly",
                            error=exc.error,
                            error_description=exc.error_description,
                            status=exc.status,
                        ) from None
                    # Nobody else is refreshing it: the login is over.
                    self._unsaved = None
                    try:
                        self.store.delete(self.key)
                    except TokenStoreError as error:
                        # The login is over all the same: say so, not that the store failed.
                        log.warning("could not delete the dead token: %s", error)
                raise invalid_grant_error(self.account, exc) from None
            if login:
                self._try_save(new, raw)
            else:  # the rotated refresh token goes into the login's entry, nothing else
                self._try_save(
                    dataclasses.replace(
                        base,
                        refresh_token=new.refresh_token or base.refresh_token,
                        refresh_expires_at=new.refresh_expires_at,
                    ),
                    raw,
                )
            return new
