"""Private files, directories and cross-process locks for the token stores and the account
settings (POSIX modes and O_NOFOLLOW, see docs/security.md#rule-32; Windows relies on per-user
ACLs).

Everything here takes paths and bytes and knows nothing of tokens; the stores above it decide
what the files hold.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import pathlib
import re
import secrets
import stat
import sys
import threading
import time
from collections.abc import Iterator

from oauthsmtp._errors import TokenStoreError

__all__ = [
    "MAX_FILE_BYTES",
    "atomic_write",
    "ensure_private_dir",
    "fsync_dir",
    "interprocess_lock",
    "lock_timeout",
    "os_detail",
    "read_file",
    "replace_file",
    "sweep_temp_files",
    "symlink_error",
    "temp_name",
]

log = logging.getLogger("oauthsmtp.store")

_WINDOWS = sys.platform == "win32"

MAX_FILE_BYTES = 1024 * 1024
"""Token and index files larger than this are treated as corrupt, unread."""

_LOCK_POLL_INTERVAL = 0.01

_O_NOFOLLOW = getattr(os, "O_NOFOLLOW", 0)
_O_CLOEXEC = getattr(os, "O_CLOEXEC", 0)
_O_BINARY = getattr(os, "O_BINARY", 0)  # Windows: no newline translation
_O_NONBLOCK = getattr(os, "O_NONBLOCK", 0)  # a planted FIFO must not hang the open
_O_DIRECTORY = getattr(os, "O_DIRECTORY", 0)


# ---------------------------------------------------------------------------
# private files and directories
# ---------------------------------------------------------------------------


def os_detail(exc: OSError) -> str:
    return exc.strerror or type(exc).__name__


def ensure_private_dir(path: pathlib.Path) -> None:
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
            f"cannot create the private directory {path}: {os_detail(exc)}"
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
                f"private (chmod 700): {os_detail(exc)}"
            ) from exc
        log.info("made %s private (mode 0700)", path)


def fsync_dir(path: pathlib.Path) -> None:
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


def replace_file(source: str, target: str) -> None:
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


def temp_name(path: pathlib.Path) -> pathlib.Path:
    """A fresh temporary name beside ``path``: ``.<name>.<12 hex digits>.tmp``."""
    return path.with_name(f".{path.name}.{secrets.token_hex(6)}.tmp")


def sweep_temp_files(path: pathlib.Path) -> int:
    """Remove the temporary files a killed :func:`atomic_write` of ``path`` left behind.

    A process killed between creating its temporary file and renaming it
    leaves ``.<name>.<hex>.tmp`` beside ``path``, holding all or part of what
    it was writing (for a token file: the refresh token). The caller must hold
    the lock that every writer of ``path`` holds, so that no temporary file
    found here still belongs to a live writer. Never raises.

    Returns:
        How many files were removed.
    """
    pattern = re.compile(rf"\.{re.escape(path.name)}\.[0-9a-f]{{12}}\.tmp")
    try:
        names = os.listdir(path.parent)
    except OSError:
        return 0
    removed = 0
    for name in names:
        if pattern.fullmatch(name):
            try:
                os.unlink(path.parent / name)
            except FileNotFoundError:
                continue
            except OSError as exc:
                log.warning("could not remove the leftover %s: %s", name, os_detail(exc))
                continue
            removed += 1
    if removed:
        log.info("removed %d temporary file(s) left by an interrupted write of %s", removed, path)
        fsync_dir(path.parent)
    return removed


def atomic_write(path: pathlib.Path, data: bytes) -> None:
    """Write ``data`` to ``path`` atomically with mode 0600 (docs/security.md#rule-32).

    A temporary file (:func:`temp_name`) is created in the same directory with
    ``O_CREAT|O_EXCL|O_NOFOLLOW`` and mode 0600 (fchmod'ed again, whatever the
    umask), written, fsynced, renamed over ``path`` and the directory fsynced.
    On failure the temporary file is removed and ``path`` keeps its old content;
    after a kill, :func:`sweep_temp_files` finds what is left.

    Raises:
        OSError: the write failed (the caller wraps it without the data).
    """
    tmp = temp_name(path)
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
        replace_file(os.fspath(tmp), os.fspath(path))
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
    fsync_dir(path.parent)


def read_file(path: pathlib.Path, *, private: bool) -> bytes | None:
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
        raise symlink_error(path)
    try:
        fd = os.open(path, os.O_RDONLY | _O_NOFOLLOW | _O_CLOEXEC | _O_NONBLOCK | _O_BINARY)
    except FileNotFoundError:
        return None
    except OSError as exc:
        if exc.errno in (errno.ELOOP, errno.EMLINK) and os.path.islink(path):
            raise symlink_error(path) from None
        raise TokenStoreError(f"cannot read {path}: {os_detail(exc)}") from exc
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
        raise TokenStoreError(f"cannot read {path}: {os_detail(exc)}") from exc
    finally:
        os.close(fd)


def symlink_error(path: pathlib.Path) -> TokenStoreError:
    return TokenStoreError(
        f"{path} is a symbolic link; token files are never read or written through a link. "
        "Delete the link (e.g. `oauthsmtp logout`) and log in again"
    )


# ---------------------------------------------------------------------------
# locks
# ---------------------------------------------------------------------------


class _LockBusy(Exception):
    """The lock file stayed locked by another process until the deadline."""


class _PosixFileLock:
    """An exclusive ``flock`` on one lock file, re-entrant within the process.

    On POSIX this stands in for ``filelock.FileLock``: the same ``flock``
    semantics, without importing filelock (10-25 ms) in every short-lived
    ``oauthsmtp token`` process. The lock file is opened 0600 and never
    through a symbolic link; it stays on disk (it holds nothing).
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._fd: int | None = None
        self._count = 0

    def acquire(self, timeout: float, poll_interval: float) -> None:
        import fcntl

        if self._count:
            self._count += 1
            return
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | _O_NOFOLLOW | _O_CLOEXEC, 0o600)
        deadline = time.monotonic() + timeout
        try:
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    left = deadline - time.monotonic()
                    if left <= 0:
                        raise _LockBusy from None
                    time.sleep(min(poll_interval, left))
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd
        self._count = 1

    def release(self) -> None:
        import fcntl

        self._count -= 1
        if self._count == 0 and self._fd is not None:
            fd, self._fd = self._fd, None
            try:
                fcntl.flock(fd, fcntl.LOCK_UN)
            finally:
                os.close(fd)


class _WindowsFileLock:
    """``filelock.FileLock`` (``LockFileEx``), re-entrant, for Windows."""

    def __init__(self, path: str) -> None:
        import filelock

        self._lock = filelock.FileLock(path, mode=0o600, thread_local=False)

    def acquire(self, timeout: float, poll_interval: float) -> None:
        import filelock

        try:
            self._lock.acquire(timeout=timeout, poll_interval=poll_interval)
        except filelock.Timeout:
            raise _LockBusy from None

    def release(self) -> None:
        self._lock.release()


class _InterProcessLock:
    """A thread lock plus an OS file lock on one lock file.

    The file lock (``flock`` on POSIX, ``LockFileEx`` through ``filelock`` on
    Windows) excludes other processes; it is taken once per process and
    counted, so the re-entrant thread lock in front of it serializes this
    process's threads without polling and lets one thread take it again. Every
    lock file has one process-wide instance of this class.
    """

    def __init__(self, path: str) -> None:
        self.path = path
        self._thread_lock = threading.RLock()
        self._file_lock: _PosixFileLock | _WindowsFileLock | None = None

    @contextlib.contextmanager
    def hold(self, timeout: float, what: str) -> Iterator[None]:
        deadline = time.monotonic() + timeout
        if not self._thread_lock.acquire(timeout=timeout):
            raise lock_timeout(what, timeout)
        try:
            remaining = max(0.0, deadline - time.monotonic())
            try:
                if self._file_lock is None:
                    self._file_lock = (
                        _WindowsFileLock(self.path) if _WINDOWS else _PosixFileLock(self.path)
                    )
                self._file_lock.acquire(remaining, _LOCK_POLL_INTERVAL)
            except _LockBusy:
                raise lock_timeout(what, timeout) from None
            except OSError as exc:
                raise TokenStoreError(
                    f"cannot take the lock file {self.path}: {os_detail(exc)}"
                ) from exc
            try:
                yield
            finally:
                self._file_lock.release()
        finally:
            self._thread_lock.release()


def lock_timeout(what: str, timeout: float) -> TokenStoreError:
    return TokenStoreError(
        f"timed out after {timeout:g} s waiting for the token lock of {what}: another thread or "
        "oauthsmtp process holds it (a refresh that hangs?)"
    )


_LOCKS: dict[str, _InterProcessLock] = {}
_LOCKS_GUARD = threading.Lock()


def reset_locks_after_fork() -> None:
    # A forked child must not inherit locks held by the parent's other threads.
    global _LOCKS, _LOCKS_GUARD
    _LOCKS = {}
    _LOCKS_GUARD = threading.Lock()


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=reset_locks_after_fork)


def interprocess_lock(path: pathlib.Path) -> _InterProcessLock:
    name = os.path.realpath(path)
    with _LOCKS_GUARD:
        found = _LOCKS.get(name)
        if found is None:
            found = _LOCKS[name] = _InterProcessLock(name)
        return found
