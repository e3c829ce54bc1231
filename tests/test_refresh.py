"""Cached tokens and refresh against the development authorization server (issue: token cache).

Real threads and real processes check the single-flight guarantees; the
authorization server rotates refresh tokens and counts token requests.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import threading
from collections.abc import Iterator
from dataclasses import replace
from datetime import datetime, timedelta, timezone
from pathlib import Path

import pytest
from conftest import FakeBrowser

import oauthsmtp
from oauthsmtp import FileStore, LoginRequired, MemoryStore, OAuth2Parameters, TokenKey
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._tokens.identify import logout
from oauthsmtp._tokens.manager import TokenManager
from oauthsmtp._tokens.token import AuthToken
from oauthsmtp.devserver import AuthServer

REDIRECT = "http://127.0.0.1:0/callback"
ACCOUNT = "user@example.test"


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(mode="auto", user=ACCOUNT, rotate_refresh_tokens=True) as srv:
        yield srv


@pytest.fixture
def params(server: AuthServer) -> OAuth2Parameters:
    return server.parameters(server.register_client(), redirect_url=REDIRECT)


PARAMETER_FIELDS = ("client_id", "client_secret", "auth_url", "token_url", "redirect_url", "issuer")


def log_in(params: OAuth2Parameters, store: oauthsmtp.TokenStore) -> AuthToken:
    """A browser login (the fake browser consents) for ACCOUNT into ``store``."""
    return oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, timeout=20)


def key_for(params: OAuth2Parameters, account: str = ACCOUNT) -> TokenKey:
    return TokenKey(params.token_url, params.client_id, account)


def expire_in_store(store: oauthsmtp.TokenStore, key: TokenKey) -> None:
    raw = store.load(key)
    assert raw is not None
    state = AuthToken.from_json(raw).state
    past = datetime.now(timezone.utc) - timedelta(seconds=5)
    store.save(key, AuthToken(replace(state, expires_at=past)).to_json())


def stored_refresh_token(store: oauthsmtp.TokenStore, key: TokenKey) -> str | None:
    raw = store.load(key)
    return None if raw is None else json.loads(raw)["refresh_token"]


def test_refresh_rotates_and_persists_before_handing_out(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """token.refresh(): new access token; the rotated refresh token is in the store already."""
    store = MemoryStore()
    token = log_in(params, store)
    old_access, old_refresh = token.state.access_token, token.refresh_token
    token.refresh()
    assert token.state.access_token != old_access
    assert token.refresh_token != old_refresh
    assert stored_refresh_token(store, key_for(params)) == token.refresh_token
    assert server.validate_access_token(token.access_token) is not None
    # The next refresh sends RT2 (the rotated one); RT1 is dead at the server.
    before = token.refresh_token
    token.refresh()
    assert token.refresh_token != before
    assert server.token_requests == 3


def test_expired_cached_token_is_refreshed_silently(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """A later call with an expired cached token refreshes without a browser."""
    store = MemoryStore()
    first = log_in(params, store)
    fake_browser.reset()
    expire_in_store(store, key_for(params))
    again = oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, interactive=False)
    assert again.valid
    assert again.state.access_token != first.state.access_token
    assert not fake_browser.opened
    assert server.token_requests == 2


def test_access_token_property_refreshes_within_leeway(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """Reading access_token when within the leeway refreshes first."""
    store = MemoryStore()
    token = log_in(params, store)
    token.expire()
    assert not token.valid
    value = token.access_token
    assert token.valid
    assert server.validate_access_token(value) is not None
    assert server.token_requests == 2


def test_eight_threads_cause_one_refresh(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """8 threads, each with its own AuthToken on one store, expired token: 1 token request."""
    store = MemoryStore()
    log_in(params, store)
    expire_in_store(store, key_for(params))
    # Each thread holds its own AuthToken and TokenManager, as separate callers would.
    tokens = [
        AuthToken(
            AuthToken.from_json(store.load(key_for(params)) or "").state,
            refresher=TokenManager(params, store, key_for(params)),
            account=ACCOUNT,
        )
        for _ in range(8)
    ]
    requests_before = server.token_requests
    barrier = threading.Barrier(8)
    values: list[str] = []

    def worker(token: AuthToken) -> None:
        barrier.wait()
        values.append(token.access_token)

    threads = [threading.Thread(target=worker, args=(t,)) for t in tokens]
    for t in threads:
        t.start()
    for t in threads:
        t.join(30)
    assert server.token_requests - requests_before == 1
    assert len(set(values)) == 1
    assert server.validate_access_token(values[0]) is not None


PROCESS_SCRIPT = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import oauthsmtp
    from oauthsmtp import FileStore, OAuth2Parameters

    args = json.loads(sys.argv[1])
    params = OAuth2Parameters(**args["params"])
    go = Path(args["go"])
    while not go.exists():
        time.sleep(0.005)
    token = oauthsmtp.auth_identify(params, account=args["account"],
                                    store=FileStore(args["store"]), interactive=False)
    print(token.access_token == token.state.access_token and token.valid)
    Path(args["out"]).write_text(token.state.access_token)
    """
)


def test_four_processes_cause_one_refresh(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser, tmp_path: Path
) -> None:
    """4 processes sharing one FileStore, expired token: exactly 1 token request."""
    store = FileStore(tmp_path / "tokens")
    log_in(params, store)
    expire_in_store(store, key_for(params))
    before = server.token_requests
    go = tmp_path / "go"
    arg = {
        "params": {
            **{name: getattr(params, name) for name in PARAMETER_FIELDS},
            "scope": list(params.scopes),
        },
        "account": ACCOUNT,
        "store": str(tmp_path / "tokens"),
        "go": str(go),
    }
    procs = []
    for i in range(4):
        run_arg = json.dumps({**arg, "out": str(tmp_path / f"out{i}")})
        procs.append(
            subprocess.Popen(
                [sys.executable, "-c", PROCESS_SCRIPT, run_arg],
                stdout=subprocess.PIPE,
                stderr=subprocess.PIPE,
                text=True,
                env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
            )
        )
    go.touch()
    outputs = [p.communicate(timeout=60) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=False):
        assert proc.returncode == 0, err
        assert out.strip() == "True"
    tokens = {(tmp_path / f"out{i}").read_text() for i in range(4)}
    assert server.token_requests - before == 1
    assert len(tokens) == 1


def test_invalid_grant_removes_the_token_and_asks_for_login(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """invalid_grant on refresh: one request, token deleted, LoginRequired explaining why."""
    store = MemoryStore()
    token = log_in(params, store)
    server.revoke_all_refresh_tokens()
    before = server.token_requests
    with pytest.raises(LoginRequired) as info:
        token.refresh()
    assert server.token_requests - before == 1
    message = str(info.value)
    assert info.value.account == ACCOUNT
    assert "invalid_grant" in message
    assert "7 days" in message
    assert f"oauthsmtp login --account {ACCOUNT}" in message
    assert store.load(key_for(params)) is None


def test_failed_refresh_keeps_the_last_good_token(
    params: OAuth2Parameters, fake_browser: FakeBrowser, server: AuthServer
) -> None:
    """A network failure during refresh leaves the stored token untouched."""
    store = MemoryStore()
    log_in(params, store)
    saved = store.load(key_for(params))
    broken = replace(params, token_url="http://127.0.0.1:9/token")  # discard port: refused
    manager = TokenManager(broken, store, key_for(params))
    state = AuthToken.from_json(saved or "").state
    with pytest.raises(oauthsmtp.TokenError):
        manager(replace(state, expires_at=datetime.now(timezone.utc)))
    assert store.load(key_for(params)) == saved


def test_revoke_token_revokes_at_the_provider_and_forgets_locally(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """RFC 7009 revocation: the provider drops the token; the store forgets it."""
    store = MemoryStore()
    token = log_in(params, store)
    access = token.state.access_token
    assert oauthsmtp.revoke_token(params, token) is True
    assert store.load(key_for(params)) is None
    assert server.validate_access_token(access) is None
    with pytest.raises(LoginRequired):
        oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, interactive=False)


def test_revoke_without_endpoint_still_forgets(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """No revocation URL (Microsoft): nothing to call, the local copy is still deleted."""
    store = MemoryStore()
    token = log_in(params, store)
    assert oauthsmtp.revoke_token(replace(params, revocation_url=None), token) is False
    assert store.load(key_for(params)) is None


def test_accounts_live_side_by_side(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """Two accounts under one client keep separate tokens."""
    store = MemoryStore()
    server.user = "a@example.test"
    a = oauthsmtp.auth_identify(params, account="a@example.test", store=store, timeout=20)
    fake_browser.reset()
    server.user = "b@example.test"
    b = oauthsmtp.auth_identify(params, account="b@example.test", store=store, timeout=20)
    assert a.state.access_token != b.state.access_token
    info_a = server.validate_access_token(
        oauthsmtp.auth_identify(
            params, account="a@example.test", store=store, interactive=False
        ).access_token
    )
    assert info_a is not None
    assert info_a.user == "a@example.test"
    assert server.validate_access_token(b.access_token).user == "b@example.test"  # type: ignore[union-attr]


def test_refresh_token_function_for_detached_tokens(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """oauthsmtp.refresh_token(params, token) refreshes a token loaded from JSON."""
    token = oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=20)
    detached = AuthToken.from_json(token.to_json())
    old = detached.state.access_token
    oauthsmtp.refresh_token(params, detached)
    assert detached.state.access_token != old
    assert server.validate_access_token(detached.access_token) is not None


# ---------------------------------------------------------------------------
# a failed save never loses the login; writes hold the store's lock
# ---------------------------------------------------------------------------


class FlakyStore(MemoryStore):
    """A MemoryStore whose next ``failures`` saves raise, as a locked keyring or full disk would."""

    def __init__(self) -> None:
        super().__init__()
        self.failures = 0

    def save(self, key: TokenKey, value: str) -> None:
        if self.failures:
            self.failures -= 1
            raise oauthsmtp.TokenStoreError("the disk is full (test)")
        super().save(key, value)


def test_failed_save_during_refresh_keeps_the_rotated_token(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """RT1 -> RT2, save(RT2) fails: RT2 is handed out, saved on its next use, the login lives."""
    store = FlakyStore()
    token = log_in(params, store)
    first = token.refresh_token
    store.failures = 1
    token.refresh()  # the server rotated; the save failed; the new token is handed out anyway
    rotated = token.refresh_token
    assert rotated != first
    assert stored_refresh_token(store, key_for(params)) == first
    assert server.validate_access_token(token.access_token) is not None  # this use saves it
    assert stored_refresh_token(store, key_for(params)) == rotated
    token.refresh()  # sends RT2: no invalid_grant, nothing deleted
    assert stored_refresh_token(store, key_for(params)) == token.refresh_token


def test_store_that_keeps_failing_never_ends_the_login(
    server: AuthServer, params: OAuth2Parameters, fake_browser: FakeBrowser
) -> None:
    """Every save fails for a while: refreshes keep working from memory, nothing is deleted."""
    store = FlakyStore()
    token = log_in(params, store)
    first = token.refresh_token
    store.failures = 1000
    for _ in range(3):
        token.refresh()
        assert server.validate_access_token(token.access_token) is not None
    assert stored_refresh_token(store, key_for(params)) == first  # old entry kept, not deleted
    store.failures = 0
    token.access_token  # noqa: B018 - a use: the pending save goes through
    assert stored_refresh_token(store, key_for(params)) == token.refresh_token
    again = oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, interactive=False)
    again.refresh()  # another caller, from the store: the saved refresh token is the live one


def _state(access: str, refresh: str | None, *, valid: bool) -> TokenState:
    delta = timedelta(hours=1) if valid else -timedelta(seconds=5)
    return TokenState(
        access_token=access,
        refresh_token=refresh,
        expires_at=datetime.now(timezone.utc) + delta,
    )


LOCAL = OAuth2Parameters(
    client_id="cid", auth_url="https://a.example.test/auth", token_url="http://127.0.0.1:9/token"
)
LOCAL_KEY = TokenKey(LOCAL.token_url, "cid", ACCOUNT)


def test_invalid_grant_reads_the_store_again_before_deleting() -> None:
    """A writer outside our lock rotated the token meanwhile: its token is used, nothing deleted."""
    store = MemoryStore()
    store.save(LOCAL_KEY, AuthToken(_state("AT1", "RT1", valid=False)).to_json())
    rotated = _state("AT-other", "RT-other", valid=True)

    def refresh(params: OAuth2Parameters, state: TokenState) -> TokenState:
        assert state.refresh_token == "RT1"
        store.save(LOCAL_KEY, AuthToken(rotated).to_json())  # another process, meanwhile
        raise oauthsmtp.TokenError("refused (test)", error="invalid_grant")

    token = AuthToken(
        _state("AT1", "RT1", valid=False),
        refresher=TokenManager(LOCAL, store, LOCAL_KEY, refresh=refresh),
    )
    assert token.access_token == "AT-other"
    assert store.load(LOCAL_KEY) == AuthToken(rotated).to_json()


class SignallingFileStore(FileStore):
    """A FileStore that says when a logout reached it (by taking the lock or deleting)."""

    def __init__(self, directory: Path) -> None:
        super().__init__(directory, lock_timeout=30)
        self.logout_reached = threading.Event()
        self.refresher_thread: threading.Thread | None = None

    def lock(self, key: TokenKey):  # type: ignore[no-untyped-def]
        if threading.current_thread() is not self.refresher_thread:
            self.logout_reached.set()
        return super().lock(key)

    def delete(self, key: TokenKey) -> None:
        self.logout_reached.set()
        super().delete(key)


@pytest.mark.parametrize("how", ["logout", "revoke_token"])
def test_logout_during_a_refresh_in_flight_stays_logged_out(tmp_path: Path, how: str) -> None:
    """The refresh holds the lock when the logout arrives: the logout waits, then deletes."""
    store = SignallingFileStore(tmp_path)
    store.save(LOCAL_KEY, AuthToken(_state("AT1", "RT1", valid=False)).to_json())

    entered = threading.Event()
    errors: list[BaseException] = []

    def slow_refresh(params: OAuth2Parameters, state: TokenState) -> TokenState:
        entered.set()
        assert store.logout_reached.wait(20)  # the logout has started meanwhile
        return _state("AT2", "RT2-live", valid=True)

    def refresh_in_thread() -> None:
        try:
            token.refresh()
        except BaseException as exc:  # reported below
            errors.append(exc)

    token = AuthToken(
        _state("AT1", "RT1", valid=False),
        refresher=TokenManager(LOCAL, store, LOCAL_KEY, refresh=slow_refresh),
    )
    refresher = threading.Thread(target=refresh_in_thread)
    store.refresher_thread = refresher
    refresher.start()
    assert entered.wait(20)  # the refresh holds the lock and is talking to the provider
    if how == "logout":
        logout(store, LOCAL_KEY)
    else:
        other = AuthToken(
            _state("AT1", "RT1", valid=False),
            refresher=TokenManager(LOCAL, store, LOCAL_KEY, refresh=slow_refresh),
        )
        assert oauthsmtp.revoke_token(replace(LOCAL, revocation_url=None), other) is False
    refresher.join(30)
    assert not refresher.is_alive()
    assert errors == []
    assert store.load(LOCAL_KEY) is None


def test_refresh_after_a_logout_does_not_bring_the_login_back(tmp_path: Path) -> None:
    """A token still held in memory after a logout: its refresh asks for a login, saves nothing."""
    store = FileStore(tmp_path)
    store.save(LOCAL_KEY, AuthToken(_state("AT1", "RT1", valid=False)).to_json())
    calls: list[str] = []

    def refresh(params: OAuth2Parameters, state: TokenState) -> TokenState:
        calls.append("refresh")
        return _state("AT2", "RT2", valid=True)

    token = AuthToken(
        _state("AT1", "RT1", valid=False),
        refresher=TokenManager(LOCAL, store, LOCAL_KEY, refresh=refresh),
    )
    result = logout(store, LOCAL_KEY)
    assert result.removed
    with pytest.raises(LoginRequired, match="removed"):
        token.refresh()
    assert calls == []
    assert store.load(LOCAL_KEY) is None


@pytest.mark.parametrize(
    "expires_at", ["0001-01-01T00:00:00+01:00", "9999-12-31T23:59:59-01:00", "0001-01-01T00:00:00Z"]
)
def test_stored_date_out_of_range_counts_as_unreadable(
    expires_at: str, caplog: pytest.LogCaptureFixture
) -> None:
    """A stored expires_at in year 1 (or 9999): no OverflowError; a login is asked for."""
    store = MemoryStore()
    store.save(
        LOCAL_KEY,
        json.dumps({"access_token": "AT1", "refresh_token": "RT1", "expires_at": expires_at}),
    )
    with pytest.raises(LoginRequired, match="no saved login"):
        oauthsmtp.auth_identify(LOCAL, account=ACCOUNT, store=store, interactive=False)
    assert "unreadable" in caplog.text
    assert "RT1" not in caplog.text


@pytest.mark.parametrize("account", ["", "   ", "\t"])
def test_empty_account_is_refused(account: str) -> None:
    """account='' is a mistake (e.g. --account ''), not 'no account': ConfigurationError."""
    with pytest.raises(oauthsmtp.ConfigurationError, match="account"):
        oauthsmtp.auth_identify(LOCAL, account=account, store=MemoryStore(), interactive=False)


def test_dead_login_is_reported_even_when_the_store_cannot_delete(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """invalid_grant plus a store that refuses the delete: LoginRequired, not TokenStoreError."""

    class NoDelete(MemoryStore):
        def delete(self, key: TokenKey) -> None:
            raise oauthsmtp.TokenStoreError("the keyring is locked (test)")

    store = NoDelete()
    store.save(LOCAL_KEY, AuthToken(_state("AT1", "RT1", valid=False)).to_json())

    def refused(params: OAuth2Parameters, state: TokenState) -> TokenState:
        raise oauthsmtp.TokenError("refused (test)", error="invalid_grant")

    token = AuthToken(
        _state("AT1", "RT1", valid=False),
        refresher=TokenManager(LOCAL, store, LOCAL_KEY, refresh=refused),
    )
    with pytest.raises(LoginRequired, match="invalid_grant"):
        token.refresh()
    assert "could not delete" in caplog.text
