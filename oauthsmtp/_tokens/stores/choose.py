"""Token stores: where serialized tokens live between processes.

A store maps a :class:`TokenKey` (token endpoint, client id, account) to the
serialized token (:meth:`oauthsmtp.AuthToken.to_json`, a compact JSON string
holding the refresh and access tokens). Every store also provides a per-key
lock, exclusive across threads and processes, used to refresh a token exactly
once however many callers need it at the same moment. Three stores exist:

:class:`KeyringStore` (the default)
    The operating system's credential store, through the ``keyring`` package:
    the Secret Service (GNOME Keyring, KWallet, KeePassXC) on Linux and other
    freedesktop systems, the login Keychain on macOS, the Windows Credential
    Manager on Windows. Backends that would keep tokens in plain text (the
    ``fail`` and ``null`` backends, ``keyrings.alt`` file backends, anything
    named ``Plaintext``) are refused unless ``allow_insecure=True`` (SECURITY
    rule 31). Its locks and a small non-secret index of the stored keys live
    under :func:`oauthsmtp_home`.

:class:`FileStore`
    One JSON file per key under ``oauthsmtp_home() / "tokens"``, for headless
    servers without a keyring (``OAUTHSMTP_STORE=file``). The directory is
    0700 and the files 0600 whatever the umask, written atomically, never
    through a symbolic link; files that others could read or that another user
    owns are refused (SECURITY rule 32). On Windows the files rely on the
    per-user ACL of ``%LOCALAPPDATA%`` instead of POSIX modes.

:class:`MemoryStore`
    A dict in this process, for tests and short scripts; nothing survives the
    process and its locks are process-local.

:func:`default_store` picks one from ``$OAUTHSMTP_STORE``. :func:`oauthsmtp_home`
is ``$OAUTHSMTP_HOME`` or the platform's user configuration folder
(``~/.config/oauthsmtp`` on Linux, ``~/Library/Application Support/oauthsmtp``
on macOS, ``%LOCALAPPDATA%\\oauthsmtp`` on Windows).

No error message or log line written here contains a stored value.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import os
import pathlib
import re
import threading
from collections.abc import Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, runtime_checkable

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._util.files import lock_timeout

if TYPE_CHECKING:
    pass

if TYPE_CHECKING:
    from .filestore import FileStore
    from .keyringstore import KeyringStore

__all__ = [
    "DEFAULT_LOCK_TIMEOUT",
    "FileStore",
    "KeyringStore",
    "MemoryStore",
    "TokenKey",
    "TokenStore",
    "default_store",
    "oauthsmtp_home",
]

log = logging.getLogger("oauthsmtp.store")

DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds :meth:`TokenStore.lock` waits before giving up with :class:`TokenStoreError`."""

CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

# ---------------------------------------------------------------------------
# keys and the protocol
# ---------------------------------------------------------------------------


@dataclass(frozen=True, order=True)
class TokenKey:
    """What a stored token is keyed by.

    Attributes:
        token_url: the token endpoint of the OAuth2 client.
        client_id: the OAuth2 client id.
        account: the mailbox or user name the caller gave, ``""`` when none.

    Raises:
        ConfigurationError: a field is not a string, ``token_url`` or
            ``client_id`` is empty, or a field holds a control character.
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
    """Where serialized tokens are kept; implementations must be thread-safe."""

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
        or the new one, never a mix.

        Raises:
            TokenStoreError: the value could not be stored.
        """
        ...

    def delete(self, key: TokenKey) -> None:
        """Remove the value stored for ``key``; no error when there is none.

        Raises:
            TokenStoreError: the value exists but could not be removed.
        """
        ...

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """A context manager holding ``key``'s lock, exclusive across threads and processes.

        Used for single-flight refresh. Re-entrant in one thread for the stores
        defined here, although callers should not rely on that.

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


# ---------------------------------------------------------------------------
# locations
# ---------------------------------------------------------------------------


def oauthsmtp_home() -> pathlib.Path:
    """The folder for account settings, locks and (when chosen) token files.

    Returns:
        ``$OAUTHSMTP_HOME`` (``~`` expanded, made absolute) when set and
        non-empty, else ``platformdirs.user_config_path("oauthsmtp")``:
        ``~/.config/oauthsmtp`` (or ``$XDG_CONFIG_HOME/oauthsmtp``) on Linux,
        ``~/Library/Application Support/oauthsmtp`` on macOS,
        ``%LOCALAPPDATA%\\oauthsmtp`` on Windows. The folder is not created here.
    """
    configured = os.environ.get("OAUTHSMTP_HOME", "").strip()
    if configured:
        return pathlib.Path(configured).expanduser().absolute()
    import platformdirs

    return platformdirs.user_config_path("oauthsmtp", appauthor=False, roaming=False)


def default_store() -> TokenStore:
    """The store chosen by ``$OAUTHSMTP_STORE``.

    Returns:
        ``keyring`` (the default, also when unset or empty): :class:`KeyringStore`;
        ``file``: :class:`FileStore` under ``oauthsmtp_home() / "tokens"``;
        ``memory``: a new :class:`MemoryStore`.

    Raises:
        ConfigurationError: any other value (the message names the valid ones).
    """
    choice = os.environ.get("OAUTHSMTP_STORE", "").strip().lower() or "keyring"
    if choice == "keyring":
        from .keyringstore import KeyringStore

        return KeyringStore()
    if choice == "file":
        from .filestore import FileStore

        return FileStore()
    if choice == "memory":
        return MemoryStore()
    shown = os.environ.get("OAUTHSMTP_STORE", "")[:40]
    raise ConfigurationError(
        f"OAUTHSMTP_STORE={shown!r} is not a token store; use 'keyring' (the default, the OS "
        "keyring), 'file' (files under OAUTHSMTP_HOME, mode 0600) or 'memory' (this process only)"
    )


# ---------------------------------------------------------------------------
# MemoryStore
# ---------------------------------------------------------------------------


class MemoryStore:
    """Tokens in a dict of this process, for tests and short scripts.

    Thread-safe; :meth:`lock` is a per-key re-entrant thread lock, so it does
    not exclude other processes (they cannot see this store anyway).

    Args:
        lock_timeout: seconds :meth:`lock` waits before raising TokenStoreError.
    """

    def __init__(self, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.lock_timeout = lock_timeout
        self._values: dict[TokenKey, str] = {}
        self._guard = threading.Lock()
        self._locks: dict[TokenKey, threading.RLock] = {}

    def load(self, key: TokenKey) -> str | None:
        """See :meth:`TokenStore.load`."""
        with self._guard:
            return self._values.get(key)

    def save(self, key: TokenKey, value: str) -> None:
        """See :meth:`TokenStore.save`."""
        if not isinstance(value, str):
            raise TypeError("a token store saves strings")
        with self._guard:
            self._values[key] = value

    def delete(self, key: TokenKey) -> None:
        """See :meth:`TokenStore.delete`."""
        with self._guard:
            self._values.pop(key, None)

    @contextlib.contextmanager
    def lock(self, key: TokenKey) -> Iterator[None]:
        """See :meth:`TokenStore.lock` (process-local here)."""
        with self._guard:
            lock = self._locks.setdefault(key, threading.RLock())
        if not lock.acquire(timeout=self.lock_timeout):
            raise lock_timeout(key.describe(), self.lock_timeout)
        try:
            yield
        finally:
            lock.release()

    def keys(self) -> list[TokenKey]:
        """See :meth:`TokenStore.keys`."""
        with self._guard:
            return sorted(self._values)

    def __repr__(self) -> str:
        return f"MemoryStore({len(self._values)} tokens)"


def __getattr__(name: str) -> Any:
    # The two OS-facing stores live in their own modules, imported on first use.
    if name == "FileStore":
        from .filestore import FileStore

        return FileStore
    if name == "KeyringStore":
        from .keyringstore import KeyringStore

        return KeyringStore
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
