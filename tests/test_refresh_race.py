"""Four processes race a rotating refresh token for 60 s while leases are forced to lapse.

Marked ``slow`` in spirit: this one test runs for about a minute (the issue asks for 60 s
of racing); every other fleet test is short. The racers share one RedisStore with a tiny
lease (0.3 s); the development authorization server rotates the refresh token on every
refresh (and refuses the old one from then on) and issues access tokens that are due for
a refresh as soon as they are issued, so the racers refresh back to back. Meanwhile the test
stops a random racer (SIGSTOP) for longer than two leases and resumes it (SIGCONT), again
and again: whichever racer held the lease loses it while stopped.

The login must survive: no racer is ever told to log in again, and at the end the stored
refresh token still refreshes.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import subprocess
import sys
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import TYPE_CHECKING

import pytest
from components import spawned

from oauthsmtp import (
    LoginRequired,
    OAuth2Parameters,
    RedisStore,
    TokenError,
    TokenKey,
    TokenStoreError,
)
from oauthsmtp._oauth import endpoint
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._tokens.manager import TokenManager
from oauthsmtp._tokens.token import AuthToken
from oauthsmtp.devserver import AuthServer, headless_login

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

ROOT = Path(__file__).resolve().parent.parent
ACCOUNT = "race@example.test"
RACE_SECONDS = 60.0
RACERS = 4

_RACER = textwrap.dedent(
    """
    import json, sys, time
    from pathlib import Path
    import oauthsmtp
    from oauthsmtp import OAuth2Parameters, RedisStore

    args = json.loads(sys.argv[1])
    params = OAuth2Parameters(**args["params"])
    stop = Path(args["stop"])
    store = RedisStore(args["url"], lease=0.3, lock_timeout=30)
    token = None
    reads = errors = 0
    dead = None
    while not stop.exists():
        try:
            if token is None:  # the first read is a refresh too, and may be told to retry
                token = oauthsmtp.auth_identify(params, account=args["account"], store=store,
                                                interactive=False)
            token.access_token  # due at once: refreshes, or takes another racer's refresh
            reads += 1
        except oauthsmtp.LoginRequired as exc:
            dead = str(exc)
            break
        except oauthsmtp.OAuthSMTPError as exc:  # a refused save after a lapse, a timeout
            errors += 1
    print(json.dumps({"reads": reads, "errors": errors, "dead": dead}))
    """
)


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    # 60 s: within the client's 60 s leeway from the start, so every read refreshes.
    with AuthServer(
        mode="auto", user=ACCOUNT, rotate_refresh_tokens=True, access_token_lifetime=60
    ) as server:
        yield server


@pytest.mark.timeout(RACE_SECONDS + 120)
def test_four_racers_with_lapsing_leases_lose_no_login(
    auth_server: AuthServer, redis_server: RedisServer, tmp_path: Path
) -> None:
    params = auth_server.parameters(
        auth_server.register_client(public=True), redirect_url="http://127.0.0.1:0/callback"
    )
    store = RedisStore(redis_server.url)
    headless_login(params, account=ACCOUNT, store=store, timeout=30)
    before = auth_server.token_requests
    stop = tmp_path / "stop"
    arg = {
        "params": {
            "client_id": params.client_id,
            "auth_url": params.auth_url,
            "token_url": params.token_url,
            "redirect_url": params.redirect_url,
            "issuer": params.issuer,
            "scope": list(params.scopes),
        },
        "account": ACCOUNT,
        "url": redis_server.url,
        "stop": str(stop),
    }
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    pauses = 0
    rand = random.Random(15)  # noqa: S311 - which racer to pause, not a secret
    # Each racer's stderr goes to a file (a pipe nobody reads could fill and stop it).
    logs = [(tmp_path / f"racer-{n}.log").open("wb") for n in range(RACERS)]
    with contextlib.ExitStack() as running:
        racers = [
            running.enter_context(
                spawned(
                    [sys.executable, "-c", _RACER, json.dumps(arg)],
                    env=env,
                    stdout=subprocess.PIPE,
                    stderr=log,
                )
            )
            for log in logs
        ]
        end = time.monotonic() + RACE_SECONDS
        while time.monotonic() < end:
            victim = rand.choice(racers)
            victim.send_signal(signal.SIGSTOP)
            time.sleep(0.7)  # more than two leases: a lease it held lapses meanwhile
            victim.send_signal(signal.SIGCONT)
            pauses += 1
            time.sleep(rand.uniform(0.1, 0.5))
        stop.touch()
        outputs = [p.communicate(timeout=60)[0] for p in racers]
    for n, (log, out) in enumerate(zip(logs, outputs, strict=True)):
        log.close()
        err = Path(log.name).read_text(errors="replace")
        assert out.strip(), f"racer {n} ended without its report: {err[-2000:]}"
    reports = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    refreshes = auth_server.token_requests - before
    print(f"\nrace: {pauses} pauses, {refreshes} token requests, reports {reports}")
    assert [r["dead"] for r in reports] == [None] * RACERS
    assert all(r["reads"] > 0 for r in reports)
    assert refreshes > 100  # the racers did race
    raw = store.load(TokenKey(params.token_url, params.client_id, ACCOUNT))
    assert raw is not None
    stored = AuthToken.from_json(raw).state
    again = endpoint.refresh(OAuth2Parameters(**arg["params"]), stored)  # still alive
    assert auth_server.validate_access_token(again.access_token) is not None


# ---------------------------------------------------------------------------
# the same, step by step: a refresh interrupted by a lapsed lease
# ---------------------------------------------------------------------------


def _logged_in(
    auth_server: AuthServer, redis_server: RedisServer, lease: float
) -> tuple[OAuth2Parameters, RedisStore, TokenKey, TokenState]:
    params = auth_server.parameters(
        auth_server.register_client(public=True), redirect_url="http://127.0.0.1:0/callback"
    )
    store = RedisStore(redis_server.url, lease=lease, lock_timeout=10)
    headless_login(params, account=ACCOUNT, store=store, timeout=30)
    key = TokenKey(params.token_url, params.client_id, ACCOUNT)
    raw = store.load(key)
    assert raw is not None
    return params, store, key, AuthToken.from_json(raw).state


def test_a_refresh_interrupted_by_a_lapsed_lease_is_saved_later(
    auth_server: AuthServer, redis_server: RedisServer
) -> None:
    """A rotates the refresh token and loses its lease before saving; B's refresh with the
    old one is refused: 'try again', not a dead login; A then saves, and the login lives."""
    params, store_a, key, held = _logged_in(auth_server, redis_server, lease=5.0)
    store_b = RedisStore(redis_server.url, lease=5.0, lock_timeout=10)
    manager_b = TokenManager(params, store_b, key)
    seen: dict[str, object] = {}

    def rotate_then_lose_the_lease(p: OAuth2Parameters, state: TokenState) -> TokenState:
        answer = endpoint.refresh(p, state)  # the provider rotated: the old one is dead
        store_a.redis.delete(store_a.lease_key(key))  # A's lease lapses (paused, say)
        with pytest.raises(TokenError, match="try again shortly") as info:
            manager_b(held)  # B takes the lock and refreshes with the old refresh token
        seen["b"] = info.value
        assert store_b.load(key) is not None  # not deleted
        return answer

    manager_a = TokenManager(params, store_a, key, refresh=rotate_then_lose_the_lease)
    new = manager_a(held)
    assert "b" in seen
    assert manager_a.save_pending  # its own save was fenced off
    manager_a.retry_save()  # the store still holds what it replaced: saved now
    assert not manager_a.save_pending
    raw = store_a.load(key)
    assert raw is not None
    assert AuthToken.from_json(raw).state.refresh_token == new.refresh_token
    assert endpoint.refresh(params, AuthToken.from_json(raw).state).access_token


def test_a_holder_whose_lease_lapsed_sends_no_refresh(
    auth_server: AuthServer, redis_server: RedisServer
) -> None:
    params, store, key, held = _logged_in(auth_server, redis_server, lease=5.0)
    sent: list[str] = []

    def lose_the_lease_first(p: OAuth2Parameters, state: TokenState) -> TokenState:
        sent.append("refresh")
        return endpoint.refresh(p, state)

    manager = TokenManager(params, store, key, refresh=lose_the_lease_first)
    with store.lock(key):
        store.redis.delete(store.lease_key(key))
        with pytest.raises(TokenStoreError, match="lease on it lapsed"):
            store.begin_refresh(key, store.load(key))
    before = auth_server.token_requests
    manager(held)  # a fresh lease: refreshes normally
    assert sent == ["refresh"]
    assert auth_server.token_requests - before == 1


def test_a_login_whose_rotated_token_died_with_its_worker_ends_after_the_note_lapses(
    auth_server: AuthServer, redis_server: RedisServer
) -> None:
    """The worker that got the new refresh token never comes back: once its note lapsed
    (10 leases), the refused refresh token ends the login, as it must."""
    params, store, key, held = _logged_in(auth_server, redis_server, lease=0.1)
    with store.lock(key):
        store.begin_refresh(key, store.load(key))
        endpoint.refresh(params, held)  # rotated; the new token is "lost with the worker"
    manager = TokenManager(params, RedisStore(redis_server.url, lease=0.1), key)
    with pytest.raises(TokenError, match="try again shortly"):
        manager(held)
    deadline = time.monotonic() + 10
    while store.redis.keys("oauthsmtp:refreshing:*") and time.monotonic() < deadline:
        time.sleep(0.05)
    with pytest.raises(LoginRequired):
        manager(held)
    assert store.load(key) is None
