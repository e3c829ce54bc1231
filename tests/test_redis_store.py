"""RedisStore against a real redis-server: the lease, fencing, encryption, outages, a fleet.

The contract every store keeps (load/save/delete/keys/lock) is checked in
test_store.py, RedisStore included; here are the rules only a shared store has.
"""

from __future__ import annotations

import json
import logging
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from cli_support import ACCOUNT as CLI_ACCOUNT
from cli_support import assert_one_line_error, make_home, run
from components import Lines, spawned
from conftest import FakeBrowser
from cryptography.fernet import Fernet

import oauthsmtp
from oauthsmtp import (
    ConfigurationError,
    FileStore,
    OAuth2Parameters,
    RedisStore,
    TokenKey,
    TokenStoreError,
    default_store,
)
from oauthsmtp._accounts import store_named
from oauthsmtp._oauth import endpoint
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._tokens.manager import TokenManager
from oauthsmtp._tokens.token import AuthToken
from oauthsmtp.devserver import AuthServer

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent
KEY = TokenKey("https://auth.example.test/token", "client-1", "me@example.test")
TOKEN = '{"access_token": "SECRET-ACCESS", "refresh_token": "SECRET-REFRESH"}'
ACCOUNT = "user@example.test"
REDIRECT = "http://127.0.0.1:0/callback"
CLI_KEY = TokenKey("https://auth.example/token", "cid", CLI_ACCOUNT)
PARAMETER_FIELDS = ("client_id", "client_secret", "auth_url", "token_url", "redirect_url", "issuer")


def env_with_root(**extra: str) -> dict[str, str]:
    env = {**os.environ, **extra}
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(ROOT), env.get("PYTHONPATH")]))
    return env


# ---------------------------------------------------------------------------
# configuration
# ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("kwargs", "says"),
    [
        ({"lease": 0}, "lease"),
        ({"lease": float("nan")}, "lease"),
        ({"lease": True}, "lease"),
        ({"lock_timeout": -1}, "lock_timeout"),
        ({"socket_timeout": 0}, "socket_timeout"),
        ({"prefix": "a\nb"}, "prefix"),
        ({"encryption_key": "not a key"}, "Fernet.generate_key"),
        ({"encryption_key": b"x" * 44}, "not a Fernet key"),
    ],
)
def test_bad_arguments_are_refused(kwargs: dict[str, object], says: str) -> None:
    with pytest.raises(ConfigurationError, match=says):
        RedisStore("redis://127.0.0.1:1/0", **kwargs)  # type: ignore[arg-type]


@pytest.mark.parametrize("url", ["", "http://example.test/", "redis://h:notaport/0"])
def test_bad_url_is_refused(url: str) -> None:
    with pytest.raises(ConfigurationError):
        RedisStore(url)


def test_repr_and_messages_hide_the_password_and_the_key() -> None:
    key = Fernet.generate_key()
    store = RedisStore("redis://worker:pa55-SECRET@127.0.0.1:1/3", encryption_key=key)
    assert repr(store) == (
        "RedisStore('redis://worker@127.0.0.1:1/3', prefix='oauthsmtp:', lease=30, encrypted)"
    )
    assert store.url == "redis://worker@127.0.0.1:1/3"
    assert "pa55" not in repr(vars(store))
    assert key.decode() not in repr(vars(store))


def test_import_oauthsmtp_does_not_import_redis() -> None:
    code = "import sys, oauthsmtp; print('redis' in sys.modules, 'cryptography' in sys.modules)"
    command = [sys.executable, "-c", code]
    out = subprocess.run(command, env=env_with_root(), capture_output=True, text=True, timeout=60)
    assert out.stdout.split() == ["False", "False"], out.stderr


def test_oauthsmtp_store_selects_redis(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    fernet_key = Fernet.generate_key().decode()
    monkeypatch.setenv("OAUTHSMTP_STORE", redis_server.url)
    monkeypatch.delenv("OAUTHSMTP_REDIS_KEY", raising=False)
    plain = default_store()
    assert isinstance(plain, RedisStore)
    assert not plain.encrypted
    monkeypatch.setenv("OAUTHSMTP_REDIS_KEY", fernet_key)
    store = default_store()
    assert isinstance(store, RedisStore)
    assert store.encrypted
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    monkeypatch.setenv("OAUTHSMTP_STORE", "rediss://u:pw-SECRET@127.0.0.1:1/0")
    assert default_store().url == "rediss://u@127.0.0.1:1/0"  # type: ignore[attr-defined]
    monkeypatch.setenv("OAUTHSMTP_STORE", "memcached://u:pw-SECRET@h/")
    with pytest.raises(ConfigurationError) as info:
        default_store()
    assert "pw-SECRET" not in str(info.value)
    assert "redis://" in str(info.value)


# ---------------------------------------------------------------------------
# the lease
# ---------------------------------------------------------------------------


def test_lease_is_renewed_while_a_holder_works_longer_than_it(redis_server: RedisServer) -> None:
    holder = RedisStore(redis_server.url, lease=0.6)
    rival = RedisStore(redis_server.url, lease=0.6, lock_timeout=0)
    raw = redis_server.client()
    with holder.lock(KEY):
        token = raw.get(holder.lease_key(KEY))
        assert token is not None
        started = time.monotonic()
        attempts = 0
        while time.monotonic() - started < 2.5:  # more than 4 leases
            with pytest.raises(TokenStoreError, match="timed out"), rival.lock(KEY):
                pass
            attempts += 1
            threading.Event().wait(0.05)
        assert raw.get(holder.lease_key(KEY)) == token  # still ours, never lapsed
        holder.save(KEY, TOKEN)  # fencing lets the holder write
    assert attempts > 5
    assert raw.get(holder.lease_key(KEY)) is None  # released
    assert holder.load(KEY) == TOKEN
    raw.close()


def test_release_removes_only_the_owners_lease(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, lease=5)
    raw = redis_server.client()
    with store.lock(KEY):
        raw.set(store.lease_key(KEY), b"someone-else")  # as if ours lapsed and another took it
    assert raw.get(store.lease_key(KEY)) == b"someone-else"
    raw.close()


_PAUSED_HOLDER = textwrap.dedent(
    """
    import sys
    from oauthsmtp import RedisStore, TokenKey, TokenStoreError
    key = TokenKey("https://auth.example.test/token", "client-1", "me@example.test")
    store = RedisStore(sys.argv[1], lease=0.5)
    with store.lock(key):
        print("held", flush=True)
        sys.stdin.readline()  # the test pauses this process (SIGSTOP) past its lease here
        try:
            store.save(key, "stale")
        except TokenStoreError as exc:
            print("refused:", exc, flush=True)
        else:
            print("saved", flush=True)
    print("released", flush=True)
    """
)


def test_a_holder_paused_past_its_lease_cannot_overwrite(redis_server: RedisServer) -> None:
    """Fencing: a real process stopped (SIGSTOP) past its lease; a second holder saves; the
    first one resumes, its save is refused and its release leaves the second's lease alone."""
    second = RedisStore(redis_server.url, lease=10, lock_timeout=30)
    second.save(KEY, "first")
    raw = redis_server.client()
    with spawned(
        [sys.executable, "-c", _PAUSED_HOLDER, redis_server.url],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        env=env_with_root(),
    ) as proc:
        lines = Lines(proc.stdout)  # type: ignore[arg-type]
        lines.until("^held")
        os.kill(proc.pid, signal.SIGSTOP)
        try:
            with second.lock(KEY):  # waits (bounded) until the paused holder's lease expires
                second.save(KEY, "newer")
                os.kill(proc.pid, signal.SIGCONT)
                assert proc.stdin is not None
                proc.stdin.write("go\n")
                proc.stdin.flush()
                refused = lines.until("^(refused|saved)").string
                lines.until("^released")
                # the stale holder's release did not remove our lease: we still write
                second.save(KEY, "newer-still")
                assert raw.get(second.lease_key(KEY)) is not None
        finally:
            os.kill(proc.pid, signal.SIGCONT)
        assert proc.wait(timeout=30) == 0
    assert refused.startswith("refused:")
    assert "the lease on it lapsed" in refused
    assert second.load(KEY) == "newer-still"
    raw.close()


def test_a_save_after_the_lease_lapsed_is_refused_in_process(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, lease=5)
    store.save(KEY, "kept")
    raw = redis_server.client()
    with store.lock(KEY):
        raw.delete(store.lease_key(KEY))  # the lease expired (as if the renewer never ran)
        with pytest.raises(TokenStoreError, match="lease on it lapsed"):
            store.save(KEY, "stale")
        with pytest.raises(TokenStoreError, match="lease on it lapsed"):
            store.delete(KEY)
    assert store.load(KEY) == "kept"
    raw.close()


# ---------------------------------------------------------------------------
# encryption at rest
# ---------------------------------------------------------------------------


def test_values_are_encrypted_at_rest(
    redis_server: RedisServer, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG)
    key = Fernet.generate_key()
    store = RedisStore(redis_server.url, encryption_key=key.decode())
    store.save(KEY, TOKEN)
    raw = redis_server.client()
    stored = raw.get(store.value_key(KEY))
    assert stored is not None
    assert stored.startswith(b"oauthsmtp-fernet/1:")
    for secret in (b"SECRET-ACCESS", b"SECRET-REFRESH", b"me@example.test", b"client-1"):
        assert secret not in stored
    assert store.load(KEY) == TOKEN
    assert store.keys() == [KEY]
    # the same key given as bytes reads it too
    assert RedisStore(redis_server.url, encryption_key=key).load(KEY) == TOKEN

    wrong = RedisStore(redis_server.url, encryption_key=Fernet.generate_key())
    with pytest.raises(TokenStoreError, match="cannot be decrypted with this encryption key"):
        wrong.load(KEY)
    with pytest.raises(TokenStoreError, match="cannot be decrypted"):
        wrong.keys()
    with pytest.raises(TokenStoreError, match="encrypted and this store has no encryption key"):
        RedisStore(redis_server.url).load(KEY)
    assert key.decode() not in caplog.text
    assert "SECRET" not in caplog.text

    # a plain entry is read by a store with a key, and encrypted on its next save
    raw.delete(store.value_key(KEY))
    RedisStore(redis_server.url).save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    store.save(KEY, TOKEN)
    assert raw.get(store.value_key(KEY)).startswith(b"oauthsmtp-fernet/1:")  # type: ignore[union-attr]
    raw.close()


def test_a_tampered_entry_is_a_clear_error(redis_server: RedisServer) -> None:
    store = RedisStore(redis_server.url, encryption_key=Fernet.generate_key())
    store.save(KEY, TOKEN)
    raw = redis_server.client()
    stored = raw.get(store.value_key(KEY))
    assert stored is not None
    raw.set(store.value_key(KEY), stored[:-4] + b"AAAA")
    with pytest.raises(TokenStoreError, match="tampered"):
        store.load(KEY)
    raw.set(store.value_key(KEY), b"not json")
    assert store.load(KEY) is None  # corrupt plain entries count as absent, like other stores
    raw.close()


# ---------------------------------------------------------------------------
# Redis down
# ---------------------------------------------------------------------------


def test_redis_unreachable_is_a_clear_error_without_the_password(
    make_redis_server: Callable[..., RedisServer],
) -> None:
    server = make_redis_server(password="pw-SECRET-123")
    store = RedisStore(server.url, socket_timeout=0.5, lock_timeout=5)
    try:
        store.save(KEY, TOKEN)
        os.kill(server.proc.pid, signal.SIGSTOP)  # type: ignore[union-attr]
        try:  # a hung server: the socket timeout bounds every call
            for call in (lambda: store.load(KEY), lambda: store.save(KEY, TOKEN), store.keys):
                with pytest.raises(TokenStoreError) as info:
                    call()
                message = str(info.value)
                assert f"127.0.0.1:{server.port}" in message
                assert "Timeout" in message
                assert "pw-SECRET" not in message
        finally:
            os.kill(server.proc.pid, signal.SIGCONT)  # type: ignore[union-attr]
        assert store.load(KEY) == TOKEN  # back, nothing lost
    finally:
        server.stop()
    with pytest.raises(TokenStoreError) as info:  # stopped: refused at once
        store.load(KEY)
    assert "Redis at redis://127.0.0.1" in str(info.value)
    assert "pw-SECRET" not in str(info.value)
    wrong = RedisStore(server.url.replace("pw-SECRET-123", "pw-WRONG-456"))
    server.start()
    with pytest.raises(TokenStoreError, match="user and password") as info:
        wrong.load(KEY)
    assert "pw-WRONG" not in str(info.value)


# ---------------------------------------------------------------------------
# with the development authorization server
# ---------------------------------------------------------------------------


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    with AuthServer(mode="auto", user=ACCOUNT, rotate_refresh_tokens=True) as srv:
        yield srv


@pytest.fixture
def params(auth_server: AuthServer) -> OAuth2Parameters:
    return auth_server.parameters(auth_server.register_client(), redirect_url=REDIRECT)


def expire_in_store(store: RedisStore, key: TokenKey) -> TokenState:
    raw = store.load(key)
    assert raw is not None
    state = AuthToken.from_json(raw).state
    expired = replace(state, expires_at=datetime.now(timezone.utc) - timedelta(seconds=5))
    store.save(key, AuthToken(expired).to_json())
    return expired


_RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import oauthsmtp
    from oauthsmtp import OAuth2Parameters, RedisStore

    args = json.loads(sys.argv[1])
    params = OAuth2Parameters(**args["params"])
    go = Path(args["go"])
    deadline = time.monotonic() + 30
    while not go.exists() and time.monotonic() < deadline:
        time.sleep(0.005)
    store = RedisStore(args["url"], encryption_key=args["key"], lease=2.0)
    token = oauthsmtp.auth_identify(params, account=args["account"], store=store,
                                    interactive=False)
    print(token.access_token == token.state.access_token and token.valid)
    Path(args["out"]).write_text(token.state.access_token)
    """
)


def test_four_processes_cause_one_refresh(
    auth_server: AuthServer,
    params: OAuth2Parameters,
    fake_browser: FakeBrowser,
    redis_server: RedisServer,
    tmp_path: Path,
) -> None:
    """4 processes sharing one (encrypted) RedisStore, expired token: exactly 1 token request."""
    fernet_key = Fernet.generate_key().decode()
    store = RedisStore(redis_server.url, encryption_key=fernet_key)
    oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, timeout=20)
    key = TokenKey(params.token_url, params.client_id, ACCOUNT)
    expire_in_store(store, key)
    before = auth_server.token_requests
    go = tmp_path / "go"
    arg = {
        "params": {
            **{name: getattr(params, name) for name in PARAMETER_FIELDS},
            "scope": list(params.scopes),
        },
        "account": ACCOUNT,
        "url": redis_server.url,
        "key": fernet_key,
        "go": str(go),
    }
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", _RACER, json.dumps({**arg, "out": str(tmp_path / f"out{i}")})],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            env=env_with_root(),
        )
        for i in range(4)
    ]
    go.touch()
    try:
        outputs = [p.communicate(timeout=60) for p in procs]
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait(timeout=10)
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert out.strip() == "True"
    tokens = {(tmp_path / f"out{i}").read_text() for i in range(4)}
    assert auth_server.token_requests - before == 1
    assert len(tokens) == 1
    assert auth_server.validate_access_token(tokens.pop()) is not None


def test_redis_stopped_mid_refresh_loses_no_token(
    auth_server: AuthServer,
    params: OAuth2Parameters,
    fake_browser: FakeBrowser,
    make_redis_server: Callable[..., RedisServer],
) -> None:
    """The provider rotated the refresh token, then Redis stopped before the save: the new
    token is handed out and kept in memory, and saved once Redis is back; the login lives."""
    server = make_redis_server(persist=True)
    try:
        store = RedisStore(server.url, lease=1.0, socket_timeout=1.0, lock_timeout=20)
        oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, timeout=20)
        key = TokenKey(params.token_url, params.client_id, ACCOUNT)
        held = expire_in_store(store, key)

        def refresh_then_stop_redis(p: OAuth2Parameters, state: TokenState) -> TokenState:
            answer = endpoint.refresh(p, state)
            server.stop()
            return answer

        manager = TokenManager(params, store, key, refresh=refresh_then_stop_redis)
        new = manager(held)
        assert new.refresh_token != held.refresh_token  # rotated: the old one is dead now
        assert manager.save_pending
        with pytest.raises(TokenStoreError, match="Redis at"):
            store.load(key)
        manager.retry_save()  # still down: kept, no error
        assert manager.save_pending

        server.start()  # same port, keys restored from the append-only file
        manager.retry_save()  # waits (bounded) for the lease the stop left behind to expire
        assert not manager.save_pending
        raw = store.load(key)
        assert raw is not None
        stored = AuthToken.from_json(raw).state
        assert stored.refresh_token == new.refresh_token
        assert endpoint.refresh(params, stored).access_token  # the provider still honours it
    finally:
        server.stop()


def test_logout_through_redis_removes_the_entry(
    auth_server: AuthServer,
    params: OAuth2Parameters,
    fake_browser: FakeBrowser,
    redis_server: RedisServer,
) -> None:
    store = RedisStore(redis_server.url)
    token = oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, timeout=20)
    assert store.keys() == [TokenKey(params.token_url, params.client_id, ACCOUNT)]
    oauthsmtp.revoke_token(params, token)
    assert store.keys() == []


# ---------------------------------------------------------------------------
# the command line
# ---------------------------------------------------------------------------


def test_command_line_uses_redis_from_the_environment(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    make_redis_server: Callable[..., RedisServer],
) -> None:
    server = make_redis_server(password="pw-SECRET-789")
    make_home(tmp_path, monkeypatch)  # a recorded account (its token in a file store)
    home_token = FileStore(tmp_path / "home" / "tokens").load(CLI_KEY)
    assert home_token is not None
    fernet_key = Fernet.generate_key().decode()
    monkeypatch.setenv("OAUTHSMTP_STORE", server.url)
    monkeypatch.setenv("OAUTHSMTP_REDIS_KEY", fernet_key)
    code, out, err = run(capsys, "token", "--account", CLI_ACCOUNT)
    assert code == 3, err  # nothing in Redis yet: login required
    RedisStore(server.url, encryption_key=fernet_key).save(CLI_KEY, home_token)
    code, out, err = run(capsys, "token", "--account", CLI_ACCOUNT)
    assert (code, out.strip()) == (0, "AT-secret"), err
    code, out, err = run(capsys, "status")
    assert code == 0, err
    assert CLI_ACCOUNT in out
    server.stop()
    code, out, err = run(capsys, "token", "--account", CLI_ACCOUNT)
    assert_one_line_error(
        code, err, expected=1, mentions=f"Redis at redis://127.0.0.1:{server.port}"
    )
    assert "pw-SECRET" not in err


def test_the_documented_acl_user_is_enough(redis_server: RedisServer) -> None:
    """docs/fleet.md's ACL line: a user limited to the prefix and these commands suffices."""
    admin = redis_server.client()
    acl = "on >pw-ACL ~oauthsmtp:* +get +set +del +mget +scan +pexpire +evalsha +eval"
    admin.execute_command("ACL", "SETUSER", "oauthsmtp", *acl.split(), "+script|load")
    url = redis_server.url.replace("redis://", "redis://oauthsmtp:pw-ACL@")
    store = RedisStore(url, lease=0.6, encryption_key=Fernet.generate_key())
    store.save(KEY, TOKEN)
    assert store.keys() == [KEY]
    with store.lock(KEY):
        started = time.monotonic()
        while time.monotonic() - started < 1.5:  # 2.5 leases: renewed by the ACL user
            threading.Event().wait(0.1)
        store.save(KEY, TOKEN + " ")
    assert store.load(KEY) == TOKEN + " "
    store.delete(KEY)
    assert store.keys() == []
    assert admin.execute_command("ACL", "LOG") == []  # nothing was denied
    outside = RedisStore(url, prefix="other:")
    with pytest.raises(TokenStoreError, match="NoPermission"):
        outside.load(KEY)
    admin.close()


def test_integrations_name_a_redis_store_by_its_url(
    monkeypatch: pytest.MonkeyPatch, redis_server: RedisServer
) -> None:
    """settings.OAUTHSMTP_STORE (Django) and store= of the logging handler take a URL too."""
    monkeypatch.setenv("OAUTHSMTP_REDIS_KEY", Fernet.generate_key().decode())
    store = store_named(redis_server.url)
    assert isinstance(store, RedisStore)
    assert store.encrypted
    store.save(KEY, TOKEN)
    assert store.load(KEY) == TOKEN
    with pytest.raises(ConfigurationError) as info:
        store_named("memcached://u:pw-SECRET@h/")
    assert "pw-SECRET" not in str(info.value)
