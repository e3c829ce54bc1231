"""AuthToken.refresh_expires_at: when the refresh token itself lapses, where knowable.

Parsed from ``refresh_token_expires_in`` (liberally: junk counts as absent), kept across a
refresh that keeps the refresh token, stored with the token (old stored tokens still load),
and forecast by ``oauthsmtp status``, which warns within three days.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from cli_support import ACCOUNT, make_home, run
from conftest import FakeBrowser

import oauthsmtp
from oauthsmtp import AuthToken, FileStore, MemoryStore
from oauthsmtp._accounts import AccountRegistry
from oauthsmtp._oauth.tokenresponse import (
    MAX_EXPIRES_IN,
    parse_token_response,
    refresh_lifetime,
)
from oauthsmtp.devserver import AuthServer

NOW = datetime(2026, 1, 1, tzinfo=timezone.utc)
WEEK = 604799  # what Google sends for an app in Testing status
BASE = {"access_token": "at", "token_type": "Bearer", "expires_in": 3599, "refresh_token": "rt"}


def parse(body: dict[str, Any], **kwargs: Any) -> Any:
    return parse_token_response(
        200, "application/json", json.dumps(body).encode(), now=NOW, **kwargs
    )


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        (WEEK, NOW + timedelta(seconds=WEEK)),
        (str(WEEK), NOW + timedelta(seconds=WEEK)),
        (" 86400 ", NOW + timedelta(days=1)),
        (86400.5, NOW + timedelta(seconds=86400.5)),
        (-5, NOW),
        (None, None),
        ("soon", None),
        ("²", None),
        (True, None),
        ([WEEK], None),
        ({"s": 1}, None),
        ("", None),
    ],
    ids=repr,
)
def test_refresh_token_expires_in_is_read_liberally(value: Any, expected: Any) -> None:
    """Numbers and digit strings are read; anything else means 'not known', never a refusal."""
    body = dict(BASE) if value is None else {**BASE, "refresh_token_expires_in": value}
    assert parse(body).refresh_expires_at == expected


def test_nan_counts_as_absent() -> None:
    """A NaN (which the JSON loader refuses anyway) is not a lifetime either."""
    assert refresh_lifetime(float("nan")) is None
    assert refresh_lifetime(float("inf")) == timedelta(seconds=MAX_EXPIRES_IN)


def test_kept_refresh_token_keeps_its_lapse_time() -> None:
    """A refresh answer without a refresh token keeps the old one and its lapse time."""
    before = NOW + timedelta(days=2)
    no_rt = {k: v for k, v in BASE.items() if k != "refresh_token"}
    kept = parse(no_rt, previous_refresh_token="old", previous_refresh_expires_at=before)
    assert (kept.refresh_token, kept.refresh_expires_at) == ("old", before)
    told = parse(
        {**no_rt, "refresh_token_expires_in": 60},
        previous_refresh_token="old",
        previous_refresh_expires_at=before,
    )
    assert told.refresh_expires_at == NOW + timedelta(seconds=60)
    rotated = parse(BASE, previous_refresh_token="old", previous_refresh_expires_at=before)
    assert rotated.refresh_expires_at is None  # a new refresh token, nothing said about it
    assert parse({**no_rt, "refresh_token_expires_in": 60}).refresh_expires_at is None


def test_stored_with_the_token_and_old_tokens_still_load() -> None:
    """to_json/from_json carry it; a token stored before it existed loads with None."""
    state = parse({**BASE, "refresh_token_expires_in": WEEK})
    again = AuthToken.from_json(AuthToken(state).to_json())
    assert again.refresh_expires_at == NOW + timedelta(seconds=WEEK)
    old = json.loads(AuthToken(parse(BASE)).to_json())
    assert "refresh_expires_at" not in old
    assert AuthToken.from_json(json.dumps(old)).refresh_expires_at is None
    for bad in ("0001-01-01T00:00:00+00:00", "soon", 5, "2026-01-01T00:00:00"):
        with pytest.raises(ValueError, match="not a serialized AuthToken"):
            AuthToken.from_json(json.dumps({**old, "refresh_expires_at": bad}))


@pytest.fixture
def server() -> Iterator[AuthServer]:
    with AuthServer(mode="auto", user=ACCOUNT, refresh_token_lifetime=WEEK) as srv:
        yield srv


def test_login_and_refresh_against_a_server_that_says(
    server: AuthServer, fake_browser: FakeBrowser
) -> None:
    """A real login: the lapse time is known, stored, and renewed with a rotated token."""
    params = server.parameters(server.register_client(), redirect_url="http://127.0.0.1:0/cb")
    store = MemoryStore()
    token = oauthsmtp.auth_identify(params, account=ACCOUNT, store=store, timeout=20)
    first = token.refresh_expires_at
    assert first is not None
    left = first - datetime.now(timezone.utc)
    assert timedelta(days=6, hours=23) < left <= timedelta(seconds=WEEK)
    token.refresh()
    assert token.refresh_expires_at is not None
    assert token.refresh_expires_at >= first
    key = oauthsmtp.TokenKey(params.token_url, params.client_id, ACCOUNT)
    raw = store.load(key)
    assert raw is not None
    assert AuthToken.from_json(raw).refresh_expires_at == token.refresh_expires_at


def store_lapse(home: Path, lapses_at: datetime | None) -> None:
    settings = AccountRegistry(home).get(ACCOUNT)
    assert settings is not None
    files = FileStore(home / "tokens")
    raw = files.load(settings.token_key)
    assert raw is not None
    data = json.loads(raw)
    data.pop("refresh_expires_at", None)
    if lapses_at is not None:
        data["refresh_expires_at"] = lapses_at.isoformat()
    files.save(settings.token_key, json.dumps(data))


@pytest.mark.parametrize(
    ("days", "shown", "warned"),
    [(None, False, False), (10, True, False), (2, True, True), (-1, True, True)],
    ids=["unknown", "in-10-days", "in-2-days", "lapsed"],
)
def test_status_forecasts_and_warns_within_three_days(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    days: int | None,
    shown: bool,
    warned: bool,
) -> None:
    """status shows the lapse time when known and warns when it is within 3 days."""
    home = make_home(tmp_path, monkeypatch)
    lapses = None if days is None else datetime.now(timezone.utc) + timedelta(days=days)
    store_lapse(home, lapses)
    code, out, _ = run(capsys, "status", "--account", ACCOUNT)
    assert code == 0
    assert ("refresh token lapse" in out) is shown
    assert ("WARNING" in out or "lapsed at" in out) is warned
    if warned:
        assert f"oauthsmtp login --account {ACCOUNT}" in out
    code, out, _ = run(capsys, "status", "--account", ACCOUNT, "--json")
    row = json.loads(out)["accounts"][0]
    assert (row["refresh_expires_at"] is not None) is shown
    assert "RT-secret" not in out
