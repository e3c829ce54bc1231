"""Shared fixtures: the development authorization server and a stand-in browser.

Helpers shared by the tests live in plain modules beside this one (import them by name):
``components`` (a test that needs gnome-keyring, chromium, msmtp, ... calls ``require`` or
``require_program``: skipped with the install hint locally, failed on CI; ``spawned`` runs a
child process that is gone, within a bound, when the block ends; ``Lines`` waits for a
child's output with a timeout), ``scripted_http``, ``hostile_smtp``, ``secret_service``.
Every wait in a test is bounded, and pyproject.toml gives each test a deadline besides.
"""

from __future__ import annotations

import json
import sys
import time
import webbrowser
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from scripted_http import ScriptedServer

from oauthsmtp.devserver import AuthServer

HERE = Path(__file__).parent

# A real Secret Service (gnome-keyring on a private D-Bus) for keyring tests.
pytest_plugins = ["secret_service", "smtp_fixtures"]


class FakeBrowser:
    """What the stand-in browser (tests/fake_browser.py) did, read from its log file."""

    def __init__(self, log: Path) -> None:
        self.log = log

    @property
    def opened(self) -> bool:
        return self.log.exists()

    def result(self, timeout: float = 15.0) -> dict[str, Any]:
        end = time.monotonic() + timeout
        while time.monotonic() < end:
            if self.log.exists():
                data: dict[str, Any] = json.loads(self.log.read_text())
                return data
            time.sleep(0.02)
        raise AssertionError("the fake browser recorded nothing")

    def reset(self) -> None:
        """Wait for the current visit to be recorded, then forget it."""
        self.result()
        self.log.unlink()


@pytest.fixture
def fake_browser(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> FakeBrowser:
    """Point BROWSER at tests/fake_browser.py (webbrowser re-reads it for this test)."""
    log = tmp_path / "browser.json"
    monkeypatch.setenv("BROWSER", f"{sys.executable} {HERE / 'fake_browser.py'} %s")
    monkeypatch.setenv("FAKE_BROWSER_LOG", str(log))
    monkeypatch.setenv("FAKE_BROWSER_MODE", "follow")
    monkeypatch.setattr(webbrowser, "_tryorder", None)
    monkeypatch.setattr(webbrowser, "_browsers", {})
    return FakeBrowser(log)


@pytest.fixture
def scripted() -> Iterator[ScriptedServer]:
    """An HTTP server on loopback that answers scripted replies (tests/scripted_http.py)."""
    server = ScriptedServer().start()
    try:
        yield server
    finally:
        server.stop()


@pytest.fixture
def auth_server() -> Iterator[AuthServer]:
    """A running development authorization server that approves automatically."""
    with AuthServer(mode="auto", user="user@example.test") as server:
        yield server
