"""RedisStore: tokens shared by a fleet of workers through one Redis server.

The lock is a lease (redis-py's :class:`redis.lock.Lock`: ``SET NX PX`` with a
random owner token, released by a compare-and-delete script), renewed by a
background thread while held, and every write is fenced: a Lua script writes
only while the lease key still holds this owner's token, so a worker paused
past its lease never overwrites what a newer holder saved.

``redis`` (and ``cryptography`` when values are encrypted) are imported only
when a :class:`RedisStore` is made: ``import oauthsmtp`` does not pay for them.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import json
import logging
import math
import threading
import urllib.parse
from collections.abc import Iterator
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass, field
from typing import Any

from oauthsmtp._errors import ConfigurationError, TokenStoreError
from oauthsmtp._limits.rules import SendLimits
from oauthsmtp._util.jsonobject import load_json_object

from .base import CONTROL_RE, DEFAULT_LOCK_TIMEOUT, TokenKey, check_lock_timeout
from .redisbudget import RedisBudget

__all__ = ["DEFAULT_LEASE", "RedisStore", "redact_url"]

log = logging.getLogger("oauthsmtp.store")

DEFAULT_LEASE = 30.0
"""Seconds a lease lives unless renewed (renewed every third of it while held)."""

_RECORD_FORMAT = "oauthsmtp-token/1"
_ENCRYPTED_PREFIX = b"oauthsmtp-fernet/1:"

# KEYS[1]: the lease, KEYS[2]: the value; ARGV[1]: the owner token, ARGV[2]: the value
# (empty: delete). Writes only while the lease is still this owner's.
_FENCED_WRITE = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
if ARGV[2] == '' then
    redis.call('del', KEYS[2])
else
    redis.call('set', KEYS[2], ARGV[2])
end
return 1
"""

# KEYS[1]: the lease, KEYS[2]: this holder's refresh marker; ARGV[1]: the owner token,
# ARGV[2]: the digest of the stored text being refreshed, ARGV[3]: the marker's life in ms.
# Notes a refresh about to be sent, only while the lease is still this owner's.
_BEGIN_REFRESH = """
if redis.call('get', KEYS[1]) ~= ARGV[1] then
    return 0
end
redis.call('set', KEYS[2], ARGV[2], 'PX', ARGV[3])
return 1
"""

DOUBT_LEASES = 10
"""How many leases a refresh marker lives: for that long after a worker began a refresh and
lost its lease, the token it refreshed is not declared dead on ``invalid_grant``."""

_INSTALL_HINT = "pip install 'oauthsmtp[redis]'"


def redact_url(url: str) -> str:
    """``url`` without its password (``redis://user@host:6379/0``), for messages and repr."""
    try:
        parts = urllib.parse.urlsplit(url)
        host = parts.hostname or ""
        port = parts.port
    except ValueError:
        return "<an unparsable Redis URL>"
    if ":" in host:
        host = f"[{host}]"
    netloc = host + (f":{port}" if port is not None else "")
    if parts.username:
        netloc = f"{parts.username}@{netloc}"
    return urllib.parse.urlunsplit((parts.scheme, netloc, parts.path, "", ""))


def _check_seconds(name: str, value: float) -> float:
    if (
        isinstance(value, bool)
        or not isinstance(value, (int, float))
        or not math.isfinite(value)
        or value <= 0
    ):
        raise ConfigurationError(f"{name} must be a number of seconds > 0, not {value!r:.20}")
    return float(value)


class _Cipher:
    """Fernet (AES-128-CBC + HMAC-SHA256, ``cryptography``) around stored values.

    The key never appears in a repr, message or log line.
    """

    def __init__(self, key: bytes | str) -> None:
        if isinstance(key, str):
            key = key.strip().encode("ascii", "replace")
        if not isinstance(key, bytes):
            raise ConfigurationError("encryption_key must be bytes or str (a Fernet key)")
        try:
            from cryptography.fernet import Fernet, InvalidToken
        except ImportError as exc:
            raise ConfigurationError(
                f"encrypting tokens in Redis needs the cryptography package: {_INSTALL_HINT}"
            ) from exc
        try:
            decoded = base64.urlsafe_b64decode(key)
        except (binascii.Error, ValueError):
            decoded = b""
        if len(decoded) != 32:
            raise ConfigurationError(
                "encryption_key is not a Fernet key (32 bytes, URL-safe base64: 44 characters); "
                'make one with: python -c "from cryptography.fernet import Fernet; '
                'print(Fernet.generate_key().decode())"'
            )
        self._fernet = Fernet(key)
        self._invalid = InvalidToken

    def encrypt(self, data: bytes) -> bytes:
        return _ENCRYPTED_PREFIX + self._fernet.encrypt(data)

    def decrypt(self, data: bytes) -> bytes | None:
        """The plain text, or None when ``data`` was not encrypted with this key."""
        try:
            return self._fernet.decrypt(data[len(_ENCRYPTED_PREFIX) :])
        except self._invalid:
            return None

    def __repr__(self) -> str:
        return "_Cipher(<key hidden>)"


@dataclass
class _Lease:
    """One held lease: the redis-py Lock, how deep this thread holds it, its renewer."""

    lock: Any
    token: bytes
    stop: threading.Event = field(default_factory=threading.Event)
    lapsed: threading.Event = field(default_factory=threading.Event)
    renewer: threading.Thread | None = None
    depth: int = 1


class RedisStore:
    """Tokens in Redis, shared by any number of processes on any number of machines.

    Layout (``prefix`` defaults to ``"oauthsmtp:"``): ``<prefix>token:<slug>``
    holds a JSON record ``{"format": "oauthsmtp-token/1", "token_url": ...,
    "client_id": ..., "account": ..., "token": "<serialized token>"}`` (or,
    with ``encryption_key``, that record encrypted with Fernet), and
    ``<prefix>lease:<slug>`` holds the owner token of the current lease.

    The lock (:meth:`lock`) is a lease: a random owner token set with ``SET NX
    PX lease``, renewed every ``lease / 3`` seconds by a background thread
    while held, and removed on release only if it is still this owner's
    (compare-and-delete). Every :meth:`save` and :meth:`delete` is fenced: it
    runs as one Lua script that writes only while the lease key still holds
    this owner's token, so a holder whose lease lapsed (a process paused, a
    network partition longer than the lease) gets :class:`TokenStoreError`
    and can never overwrite a newer refresh token saved by the next holder.
    ``save`` and ``delete`` called without the lock take it for themselves.
    The lease is re-entrant in one thread of one store object.

    Redis's own clock times the lease, so clocks of the workers need not agree.

    Args:
        url: ``redis://[[user]:password@]host[:port][/db]``, ``rediss://`` for
            TLS, or ``unix://`` (redis-py's URL syntax). The password never
            appears in a message, log line or repr.
        prefix: put before every Redis key this store uses.
        lease: seconds a lease lives unless renewed.
        encryption_key: a Fernet key (bytes or str; make one with
            ``Fernet.generate_key()``) to encrypt values at rest; None stores
            them as plain JSON (protect Redis with TLS, an ACL user and a
            password then).
        lock_timeout: seconds :meth:`lock` waits before raising TokenStoreError.
        socket_timeout: seconds any Redis call may take (connecting, too);
            Redis down gives TokenStoreError within a few of these, never a hang.

    Raises:
        ConfigurationError: redis-py is not installed (``pip install
            'oauthsmtp[redis]'``), the URL is not a Redis URL, a number is out
            of range, or the key is not a Fernet key.
    """

    def __init__(
        self,
        url: str,
        prefix: str = "oauthsmtp:",
        lease: float = DEFAULT_LEASE,
        encryption_key: bytes | str | None = None,
        *,
        lock_timeout: float = DEFAULT_LOCK_TIMEOUT,
        socket_timeout: float = 5.0,
    ) -> None:
        if not isinstance(url, str) or not url.strip():
            raise ConfigurationError("RedisStore needs a redis:// or rediss:// URL")
        if not isinstance(prefix, str) or CONTROL_RE.search(prefix):
            raise ConfigurationError(
                "RedisStore prefix must be a string without control characters"
            )
        self.url = redact_url(url)
        self.prefix = prefix
        self.lease = _check_seconds("lease", lease)
        self.lock_timeout = check_lock_timeout(lock_timeout)
        self.socket_timeout = _check_seconds("socket_timeout", socket_timeout)
        self._cipher = None if encryption_key is None else _Cipher(encryption_key)
        try:
            import redis
            from redis.backoff import NoBackoff
            from redis.retry import Retry
        except ImportError as exc:
            raise ConfigurationError(f"RedisStore needs redis-py: {_INSTALL_HINT}") from exc
        self._redis_errors: tuple[type[BaseException], ...] = (redis.RedisError,)
        self._not_owned: type[BaseException] = redis.exceptions.LockError
        try:
            self._client: Any = redis.Redis.from_url(
                url,
                socket_timeout=self.socket_timeout,
                socket_connect_timeout=self.socket_timeout,
                # One quick retry (a pooled connection the server closed), never a long backoff.
                retry=Retry(NoBackoff(), 1),
            )
        except (ValueError, TypeError):
            # Not chained: redis-py's message may quote the URL with its password.
            raise ConfigurationError(
                f"{self.url!r} is not a Redis URL (redis://host:port/db, rediss:// for TLS)"
            ) from None
        self._fenced_write: Any = self._client.register_script(_FENCED_WRITE)
        self._begin_refresh: Any = self._client.register_script(_BEGIN_REFRESH)
        self._held = threading.local()
        self._budgets: dict[tuple[str, SendLimits], RedisBudget] = {}
        self._budgets_lock = threading.Lock()

    @property
    def redis(self) -> Any:
        """The redis-py client this store talks through.

        For helpers that keep keys of their own under :attr:`prefix` in the same Redis
        (the idempotency keys of :mod:`oauthsmtp.integrations.ledger`); the same URL,
        timeouts and credentials.
        """
        return self._client

    @property
    def encrypted(self) -> bool:
        """True when values are encrypted at rest."""
        return self._cipher is not None

    def value_key(self, key: TokenKey) -> str:
        """The Redis key holding ``key``'s token."""
        return f"{self.prefix}token:{key.slug()}"

    def lease_key(self, key: TokenKey) -> str:
        """The Redis key holding ``key``'s lease."""
        return f"{self.prefix}lease:{key.slug()}"

    # -- errors ------------------------------------------------------------

    @property
    def redis_errors(self) -> tuple[type[BaseException], ...]:
        """redis-py's error classes (what :meth:`talking` turns into TokenStoreError)."""
        return self._redis_errors

    @contextmanager
    def talking(self, doing: str, *, outcome: str = "") -> Iterator[None]:
        """Turn a Redis failure inside the block into TokenStoreError saying what failed.

        ``doing`` completes "cannot ..."; ``outcome`` (e.g. "nothing was sent") is added
        when given. The message names the URL without its password. redis-py's
        LockNotOwnedError passes through (the lock code handles it).
        """
        try:
            yield
        except self._redis_errors as exc:
            if isinstance(exc, self._not_owned):
                raise
            happened = f"; {outcome}" if outcome else ""
            raise TokenStoreError(
                f"cannot {doing}: Redis at {self.url} failed ({type(exc).__name__}: "
                f"{str(exc)[:200]}){happened}. Check that Redis is running and reachable, "
                "and the URL, user and password."
            ) from None

    # -- values ------------------------------------------------------------

    def _encode(self, key: TokenKey, value: str) -> bytes:
        record = {
            "format": _RECORD_FORMAT,
            "token_url": key.token_url,
            "client_id": key.client_id,
            "account": key.account,
            "token": value,
        }
        # ASCII with \u escapes: any str round-trips, even one with lone surrogates.
        data = json.dumps(record, sort_keys=True).encode("ascii")
        return data if self._cipher is None else self._cipher.encrypt(data)

    def _decode(self, name: str, data: bytes) -> tuple[TokenKey, str] | None:
        if data.startswith(_ENCRYPTED_PREFIX):
            if self._cipher is None:
                raise TokenStoreError(
                    f"the token at {name} in Redis at {self.url} is encrypted and this store "
                    "has no encryption key: give the same encryption_key "
                    "(OAUTHSMTP_REDIS_KEY for the command line)"
                )
            plain = self._cipher.decrypt(data)
            if plain is None:
                raise TokenStoreError(
                    f"the token at {name} in Redis at {self.url} cannot be decrypted with this "
                    "encryption key (a wrong key, or the entry was tampered with): give the key "
                    "it was saved with, or log in again after deleting it"
                )
            data = plain
        elif self._cipher is not None and data.startswith(b"{"):
            log.warning(
                "the token at %s in Redis at %s is not encrypted although this store has an "
                "encryption key; it is used, and encrypted on its next save",
                name,
                self.url,
            )
        record = load_json_object(data)
        if record is None or record.get("format") != _RECORD_FORMAT:
            log.warning("ignoring the corrupt token entry %s in Redis at %s", name, self.url)
            return None
        fields = [record.get(n) for n in ("token_url", "client_id", "account", "token")]
        if not all(isinstance(f, str) for f in fields):
            log.warning("ignoring the token entry %s in Redis: fields missing", name)
            return None
        try:
            found = TokenKey(record["token_url"], record["client_id"], record["account"])
        except ConfigurationError:
            log.warning("ignoring the token entry %s in Redis: malformed key", name)
            return None
        return found, record["token"]

    def load(self, key: TokenKey) -> str | None:
        """See :meth:`TokenStore.load`.

        Raises:
            TokenStoreError: Redis cannot be reached, or the entry is encrypted
                and this store has no key or another key.
        """
        name = self.value_key(key)
        with self.talking(f"read the token for {key.describe()}"):
            data = self._client.get(name)
        if data is None:
            return None
        parsed = self._decode(name, data)
        if parsed is None:
            return None
        if parsed[0] != key:
            log.warning("ignoring the token entry %s in Redis: it holds another key's token", name)
            return None
        return parsed[1]

    def _write(self, key: TokenKey, data: bytes, doing: str) -> None:
        with self.lock(key):
            lease: _Lease = self._leases()[key]
            with self.talking(doing):
                done = self._fenced_write(
                    keys=[self.lease_key(key), self.value_key(key)], args=[lease.token, data]
                )
            if not done:
                lease.lapsed.set()
                raise TokenStoreError(
                    f"cannot {doing}: the lease on it lapsed (this worker held the lock longer "
                    f"than {self.lease:g} s without renewing it, for example while paused), so "
                    "another worker may have written since; nothing was written"
                )

    def save(self, key: TokenKey, value: str) -> None:
        """See :meth:`TokenStore.save`; fenced by the lease (taken here when not held).

        Raises:
            TokenStoreError: Redis cannot be reached, or this holder's lease
                lapsed (nothing is written then).
            ConfigurationError: ``value`` is not a string.
        """
        if not isinstance(value, str):
            raise ConfigurationError("a token store saves strings")
        self._write(key, self._encode(key, value), f"save the token for {key.describe()}")

    def delete(self, key: TokenKey) -> None:
        """See :meth:`TokenStore.delete`; fenced by the lease like :meth:`save`."""
        self._write(key, b"", f"delete the token for {key.describe()}")

    def keys(self) -> list[TokenKey]:
        """See :meth:`TokenStore.keys`; corrupt entries are skipped with a WARNING.

        Raises:
            TokenStoreError: Redis cannot be reached, or an entry cannot be
                decrypted with this store's key.
        """
        found: list[TokenKey] = []
        pattern = self.prefix.replace("\\", "\\\\")
        for char in "*?[]":
            pattern = pattern.replace(char, "\\" + char)
        with self.talking("list the stored tokens"):
            names = sorted(self._client.scan_iter(match=f"{pattern}token:*", count=500))
            values = self._client.mget(names) if names else []
        for raw_name, data in zip(names, values, strict=True):
            if data is None:
                continue  # deleted meanwhile
            name = raw_name.decode("utf-8", "replace")
            parsed = self._decode(name, data)
            if parsed is not None and name == self.value_key(parsed[0]):
                found.append(parsed[0])
        return sorted(found)

    # -- refreshes that a lapsed lease may have interrupted --------------------

    def _marker_prefix(self, key: TokenKey) -> str:
        return f"{self.prefix}refreshing:{key.slug()}:"

    @staticmethod
    def _digest(raw: str | None) -> str:
        return hashlib.sha256((raw or "").encode("utf-8", "surrogatepass")).hexdigest()

    def begin_refresh(self, key: TokenKey, raw: str | None) -> None:
        """Note, under the held lock, that a refresh of the stored text ``raw`` is sent now.

        The note (``<prefix>refreshing:<slug>:<owner>``: a digest of ``raw``, never the
        token) lives ``DOUBT_LEASES`` leases. Fenced like a save: a holder whose lease
        lapsed sends no refresh at all.

        Raises:
            TokenStoreError: the lease lapsed (nothing is sent), or Redis failed.
        """
        lease = self._leases().get(key)
        if lease is None:
            raise TokenStoreError(f"begin_refresh for {key.describe()} without the lock")
        marker = self._marker_prefix(key) + lease.token.decode("ascii", "replace")
        life = int(self.lease * DOUBT_LEASES * 1000)
        with self.talking(f"note a refresh for {key.describe()}"):
            done = self._begin_refresh(
                keys=[self.lease_key(key), marker], args=[lease.token, self._digest(raw), life]
            )
        if not done:
            lease.lapsed.set()
            raise TokenStoreError(
                f"not refreshing the token for {key.describe()}: the lease on it lapsed (this "
                f"worker held the lock longer than {self.lease:g} s without renewing it), so "
                "another worker may be refreshing it; try again"
            )

    def refresh_in_doubt(self, key: TokenKey, raw: str | None) -> bool:
        """Whether another worker began refreshing the stored text ``raw`` recently.

        True after a refresh of ``raw`` was refused with ``invalid_grant`` while another
        worker's note for the same ``raw`` is alive: that worker lost its lease mid-refresh
        (paused, cut off) after the provider may already have rotated the refresh token,
        and may still save the new one. The login is then not declared dead.

        Raises:
            TokenStoreError: Redis failed.
        """
        mine = self._leases().get(key)
        own = self._marker_prefix(key) + (
            mine.token.decode("ascii", "replace") if mine is not None else ""
        )
        pattern = self._marker_prefix(key).replace("\\", "\\\\")
        for char in "*?[]":
            pattern = pattern.replace(char, "\\" + char)
        with self.talking(f"read the refresh notes for {key.describe()}"):
            names = [
                n
                for n in self._client.scan_iter(match=pattern + "*", count=100)
                if n.decode("ascii", "replace") != own
            ]
            values = self._client.mget(names) if names else []
        digest = self._digest(raw).encode("ascii")
        return any(value == digest for value in values)

    # -- the lease ----------------------------------------------------------

    def _leases(self) -> dict[TokenKey, _Lease]:
        leases: dict[TokenKey, _Lease] | None = getattr(self._held, "leases", None)
        if leases is None:
            leases = self._held.leases = {}
        return leases

    def lock(self, key: TokenKey) -> AbstractContextManager[None]:
        """See :meth:`TokenStore.lock`: a lease renewed while held.

        Raises:
            TokenStoreError: the lease could not be taken within
                ``lock_timeout``, or Redis cannot be reached.
        """
        return self._hold(key)

    @contextmanager
    def _hold(self, key: TokenKey) -> Iterator[None]:
        leases = self._leases()
        held = leases.get(key)
        if held is not None:
            held.depth += 1
            try:
                yield
            finally:
                held.depth -= 1
            return
        lease = self._acquire(key)
        leases[key] = lease
        try:
            yield
        finally:
            del leases[key]
            self._release(key, lease)

    def _acquire(self, key: TokenKey) -> _Lease:
        from redis.lock import Lock

        lock = Lock(
            self._client,
            self.lease_key(key),
            timeout=self.lease,
            sleep=min(0.05, self.lease / 4),
            blocking_timeout=self.lock_timeout,
            thread_local=False,  # the renewer thread extends it
        )
        with self.talking(f"take the lock for {key.describe()}"):
            acquired = lock.acquire()
        if not acquired:
            raise TokenStoreError(
                f"timed out after {self.lock_timeout:g} s waiting for the lock on the token for "
                f"{key.describe()} in Redis at {self.url}: another worker holds it (its lease "
                f"is {self.lease:g} s at most unless renewed)"
            )
        lease = _Lease(lock=lock, token=lock.local.token)
        lease.renewer = threading.Thread(
            target=self._renew,
            args=(key, lease),
            name=f"oauthsmtp-lease-{key.slug()[:8]}",
            daemon=True,
        )
        lease.renewer.start()
        return lease

    def _renew(self, key: TokenKey, lease: _Lease) -> None:
        """The renewer: resets the lease's TTL every third of it until released or lost."""
        while not lease.stop.wait(self.lease / 3):
            try:
                lease.lock.reacquire()
            except self._not_owned:
                lease.lapsed.set()
                log.warning(
                    "the lease on the token for %s lapsed before it could be renewed; "
                    "this worker's writes will be refused",
                    key.describe(),
                )
                return
            except self._redis_errors as exc:
                log.debug("could not renew the lease for %s: %s", key.describe(), exc)

    def _release(self, key: TokenKey, lease: _Lease) -> None:
        lease.stop.set()
        if lease.renewer is not None:
            lease.renewer.join(self.socket_timeout * 3 + 1)
        try:
            lease.lock.release()
        except self._not_owned:
            log.warning(
                "the lease on the token for %s had lapsed when it was released", key.describe()
            )
        except self._redis_errors as exc:
            # The lease expires by itself within `lease` seconds.
            log.warning("could not release the lease for %s: %s", key.describe(), exc)

    # -- sending limits -------------------------------------------------------

    def send_budget(self, mailbox: str, limits: SendLimits) -> RedisBudget:
        """The sending budget of ``mailbox`` under ``limits``, kept in this Redis.

        ``SMTPSession(..., limits=limits, limits_store=store)`` calls this: every process,
        on any machine, whose store uses the same Redis and prefix shares the budget of a
        mailbox (docs/limits.md). Connection slots are leases of ``lease`` seconds,
        renewed while held. The same object is returned for the same mailbox
        (case-insensitively) and limits.

        Raises:
            ConfigurationError: ``mailbox`` is empty or ``limits`` is not a SendLimits.
        """
        if not isinstance(mailbox, str) or not mailbox:
            raise ConfigurationError("send_budget needs the mailbox (a non-empty string)")
        if not isinstance(limits, SendLimits):
            raise ConfigurationError("send_budget needs an oauthsmtp.SendLimits")
        key = (mailbox.lower(), limits)
        with self._budgets_lock:
            budget = self._budgets.get(key)
            if budget is None:
                budget = self._budgets[key] = RedisBudget(
                    self._client,
                    prefix=self.prefix,
                    mailbox=mailbox,
                    limits=limits,
                    lease=self.lease,
                    errors=self._redis_errors,
                    talking=self.talking,
                    where=self.url,
                )
            return budget

    def __repr__(self) -> str:
        extra = ", encrypted" if self._cipher is not None else ""
        return f"RedisStore({self.url!r}, prefix={self.prefix!r}, lease={self.lease:g}{extra})"
