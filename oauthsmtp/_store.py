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
import errno
import hashlib
import json
import logging
import os
import pathlib
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar, runtime_checkable

from ._errors import ConfigurationError, TokenStoreError

if TYPE_CHECKING:
    import filelock

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

_T = TypeVar("_T")

_WINDOWS = sys.platform == "win32"

DEFAULT_LOCK_TIMEOUT = 300.0
"""Seconds :meth:`TokenStore.lock` waits before giving up with :class:`TokenStoreError`."""

MAX_FILE_BYTES = 1024 * 1024
"""Token and index files larger than this are treated as corrupt, unread."""

_LOCK_POLL_INTERVAL = 0.01
_FILE_FORMAT = "oauthsmtp-token/1"
_INDEX_FORMAT = "oauthsmtp-keyring-index/1"
_INDEX_NAME = "keyring-index.json"
_SLUG_RE = re.compile(r"[0-9a-f]{32}")
_CONTROL_RE = re.compile(r"[\x00-\x1f\x7f]")

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a planted FIFO must not hang the open
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


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
            if _CONTROL_RE.search(value):
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
        return KeyringStore()
    if choice == "file":
        return FileStore()
    if choice == "memory":
        return MemoryStore()
    shown = os.environ.get("OAUTHSMTP_STORE", "")[:40]
    raise ConfigurationError(
        f"OAUTHSMTP_STORE={shown!r} is not a token store; use 'keyring' (the default, the OS "
        "keyring), 'file' (files under OAUTHSMTP_HOME, mode 0600) or 'memory' (this process only)"
    )


# ---------------------------------------------------------------------------
# private files and directories
# ---------------------------------------------------------------------------


def _os_detail(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def _ensure_private_dir(path: pathlib.Path) -> None:
    """Create ``path`` (0700) if needed; insist it is ours and private.

    A missing parent is created 0700 too (its own missing parents with the
    default mode); an existing parent is left alone. On POSIX an
    existing directory with group/other bits is chmod'ed to 0700; one owned by
    another user is refused.

    Raises:
        TokenStoreError: the directory cannot be created or is not ours.
    """
    try:
        os.makedirs(path.parent, mode=0o700, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            os.mkdir(path, 0o700)
        st = os.stat(path)
    except OSError as exc:
        raise TokenStoreError(
            f"cannot create the private directory {path}: {_os_detail(exc)}"
        ) from exc
    if not stat.S_ISDIR(st.st_mode):
        raise TokenStoreError(f"{path} is not a directory; move it away")
    if _WINDOWS:
        return
    if st.st_uid != os.geteuid():
        raise TokenStoreError(
            f"the directory {path} is owned by another user (uid {st.st_uid}); refusing to keep "
            "tokens or locks there. Choose another folder with OAUTHSMTP_HOME"
        )
    if stat.S_IMODE(st.st_mode) & 0o077:
        try:
            os.chmod(path, 0o700)
        except OSError as exc:
            raise TokenStoreError(
                f"the directory {path} is accessible to other users and cannot be made "
                f"private (chmod 700): {_os_detail(exc)}"
            ) from exc
        log.info("made %s private (mode 0700)", path)


def _fsync_dir(path: pathlib.Path) -> None:
    if _WINDOWS:
        return  # directories cannot be opened for fsync there
    try:
        fd = os.open(path, os.O_RDONLY | _O_DIRECTORY | _O_CLOEXEC)
    except OSError:
        return
    try:
        with contextlib.suppress(OSError):  # some filesystems refuse fsync on directories
            os.fsync(fd)
    finally:
        os.close(fd)


def _replace(source: str, target: str) -> None:
    if not _WINDOWS:
        os.replace(source, target)
        return
    # Windows refuses to replace a file another process has open for a moment.
    for attempt in range(10):
        try:
            os.replace(source, target)
            return
        except PermissionError:
            if attempt == 9:
                raise
            time.sleep(0.05 * (attempt + 1))


def _atomic_write(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (SECURITY rule 32).

    A temporary file is created in the same directory with
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` and mode 0600 (fchmod'ed again, whatever the
    umask), written, fsynced, renamed over ``path`` and the directory fsynced.
    On failure the temporary file is removed and ``path`` keeps its old content.

    Raises:
        OSError: the write failed (the caller wraps it without the data).
    """
    tmp = path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | _O_NOFOLLOW | _O_CLOEXEC | _O_BINARY
    fd = os.open(tmp, flags, 0o600)
    try:
        try:
            if not _WINDOWS:
                os.fchmod(fd, 0o600)
            view = memoryview(data)
            while view:
                written = os.write(fd, view)
                view = view[written:]
            os.fsync(fd)
        finally:
            os.close(fd)
        _replace(os.fspath(tmp), os.fspath(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    _fsync_dir(path.parent)


def _read_file(path: pathlib.Path, *, private: bool) -> bytes | None:
    """Read a small file without following a symbolic link.

    Args:
        path: the file.
        private: refuse a file that another user owns or that group/others
            may read or write (POSIX only).

    Returns:
        The content, None when the file does not exist, or ``b""`` plus a
        WARNING when it is larger than :data:`MAX_FILE_BYTES` (callers then see
        it as corrupt).

    Raises:
        TokenStoreError: ``path`` is a symbolic link, not a regular file, or
            (``private``) not private.
    """
    if _WINDOWS and os.path.islink(path):
        raise _symlink_error(path)
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK | _O_BINARY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise _symlink_error(path) from None
        raise TokenStoreError(f"cannot read {path}: {_os_detail(exc)}") from exc
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise TokenStoreError(f"{path} is not a regular file; refusing to read it. Delete it")
        if private and not _WINDOWS:
            if st.st_uid != os.geteuid():
                raise TokenStoreError(
                    f"the token file {path} is owned by another user (uid {st.st_uid}); refusing "
                    "to trust it. Delete it and log in again"
                )
            mode = stat.S_IMODE(st.st_mode)
            if mode & 0o077:
                raise TokenStoreError(
                    f"the token file {path} is accessible to other users (mode {mode:04o}); "
                    f"refusing to use it. If nobody else can have read it, run `chmod 600 {path}`; "
                    "otherwise delete it, log in again and revoke the old token"
                )
        if st.st_size > MAX_FILE_BYTES:
            log.warning("%s is larger than %d bytes; ignoring it", path, MAX_FILE_BYTES)
            return b""
        chunks: list[bytes] = []
        total = 0
        while True:
            chunk = os.read(fd, 65536)
            if not chunk:
                break
            total += len(chunk)
            if total > MAX_FILE_BYTES:
                log.warning("%s is larger than %d bytes; ignoring it", path, MAX_FILE_BYTES)
                return b""
            chunks.append(chunk)
        return b"".join(chunks)
    except OSError as exc:
        raise TokenStoreError(f"cannot read {path}: {_os_detail(exc)}") from exc
    finally:
        os.close(fd)


def _symlink_error(path: pathlib.Path) -> TokenStoreError:
    return TokenStoreError(
        f"{path} is a symbolic link; token files are never read or written through a link. "
        "Delete the link (e.g. `oauthsmtp logout`) and log in again"
    )


def _load_json_object(data: bytes) -> dict[str, Any] | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None


# ---------------------------------------------------------------------------
# locks
# ---------------------------------------------------------------------------


class _InterProcessLock:
    """A thread lock plus a ``filelock.FileLock`` on one lock file.

    ``filelock`` locks (``flock``/``LockFileEx``) exclude other processes, and
    separate ``FileLock`` objects in separate threads exclude each other too,
    but only by polling, and one thread taking a second ``FileLock`` object on
    a path it holds is refused as a deadlock. So every lock file has one
    process-wide instance of this class: the re-entrant thread lock serializes
    the threads of this process without polling, and the single non-thread-local
    ``FileLock`` behind it (re-entrant as well) excludes the other processes.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._file_lock: filelock.FileLock | None = None

    @contextlib.contextmanager
    def hold(self, timeout: float, what: str) -> Iterator[None]:
        import filelock

        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            raise _lock_timeout(what, timeout)
        try:
            if self._file_lock is None:
                self._file_lock = filelock.FileLock(self.path, mode=0o600, thread_local=False)
            remaining = max(0.0, deadline - time.monotonic())
            try:
                self._file_lock.acquire(timeout=remaining, poll_interval=_LOCK_POLL_INTERVAL)
            except filelock.Timeout:
                raise _lock_timeout(what, timeout) from None
            except OSError as exc:
                raise TokenStoreError(
                    f"cannot take the lock file {self.path}: {_os_detail(exc)}"
                ) from exc
            try:
                yield
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()


def _lock_timeout(what: str, timeout: float) -> TokenStoreError:
    return TokenStoreError(
        f"timed out after {timeout:g} s waiting for the token lock of {what}: another thread or "
        "oauthsmtp process holds it (a refresh that hangs?)"
    )


_LOCKS: dict[str, _InterProcessLock] = {}
_LOCKS_GUARD = threading.Lock()


def _reset_locks_after_fork() -> None:
    # A forked child must not inherit locks held by the parent's other threads.
    global _LOCKS, _LOCKS_GUARD
    _LOCKS = {}
    _LOCKS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_reset_locks_after_fork)


def _interprocess_lock(path: pathlib.Path) -> _InterProcessLock:
    name = os.path.realpath(path)
    with _LOCKS_GUARD:
        found = _LOCKS.get(name)
        if found is None:
            found = _LOCKS[name] = _InterProcessLock(name)
        return found


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
            raise _lock_timeout(key.describe(), self.lock_timeout)
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


# ---------------------------------------------------------------------------
# FileStore
# ---------------------------------------------------------------------------


class FileStore:
    """Tokens in private files, for machines without an OS keyring.

    Layout: ``<directory>/<slug>.json`` per key (see :meth:`TokenKey.slug`),
    holding ``{"format": "oauthsmtp-token/1", "token_url": ..., "client_id":
    ..., "account": ..., "token": "<serialized token>"}``, and
    ``<slug>.lock`` beside it while a lock is held.

    Security (SECURITY rule 32), on POSIX:

    - the directory is created 0700, an existing one of ours with wider
      permissions is chmod'ed to 0700, and one owned by another user is refused;
    - files are written to a temporary file opened with
      ``O_WRONLY|O_CREAT|O_EXCL|O_NOFOLLOW`` and mode 0600 (whatever the umask),
      fsynced, renamed over the old file with ``os.replace`` and the directory
      fsynced: after a crash the old or the new token is there, never half;
    - files are opened with ``O_NOFOLLOW``: a symbolic link at a token path is
      never followed; :meth:`load` and :meth:`save` raise TokenStoreError for it
      (so tampering is noticed rather than silently papered over), and
      :meth:`delete` removes the link itself (its target is untouched);
    - a token file another user owns or that group/others may read or write is
      refused with TokenStoreError (the message says to ``chmod 600`` or delete it);
    - a corrupt file (not JSON, not an object, not for this key) counts as
      absent, logged at WARNING without its content.

    On Windows there is no ``O_NOFOLLOW`` and no mode bits: files rely on the
    ACL of the user's profile folder; links are refused by a check before
    opening; replacement retries briefly while another process has the file open.

    Args:
        directory: where the files live; default ``oauthsmtp_home() / "tokens"``.
            Created on the first :meth:`save` or :meth:`lock`, never by
            :meth:`load` or :meth:`keys`.
        lock_timeout: seconds :meth:`lock` waits before raising TokenStoreError.
    """

    def __init__(
        self,
        directory: str | os.PathLike[str] | None = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if directory is None:
            self.directory = oauthsmtp_home() / "tokens"
        else:
            self.directory = pathlib.Path(directory).expanduser().absolute()
        self.lock_timeout = lock_timeout

    def path(self, key: TokenKey) -> pathlib.Path:
        """The file that holds ``key``'s token."""
        return self.directory / f"{key.slug()}.json"

    def _parse(self, path: pathlib.Path, data: bytes) -> tuple[TokenKey, str] | None:
        record = _load_json_object(data)
        reason = None
        if record is None:
            reason = "not a JSON object"
        elif record.get("format") != _FILE_FORMAT:
            reason = "not an oauthsmtp token file"
        else:
            fields = [record.get(n) for n in ("token_url", "client_id", "account", "token")]
            if not all(isinstance(f, str) for f in fields):
                reason = "fields missing"
            else:
                try:
                    key = TokenKey(record["token_url"], record["client_id"], record["account"])
                except ConfigurationError:
                    reason = "malformed key"
                else:
                    return key, record["token"]
        log.warning(
            "ignoring the corrupt token file %s (%s); a new login will replace it", path, reason
        )
        return None

    def load(self, key: TokenKey) -> str | None:
        """See :meth:`TokenStore.load`.

        Raises:
            TokenStoreError: the file is a symbolic link or not a regular file,
                is owned by another user or accessible to group/others, or
                cannot be read.
        """
        path = self.path(key)
        data = _read_file(path, private=True)
        if data is None:
            return None
        parsed = self._parse(path, data)
        if parsed is None:
            return None
        found, value = parsed
        if found != key:
            log.warning("ignoring the token file %s: it holds another key's token", path)
            return None
        return value

    def save(self, key: TokenKey, value: str) -> None:
        """See :meth:`TokenStore.save`.

        Raises:
            TokenStoreError: the directory is not ours, the token path is a
                symbolic link, or the write failed (the old file is kept).
        """
        if not isinstance(value, str):
            raise TypeError("a token store saves strings")
        _ensure_private_dir(self.directory)
        path = self.path(key)
        if os.path.islink(path):
            raise _symlink_error(path)
        record = {
            "format": _FILE_FORMAT,
            "token_url": key.token_url,
            "client_id": key.client_id,
            "account": key.account,
            "token": value,
        }
        data = (json.dumps(record, sort_keys=True, ensure_ascii=False) + "\n").encode("utf-8")
        try:
            _atomic_write(path, data)
        except OSError as exc:
            raise TokenStoreError(
                f"cannot save the token for {key.describe()} in {path}: {_os_detail(exc)}"
            ) from exc

    def delete(self, key: TokenKey) -> None:
        """See :meth:`TokenStore.delete` (a symbolic link is removed, not followed)."""
        path = self.path(key)
        try:
            os.unlink(path)
        except FileNotFoundError:
            return
        except OSError as exc:
            raise TokenStoreError(
                f"cannot delete the token file {path}: {_os_detail(exc)}"
            ) from exc
        _fsync_dir(self.directory)

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """See :meth:`TokenStore.lock`: a ``filelock`` on ``<slug>.lock`` plus a thread lock."""
        _ensure_private_dir(self.directory)
        lock_path = self.directory / f"{key.slug()}.lock"
        return _interprocess_lock(lock_path).hold(self.lock_timeout, key.describe())

    def keys(self) -> list[TokenKey]:
        """See :meth:`TokenStore.keys`; unreadable or corrupt files are skipped with a WARNING."""
        try:
            entries = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TokenStoreError(
                f"cannot list the token directory {self.directory}: {_os_detail(exc)}"
            ) from exc
        found: list[TokenKey] = []
        for name in entries:
            stem, dot, ext = name.partition(".")
            if ext != "json" or not dot or not _SLUG_RE.fullmatch(stem):
                continue
            path = self.directory / name
            try:
                data = _read_file(path, private=True)
            except TokenStoreError as exc:
                log.warning("skipping a token file: %s", exc)
                continue
            parsed = self._parse(path, data) if data is not None else None
            if parsed is not None and parsed[0].slug() == stem:
                found.append(parsed[0])
        return sorted(found)

    def __repr__(self) -> str:
        return f"FileStore({str(self.directory)!r})"


# ---------------------------------------------------------------------------
# KeyringStore
# ---------------------------------------------------------------------------

_CHUNK_MARKER = "oauthsmtp-chunked/1:"
_CHUNK_HEAD_RE = re.compile(r"oauthsmtp-chunked/1:([0-9a-f]{8}):([1-9][0-9]{0,5}):([0-9a-f]{64})")
_MIN_CHUNK = 128
_LOAD_ATTEMPTS = 3


def _escape(part: str) -> str:
    return part.replace("%", "%25").replace("|", "%7C")


def _utf16_units(text: str) -> int:
    if text.isascii():
        return len(text)
    return sum(2 if ord(ch) > 0xFFFF else 1 for ch in text)


def _split(value: str, limit: int) -> list[str]:
    """Split ``value`` into pieces of at most ``limit`` UTF-16 code units."""
    if value.isascii():
        return [value[i : i + limit] for i in range(0, len(value), limit)]
    pieces: list[str] = []
    start = units = 0
    for index, ch in enumerate(value):
        width = 2 if ord(ch) > 0xFFFF else 1
        if units + width > limit:
            pieces.append(value[start:index])
            start, units = index, 0
        units += width
    pieces.append(value[start:])
    return pieces


def _checksum(value: str) -> str:
    return hashlib.sha256(value.encode("utf-8", "surrogatepass")).hexdigest()


def _leaks(text: str, secrets: Sequence[str], window: int = 12) -> bool:
    """True when ``text`` contains any ``window`` consecutive characters of a secret."""
    if len(text) < window:
        return any(piece and text in piece for piece in secrets) and bool(text.strip())
    return any(
        text[i : i + window] in piece for piece in secrets for i in range(len(text) - window + 1)
    )


def _insecure_reason(backend: Any) -> str | None:
    """Why ``backend`` must not hold tokens (SECURITY rule 31), or None when it may."""
    from keyring.backends import chainer, fail, null

    cls = type(backend)
    name = f"{cls.__module__}.{cls.__qualname__}"
    if isinstance(backend, fail.Keyring):
        return "keyring found no usable backend (it chose keyring.backends.fail.Keyring)"
    if isinstance(backend, null.Keyring):
        return "the keyring backend is keyring.backends.null.Keyring, which stores nothing"
    if "plaintext" in cls.__name__.lower():
        return f"the keyring backend {name} keeps secrets in plain text"
    if cls.__module__ == "keyrings.alt.file" or cls.__module__.startswith("keyrings.alt.file"):
        return f"the keyring backend {name} keeps secrets in a file"
    if isinstance(backend, chainer.ChainerBackend):
        chained = list(backend.backends)
        if not chained:
            return "keyring found no usable backend (its chainer backend is empty)"
        # ChainerBackend writes to the first backend that accepts the write.
        first = _insecure_reason(chained[0])
        if first is not None:
            return first
    return None


class KeyringStore:
    """Tokens in the operating system's credential store, through ``keyring``.

    Where tokens live: the Secret Service (GNOME Keyring, KWallet, KeePassXC)
    on Linux, the login Keychain on macOS, the Credential Manager on Windows:
    whatever ``keyring.get_keyring()`` chooses, or the ``backend`` given.

    Entry names: the *service* is ``f"{service}:{token_url}"`` and the
    *username* is ``f"{account}|{client_id}"`` (with ``%`` and ``|`` inside
    either part written ``%25`` and ``%7C``, so that no two keys share a name),
    for instance ``me@gmail.com|123.apps.googleusercontent.com`` on
    ``oauthsmtp:https://oauth2.googleapis.com/token``.

    Size: a value longer than ``max_chunk`` UTF-16 code units (Windows caps
    one credential at 2560 bytes of UTF-16 and fails with error 1783,
    jaraco/keyring#355) is split into chunk entries named
    ``f"{username}|{generation}|{index}"``; the entry under ``username`` (the
    head) then holds ``oauthsmtp-chunked/1:<generation>:<count>:<sha256>``.
    Each save writes its chunks under a fresh random generation first and the
    head last, then deletes the previous generation's chunks, so a crash or a
    concurrent reader sees the complete old value or the complete new one. A
    head whose chunks are missing or do not match the checksum counts as absent.

    Security (SECURITY rule 31): on first use the backend is checked and
    refused with TokenStoreError when it would keep tokens in plain text or
    nowhere: ``keyring.backends.fail.Keyring``, ``keyring.backends.null.Keyring``,
    any backend whose class name contains ``Plaintext``, the ``keyrings.alt.file``
    backends, and a ``ChainerBackend`` that is empty or whose first (writing)
    backend is one of those. ``allow_insecure=True`` accepts them (with a WARNING).
    Every backend error is wrapped in TokenStoreError without the value.

    Locks and listing: :meth:`lock` uses a ``filelock`` under
    ``oauthsmtp_home() / "locks"`` (0700) plus a thread lock. Because keyring
    cannot enumerate entries portably, :meth:`keys` reads a small non-secret
    index, ``oauthsmtp_home() / "keyring-index.json"``, kept up to date by
    :meth:`save` and :meth:`delete` (best effort: a failure to update it is
    logged, not raised).

    Args:
        service: the prefix of the keyring service names.
        allow_insecure: accept backends that keep secrets in plain text.
        max_chunk: the largest value (in UTF-16 code units) kept in one entry;
            at least 128.
        backend: a ``keyring`` backend instance to use instead of
            ``keyring.get_keyring()`` (keyring picks its default once per
            process; tests pass a Secret Service backend here).
        lock_timeout: seconds :meth:`lock` waits before raising TokenStoreError.

    Raises:
        ConfigurationError: ``service`` is empty or ``max_chunk`` is too small.
    """

    def __init__(
        self,
        service: str = "oauthsmtp",
        *,
        allow_insecure: bool = False,
        max_chunk: int = 1000,
        backend: Any = None,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
    ) -> None:
        if not isinstance(service, str) or not service or _CONTROL_RE.search(service):
            raise ConfigurationError("KeyringStore needs a non-empty service name")
        if isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < _MIN_CHUNK:
            raise ConfigurationError(f"KeyringStore max_chunk must be an int >= {_MIN_CHUNK}")
        self.service = service
        self.allow_insecure = allow_insecure
        self.max_chunk = max_chunk
        self.lock_timeout = lock_timeout
        self._backend_arg = backend
        self._backend: Any = None
        self._home: pathlib.Path | None = None
        self._init_lock = threading.Lock()

    # -- names ----------------------------------------------------------------
    def _service_name(self, key: TokenKey) -> str:
        return f"{self.service}:{key.token_url}"

    def _username(self, key: TokenKey) -> str:
        return f"{_escape(key.account)}|{_escape(key.client_id)}"

    def _chunk_username(self, key: TokenKey, generation: str, index: int) -> str:
        return f"{self._username(key)}|{generation}|{index}"

    @property
    def home(self) -> pathlib.Path:
        """``oauthsmtp_home()`` as it was at this store's first use of it."""
        if self._home is None:
            self._home = oauthsmtp_home()
        return self._home

    # -- backend --------------------------------------------------------------
    def backend(self) -> Any:
        """The checked keyring backend (checked once, on first use).

        Raises:
            TokenStoreError: no secure OS keyring is available and
                ``allow_insecure`` is False.
        """
        with self._init_lock:
            if self._backend is not None:
                return self._backend
            try:
                import keyring

                chosen = (
                    self._backend_arg if self._backend_arg is not None else keyring.get_keyring()
                )
                reason = _insecure_reason(chosen)
            except Exception as exc:
                raise TokenStoreError(
                    f"the OS keyring could not be opened ({type(exc).__name__}); "
                    "use the file store instead: OAUTHSMTP_STORE=file"
                ) from exc
            if reason is not None:
                if not self.allow_insecure:
                    raise TokenStoreError(
                        f"no secure OS keyring is available: {reason}. This happens on a "
                        "machine without a desktop session or Secret Service (a server, a "
                        "container, an SSH session). Keep tokens in files readable only by you "
                        "(mode 0600) instead: set OAUTHSMTP_STORE=file (files under "
                        "OAUTHSMTP_HOME) or pass store=oauthsmtp.FileStore(); or pass "
                        "KeyringStore(allow_insecure=True) to use this backend anyway"
                    )
                log.warning(
                    "using an insecure keyring backend because allow_insecure=True: %s", reason
                )
            self._backend = chosen
            return chosen

    def _wrap(
        self, action: str, key: TokenKey, exc: Exception, secret: Sequence[str]
    ) -> tuple[TokenStoreError, Exception | None]:
        """A TokenStoreError for a failed backend call, without any secret in it.

        Returns:
            The error and what to chain it to: the original exception, or None
            when its message contains a secret.
        """
        detail = str(exc)
        redacted = len(detail) > 4000 or _leaks(detail, secret)
        detail = "details withheld" if redacted else detail[:200]
        hint = ""
        if "1783" in detail or "stub received bad data" in detail.lower():
            hint = (
                " (the value is too large for the Windows Credential Manager; "
                "use a smaller KeyringStore max_chunk)"
            )
        elif type(exc).__name__ == "KeyringLocked":
            hint = " (unlock your keyring, e.g. log in to the desktop session)"
        error = TokenStoreError(
            f"the OS keyring could not {action} the token for {key.describe()}: "
            f"{type(exc).__name__}: {detail}{hint}"
        )
        return error, (None if redacted else exc)

    def _call(
        self,
        action: str,
        key: TokenKey,
        func: Callable[..., _T],
        *args: str,
        secret: Sequence[str] = (),
    ) -> _T:
        """Run one backend call, wrapping any failure in TokenStoreError (no secret in it)."""
        try:
            return func(*args)
        except Exception as exc:
            error, cause = self._wrap(action, key, exc, secret)
            raise error from cause

    def _get(self, key: TokenKey, username: str) -> str | None:
        value = self._call(
            "read", key, self.backend().get_password, self._service_name(key), username
        )
        if value is not None and not isinstance(value, str):
            raise TokenStoreError(f"the OS keyring returned a non-string for {key.describe()}")
        return value

    def _set(self, key: TokenKey, username: str, value: str, secret: Sequence[str]) -> None:
        self._call(
            "save",
            key,
            self.backend().set_password,
            self._service_name(key),
            username,
            value,
            secret=secret,
        )

    def _remove(self, key: TokenKey, username: str) -> None:
        """Delete one entry; absent is fine."""
        import keyring.errors

        backend = self.backend()
        try:
            backend.delete_password(self._service_name(key), username)
        except keyring.errors.PasswordDeleteError as exc:
            # keyring raises this for "no such entry" as well as for real failures.
            if self._get(key, username) is not None:
                error, cause = self._wrap("delete", key, exc, ())
                raise error from cause
        except Exception as exc:
            error, cause = self._wrap("delete", key, exc, ())
            raise error from cause

    # -- protocol -------------------------------------------------------------
    def load(self, key: TokenKey) -> str | None:
        """See :meth:`TokenStore.load`.

        Raises:
            TokenStoreError: no secure keyring (see the class doc), or the
                backend failed.
        """
        username = self._username(key)
        for _attempt in range(_LOAD_ATTEMPTS):
            head = self._get(key, username)
            if head is None:
                return None
            if not head.startswith(_CHUNK_MARKER):
                return head
            match = _CHUNK_HEAD_RE.fullmatch(head)
            if match is None:
                log.warning("ignoring a malformed keyring entry for %s", key.describe())
                return None
            generation, count, checksum = match[1], int(match[2]), match[3]
            pieces: list[str] = []
            for index in range(count):
                piece = self._get(key, self._chunk_username(key, generation, index))
                if piece is None:
                    break
                pieces.append(piece)
            value = "".join(pieces)
            if len(pieces) == count and _checksum(value) == checksum:
                return value
            # A concurrent save may have replaced the value meanwhile: read the head again.
            if self._get(key, username) == head:
                break
        log.warning(
            "ignoring an incomplete keyring entry for %s (chunks missing or checksum mismatch)",
            key.describe(),
        )
        return None

    def _previous_generation(self, key: TokenKey) -> tuple[str, int] | None:
        head = self._get(key, self._username(key))
        match = _CHUNK_HEAD_RE.fullmatch(head) if head is not None else None
        return (match[1], int(match[2])) if match is not None else None

    def _remove_generation(self, key: TokenKey, generation: str, count: int) -> None:
        for index in range(count):
            self._remove(key, self._chunk_username(key, generation, index))

    def save(self, key: TokenKey, value: str) -> None:
        """See :meth:`TokenStore.save` (chunked when longer than ``max_chunk``).

        Raises:
            TokenStoreError: no secure keyring, or the backend failed (the
                previous value is then still there).
        """
        if not isinstance(value, str):
            raise TypeError("a token store saves strings")
        username = self._username(key)
        previous = self._previous_generation(key)
        if _utf16_units(value) <= self.max_chunk and not value.startswith(_CHUNK_MARKER):
            self._set(key, username, value, [value])
        else:
            pieces = _split(value, self.max_chunk)
            generation = secrets.token_hex(4)
            while previous is not None and generation == previous[0]:
                generation = secrets.token_hex(4)
            written = 0
            try:
                for index, piece in enumerate(pieces):
                    self._set(
                        key, self._chunk_username(key, generation, index), piece, [value, piece]
                    )
                    written += 1
                head = f"{_CHUNK_MARKER}{generation}:{len(pieces)}:{_checksum(value)}"
                self._set(key, username, head, [value])
            except TokenStoreError:
                with contextlib.suppress(TokenStoreError):
                    self._remove_generation(key, generation, written)
                raise
        if previous is not None:
            try:
                self._remove_generation(key, *previous)
            except TokenStoreError as exc:
                log.warning("could not remove stale keyring chunks: %s", exc)
        self._index_update(key, present=True)

    def delete(self, key: TokenKey) -> None:
        """See :meth:`TokenStore.delete` (the head first, then every chunk).

        Raises:
            TokenStoreError: no secure keyring, or the backend failed.
        """
        previous = self._previous_generation(key)
        self._remove(key, self._username(key))
        if previous is not None:
            self._remove_generation(key, *previous)
        self._index_update(key, present=False)

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """See :meth:`TokenStore.lock`: a ``filelock`` in ``oauthsmtp_home()/locks``.

        Plus a thread lock; the keyring itself is not touched.
        """
        return _interprocess_lock(self._locks_dir() / f"{key.slug()}.lock").hold(
            self.lock_timeout, key.describe()
        )

    def keys(self) -> list[TokenKey]:
        """See :meth:`TokenStore.keys`: the keys this store's index lists.

        The keyring itself is not queried, so listing never prompts.
        """
        return sorted({key for service, key in self._index_read() if service == self.service})

    # -- index ----------------------------------------------------------------
    def _index_read(self) -> list[tuple[str, TokenKey]]:
        path = self.home / _INDEX_NAME
        data = _read_file(path, private=False)
        if data is None:
            return []
        record = _load_json_object(data)
        entries = record.get("entries") if record is not None else None
        if record is None or record.get("format") != _INDEX_FORMAT or not isinstance(entries, list):
            log.warning("ignoring the corrupt keyring index %s", path)
            return []
        found: list[tuple[str, TokenKey]] = []
        for entry in entries:
            try:
                found.append(
                    (
                        entry["service"],
                        TokenKey(entry["token_url"], entry["client_id"], entry["account"]),
                    )
                )
            except (TypeError, KeyError, ConfigurationError):
                continue
        return found

    def _locks_dir(self) -> pathlib.Path:
        locks = self.home / "locks"
        _ensure_private_dir(locks)
        return locks

    def _index_update(self, key: TokenKey, *, present: bool) -> None:
        entry = (self.service, key)
        with contextlib.suppress(TokenStoreError):
            if (entry in self._index_read()) == present:
                return  # already right: no write (a refresh saves often)
        try:
            lock = _interprocess_lock(self._locks_dir() / "keyring-index.lock")
            with lock.hold(self.lock_timeout, "the keyring index"):
                entries = [e for e in self._index_read() if e != entry]
                if present:
                    entries.append(entry)
                record = {
                    "format": _INDEX_FORMAT,
                    "entries": [
                        {
                            "service": service,
                            "token_url": k.token_url,
                            "client_id": k.client_id,
                            "account": k.account,
                        }
                        for service, k in sorted(entries)
                    ],
                }
                data = (json.dumps(record, indent=1, ensure_ascii=False) + "\n").encode("utf-8")
                _atomic_write(self.home / _INDEX_NAME, data)
        except (OSError, TokenStoreError) as exc:
            log.warning("could not update the keyring index (used by `oauthsmtp status`): %s", exc)

    def __repr__(self) -> str:
        return f"KeyringStore(service={self.service!r})"
