"""A real browser end to end: headless Debian Chromium, driven by Playwright, clicks Approve.

auth_identify produces the authorization URL (recorded by the stand-in BROWSER
command); Chromium opens it, the test clicks "Approve" on the development
provider's consent page, Chromium follows the redirect to the loopback
listener, and the test checks the token, the success page Chromium shows, and
that a message sent with that token arrives. On CI a missing browser fails.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from components import require
from conftest import FakeBrowser

import oauthsmtp
from oauthsmtp import MemoryStore
from oauthsmtp.devserver import AuthServer
from oauthsmtp.devserver._certs import make_certificates
from oauthsmtp.devserver._smtpserver import SMTPServer

CHROMIUM = shutil.which("chromium") or "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


@pytest.fixture
def chromium(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    require(os.path.exists(CHROMIUM), "Debian's chromium", "apt-get install chromium")
    require(
        importlib.util.find_spec("playwright") is not None,
        "playwright",
        "pip install -e '.[test]'",
    )
    import playwright.sync_api as sync_api

    home = tmp_path / "chromium-home"
    for name, sub in (("HOME", ""), ("XDG_CONFIG_HOME", "config"), ("XDG_CACHE_HOME", "cache")):
        (home / sub).mkdir(parents=True, exist_ok=True)
        monkeypatch.setenv(name, str(home / sub))
    with sync_api.sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
        try:
            yield browser
        finally:
            browser.close()


def test_real_browser_login_and_send(
    chromium: Any, fake_browser: FakeBrowser, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    """Chromium approves on the consent page; the token works for SMTP."""
    monkeypatch.setenv("FAKE_BROWSER_MODE", "record")  # only record the URL; Chromium opens it
    certs = make_certificates(tmp_path / "certs")
    with (
        AuthServer(mode="consent", user="user@example.test") as auth,
        SMTPServer(auth.validate_access_token, certificates=certs) as smtp,
    ):
        params = auth.parameters(auth.register_client(), redirect_url="http://127.0.0.1:0/callback")
        result: list[Any] = []

        def login() -> None:
            try:
                result.append(oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=60))
            except BaseException as exc:
                result.append(exc)

        thread = threading.Thread(target=login)
        thread.start()
        url = fake_browser.result()["opened"]
        page = chromium.new_page()
        page.goto(url)
        assert "Approve" in page.content()
        page.fill("#email", "browser-user@example.test")
        page.click("#approve")
        page.wait_for_selector("#result", timeout=30_000)
        success = page.text_content("#result")
        page_html = page.content()
        page.close()
        thread.join(60)
        token = result[0]
        assert isinstance(token, oauthsmtp.AuthToken), token
        assert success == "Login complete"
        assert "saved the token" in page_html
        info = auth.validate_access_token(token.access_token)
        assert info is not None
        assert info.user == "browser-user@example.test"

        with oauthsmtp.SMTPSession(
            "127.0.0.1",
            port=smtp.port,
            username="browser-user@example.test",
            auth_token=token,
            ssl_context=certs.client_context(),
        ) as session:
            sent = session.send(
                oauthsmtp.Email(
                    sender="browser-user@example.test",
                    to=["friend@example.test"],
                    subject="approved in Chromium",
                    text="hello",
                )
            )
        assert sent.ok
        assert smtp.wait_for_messages(1)[0].subject == "approved in Chromium"
