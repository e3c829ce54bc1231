"""The store chooser: :func:`default_store` picks a token store from ``$OAUTHSMTP_STORE``.

Four stores exist (each in its own module, all implementing
:class:`~oauthsmtp._tokens.stores.base.TokenStore`):

:class:`KeyringStore` (the default)
    The operating system's credential store, through the ``keyring`` package:
    the Secret Service (GNOME Keyring, KWallet, KeePassXC) on Linux and other
    freedesktop systems, the login Keychain on macOS, the Windows Credential
    Manager on Windows. Backends that would keep tokens in plain text are
    refused unless ``allow_insecure=True`` (RFC 6749 §10.3-10.4; see
    docs/security.md#rule-31). Its locks and a small non-secret index of the stored
    keys live under :func:`oauthsmtp_home`.

:class:`FileStore`
    One JSON file per key under ``oauthsmtp_home() / "tokens"``, for headless
    servers without a keyring (``OAUTHSMTP_STORE=file``): 0700 folder, 0600
    files, written atomically, never through a symbolic link.

:class:`MemoryStore`
    A dict in this process, for tests and short scripts.

:class:`RedisStore`
    One Redis server shared by a fleet of workers (``OAUTHSMTP_STORE=redis://...``
    or ``rediss://...``; extra ``oauthsmtp[redis]``): a leased, fenced lock, and
    values encrypted at rest with ``$OAUTHSMTP_REDIS_KEY`` when it is set.

The chooser imports the implementations (only the chosen one, on first use);
they never import the chooser.
"""

from __future__ import annotations

import os

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._util.home import oauthsmtp_home

from .base import TokenStore
from .redisstore import redact_url

__all__ = [
    "REDIS_KEY_VARIABLE",
    "REDIS_SCHEMES",
    "default_store",
    "oauthsmtp_home",
    "redis_store_for",
]

REDIS_SCHEMES = ("redis://", "rediss://", "unix://")
"""How a store name that is a Redis URL starts (any case)."""

REDIS_KEY_VARIABLE = "OAUTHSMTP_REDIS_KEY"
"""The variable holding the Fernet key of a ``redis://`` store chosen by ``$OAUTHSMTP_STORE``."""


def redis_store_for(url: str) -> TokenStore:
    """A :class:`RedisStore` on ``url``, encrypting with ``$OAUTHSMTP_REDIS_KEY`` when set.

    Raises:
        ConfigurationError: redis-py is missing, the URL or the key is not valid.
    """
    from .redisstore import RedisStore

    key = os.environ.get(REDIS_KEY_VARIABLE, "").strip() or None
    return RedisStore(url, encryption_key=key)


def default_store() -> TokenStore:
    """The store chosen by ``$OAUTHSMTP_STORE``.

    Returns:
        ``keyring`` (the default, also when unset or empty): :class:`KeyringStore`;
        ``file``: :class:`FileStore` under ``oauthsmtp_home() / "tokens"``;
        ``memory``: a new :class:`MemoryStore`;
        ``redis://...`` or ``rediss://...``: a :class:`RedisStore` on that URL,
        encrypting values with ``$OAUTHSMTP_REDIS_KEY`` when it is set and not empty.

    Raises:
        ConfigurationError: any other value (the message names the valid ones).
    """
    raw = os.environ.get("OAUTHSMTP_STORE", "").strip()
    if raw.lower().startswith(REDIS_SCHEMES):
        return redis_store_for(raw)
    choice = raw.lower() or "keyring"
    # Imported here: a command that uses one store does not pay for the others.
    if choice == "keyring":
        from .keyringstore import KeyringStore

        return KeyringStore()
    if choice == "file":
        from .filestore import FileStore

        return FileStore()
    if choice == "memory":
        from .memory import MemoryStore

        return MemoryStore()
    shown = redact_url(raw)[:40] if "://" in raw else raw[:40]
    raise ConfigurationError(
        f"OAUTHSMTP_STORE={shown!r} is not a token store; use 'keyring' (the default, the OS "
        "keyring), 'file' (files under OAUTHSMTP_HOME, mode 0600), 'memory' (this process only) or "
        "'redis://host:port/db' ('rediss://' for TLS; a Redis server shared by many workers)"
    )
