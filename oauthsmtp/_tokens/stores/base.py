"""What every token store is: the :class:`TokenKey` and the :class:`TokenStore` protocol.

This module knows no implementation. The stores (:mod:`.memory`,
:mod:`.filestore`, :mod:`.keyringstore`) import it; the chooser
(:mod:`.choose`) imports them.
"""

from __future__ import annotations

import hashlib
import json
import math
import re
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from oauthsmtp._errors import ConfigurationError

__all__ = [
    "CONTROL_RE",
    "DEFAULT_LOCK_TIMEOUT",
    "RefreshNotes",
    "TokenKey",
    "TokenStore",
    "check_lock_timeout",
]

DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds :meth:`TokenStore.lock` waits before giving up with :class:`TokenStoreError`."""

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")
"""Characters no key field or service name may hold (C0 controls and DEL)."""


def check_lock_timeout(value: float) -> float:
    """A store's ``lock_timeout`` argument, checked.

    Raises:
        ConfigurationError: not a finite number of seconds >= 0.
    """
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value < 0
    ):
        raise ConfigurationError(
            f"lock_timeout must be a number of seconds >= 0, not {value!r:.20}"
        )
    return float(value)


@dataclass(frozen=True, order=True)
class TokenKey:
    """What a stored token is keyed by.

    Attributes:
        token_url: the token endpoint of the OAuth2 client.
        client_id: the OAuth2 client id.
        account: the mailbox or user name the caller gave, ``""`` when none
            (use :meth:`for_account` to turn a caller's ``account=`` into this).

    Raises:
        ConfigurationError: a field is not a string, ``token_url`` or
            ``client_id`` is empty, ``account`` is only white space, or a field
            holds a control character.
    """

    token_url: str
    client_id: str
    account: str = ""

    def __post_init__(self) -> None:
        for name in ("token_url", "client_id", "account"):
            value = getattr(self, name)
            if not isinstance(value, str):
                raise ConfigurationError(f"TokenKey.{name} must be a string")
            if CONTROL_RE.search(value):
                raise ConfigurationError(f"TokenKey.{name} must not contain control characters")
        if not self.token_url or not self.client_id:
            raise ConfigurationError("TokenKey needs a token_url and a client_id")
        if self.account and not self.account.strip():
            raise ConfigurationError("TokenKey.account must not be only white space")

    @classmethod
    def for_account(cls, token_url: str, client_id: str, account: str | None) -> TokenKey:
        """The key for a caller's ``account=``: None means "no account".

        Raises:
            ConfigurationError: ``account`` is a string that is empty or only
                white space (a mistake, such as ``--account ''``, that would
                otherwise address the token kept without an account), or not a
                string.
        """
        if account is None:
            return cls(token_url, client_id, "")
        if not isinstance(account, str) or not account.strip():
            raise ConfigurationError(
                "the account must be a non-empty mailbox or user name (or None for no account); "
                f"got {account!r:.40}"
            )
        return cls(token_url, client_id, account)

    def slug(self) -> str:
        """A stable, filesystem-safe id for this key.

        Returns:
            32 lowercase hex digits (the first 128 bits of the SHA-256 of the
            three fields, unambiguously encoded); the same in every process and
            on every platform. Used for file and lock names.
        """
        encoded = json.dumps([self.token_url, self.client_id, self.account]).encode("utf-8")
        return hashlib.sha256(encoded).hexdigest()[:32]

    def describe(self) -> str:
        """A short human description for messages (no secret in it)."""
        who = f"account {self.account!r}" if self.account else "no account"
        return f"{who}, client {self.client_id!r} at {self.token_url}"


@runtime_checkable
class TokenStore(Protocol):
    """Where serialized tokens are kept; implementations must be thread-safe.

    Writers (a refresh, a login, a logout) hold :meth:`lock` around their
    read-modify-write, so that a logout is never undone by a refresh that was
    in flight in another process.
    """

    def load(self, key: TokenKey) -> str | None:
        """Return the serialized token stored for ``key``, or None when absent.

        An entry that cannot be a token (a corrupt file, an incomplete chunked
        keyring entry) counts as absent and is logged at WARNING without its
        content.

        Raises:
            TokenStoreError: the store cannot be read or refuses to trust it.
        """
        ...

    def save(self, key: TokenKey, value: str) -> None:
        """Store ``value`` for ``key``, replacing any earlier value, atomically.

        After a crash at any point, :meth:`load` returns either the old value
        or the new one, never a mix, and whatever a crash left behind (a
        temporary file, an unreferenced keyring chunk) is removed by the next
        :meth:`save` or :meth:`delete` of the same key.

        Raises:
            TokenStoreError: the value could not be stored.
        """
        ...

    def delete(self, key: TokenKey) -> None:
        """Remove the value stored for ``key`` and any leftover of it; no error when there is none.

        Raises:
            TokenStoreError: the value exists but could not be removed.
        """
        ...

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """A context manager holding ``key``'s lock, exclusive across threads and processes.

        Used for single-flight refresh and around every write of a login,
        refresh or logout. Re-entrant in one thread for the stores defined
        here, although callers should not rely on that.

        Raises:
            TokenStoreError: the lock could not be taken within the store's
                lock timeout.
        """
        ...

    def keys(self) -> list[TokenKey]:
        """The keys that have a stored value, sorted (for ``oauthsmtp status``).

        Raises:
            TokenStoreError: the store cannot be listed.
        """
        ...


@runtime_checkable
class RefreshNotes(Protocol):
    """What a store shared by many workers adds to :class:`TokenStore` for refreshes.

    A worker can lose the lock in the middle of a refresh (paused past its lease) after the
    provider rotated the refresh token; the new one is then only in that worker's hands
    until it saves it. A store with these methods (:class:`~oauthsmtp.RedisStore`) notes
    each refresh before it is sent, so another worker whose refresh of the same token is
    refused asks again later instead of declaring the login dead.
    """

    def begin_refresh(self, key: TokenKey, raw: str | None) -> None:
        """Note, under the held lock, that a refresh of the stored text ``raw`` is sent now.

        Raises:
            TokenStoreError: the lock was lost (nothing may be sent), or the store failed.
        """
        ...

    def refresh_in_doubt(self, key: TokenKey, raw: str | None) -> bool:
        """Whether another worker began refreshing the stored text ``raw`` recently."""
        ...
