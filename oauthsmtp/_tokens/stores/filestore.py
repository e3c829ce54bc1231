"""FileStore: tokens in 0600 files under a 0700 folder."""

from __future__ import annotations

import json
import logging
import os
import pathlib
import re
from contextlib import AbstractContextManager

from oauthsmtp._errors import ConfigurationError, TokenStoreError
from oauthsmtp._util.files import (
    atomic_write,
    ensure_private_dir,
    fsync_dir,
    interprocess_lock,
    os_detail,
    read_file,
    sweep_temp_files,
    symlink_error,
)
from oauthsmtp._util.home import oauthsmtp_home
from oauthsmtp._util.jsonobject import load_json_object

from .base import DEFAULT_LOCK_TIMEOUT, TokenKey, check_lock_timeout

__all__ = ["FileStore"]

log = logging.getLogger("oauthsmtp.store")

_FILE_FORMAT = "oauthsmtp-token/1"
_SLUG_RE = re.compile(r"[0-9a-f]{32}")


# ---------------------------------------------------------------------------
# FileStore
# ---------------------------------------------------------------------------


class FileStore:
    """Tokens in private files, for machines without an OS keyring.

    Layout: ``<directory>/<slug>.json`` per key (see :meth:`TokenKey.slug`),
    holding ``{"format": "oauthsmtp-token/1", "token_url": ..., "client_id":
    ..., "account": ..., "token": "<serialized token>"}``, and
    ``<slug>.lock`` beside it while a lock is held.

    Security (CWE-732; see docs/security.md#rule-32), on POSIX:

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
        elif (
            isinstance(directory, (str, os.PathLike))
            and str(directory).strip()
            and "\x00" not in str(directory)
        ):
            self.directory = pathlib.Path(directory).expanduser().absolute()
        else:
            raise ConfigurationError("FileStore needs a folder path (or None for the default)")
        self.lock_timeout = check_lock_timeout(lock_timeout)

    def path(self, key: TokenKey) -> pathlib.Path:
        """The file that holds ``key``'s token."""
        return self.directory / f"{key.slug()}.json"

    def _parse(self, path: pathlib.Path, data: bytes) -> tuple[TokenKey, str] | None:
        record = load_json_object(data)
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
        data = read_file(path, private=True)
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

        Takes ``key``'s lock (re-entrant: callers that hold it already are
        fine), removes the temporary files an earlier writer killed mid-write
        left (each may hold a whole token record), then writes atomically.

        Raises:
            TokenStoreError: the directory is not ours, the token path is a
                symbolic link, or the write failed (the old file is kept).
            ConfigurationError: ``value`` is not a string.
        """
        if not isinstance(value, str):
            raise ConfigurationError("a token store saves strings")
        ensure_private_dir(self.directory)
        path = self.path(key)
        record = {
            "format": _FILE_FORMAT,
            "token_url": key.token_url,
            "client_id": key.client_id,
            "account": key.account,
            "token": value,
        }
        # ASCII with \u escapes: any str round-trips, even one with lone surrogates.
        data = (json.dumps(record, sort_keys=True) + "\n").encode("ascii")
        with self.lock(key):
            if os.path.islink(path):
                raise symlink_error(path)
            sweep_temp_files(path)
            try:
                atomic_write(path, data)
            except OSError as exc:
                raise TokenStoreError(
                    f"cannot save the token for {key.describe()} in {path}: {os_detail(exc)}"
                ) from exc

    def delete(self, key: TokenKey) -> None:
        """See :meth:`TokenStore.delete`.

        Under ``key``'s lock: the file (a symbolic link is removed, not
        followed) and any temporary file a killed writer left.
        """
        if not os.path.isdir(self.directory):
            return  # nothing was ever stored here; do not create the folder
        path = self.path(key)
        with self.lock(key):
            sweep_temp_files(path)
            try:
                os.unlink(path)
            except FileNotFoundError:
                return
            except OSError as exc:
                raise TokenStoreError(
                    f"cannot delete the token file {path}: {os_detail(exc)}"
                ) from exc
            fsync_dir(self.directory)

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """See :meth:`TokenStore.lock`: ``flock`` on ``<slug>.lock`` plus a thread lock."""
        ensure_private_dir(self.directory)
        lock_path = self.directory / f"{key.slug()}.lock"
        return interprocess_lock(lock_path).hold(self.lock_timeout, key.describe())

    def keys(self) -> list[TokenKey]:
        """See :meth:`TokenStore.keys`; unreadable or corrupt files are skipped with a WARNING."""
        try:
            entries = sorted(os.listdir(self.directory))
        except FileNotFoundError:
            return []
        except OSError as exc:
            raise TokenStoreError(
                f"cannot list the token directory {self.directory}: {os_detail(exc)}"
            ) from exc
        found: list[TokenKey] = []
        for name in entries:
            stem, dot, ext = name.partition(".")
            if ext != "json" or not dot or not _SLUG_RE.fullmatch(stem):
                continue
            path = self.directory / name
            try:
                data = read_file(path, private=True)
            except TokenStoreError as exc:
                log.warning("skipping a token file: %s", exc)
                continue
            parsed = self._parse(path, data) if data is not None else None
            if parsed is not None and parsed[0].slug() == stem:
                found.append(parsed[0])
        return sorted(found)

    def __repr__(self) -> str:
        return f"FileStore({str(self.directory)!r})"
