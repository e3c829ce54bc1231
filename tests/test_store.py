"""Token stores: one contract for every store, then each store's own rules.

The KeyringStore runs against a real Secret Service (gnome-keyring on a private
D-Bus session bus, see ``secret_service.py``) and against small in-test backends.
"""

from __future__ import annotations

import json
import logging
import os
import pathlib
import stat
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

import keyring
import keyring.core
import keyring.errors
import pytest
from cryptography.fernet import Fernet
from keyring.backend import KeyringBackend
from keyring.backends import chainer, fail, null
from keyring.compat import properties

from oauthsmtp import (
    ConfigurationError,
    FileStore,
    KeyringStore,
    MemoryStore,
    RedisStore,
    TokenKey,
    TokenStore,
    TokenStoreError,
    default_store,
)
from oauthsmtp._accounts import AccountRegistry, AccountSettings, secret_key
from oauthsmtp._util.home import oauthsmtp_home

if TYPE_CHECKING:
    from redis_server import RedisServer
    from secret_service import SecretService

pytest_plugins = [
    "secret_service",  # the real Secret Service fixture (tests/secret_service.py)
    "redis_server",  # a real redis-server (tests/redis_server.py)
]

ROOT = pathlib.Path(__file__).resolve().parents[1]
KEY = TokenKey("https://auth.example.test/token", "client-1", "me@example.test")
OTHER = TokenKey("https://auth.example.test/token", "client-1", "other@example.test")
TOKEN = '{"access_token":"at-SECRET-1","refresh_token":"rt-SECRET-1","token_type":"Bearer"}'
POSIX = sys.platform != "win32"
posix_only = pytest.mark.skipif(not POSIX, reason="POSIX permissions")


def big_value(size: int, tag: str = "v") -> str:
    """A JSON-ish value of exactly ``size`` characters with distinct content."""
    body = "".join(f"{tag}{i:05d}," for i in range(size // 7 + 1))
    return ("{" + body)[: size - 1] + "}"


# ---------------------------------------------------------------------------
# in-test keyring backends (not viable, so keyring never picks them on its own)
# ---------------------------------------------------------------------------


class _TestBackend(KeyringBackend):
    @properties.classproperty
    def priority(cls) -> float:
        raise RuntimeError("test backend: only used explicitly")

    def __init__(self) -> None:
        super().__init__()
        self.entries: dict[tuple[str, str], str] = {}
        self.sets = 0

    def get_password(self, service: str, username: str) -> str | None:
        return self.entries.get((service, username))

    def set_password(self, service: str, username: str, password: str) -> None:
        self.sets += 1
        self.entries[(service, username)] = password

    def delete_password(self, service: str, username: str) -> None:
        try:
            del self.entries[(service, username)]
        except KeyError:
            raise keyring.errors.PasswordDeleteError("No such password!") from None


class DictKeyring(_TestBackend):
    """An in-memory backend the store accepts (stands for an OS keyring)."""


class PlaintextKeyring(_TestBackend):
    """Stands for keyrings.alt's PlaintextKeyring: must be refused."""


class FailingSetKeyring(_TestBackend):
    """set_password fails and echoes the password, as a careless backend might."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError(f"could not store {password!r} for {username}")


class EchoPartKeyring(_TestBackend):
    """set_password fails and echoes part of the password."""

    def set_password(self, service: str, username: str, password: str) -> None:
        raise keyring.errors.PasswordSetError(f"bad data near ...{password[40:60]}...")


class FailAfterKeyring(_TestBackend):
    """Accepts ``allowed`` writes, then fails every write (a crash mid-save)."""

    def __init__(self) -> None:
        super().__init__()
        self.allowed = 1_000_000

    def set_password(self, service: str, username: str, password: str) -> None:
        if self.sets >= self.allowed:
            raise keyring.errors.PasswordSetError("simulated failure (error 1783)")
        super().set_password(service, username, password)


class LockedKeyring(_TestBackend):
    def get_password(self, service: str, username: str) -> str | None:
        raise keyring.errors.KeyringLocked("Failed to unlock the collection!")


@pytest.fixture
def home(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> pathlib.Path:
    path = tmp_path / "home"
    monkeypatch.setenv("OAUTHSMTP_HOME", str(path))
    return path


@pytest.fixture
def default_keyring(monkeypatch: pytest.MonkeyPatch) -> None:
    """Lets a test call keyring.set_keyring(); the previous backend is restored after."""
    monkeypatch.setattr(keyring.core, "_keyring_backend", keyring.core._keyring_backend)


# ---------------------------------------------------------------------------
# the contract, for every store
# ---------------------------------------------------------------------------


@pytest.fixture(params=["memory", "file", "keyring", "redis", "redis-encrypted"])
def store(request: pytest.FixtureRequest, tmp_path: pathlib.Path, home: pathlib.Path) -> Any:
    if request.param == "memory":
        yield MemoryStore()
    elif request.param == "file":
        yield FileStore(tmp_path / "tokens")
    elif request.param.startswith("redis"):
        server: RedisServer = request.getfixturevalue("redis_server")
        key = Fernet.generate_key() if request.param == "redis-encrypted" else None
        yield RedisStore(server.url, prefix="test:", lease=5.0, encryption_key=key)
    else:
        service: SecretService = request.getfixturevalue("secret_service")
        made = KeyringStore(
            f"oauthsmtp-test-{uuid.uuid4().hex[:8]}", backend=service.backend(), max_chunk=1000
        )
        yield made
        for key in list(made.keys()):
            made.delete(key)


def test_is_a_token_store(store: Any) -> None:
    assert isinstance(store, TokenStore)


def test_missing_is_none(store: Any) -> None:
    assert store.load(KEY) is None
    assert store.keys() == []


def test_save_load_overwrite_delete(store: Any) -> None:
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    assert store.load(OTHER) is None
    store.save(KEY, TOKEN.replace("SECRET-1", "SECRET-2"))
    assert store.load(KEY) == TOKEN.replace("SECRET-1", "SECRET-2")
    store.delete(KEY)
    assert store.load(KEY) is None
    store.delete(KEY)  # absent: no error


def test_keys(store: Any) -> None:
    no_account = TokenKey("https://auth.example.test/token", "client-1", "")
    other_client = TokenKey("https://auth.example.test/token", "client-2", "me@example.test")
    for key in (KEY, OTHER, no_account, other_client):
        store.save(key, TOKEN + key.account)
    assert store.keys() == sorted([KEY, OTHER, no_account, other_client])
    for key in (KEY, OTHER, no_account, other_client):
        assert store.load(key) == TOKEN + key.account
    store.delete(OTHER)
    assert store.keys() == sorted([KEY, no_account, other_client])


def test_keys_that_look_alike_do_not_collide(store: Any) -> None:
    first = TokenKey("https://a.test/token", "b|c", "a")
    second = TokenKey("https://a.test/token", "c", "a|b")
    store.save(first, "first")
    store.save(second, "second")
    assert store.load(first) == "first"
    assert store.load(second) == "second"


@pytest.mark.parametrize("size", [999, 1000, 1001, 6000])
def test_large_values(store: Any, size: int) -> None:
    value = big_value(size)
    store.save(KEY, value)
    assert store.load(KEY) == value


def test_value_that_shrinks_and_grows(store: Any) -> None:
    for size in (6000, 2500, 100, 4100):
        value = big_value(size, tag=str(size % 10))
        store.save(KEY, value)
        assert store.load(KEY) == value


def test_non_ascii_value(store: Any) -> None:
    value = '{"name":"' + "é😀" * 700 + '"}'
    store.save(KEY, value)
    assert store.load(KEY) == value


def test_lock_excludes_threads(store: Any) -> None:
    counter = {"n": 0}

    def work() -> None:
        for _ in range(25):
            with store.lock(KEY):
                seen = counter["n"]
                time.sleep(0.0002)
                counter["n"] = seen + 1

    threads = [threading.Thread(target=work) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert counter["n"] == 200


def test_lock_is_per_key(store: Any) -> None:
    held = threading.Event()
    release = threading.Event()

    def hold() -> None:
        with store.lock(KEY):
            held.set()
            release.wait(10)

    thread = threading.Thread(target=hold)
    thread.start()
    try:
        assert held.wait(10)
        with store.lock(OTHER):  # another key is free meanwhile
            pass
    finally:
        release.set()
        thread.join()


def test_lock_is_reentrant_in_one_thread(store: Any) -> None:
    with store.lock(KEY), store.lock(KEY):
        store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


# ---------------------------------------------------------------------------
# cross-process locking
# ---------------------------------------------------------------------------

_COUNTER_SCRIPT = """
import os, pathlib, sys, time
from oauthsmtp import FileStore, KeyringStore, RedisStore, TokenKey

kind, directory, me, total = sys.argv[1], pathlib.Path(sys.argv[2]), sys.argv[3], int(sys.argv[4])
if kind == "file":
    store = FileStore(directory / "tokens")
elif kind == "redis":
    store = RedisStore(os.environ["TEST_REDIS_URL"], lease=5.0)
else:
    store = KeyringStore("oauthsmtp-test")
key = TokenKey("https://auth.example.test/token", "client-1", "me@example.test")
(directory / f"ready-{me}").touch()
deadline = time.monotonic() + 20
while len(list(directory.glob("ready-*"))) < total and time.monotonic() < deadline:
    time.sleep(0.005)
counter = directory / "counter"
for _ in range(50):
    with store.lock(key):
        seen = int(counter.read_text())
        time.sleep(0.001)
        counter.write_text(str(seen + 1))
"""


@pytest.mark.parametrize("kind", ["file", "keyring", "redis"])
def test_lock_excludes_processes(
    kind: str, tmp_path: pathlib.Path, home: pathlib.Path, request: pytest.FixtureRequest
) -> None:
    (tmp_path / "counter").write_text("0")
    env = dict(os.environ)
    if kind == "redis":
        env["TEST_REDIS_URL"] = request.getfixturevalue("redis_server").url
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _COUNTER_SCRIPT, kind, str(tmp_path), str(n), "4"],
            env=env,
            cwd=ROOT,
        )
        for n in range(4)
    ]
    codes = [proc.wait(timeout=60) for proc in procs]
    assert codes == [0, 0, 0, 0]
    assert (tmp_path / "counter").read_text() == "200"


def _contend(store: Any, key: TokenKey) -> BaseException | None:
    """Try to take ``key``'s lock from another thread; return what it raised."""
    errors: list[BaseException] = []

    def attempt() -> None:
        try:
            with store.lock(key):
                pass
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=attempt)
    thread.start()
    thread.join(30)
    return errors[0] if errors else None


def test_lock_timeout(tmp_path: pathlib.Path) -> None:
    memory = MemoryStore(lock_timeout=0.1)
    with memory.lock(KEY):
        assert isinstance(_contend(memory, KEY), TokenStoreError)
    assert _contend(memory, KEY) is None
    with FileStore(tmp_path).lock(KEY):
        # another instance on the same directory, in another thread
        started = time.monotonic()
        error = _contend(FileStore(tmp_path, lock_timeout=0.2), KEY)
        assert isinstance(error, TokenStoreError)
        assert "timed out" in str(error)
        assert time.monotonic() - started < 5
    assert _contend(FileStore(tmp_path, lock_timeout=0.2), KEY) is None


# ---------------------------------------------------------------------------
# FileStore rules (docs/security.md rule 32)
# ---------------------------------------------------------------------------


def _mode(path: pathlib.Path) -> int:
    return stat.S_IMODE(os.lstat(path).st_mode)


@posix_only
def test_file_modes_under_umask_000(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "deep" / "tokens"
    store = FileStore(directory)
    old = os.umask(0)
    try:
        store.save(KEY, TOKEN)
        with store.lock(KEY):
            pass
    finally:
        os.umask(old)
    assert _mode(directory) == 0o700
    assert _mode(store.path(KEY)) == 0o600
    assert store.load(KEY) == TOKEN


@posix_only
def test_file_store_makes_its_directory_private(tmp_path: pathlib.Path) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o755)
    directory.chmod(0o755)
    FileStore(directory).save(KEY, TOKEN)
    assert _mode(directory) == 0o700


@posix_only
def test_file_store_refuses_a_foreign_directory(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    directory = tmp_path / "tokens"
    directory.mkdir(mode=0o700)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(directory).st_uid + 1)
    with pytest.raises(TokenStoreError, match="owned by another user"):
        FileStore(directory).save(KEY, TOKEN)
    with pytest.raises(TokenStoreError, match="owned by another user"):
        FileStore(directory).lock(KEY)


def test_load_and_keys_create_nothing(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path / "tokens")
    assert store.load(KEY) is None
    assert store.keys() == []
    assert not (tmp_path / "tokens").exists()


def test_file_content_is_an_envelope(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)
    assert store.path(KEY).name == f"{KEY.slug()}.json"
    import json

    record = json.loads(store.path(KEY).read_text())
    assert record["token"] == TOKEN
    assert (record["token_url"], record["client_id"], record["account"]) == (
        KEY.token_url,
        KEY.client_id,
        KEY.account,
    )


@posix_only
def test_planted_symlink_is_not_followed(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path / "tokens")
    store.save(OTHER, TOKEN)  # creates the directory
    target = tmp_path / "victim.txt"
    target.write_text("do not touch")
    target.chmod(0o644)
    store.path(KEY).symlink_to(target)
    with pytest.raises(TokenStoreError, match="symbolic link"):
        store.load(KEY)
    with pytest.raises(TokenStoreError, match="symbolic link"):
        store.save(KEY, TOKEN)
    assert target.read_text() == "do not touch"
    assert _mode(target) == 0o644
    assert store.keys() == [OTHER]
    store.delete(KEY)  # removes the link, not its target
    assert not store.path(KEY).is_symlink()
    assert target.read_text() == "do not touch"
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


@posix_only
def test_symlink_to_a_valid_token_is_not_followed(tmp_path: pathlib.Path) -> None:
    elsewhere = FileStore(tmp_path / "elsewhere")
    elsewhere.save(KEY, TOKEN)
    store = FileStore(tmp_path / "tokens")
    store.save(OTHER, TOKEN)
    store.path(KEY).symlink_to(elsewhere.path(KEY))
    with pytest.raises(TokenStoreError, match="symbolic link"):
        store.load(KEY)


@posix_only
def test_planted_fifo_is_refused_without_hanging(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path)
    os.mkfifo(store.path(KEY), 0o600)
    with pytest.raises(TokenStoreError, match="not a regular file"):
        store.load(KEY)


@posix_only
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o620, 0o660])
def test_file_readable_by_others_is_refused(
    tmp_path: pathlib.Path, mode: int, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)
    store.path(KEY).chmod(mode)
    with pytest.raises(TokenStoreError, match="chmod 600") as info:
        store.load(KEY)
    assert "SECRET" not in str(info.value)
    assert store.keys() == []  # skipped, with a warning
    assert "chmod 600" in caplog.text
    store.path(KEY).chmod(0o600)
    assert store.load(KEY) == TOKEN


@posix_only
def test_foreign_file_is_refused(tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)
    monkeypatch.setattr(os, "geteuid", lambda: os.stat(store.path(KEY)).st_uid + 1)
    with pytest.raises(TokenStoreError, match="owned by another user"):
        store.load(KEY)


@pytest.mark.parametrize(
    "content",
    [
        b"CORRUPT-SECRET-CONTENT{",
        b'["CORRUPT-SECRET-CONTENT"]',
        b'{"token": "CORRUPT-SECRET-CONTENT"}',
        b'{"format": "oauthsmtp-token/1", "token": "CORRUPT-SECRET-CONTENT"}',
        b"\xff\xfeCORRUPT-SECRET-CONTENT",
        b"",
    ],
)
def test_corrupt_file_counts_as_absent(
    tmp_path: pathlib.Path, content: bytes, caplog: pytest.LogCaptureFixture
) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)
    store.path(KEY).write_bytes(content)
    with caplog.at_level(logging.DEBUG, logger="oauthsmtp"):
        assert store.load(KEY) is None
        assert store.keys() == []
    assert "corrupt" in caplog.text
    assert "CORRUPT-SECRET" not in caplog.text
    store.save(KEY, TOKEN)  # a new login replaces it
    assert store.load(KEY) == TOKEN


def test_file_of_another_key_counts_as_absent(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path)
    store.save(OTHER, TOKEN)
    os.replace(store.path(OTHER), store.path(KEY))
    assert store.load(KEY) is None
    assert store.keys() == []


def test_interrupted_write_keeps_the_old_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)

    def crash(src: str, dst: str) -> None:
        raise OSError(5, "simulated crash before the rename")

    monkeypatch.setattr(os, "replace", crash)
    new = TOKEN.replace("SECRET-1", "NEW-SECRET")
    with pytest.raises(TokenStoreError) as info:
        store.save(KEY, new)
    assert "NEW-SECRET" not in str(info.value)
    monkeypatch.undo()
    assert store.load(KEY) == TOKEN
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix != ".lock") == [
        f"{KEY.slug()}.json"
    ]


def test_interrupted_write_during_fsync_keeps_the_old_file(
    tmp_path: pathlib.Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)

    def crash(fd: int) -> None:
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(os, "fsync", crash)
    with pytest.raises(TokenStoreError, match="No space left"):
        store.save(KEY, big_value(5000))
    monkeypatch.undo()
    assert store.load(KEY) == TOKEN
    assert [p.name for p in tmp_path.iterdir() if p.suffix != ".lock"] == [f"{KEY.slug()}.json"]


def test_file_store_ignores_stray_files(tmp_path: pathlib.Path) -> None:
    store = FileStore(tmp_path)
    store.save(KEY, TOKEN)
    (tmp_path / "notes.json").write_text("{}")
    (tmp_path / f".{KEY.slug()}.json.abc.tmp").write_text("{}")
    with store.lock(KEY):
        assert store.keys() == [KEY]


def test_file_store_default_directory(home: pathlib.Path) -> None:
    assert FileStore().directory == home / "tokens"


# ---------------------------------------------------------------------------
# KeyringStore rules (docs/security.md rule 31)
# ---------------------------------------------------------------------------


def _assert_refusal(message: str) -> None:
    assert "no secure OS keyring is available" in message
    assert "OAUTHSMTP_STORE=file" in message
    assert "oauthsmtp.FileStore()" in message
    assert "0600" in message


@pytest.mark.usefixtures("default_keyring", "home")
@pytest.mark.parametrize("backend_class", [fail.Keyring, null.Keyring, PlaintextKeyring])
def test_keyring_store_refuses_insecure_default_backends(backend_class: type[Any]) -> None:
    keyring.set_keyring(backend_class())
    store = KeyringStore()  # constructing checks nothing
    assert store.keys() == []  # neither does listing the index
    for action in (lambda: store.load(KEY), lambda: store.save(KEY, TOKEN)):
        with pytest.raises(TokenStoreError) as info:
            action()
        _assert_refusal(str(info.value))
        assert "SECRET" not in str(info.value)
    with pytest.raises(TokenStoreError, match="no secure OS keyring"):
        store.delete(KEY)


@pytest.mark.usefixtures("home")
def test_keyring_store_refuses_an_empty_chainer(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [])
    with pytest.raises(TokenStoreError) as info:
        KeyringStore(backend=chainer.ChainerBackend()).load(KEY)
    _assert_refusal(str(info.value))


@pytest.mark.usefixtures("home")
def test_keyring_store_judges_a_chainer_by_its_writing_backend(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [PlaintextKeyring(), DictKeyring()])
    with pytest.raises(TokenStoreError, match="plain text"):
        KeyringStore(backend=chainer.ChainerBackend()).load(KEY)
    monkeypatch.setattr(chainer.ChainerBackend, "backends", [DictKeyring(), PlaintextKeyring()])
    store = KeyringStore(backend=chainer.ChainerBackend())
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN


@pytest.mark.usefixtures("default_keyring", "home")
def test_keyring_store_allow_insecure(caplog: pytest.LogCaptureFixture) -> None:
    backend = PlaintextKeyring()
    keyring.set_keyring(backend)
    store = KeyringStore(allow_insecure=True)
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    assert "insecure" in caplog.text
    assert list(backend.entries.values()) == [TOKEN]


@pytest.mark.usefixtures("home")
def test_keyring_errors_are_wrapped_without_the_secret() -> None:
    store = KeyringStore(backend=FailingSetKeyring())
    with pytest.raises(TokenStoreError) as info:
        store.save(KEY, TOKEN)
    assert "PasswordSetError" in str(info.value)
    assert "SECRET" not in str(info.value)
    assert info.value.__cause__ is None  # the original message held the secret
    with pytest.raises(TokenStoreError) as info:
        store.save(KEY, big_value(3000, tag="S"))
    assert "S00001" not in str(info.value)
    with pytest.raises(TokenStoreError) as info:
        KeyringStore(backend=EchoPartKeyring()).save(KEY, TOKEN)
    assert TOKEN[40:60] not in str(info.value)
    assert "details withheld" in str(info.value)
    assert info.value.__cause__ is None


@pytest.mark.usefixtures("home")
def test_keyring_locked_is_wrapped_with_a_hint() -> None:
    with pytest.raises(TokenStoreError, match="unlock your keyring") as info:
        KeyringStore(backend=LockedKeyring()).load(KEY)
    assert isinstance(info.value.__cause__, keyring.errors.KeyringLocked)


@pytest.mark.usefixtures("home")
def test_keyring_entry_names_are_readable() -> None:
    backend = DictKeyring()
    store = KeyringStore(backend=backend)
    store.save(KEY, TOKEN)
    assert backend.entries == {
        ("oauthsmtp:https://auth.example.test/token", "me@example.test|client-1"): TOKEN
    }


@pytest.mark.usefixtures("home")
def test_keyring_chunks_and_stale_chunks() -> None:
    backend = DictKeyring()
    store = KeyringStore(backend=backend, max_chunk=1000)
    value = big_value(6000)
    store.save(KEY, value)
    assert len(backend.entries) == 7  # six chunks and the head
    assert all(len(v) <= 1000 for v in backend.entries.values())
    head = backend.entries[
        ("oauthsmtp:https://auth.example.test/token", "me@example.test|client-1")
    ]
    assert head.startswith("oauthsmtp-chunked/1:")
    assert value[:50] not in head
    store.save(KEY, big_value(2500, tag="w"))
    assert len(backend.entries) == 4  # the older, longer value's chunks are gone
    store.save(KEY, TOKEN)
    assert len(backend.entries) == 1
    store.save(KEY, value)
    store.delete(KEY)
    assert backend.entries == {}


@pytest.mark.usefixtures("home")
def test_keyring_chunks_respect_utf16_units() -> None:
    backend = DictKeyring()
    store = KeyringStore(backend=backend, max_chunk=1000)
    value = "😀" * 1500  # 3000 UTF-16 code units
    store.save(KEY, value)
    assert store.load(KEY) == value
    chunks = [v for v in backend.entries.values() if not v.startswith("oauthsmtp-chunked/")]
    assert all(len(c.encode("utf-16-le")) <= 2000 for c in chunks)


@pytest.mark.usefixtures("home")
def test_keyring_value_that_looks_like_a_head_round_trips() -> None:
    store = KeyringStore(backend=DictKeyring())
    value = "oauthsmtp-chunked/1:00000000:1:" + "0" * 64
    store.save(KEY, value)
    assert store.load(KEY) == value


@pytest.mark.usefixtures("home")
def test_keyring_failed_chunked_save_keeps_the_old_value() -> None:
    backend = FailAfterKeyring()
    store = KeyringStore(backend=backend, max_chunk=1000)
    old = big_value(3500, tag="o")
    store.save(KEY, old)
    before = dict(backend.entries)
    backend.allowed = backend.sets + 2  # two chunks of the new value, then a "crash"
    with pytest.raises(TokenStoreError, match="1783") as info:
        store.save(KEY, big_value(6000, tag="n"))
    assert "too large for the Windows Credential Manager" in str(info.value)
    assert backend.entries == before  # the partial new chunks were removed
    assert store.load(KEY) == old
    backend.allowed = 1_000_000
    backend.sets = 0
    store.save(KEY, big_value(6000, tag="n"))
    assert store.load(KEY) == big_value(6000, tag="n")


@pytest.mark.usefixtures("home")
def test_keyring_tampered_or_missing_chunk_counts_as_absent(
    caplog: pytest.LogCaptureFixture,
) -> None:
    backend = DictKeyring()
    store = KeyringStore(backend=backend, max_chunk=1000)
    store.save(KEY, big_value(3000, tag="t"))
    chunk = next(k for k in backend.entries if k[1].endswith("|1"))
    backend.entries[chunk] = "X" * 1000
    assert store.load(KEY) is None
    assert "checksum" in caplog.text
    assert "XXXX" not in caplog.text
    assert "t00001" not in caplog.text
    del backend.entries[chunk]
    assert store.load(KEY) is None
    store.save(KEY, TOKEN)  # a new login replaces it
    assert store.load(KEY) == TOKEN


@pytest.mark.usefixtures("home")
def test_keyring_max_chunk_is_validated() -> None:
    with pytest.raises(ConfigurationError):
        KeyringStore(max_chunk=10)
    with pytest.raises(ConfigurationError):
        KeyringStore("")


def test_keyring_index(home: pathlib.Path, caplog: pytest.LogCaptureFixture) -> None:
    backend = DictKeyring()
    store = KeyringStore(backend=backend)
    store.save(KEY, TOKEN)
    store.save(OTHER, TOKEN)
    assert KeyringStore("another-service", backend=backend).keys() == []
    assert store.keys() == [KEY, OTHER]
    index = home / "keyring-index.json"
    assert "SECRET" not in index.read_text()
    if POSIX:
        assert _mode(index) == 0o600
        assert _mode(home / "locks") == 0o700
    store.delete(KEY)
    assert store.keys() == [OTHER]
    index.write_text("not json")
    assert store.keys() == []
    assert "corrupt keyring index" in caplog.text


def test_real_secret_service_chunk_entries(
    secret_service: SecretService, home: pathlib.Path
) -> None:
    service = f"oauthsmtp-test-{uuid.uuid4().hex[:8]}"
    store = KeyringStore(service, backend=secret_service.backend(), max_chunk=1000)
    value = big_value(6000)
    store.save(KEY, value)
    entries = secret_service.items(f"{service}:{KEY.token_url}")
    assert len(entries) == 7
    assert {e["username"] for e in entries} >= {"me@example.test|client-1"}
    store.save(KEY, TOKEN)
    assert len(secret_service.items(f"{service}:{KEY.token_url}")) == 1
    assert store.load(KEY) == TOKEN
    store.delete(KEY)
    assert secret_service.items(f"{service}:{KEY.token_url}") == []


def test_real_secret_service_through_the_default_keyring(
    secret_service: SecretService, home: pathlib.Path, default_keyring: None
) -> None:
    keyring.set_keyring(secret_service.backend())
    store = KeyringStore(f"oauthsmtp-test-{uuid.uuid4().hex[:8]}")
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    store.delete(KEY)
    assert store.load(KEY) is None


# ---------------------------------------------------------------------------
# selection, locations and keys
# ---------------------------------------------------------------------------


def test_default_store_selection(monkeypatch: pytest.MonkeyPatch, home: pathlib.Path) -> None:
    monkeypatch.delenv("OAUTHSMTP_STORE", raising=False)
    assert isinstance(default_store(), KeyringStore)
    for value, kind in [
        ("keyring", KeyringStore),
        ("file", FileStore),
        (" FILE ", FileStore),
        ("memory", MemoryStore),
        ("", KeyringStore),
    ]:
        monkeypatch.setenv("OAUTHSMTP_STORE", value)
        assert type(default_store()) is kind
    monkeypatch.setenv("OAUTHSMTP_STORE", "file")
    made = default_store()
    assert isinstance(made, FileStore)
    assert made.directory == home / "tokens"
    monkeypatch.setenv("OAUTHSMTP_STORE", "plaintext")
    with pytest.raises(ConfigurationError) as info:
        default_store()
    for name in ("'keyring'", "'file'", "'memory'", "plaintext"):
        assert name in str(info.value)


def test_oauthsmtp_home(monkeypatch: pytest.MonkeyPatch, tmp_path: pathlib.Path) -> None:
    monkeypatch.setenv("OAUTHSMTP_HOME", str(tmp_path / "h"))
    assert oauthsmtp_home() == tmp_path / "h"
    assert not (tmp_path / "h").exists()
    monkeypatch.delenv("OAUTHSMTP_HOME")
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    if sys.platform.startswith("linux"):
        assert oauthsmtp_home() == tmp_path / "xdg" / "oauthsmtp"
    assert oauthsmtp_home().name == "oauthsmtp"


def test_token_key() -> None:
    assert KEY.slug() == TokenKey(KEY.token_url, KEY.client_id, KEY.account).slug()
    assert len(KEY.slug()) == 32
    assert KEY.slug() == "5700a616e30ee9300fdcdd15dec29f6d"  # stable across versions
    slugs = {
        TokenKey("https://a.test/t", "c", "a").slug(),
        TokenKey("https://a.test/t", "c", "").slug(),
        TokenKey("https://a.test/t", "ca", "").slug(),
        TokenKey("https://a.test/tc", "a", "").slug(),
    }
    assert len(slugs) == 4
    for bad in (("", "c", "a"), ("https://a.test/t", "", "a"), ("https://a.test/t", "c", "a\nb")):
        with pytest.raises(ConfigurationError):
            TokenKey(*bad)


# ---------------------------------------------------------------------------
# kill -9 mid-write: leftovers never accumulate and the next save/delete removes them
# ---------------------------------------------------------------------------

_FILE_KILL_SCRIPT = """
import os, signal, sys
from oauthsmtp import FileStore, TokenKey

store = FileStore(sys.argv[1])
key = TokenKey("https://auth.example.test/token", "client-1", "me@example.test")
def fsync_then_die(fd):
    os.kill(os.getpid(), signal.SIGKILL)  # the temporary file is complete, not yet renamed
os.fsync = fsync_then_die
n = sys.argv[2]
store.save(key, '{"access_token":"at-SECRET-%s","refresh_token":"rt-SECRET-%s"}' % (n, n))
"""


def _run_killed(script: str, *args: str, env: dict[str, str] | None = None) -> None:
    """Run ``script`` in a child that SIGKILLs itself; wait for it (bounded)."""
    env = dict(os.environ if env is None else env)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    proc = subprocess.run(
        [sys.executable, "-c", script, *args], env=env, cwd=ROOT, timeout=60, check=False
    )
    assert proc.returncode == -9  # it really died mid-write


def _secret_files(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir() if b"SECRET" in p.read_bytes())


@posix_only
def test_file_store_sweeps_what_a_killed_save_left(tmp_path: pathlib.Path) -> None:
    """kill -9 between write and rename leaves a temp file; the next save and delete remove it."""
    directory = tmp_path / "tokens"
    for n in range(3):
        _run_killed(_FILE_KILL_SCRIPT, str(directory), str(n))
    leftovers = [p.name for p in directory.iterdir() if p.name.endswith(".tmp")]
    assert len(leftovers) == 1  # each save swept the one before: they never accumulate
    assert _secret_files(directory) == leftovers  # a whole token record
    store = FileStore(directory)
    store.save(KEY, TOKEN)
    assert not [p for p in directory.iterdir() if p.name.endswith(".tmp")]
    for n in range(3):
        _run_killed(_FILE_KILL_SCRIPT, str(directory), str(n))
    store.delete(KEY)  # `oauthsmtp logout`
    assert _secret_files(directory) == []
    assert store.load(KEY) is None


_FILE_LOOP_SCRIPT = """
import os, sys
from oauthsmtp import FileStore, TokenKey

store = FileStore(sys.argv[1])
key = TokenKey("https://auth.example.test/token", "client-1", "me@example.test")
os.write(1, b"go\\n")
i = 0
while True:
    i += 1
    store.save(key, '{"access_token":"at-SECRET-%d","refresh_token":"rt-SECRET-%d"}' % (i, i))
"""


@posix_only
def test_file_store_under_repeated_kill_9(tmp_path: pathlib.Path) -> None:
    """Saves killed at random moments: the token stays readable; logout leaves no secret."""
    import random

    directory = tmp_path / "tokens"
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    rng = random.Random(7)  # noqa: S311 - picks kill moments, nothing secret
    store = FileStore(directory)
    store.save(KEY, TOKEN)  # so that load() has an old value to fall back on from the start
    for _ in range(12):
        proc = subprocess.Popen(
            [sys.executable, "-c", _FILE_LOOP_SCRIPT, str(directory)],
            env=env,
            cwd=ROOT,
            stdout=subprocess.PIPE,
        )
        try:
            assert proc.stdout is not None
            assert proc.stdout.readline() == b"go\n"
            time.sleep(rng.uniform(0.0, 0.05))  # a random point in the save loop
            proc.kill()
        finally:
            proc.kill()
            proc.communicate(timeout=30)
        assert store.load(KEY) is not None  # old or new, never half
        assert len([p for p in directory.iterdir() if p.name.endswith(".tmp")]) <= 1
    store.delete(KEY)
    assert _secret_files(directory) == []


class KillingBackend:
    """Wraps a real keyring backend; SIGKILLs the process at the n-th write or delete."""

    def __init__(self, inner: Any, kill_at: int) -> None:
        self.inner = inner
        self.kill_at = kill_at
        self.calls = 0

    def _count(self) -> None:
        self.calls += 1
        if self.calls == self.kill_at:
            os.kill(os.getpid(), 9)

    def get_password(self, service: str, username: str) -> str | None:
        return self.inner.get_password(service, username)  # type: ignore[no-any-return]

    def set_password(self, service: str, username: str, password: str) -> None:
        self._count()
        self.inner.set_password(service, username, password)

    def delete_password(self, service: str, username: str) -> None:
        self._count()
        self.inner.delete_password(service, username)


_KEYRING_KILL_SCRIPT = """
import sys
sys.path.insert(0, sys.argv[4])
from keyring.backends import SecretService
from oauthsmtp import KeyringStore, TokenKey
from test_store import KillingBackend

service, account, kill_at = sys.argv[1], sys.argv[2], int(sys.argv[3])
key = TokenKey("https://auth.example.test/token", "client-1", account)
backend = KillingBackend(SecretService.Keyring(), kill_at=0)
store = KeyringStore(service, backend=backend, max_chunk=128)
store.save(key, "OLD-SECRET-" * 30)  # three chunks
backend.calls, backend.kill_at = 0, kill_at
store.save(key, "NEW-SECRET-" * 30)  # killed at its kill_at-th keyring write or delete
store.delete(key)  # reached only when kill_at is past the save's last call
raise SystemExit("not killed")
"""


@pytest.fixture(scope="module")
def killing_secret_service(secret_service: SecretService) -> Iterator[SecretService]:
    """A Secret Service of their own for the kill -9 tests (skips like ``secret_service``).

    Clients killed mid-session are hard on gnome-keyring; should one of these tests take
    its daemon down, the other tests' Secret Service is not affected.
    """
    from secret_service import running_secret_service

    with running_secret_service() as service:
        yield service


# The second save makes 9 keyring writes/deletes (journal, 3 chunks, head, 3 old chunks,
# journal) and the delete 4 (3 chunks, head): a kill at each of them.
@pytest.mark.parametrize("kill_at", range(1, 14))
def test_keyring_store_leaves_no_chunk_after_kill_9(
    killing_secret_service: SecretService,
    home: pathlib.Path,
    kill_at: int,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """kill -9 at every keyring call of a chunked save (and the delete after it): the next save
    and the next delete leave exactly what they should, no orphaned chunk."""
    monkeypatch.setenv("DBUS_SESSION_BUS_ADDRESS", killing_secret_service.address)
    service = f"oauthsmtp-kill-{uuid.uuid4().hex[:8]}"
    env = dict(os.environ, **killing_secret_service.env, OAUTHSMTP_HOME=str(home))
    proc = subprocess.run(
        [
            sys.executable,
            "-c",
            _KEYRING_KILL_SCRIPT,
            service,
            "me@example.test",
            str(kill_at),
            str(ROOT / "tests"),
        ],
        env={**env, "PYTHONPATH": str(ROOT)},
        cwd=ROOT,
        timeout=60,
        check=False,
        capture_output=True,
    )
    daemon_log = killing_secret_service.directory / "gnome-keyring.log"
    assert proc.returncode == -9, (
        proc.stderr.decode(errors="replace")[-1500:]
        + "\ngnome-keyring: "
        + daemon_log.read_text(errors="replace")[-1000:]
    )
    store = KeyringStore(service, backend=killing_secret_service.backend(), max_chunk=128)
    value = store.load(KEY)
    assert value in (None, "OLD-SECRET-" * 30, "NEW-SECRET-" * 30)
    store.save(KEY, TOKEN)  # short: one entry
    assert len(killing_secret_service.items(f"{service}:{KEY.token_url}")) == 1
    store.delete(KEY)
    assert killing_secret_service.items(f"{service}:{KEY.token_url}") == []


# ---------------------------------------------------------------------------
# account settings: the non-secret half of a login, read as untrusted data
# ---------------------------------------------------------------------------


def _settings(**changes: Any) -> AccountSettings:
    values: dict[str, Any] = {
        "account": "me@example.test",
        "provider": "custom",
        "client_id": "client-1",
        "auth_url": "https://auth.example.test/auth",
        "token_url": "https://auth.example.test/token",
        "scope": ("mail",),
        "redirect_url": "http://localhost:9000",
        "smtp_host": "smtp.example.test",
        "smtp_port": 587,
        "security": "starttls",
    }
    values.update(changes)
    return AccountSettings(**values)


@pytest.mark.parametrize(
    "changes",
    [
        {"account": ""},
        {"account": "  "},
        {"smtp_host": ""},
        {"smtp_host": "smtp.example.test\r\nRCPT"},
        {"smtp_host": "a b"},
        {"smtp_port": -5},
        {"smtp_port": 0},
        {"smtp_port": 65536},
        {"smtp_port": True},
        {"smtp_port": "587"},
        {"security": "tls"},
        {"scope": "mail"},
        {"client_id": None},
        {"extra_auth_params": {"a": 1}},
    ],
    ids=repr,
)
def test_account_settings_refuse_values_no_command_could_use(changes: dict[str, Any]) -> None:
    """`login --smtp-port -5`, `--smtp-host ''`, `--account ''` are refused, not recorded."""
    with pytest.raises(ConfigurationError):
        _settings(**changes)


def test_empty_account_never_reaches_a_store() -> None:
    """TokenKey.for_account refuses '' (None is 'no account'); so do the account settings."""
    with pytest.raises(ConfigurationError, match="account"):
        TokenKey.for_account("https://auth.example.test/token", "client-1", "")
    assert TokenKey.for_account("https://auth.example.test/token", "client-1", None).account == ""
    with pytest.raises(ConfigurationError):
        TokenKey("https://auth.example.test/token", "client-1", " ")
    assert secret_key(_settings()).account == "me@example.test#client-secret"


def test_account_registry_skips_a_bad_entry(
    tmp_path: pathlib.Path, caplog: pytest.LogCaptureFixture
) -> None:
    """One damaged entry (an account '' recorded by an older version) does not hide the rest."""
    registry = AccountRegistry(tmp_path)
    registry.put(_settings())
    data = json.loads(registry.path.read_text())
    data["accounts"][""] = dict(data["accounts"]["me@example.test"], account="")
    data["accounts"]["port@example.test"] = dict(
        data["accounts"]["me@example.test"], account="port@example.test", smtp_port=-5
    )
    registry.path.write_text(json.dumps(data))
    assert list(registry.load_all()) == ["me@example.test"]
    assert "ignoring the account" in caplog.text


@pytest.mark.parametrize(
    "content", [b"not json", b"[]", b'{"accounts": []}', b'{"a": 1, "a": 2}', b"\xff" * 10]
)
def test_account_registry_damaged_file_says_what_to_do(
    tmp_path: pathlib.Path, content: bytes
) -> None:
    registry = AccountRegistry(tmp_path)
    registry.path.write_bytes(content)
    with pytest.raises(ConfigurationError, match="damaged"):
        registry.load_all()


@posix_only
def test_account_registry_writes_privately_and_sweeps_leftovers(tmp_path: pathlib.Path) -> None:
    """accounts.json is 0600 whatever the umask; a killed writer's temp file is removed."""
    registry = AccountRegistry(tmp_path)
    stale = tmp_path / ".accounts.json.0123456789ab.tmp"
    stale.write_text("{}")
    old = os.umask(0)
    try:
        registry.put(_settings())
    finally:
        os.umask(old)
    assert stat.S_IMODE(registry.path.stat().st_mode) == 0o600
    assert not stale.exists()
    assert registry.get("me@example.test") == _settings()


def test_account_registry_concurrent_puts_keep_every_account(tmp_path: pathlib.Path) -> None:
    """Logins in parallel: each one's record survives (read-modify-write under a lock)."""
    registry = AccountRegistry(tmp_path)
    names = [f"user{n}@example.test" for n in range(8)]
    barrier = threading.Barrier(len(names))

    def put(name: str) -> None:
        barrier.wait(timeout=30)
        AccountRegistry(tmp_path).put(_settings(account=name))

    threads = [threading.Thread(target=put, args=(name,)) for name in names]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(60)
    assert sorted(registry.load_all()) == sorted(names)


@pytest.mark.parametrize(
    "make",
    [
        lambda tmp: FileStore(tmp, lock_timeout=float("nan")),
        lambda tmp: FileStore(tmp, lock_timeout=-1),
        lambda tmp: MemoryStore(lock_timeout=float("inf")),
        lambda tmp: KeyringStore(lock_timeout="5"),  # type: ignore[arg-type]
        lambda tmp: FileStore(f"{tmp}/a\x00b"),
        lambda tmp: FileStore(""),
        lambda tmp: FileStore(5),  # type: ignore[arg-type]
    ],
    ids=["nan", "negative", "inf", "str", "nul", "empty", "int"],
)
def test_store_arguments_are_checked(make: Any, tmp_path: pathlib.Path) -> None:
    """Bad constructor arguments give ConfigurationError, not a standard-library exception later."""
    with pytest.raises(ConfigurationError):
        make(tmp_path)


@pytest.mark.parametrize("kind", ["memory", "file"])
def test_saving_a_non_string_is_our_error(kind: str, tmp_path: pathlib.Path) -> None:
    store = MemoryStore() if kind == "memory" else FileStore(tmp_path)
    with pytest.raises(ConfigurationError):
        store.save(KEY, b"bytes")  # type: ignore[arg-type]


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX flock path")
def test_file_store_lock_is_flock_without_importing_filelock(tmp_path: pathlib.Path) -> None:
    """The cross-process lock costs no filelock import (10-25 ms per `oauthsmtp token`)."""
    code = (
        "import sys\n"
        "from oauthsmtp import FileStore, TokenKey\n"
        f"store = FileStore({str(tmp_path / 'tokens')!r})\n"
        "key = TokenKey('https://t.example/token', 'cid', 'a@example.org')\n"
        "with store.lock(key):\n"
        "    with store.lock(key):\n"  # re-entrant within one thread
        "        store.save(key, '{}')\n"
        "print('filelock' in sys.modules)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert done.stdout.strip() == "False"
