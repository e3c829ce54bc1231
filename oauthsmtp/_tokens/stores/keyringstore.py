"""KeyringStore: tokens in the OS keyring, chunked where one entry is too small."""

from __future__ import annotations

import contextlib
import hashlib
import json
import logging
import pathlib
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from typing import Any, TypeVar

from oauthsmtp._errors import ConfigurationError, TokenStoreError
from oauthsmtp._util.files import (
    atomic_write,
    ensure_private_dir,
    interprocess_lock,
    read_file,
    sweep_temp_files,
)
from oauthsmtp._util.home import oauthsmtp_home
from oauthsmtp._util.jsonobject import load_json_object

from .base import CONTROL_RE, DEFAULT_LOCK_TIMEOUT, TokenKey, check_lock_timeout

__all__ = ["KeyringStore"]

log = logging.getLogger("oauthsmtp.store")

_T = TypeVar("_T")

_INDEX_FORMAT = "oauthsmtp-keyring-index/1"
_INDEX_NAME = "keyring-index.json"


# ---------------------------------------------------------------------------
# KeyringStore
# ---------------------------------------------------------------------------

_CHUNK_MARKER = "oauthsmtp-chunked/1:"
_CHUNK_HEAD_RE = re.compile(r"oauthsmtp-chunked/1:([0-9a-f]{8}):([1-9][0-9]{0,5}):([0-9a-f]{64})")
_MIN_CHUNK = 128
_MAX_CHUNKS = 10_000
_JOURNAL_MARKER = "oauthsmtp-journal/1:"
_JOURNAL_RE = re.compile(
    r"oauthsmtp-journal/1:([0-9a-f]{8}:[1-9][0-9]{0,4}(?:,[0-9a-f]{8}:[1-9][0-9]{0,4})?)"
)
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
    """Why ``backend`` must not hold tokens (RFC 6749 §10.3-10.4), or None when it may."""
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
    Before chunks are written or orphaned, their generations (names and counts,
    nothing secret) are recorded in a journal entry ``f"{username}|journal"``,
    removed once they are cleaned up; a process killed mid-save leaves it, and
    the next :meth:`save` or :meth:`delete` of the key removes every chunk it
    names that the head does not use. :meth:`save` and :meth:`delete` hold the
    key's lock.

    Security (RFC 6749 §10.3-10.4; docs/security.md#rule-31): on first use
    the backend is checked and refused with TokenStoreError when it would keep
    tokens in plain text or nowhere: ``keyring.backends.fail.Keyring``,
    ``keyring.backends.null.Keyring``,
    any backend whose class name contains ``Plaintext``, the ``keyrings.alt.file``
    backends, and a ``ChainerBackend`` that is empty or whose first (writing)
    backend is one of those. ``allow_insecure=True`` accepts them (with a WARNING).
    Every backend error is wrapped in TokenStoreError without the value.

    Locks and listing: :meth:`lock` uses an OS file lock (``flock``) under
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
        if not isinstance(service, str) or not service or CONTROL_RE.search(service):
            raise ConfigurationError("KeyringStore needs a non-empty service name")
        if isinstance(max_chunk, bool) or not isinstance(max_chunk, int) or max_chunk < _MIN_CHUNK:
            raise ConfigurationError(f"KeyringStore max_chunk must be an int >= {_MIN_CHUNK}")
        self.service = service
        self.allow_insecure = allow_insecure
        self.max_chunk = max_chunk
        self.lock_timeout = check_lock_timeout(lock_timeout)
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
            if count > _MAX_CHUNKS:
                log.warning("ignoring a malformed keyring entry for %s", key.describe())
                return None
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
        if match is None or int(match[2]) > _MAX_CHUNKS:
            return None
        return match[1], int(match[2])

    def _remove_generation(self, key: TokenKey, generation: str, count: int) -> None:
        # Last chunk first: an interrupted removal leaves a prefix, which the head or the
        # journal still names with its full count, so the next attempt finds all of it.
        for index in reversed(range(count)):
            self._remove(key, self._chunk_username(key, generation, index))

    # -- journal ----------------------------------------------------------------
    # Before a write creates or orphans chunk entries, the generations concerned are
    # recorded (names and counts only, nothing secret) in one entry beside the head; the
    # entry is removed once they are cleaned up. A process killed in between leaves the
    # journal behind, and the next save or delete of the key removes every generation it
    # names except the one the head uses. So no chunk ever exists that neither the head
    # nor the journal names.

    def _journal_username(self, key: TokenKey) -> str:
        return f"{self._username(key)}|journal"

    def _write_journal(self, key: TokenKey, generations: Sequence[tuple[str, int]]) -> None:
        value = _JOURNAL_MARKER + ",".join(f"{g}:{c}" for g, c in generations)
        self._set(key, self._journal_username(key), value, ())

    def _recover(self, key: TokenKey, keep: str | None) -> None:
        """Remove the chunks the journal names (except generation ``keep``), then the journal."""
        name = self._journal_username(key)
        journal = self._get(key, name)
        if journal is None:
            return
        match = _JOURNAL_RE.fullmatch(journal)
        if match is None:
            log.warning("removing a malformed keyring journal entry for %s", key.describe())
        else:
            for part in match[1].split(","):
                generation, _, count = part.partition(":")
                if generation != keep and int(count) <= _MAX_CHUNKS:
                    self._remove_generation(key, generation, int(count))
        self._remove(key, name)

    def save(self, key: TokenKey, value: str) -> None:
        """See :meth:`TokenStore.save` (chunked when longer than ``max_chunk``).

        Takes ``key``'s lock (re-entrant in one thread), first removes what a
        write killed earlier left behind (see the class doc), then writes.

        Raises:
            TokenStoreError: no secure keyring, the backend failed (the previous
                value is then still there), or the value needs more than
                10,000 chunks.
            ConfigurationError: ``value`` is not a string.
        """
        if not isinstance(value, str):
            raise ConfigurationError("a token store saves strings")
        username = self._username(key)
        chunked = _utf16_units(value) > self.max_chunk or value.startswith(_CHUNK_MARKER)
        pieces = _split(value, self.max_chunk) if chunked else []
        if len(pieces) > _MAX_CHUNKS:
            raise TokenStoreError(
                f"the token for {key.describe()} is too large for the OS keyring "
                f"({len(pieces)} chunks of {self.max_chunk}); use a larger max_chunk"
            )
        with self.lock(key):
            previous = self._previous_generation(key)
            self._recover(key, keep=previous[0] if previous is not None else None)
            journal = [previous] if previous is not None else []
            generation = None
            if chunked:
                generation = secrets.token_hex(4)
                while previous is not None and generation == previous[0]:
                    generation = secrets.token_hex(4)
                journal.insert(0, (generation, len(pieces)))
            if journal:
                self._write_journal(key, journal)
            try:
                if generation is None:
                    self._set(key, username, value, [value])
                else:
                    for index, piece in enumerate(pieces):
                        self._set(
                            key,
                            self._chunk_username(key, generation, index),
                            piece,
                            [value, piece],
                        )
                    head = f"{_CHUNK_MARKER}{generation}:{len(pieces)}:{_checksum(value)}"
                    self._set(key, username, head, [value])
            except TokenStoreError:
                with contextlib.suppress(TokenStoreError):
                    self._recover(key, keep=previous[0] if previous is not None else None)
                raise
            try:
                self._recover(key, keep=generation)
            except TokenStoreError as exc:
                log.warning("could not remove stale keyring chunks (retried next time): %s", exc)
        self._index_update(key, present=True)

    def delete(self, key: TokenKey) -> None:
        """See :meth:`TokenStore.delete`: every chunk first, then the head, then the journal.

        Raises:
            TokenStoreError: no secure keyring, or the backend failed.
        """
        with self.lock(key):
            previous = self._previous_generation(key)
            if previous is not None:
                self._remove_generation(key, *previous)
            self._remove(key, self._username(key))
            self._recover(key, keep=None)
        self._index_update(key, present=False)

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """See :meth:`TokenStore.lock`: an OS file lock in ``oauthsmtp_home()/locks``.

        Plus a thread lock; the keyring itself is not touched.
        """
        return interprocess_lock(self._locks_dir() / f"{key.slug()}.lock").hold(
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
        data = read_file(path, private=False)
        if data is None:
            return []
        record = load_json_object(data)
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
        ensure_private_dir(locks)
        return locks

    def _index_update(self, key: TokenKey, *, present: bool) -> None:
        entry = (self.service, key)
        with contextlib.suppress(TokenStoreError):
            if (entry in self._index_read()) == present:
                return  # already right: no write (a refresh saves often)
        try:
            lock = interprocess_lock(self._locks_dir() / "keyring-index.lock")
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
                data = (json.dumps(record, indent=1) + "\n").encode("ascii")
                sweep_temp_files(self.home / _INDEX_NAME)
                atomic_write(self.home / _INDEX_NAME, data)
        except (OSError, TokenStoreError) as exc:
            log.warning("could not update the keyring index (used by `oauthsmtp status`): %s", exc)

    def __repr__(self) -> str:
        return f"KeyringStore(service={self.service!r})"
