"""Refresh requests when several callers find the cached token expired at the same moment.

Each row starts from a fresh login (its own refresh-token family), marks the cached access
token expired, lets N callers ask for a token at once (threads behind a barrier, or
processes waiting for a "go" file after their imports), and counts the requests that
reached the authorization server's token endpoint. The server rotates refresh tokens, as
Microsoft does: a second refresh with the same refresh token is refused (invalid_grant).

* oauthsmtp: every caller calls ``auth_identify(..., interactive=False)`` on one shared
  ``FileStore`` (threads) or on one store folder (processes).
* authlib: one ``OAuth2Session`` with ``update_token`` shared by the threads, each calling
  ``ensure_active_token()``; or one session per process on a token file.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import threading
import time
from collections import Counter
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

from clients import Stopwatch
from harness import BENCH, PYTHON, Helper, Table, ms, progress

import oauthsmtp
from oauthsmtp import TokenKey
from oauthsmtp.devserver import headless_login


@dataclass
class Outcome:
    """What N callers did: token requests seen by the server, tokens they ended up with."""

    requests: int
    working: int  # callers that got a token
    failed: int  # callers whose refresh was refused or failed
    distinct: int  # distinct access tokens handed out
    elapsed: float
    errors: list[str] = field(default_factory=list)  # what the failed callers raised


def parameters(info: dict[str, Any]) -> oauthsmtp.OAuth2Parameters:
    """The OAuth2 client the server process registered."""
    return oauthsmtp.OAuth2Parameters(**info["params"])


def expire_cached(store: oauthsmtp.TokenStore, key: TokenKey) -> None:
    """Make the stored access token look expired (the refresh token stays as it is)."""
    raw = store.load(key)
    if raw is None:
        raise RuntimeError("no cached token to expire")
    state = oauthsmtp.AuthToken.from_json(raw).state
    past = datetime.now(timezone.utc) - timedelta(seconds=5)
    store.save(key, oauthsmtp.AuthToken(replace(state, expires_at=past)).to_json())


def _logged_in_store(info: dict[str, Any], folder: Path) -> tuple[oauthsmtp.FileStore, TokenKey]:
    params = parameters(info)
    store = oauthsmtp.FileStore(folder / "tokens")
    headless_login(params, account=info["account"], store=store)
    key = TokenKey(params.token_url, params.client_id, info["account"])
    expire_cached(store, key)
    return store, key


def _describe(exc: Exception) -> str:
    """The exception's type and first words (an OAuth error code, never a token)."""
    return f"{type(exc).__name__}: {str(exc)[:60]}".rstrip(": ")


def _in_threads(count: int, get: Any) -> tuple[list[str], list[str], float]:
    """Call ``get()`` in ``count`` threads released together; (tokens, errors, seconds)."""
    barrier = threading.Barrier(count)
    tokens: list[str] = []
    failures: list[str] = []

    def caller() -> None:
        barrier.wait()
        try:
            tokens.append(get())
        except Exception as exc:  # counted, not raised: a refused refresh is a result
            failures.append(_describe(exc))

    threads = [threading.Thread(target=caller) for _ in range(count)]
    with Stopwatch() as clock:
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
    return tokens, failures, clock.wall


def oauthsmtp_threads(servers: Helper, count: int) -> Outcome:
    """``count`` threads, each calling ``auth_identify`` on one shared FileStore."""
    info = servers.info
    params = parameters(info)
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-bench-") as folder:
        store, _ = _logged_in_store(info, Path(folder))

        def get() -> str:
            token = oauthsmtp.auth_identify(
                params, account=info["account"], store=store, interactive=False
            )
            return token.access_token

        before = servers.ask("stats")["token_requests"]
        tokens, errors, elapsed = _in_threads(count, get)
        requests = servers.ask("stats")["token_requests"] - before
    return Outcome(requests, len(tokens), len(errors), len(set(tokens)), elapsed, errors)


def _authlib_token(info: dict[str, Any]) -> dict[str, Any]:
    """A fresh login, as the dict an authlib session holds, already expired."""
    token = headless_login(parameters(info), account=info["account"])
    return {
        "access_token": token.state.access_token,
        "refresh_token": token.state.refresh_token,
        "token_type": "Bearer",
        "expires_at": int(time.time()) - 5,
    }


def authlib_threads(servers: Helper, count: int) -> Outcome:
    """``count`` threads sharing one authlib OAuth2Session, each ``ensure_active_token()``."""
    from authlib.integrations.requests_client import OAuth2Session

    params = servers.info["params"]
    session = OAuth2Session(
        client_id=params["client_id"],
        client_secret=params["client_secret"],
        token_endpoint=params["token_url"],
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        token=_authlib_token(servers.info),
        update_token=lambda token, **_: None,  # where an application would save it
    )

    def get() -> str:
        session.ensure_active_token()
        return str(session.token["access_token"])

    before = servers.ask("stats")["token_requests"]
    tokens, errors, elapsed = _in_threads(count, get)
    requests = servers.ask("stats")["token_requests"] - before
    session.close()
    return Outcome(requests, len(tokens), len(errors), len(set(tokens)), elapsed, errors)


def _in_processes(count: int, mode: str, config: dict[str, Any], folder: Path) -> Outcome:
    """Start ``count`` workers, release them together, collect their answers."""
    config = {**config, "go": str(folder / "go")}
    config_path = folder / "config.json"
    config_path.write_text(json.dumps(config))
    workers = [
        subprocess.Popen(  # noqa: S603 - our own worker script
            [PYTHON, str(BENCH / "refresh_worker.py"), mode, str(config_path)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(count)
    ]
    for worker in workers:
        assert worker.stdout is not None  # noqa: S101 - stdout=PIPE
        if worker.stdout.readline().strip() != "ready":
            raise RuntimeError(f"a {mode} refresh worker did not start")
    with Stopwatch() as clock:
        (folder / "go").touch()
        answers = [json.loads(worker.communicate(timeout=60)[0]) for worker in workers]
    tokens = [a["token"] for a in answers if a["ok"]]
    errors = [a["error"] for a in answers if not a["ok"]]
    return Outcome(0, len(tokens), len(errors), len(set(tokens)), clock.wall, errors)


def oauthsmtp_processes(servers: Helper, count: int) -> Outcome:
    """``count`` processes calling ``auth_identify`` on one FileStore folder."""
    info = servers.info
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-bench-") as raw:
        folder = Path(raw)
        store, _ = _logged_in_store(info, folder)
        config = {
            "params": info["params"],
            "account": info["account"],
            "store": str(store.directory),
        }
        before = servers.ask("stats")["token_requests"]
        outcome = _in_processes(count, "oauthsmtp", config, folder)
        outcome.requests = servers.ask("stats")["token_requests"] - before
    return outcome


def authlib_processes(servers: Helper, count: int) -> Outcome:
    """``count`` processes, each with an authlib OAuth2Session on one token file."""
    info = servers.info
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-bench-") as raw:
        folder = Path(raw)
        token_file = folder / "token.json"
        token_file.write_text(json.dumps(_authlib_token(info)))
        config = {"params": info["params"], "token_file": str(token_file)}
        before = servers.ask("stats")["token_requests"]
        outcome = _in_processes(count, "authlib", config, folder)
        outcome.requests = servers.ask("stats")["token_requests"] - before
    return outcome


def _single_flight(outcome: Outcome, callers: int) -> str:
    """pass: one request, and every caller got the same, working token."""
    ok = outcome.requests == 1 and outcome.working == callers and outcome.distinct == 1
    return "pass" if ok else "FAIL"


def refresh_table(servers: Helper) -> Table:
    """The four rows: oauthsmtp and authlib, 8 threads and 4 processes."""
    table = Table(
        "Refresh requests: one expired cached token, many callers at once",
        [
            "callers",
            "client",
            "token requests",
            "callers with a token",
            "refused / failed",
            "distinct tokens",
            "time (ms)",
            "target",
            "result",
        ],
        intro=(
            "The authorization server rotates refresh tokens (as Microsoft does), so a "
            "refresh token used twice is refused with invalid_grant."
        ),
    )
    ours, shared = "oauthsmtp auth_identify, one FileStore", "authlib OAuth2Session (shared)"
    rows = [
        ("8 threads", ours, oauthsmtp_threads, 8, True),
        ("4 processes", ours, oauthsmtp_processes, 4, True),
        ("8 threads", f"{shared}, ensure_active_token", authlib_threads, 8, False),
        (
            "4 processes",
            "authlib OAuth2Session per process, token file",
            authlib_processes,
            4,
            False,
        ),
    ]
    for callers, client, scenario, count, single_flight in rows:
        outcome = scenario(servers, count)
        progress(f"{client}, {callers}: {outcome.requests} token requests")
        table.add(
            callers,
            client,
            outcome.requests,
            f"{outcome.working} of {count}",
            outcome.failed,
            outcome.distinct,
            ms(outcome.elapsed),
            "= 1" if single_flight else "",
            _single_flight(outcome, count) if single_flight else "",
        )
        for error, times in Counter(outcome.errors).items():
            table.note(f"{client}, {callers}: {times} caller(s) raised `{error}`.")
        if single_flight:
            table.check(
                f"refresh requests, {callers}",
                "1 request",
                f"{outcome.requests} request(s), {outcome.working}/{count} callers served",
                _single_flight(outcome, count),
            )
    table.note(
        "google-auth is not installed here; the issue reports 8 requests for 8 threads, "
        "like authlib."
    )
    return table
