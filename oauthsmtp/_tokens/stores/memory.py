"""MemoryStore: tokens in a dict of this process (tests, short scripts)."""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._util.files import lock_timeout

from .base import DEFAULT_LOCK_TIMEOUT, TokenKey, check_lock_timeout

__all__ = ["MemoryStore"]


class MemoryStore:
    """Tokens in a dict of this process, for tests and short scripts.

    Thread-safe; :meth:`lock` is a per-key re-entrant thread lock, so it does
    not exclude other processes (they cannot see this store anyway).

    Args:
        lock_timeout: seconds :meth:`lock` waits before raising TokenStoreError.
    """

    def __init__(self, *, lock_timeout: float = DEFAULT_LOCK_TIMEOUT) -> None:
        self.lock_timeout = check_lock_timeout(lock_timeout)
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
            raise ConfigurationError("a token store saves strings")
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
