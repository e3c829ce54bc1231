"""AuthToken: the current token state of one login, refreshed when it is needed.

:class:`AuthToken` wraps a :class:`~oauthsmtp._oauth.tokenresponse.TokenState`
and, when it was given a refresher, refreshes itself when the access token is
within the leeway of its expiry.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable
from dataclasses import replace
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

from oauthsmtp._errors import LoginRequired
from oauthsmtp._oauth.tokenresponse import DEFAULT_LEEWAY, ServerResponse, TokenState
from oauthsmtp._util.clock import utcnow
from oauthsmtp._util.jsonobject import load_json_object

__all__ = ["AuthToken", "Refresher", "SavesLater"]


_FIRST_YEAR, _LAST_YEAR = (
    1970,
    9998,
)  # stored dates outside this are not ours: date arithmetic overflows

Refresher = Callable[[TokenState], TokenState]
"""Given the state a token holds, returns a fresh one (raises LoginRequired or TokenError)."""


@runtime_checkable
class SavesLater(Protocol):
    """A refresher that may hold a refreshed state its store refused, to save it later.

    :class:`AuthToken` calls :meth:`retry_save` on each use of the access token
    while :attr:`save_pending` is true (the token manager is one).
    """

    @property
    def save_pending(self) -> bool:
        """True while a refreshed state waits to be saved."""
        ...

    def retry_save(self) -> None:
        """Try the save again; never raises."""
        ...


def _is_utf8(text: str) -> bool:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def _saver_of(refresher: object) -> SavesLater | None:
    return refresher if isinstance(refresher, SavesLater) else None


class AuthToken:
    """An OAuth2 token that keeps itself usable (WinDev ``AuthToken``).

    Reading :attr:`access_token` refreshes first when the token is within the
    leeway of its expiry and a refresher is attached (tokens returned by
    :func:`oauthsmtp.auth_identify` have one). Thread-safe. Its repr never shows
    a token.
    """

    def __init__(
        self,
        state: TokenState,
        *,
        refresher: Refresher | None = None,
        account: str | None = None,
        leeway: timedelta = DEFAULT_LEEWAY,
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self._state = state
        self._refresher = refresher
        self._saver = _saver_of(refresher)
        self._lock = threading.RLock()
        self._clock = clock
        self.account = account
        self.leeway = leeway

    # -- values -------------------------------------------------------------
    @property
    def state(self) -> TokenState:
        """The current validated token state (no refresh)."""
        return self._state

    @property
    def access_token(self) -> str:
        """The access token; refreshed first when within the leeway of expiry."""
        with self._lock:
            refresher = self._refresher
            if refresher is not None:
                if self._state.is_expired(self._clock(), self.leeway):
                    self._state = refresher(self._state)
                elif self._saver is not None and self._saver.save_pending:
                    self._saver.retry_save()
            return self._state.access_token

    @property
    def refresh_token(self) -> str | None:
        """The refresh token, or None when the provider issued none."""
        return self._state.refresh_token

    @property
    def token_type(self) -> str:
        """Always ``"Bearer"``."""
        return self._state.token_type

    @property
    def expires_at(self) -> datetime | None:
        """When the access token expires (aware, UTC), or None if unknown."""
        return self._state.expires_at

    @property
    def refresh_expires_at(self) -> datetime | None:
        """When the refresh token itself lapses (aware, UTC), where the provider said so.

        From ``refresh_token_expires_in`` in the token endpoint's answer (Google sends it
        for apps in Testing status, 7 days, and for time-limited consent); None when the
        provider did not say: the token may still lapse when unused or revoked.
        """
        return self._state.refresh_expires_at

    @property
    def scope(self) -> tuple[str, ...]:
        """The granted scopes."""
        return self._state.scope

    @property
    def valid(self) -> bool:
        """True while the access token is usable (not within the leeway of expiry)."""
        return not self._state.is_expired(self._clock(), self.leeway)

    @property
    def identity(self) -> tuple[str, ...]:
        """The accounts the provider's OpenID Connect ``id_token`` named at login (email,
        preferred_username, upn), kept with the token; () when the provider sent none (a
        login without the ``openid`` scope)."""
        return self._state.identity

    @property
    def server_response(self) -> ServerResponse:
        """The token endpoint's last answer, read-only; its repr masks token values."""
        return self._state.server_response

    @property
    def refresher(self) -> Refresher | None:
        """What renews this token (for a token from :func:`oauthsmtp.auth_identify`, the
        manager of its entry in the store), or None."""
        return self._refresher

    @property
    def can_refresh(self) -> bool:
        """True when a refresh token and a refresher are available."""
        return self._refresher is not None and self._state.refresh_token is not None

    # -- actions ------------------------------------------------------------
    def refresh(self) -> AuthToken:
        """Refresh now, whatever the expiry; returns self.

        Raises:
            LoginRequired: no refresh token, or the provider refused it.
            TokenError: the token endpoint failed.
        """

        with self._lock:
            if self._refresher is None:
                raise LoginRequired(
                    "this token cannot be refreshed (it is not attached to OAuth2Parameters); "
                    "use oauthsmtp.refresh_token(params, token)",
                    account=self.account,
                )
            before = self._state
            self._state = self._refresher(before)
        return self

    def _replace_state(self, state: TokenState) -> None:
        with self._lock:
            self._state = state

    def _attach(self, refresher: Refresher | None) -> None:
        with self._lock:
            self._refresher = refresher
            self._saver = _saver_of(refresher)

    def expire(self) -> None:
        """Mark the access token as expired so the next use refreshes it (for tests and demos)."""
        with self._lock:
            self._state = replace(self._state, expires_at=self._clock() - timedelta(seconds=1))

    # -- serialization ------------------------------------------------------
    def to_json(self) -> str:
        """Serialize the token (secrets included) for a token store."""
        return json.dumps(self._state.to_dict(), separators=(",", ":"), sort_keys=True)

    @classmethod
    def from_json(
        cls, text: str | bytes, *, refresher: Refresher | None = None, account: str | None = None
    ) -> AuthToken:
        """Rebuild a token from :meth:`to_json` output.

        The text comes from a store and is treated as untrusted: anything but
        a well-formed token whose dates lie in the years 1970-9998 is refused.

        Raises:
            ValueError: the text is not a serialized token (no other exception).
        """
        data = load_json_object(
            text.encode("utf-8", "surrogatepass") if isinstance(text, str) else text
        )
        if data is None:
            raise ValueError("not a serialized AuthToken (expected a JSON object)")
        try:
            state = TokenState.from_dict(data)
        except (ValueError, TypeError, OverflowError) as exc:
            raise ValueError(f"not a serialized AuthToken ({type(exc).__name__})") from None
        for when in (state.expires_at, state.obtained_at, state.refresh_expires_at):
            if when is not None and not _FIRST_YEAR <= when.year <= _LAST_YEAR:
                raise ValueError("not a serialized AuthToken (a date out of range)")
        # The same rule the token endpoint's answers pass (RFC 6750 §2.1 b64token is ASCII);
        # a refresh token is sent form-encoded, so it must at least be text.
        access = state.access_token
        if not access.isascii() or not access.isprintable():
            raise ValueError("not a serialized AuthToken (forbidden characters in access_token)")
        refresh = state.refresh_token
        if refresh is not None and (not refresh.isprintable() or not _is_utf8(refresh)):
            raise ValueError("not a serialized AuthToken (forbidden characters in refresh_token)")
        return cls(state, refresher=refresher, account=account)

    def __repr__(self) -> str:
        expires = self._state.expires_at.isoformat() if self._state.expires_at else None
        return (
            f"AuthToken(account={self.account!r}, access_token='***', "
            f"refresh_token={'***' if self._state.refresh_token else None}, "
            f"expires_at={expires!r}, scope={self._state.scope!r}, valid={self.valid})"
        )
