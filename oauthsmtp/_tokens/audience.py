"""A token for another resource from the same login (Microsoft: Graph beside SMTP).

Entra ID issues one access token per resource. A login that consented to Exchange Online's
``SMTP.Send`` and Microsoft Graph's ``Mail.Send`` in one authorization request gets a token
for the first; its refresh token redeems a token for the other when the refresh names that
resource's scopes (RFC 6749 §6: a refresh may ask for a scope within the grant).
:func:`token_for_scope` returns that second token as an :class:`AuthToken` that renews
itself through the login's own single-flight path
(:meth:`~oauthsmtp._tokens.manager.TokenManager.redeem`): one refresh at a time across
threads and processes for both tokens, and the refresh token that every Microsoft refresh
rotates is saved into the login's entry, never kept only in memory.

Google needs none of this: ``https://mail.google.com/`` serves SMTP and the Gmail API
alike, so the login's token is used for both (:func:`token_for_scope` returns it as it is
when it already carries the scopes asked for).
"""

from __future__ import annotations

from collections.abc import Sequence

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._oauth.tokenresponse import TokenState

from .manager import TokenManager
from .token import AuthToken

__all__ = ["AudienceRefresher", "token_for_scope"]


class AudienceRefresher:
    """The refresher of a token for another resource: redeems through the login's manager.

    It also tells :class:`AuthToken` when the login's rotated refresh token is still
    waiting to be saved (the save is retried on the next use, as for the login's token).
    """

    def __init__(self, manager: TokenManager, scopes: tuple[str, ...]) -> None:
        self.manager = manager
        self.scopes = scopes

    def __call__(self, held: TokenState) -> TokenState:
        return self.manager.redeem(self.scopes, held)

    @property
    def save_pending(self) -> bool:
        """True while the login's rotated refresh token waits to be saved."""
        return self.manager.save_pending

    def retry_save(self) -> None:
        """Retry saving the login's rotated refresh token; never raises."""
        self.manager.retry_save()


def _scopes(scope: str | Sequence[str]) -> tuple[str, ...]:
    items = scope.split() if isinstance(scope, str) else list(scope)
    if not items or not all(isinstance(s, str) and s and s.split() == [s] for s in items):
        raise ConfigurationError(
            "scope must be one or more scopes (a space-separated string or a list of strings), "
            f"not {scope!r:.80}"
        )
    return tuple(dict.fromkeys(items))


def token_for_scope(token: AuthToken, scope: str | Sequence[str]) -> AuthToken:
    """A token for ``scope`` from the same login as ``token`` (another resource, same person).

    When ``token`` was already granted every scope asked for (Google's
    ``https://mail.google.com/`` for the Gmail API, say), ``token`` itself is returned.
    Otherwise the login's refresh token redeems one (or the one kept from an earlier
    redemption, by this or another process, is returned while it is valid): one request to
    the token endpoint with ``scope=`` (RFC 6749 §6), whose rotated refresh token is saved
    into the login's entry in the store. The token returned renews itself the same way.

    Ask for the other resource's scopes plus ``offline_access`` (Microsoft returns the
    rotated refresh token only then), e.g. ``"https://graph.microsoft.com/Mail.Send
    offline_access"``. The login must have consented to them:
    ``providers.microsoft(..., api="auto")`` asks for both resources.

    Raises:
        ConfigurationError: ``scope`` is empty, or ``token`` is not attached to a store (it
            did not come from :func:`~oauthsmtp.auth_identify` or
            :func:`~oauthsmtp.import_token`; an app-only token gets its other scope from
            its own grant instead).
        LoginRequired: the login holds no refresh token, was removed, or the provider
            refused its refresh token.
        TokenError: the provider refused (``invalid_scope``: the login did not consent to
            ``scope``; log in again asking for it) or could not be reached.
        TokenStoreError: the store could not be used.
    """
    scopes = _scopes(scope)
    wanted = [s for s in scopes if s not in ("offline_access", "openid", "email", "profile")]
    if all(s in token.scope for s in wanted):
        return token
    manager = token.refresher
    if not isinstance(manager, TokenManager):
        raise ConfigurationError(
            "a token for another scope is redeemed with the login's refresh token through its "
            "store: pass a token from oauthsmtp.auth_identify() or import_token() (an app-only "
            "token: build ClientCredentials with the other scope and call app_token())"
        )
    state = manager.redeem(scopes)
    return AuthToken(state, refresher=AudienceRefresher(manager, scopes), account=token.account)
