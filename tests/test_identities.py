"""Logins beyond the loopback browser: device code (RFC 8628), paste-back, imported refresh
tokens, and the identity check on each, end to end against the development provider.

The device flow polls with the real clock: the tests shrink the dev provider's interval (a
server-side setting) rather than the client's sleep. One test pays the real 5 s of a
slow_down, to show the client really waits it.
"""

from __future__ import annotations

import html
import re
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
import requests
from scripted_http import ScriptedServer

import oauthsmtp
from oauthsmtp import (
    AccessDenied,
    AccountMismatch,
    AuthorizationError,
    AuthorizationTimeout,
    CallbackError,
    ConfigurationError,
    LoginRequired,
    MemoryStore,
    OAuth2Parameters,
    TokenKey,
    auth_identify,
    import_token,
)
from oauthsmtp._oauth.authz import build_request
from oauthsmtp._oauth.device import (
    DEFAULT_INTERVAL,
    device_login,
    next_interval,
    parse_device_authorization,
)
from oauthsmtp._oauth.paste import judge_pasted, paste_redirect_uri
from oauthsmtp._oauth.tokenresponse import token_identity
from oauthsmtp.devserver import DevProvider
from oauthsmtp.devserver._certs import CertificateSet

ME = "me@example.test"
OIDC = ("openid", "email", "offline_access")


@pytest.fixture
def provider(certs: CertificateSet) -> Iterator[DevProvider]:
    with DevProvider(certificates=certs, user=ME) as running:
        running.auth.device_interval = 0.05  # the server's setting: tests need not wait 5 s
        yield running


def oidc_params(provider: DevProvider, **overrides: object) -> OAuth2Parameters:
    return provider.parameters(scope=[provider.auth.scope, *OIDC], **overrides)


def stored(store: MemoryStore, params: OAuth2Parameters, account: str) -> str | None:
    return store.load(TokenKey(params.token_url, params.client_id, account))


def send_one(provider: DevProvider, token: oauthsmtp.AuthToken, subject: str) -> None:
    with provider.session(auth_token=token) as session:
        result = session.send(
            oauthsmtp.Email(sender=ME, to=["you@example.test"], subject=subject, text="hello")
        )
    assert result.ok
    assert provider.wait_for_messages(1)[-1].subject == subject


def visit_later(url_pattern: str, action: Callable[[str], None]) -> Callable[[str], None]:
    """An ``on_prompt`` that, like a user on another device, acts on the printed URL."""

    def on_prompt(text: str) -> None:
        match = re.search(url_pattern, text)
        assert match, text
        threading.Thread(target=action, args=(match.group(1),), daemon=True).start()

    return on_prompt


COMPLETE_URL = r"(http://\S+/device\?user_code=\S+)"


# --------------------------------------------------------------------------- device flow


def test_device_login_end_to_end(provider: DevProvider) -> None:
    """Prompt with the code and the complete URI, poll until the page is visited, save, send,
    and later calls find the token without a login; refreshes go through the same store."""
    params = oidc_params(provider)
    store = MemoryStore()
    prompts: list[str] = []

    def approve(url: str) -> None:
        time.sleep(0.3)  # a few polls see authorization_pending first
        assert requests.get(url, timeout=10).status_code == 200

    def on_prompt(text: str) -> None:
        prompts.append(text)
        visit_later(COMPLETE_URL, approve)(text)

    token = auth_identify(params, account=ME, store=store, flow="device", on_prompt=on_prompt)
    (text,) = prompts
    assert provider.auth.verification_uri in text
    assert "enter the code" in text
    assert "valid for" in text
    assert token.refresh_token
    assert token_identity(token.server_response, client_id=params.client_id) == (ME,)
    assert stored(store, params, ME) is not None
    send_one(provider, token, "device login")

    polls = provider.auth.token_requests
    again = auth_identify(params, account=ME, store=store, interactive=False)
    assert again.access_token == token.access_token
    provider.auth.expire_access_tokens()
    again.refresh()  # the single-flight path, through the store
    assert provider.auth.token_requests == polls + 1
    send_one(provider, again, "after refresh")


def test_device_login_consent_page_and_account_mismatch(provider: DevProvider) -> None:
    """On the verification page the user types the code and who they are; approving as
    another account is AccountMismatch and nothing is saved."""
    provider.mode = "consent"
    params = oidc_params(provider)

    def fill_in(as_user: str) -> Callable[[str], None]:
        def act(text: str) -> None:
            code = re.search(r"enter the code: (\S+)", text)
            assert code
            page = requests.get(provider.auth.verification_uri, timeout=10)
            assert page.status_code == 200
            assert "no-referrer" in page.text
            csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text)
            assert csrf
            answer = requests.post(
                provider.auth.verification_uri,
                data={
                    "csrf_token": html.unescape(csrf.group(1)),
                    "user_code": code.group(1).lower().replace("-", ""),  # as typed
                    "email": as_user,
                    "decision": "approve",
                },
                timeout=10,
            )
            assert answer.status_code == 200, answer.text
            assert "Approved" in answer.text

        return lambda text: threading.Thread(target=act, args=(text,), daemon=True).start()

    store = MemoryStore()
    with pytest.raises(AccountMismatch) as caught:
        auth_identify(params, account=ME, store=store, flow="device", on_prompt=fill_in("x@y.test"))
    assert caught.value.actual == "x@y.test"
    assert stored(store, params, ME) is None
    token = auth_identify(params, account=ME, store=store, flow="device", on_prompt=fill_in(ME))
    assert stored(store, params, ME) is not None
    send_one(provider, token, "consented on the device page")


def test_device_login_denied(provider: DevProvider) -> None:
    """access_denied on the page stops the polling with AccessDenied; nothing is saved."""
    provider.mode = "deny"
    store = MemoryStore()
    params = oidc_params(provider)
    on_prompt = visit_later(COMPLETE_URL, lambda url: requests.get(url, timeout=10))
    with pytest.raises(AccessDenied, match="refused on the verification page"):
        auth_identify(params, account=ME, store=store, flow="device", on_prompt=on_prompt)
    assert stored(store, params, ME) is None


def test_device_login_stops_when_the_code_expires(provider: DevProvider) -> None:
    """Nobody approves: the login ends at the code's expires_in, with a bounded number of
    polls, never forever."""
    provider.auth.device_code_lifetime = 1
    provider.auth.device_interval = 0.2
    store = MemoryStore()
    started = time.monotonic()
    with pytest.raises(AuthorizationTimeout, match="not approved in time"):
        auth_identify(
            oidc_params(provider), account=ME, store=store, flow="device", on_prompt=print
        )
    assert time.monotonic() - started < 5
    assert 1 <= provider.auth.token_requests <= 5


def test_device_login_bounded_by_timeout(provider: DevProvider) -> None:
    """timeout= bounds the login even when the code lives longer."""
    provider.auth.device_interval = 0.2
    started = time.monotonic()
    with pytest.raises(AuthorizationTimeout):
        auth_identify(
            oidc_params(provider),
            account=ME,
            store=MemoryStore(),
            flow="device",
            on_prompt=print,
            timeout=1,
        )
    assert time.monotonic() - started < 5


def test_device_login_slow_down_adds_five_seconds(provider: DevProvider) -> None:
    """slow_down: the client waits 5 s more for that and every later poll (RFC 8628 §3.5).

    The server hands out a 0.05 s interval, then raises its setting to 1 s: the client's
    first poll comes too soon and gets slow_down; its next poll comes 5.05 s later (not
    sooner, else the server would say slow_down again), and succeeds. This test really
    waits those 5 seconds."""

    def on_prompt(text: str) -> None:
        provider.auth.device_interval = 1.0

        def approve(url: str) -> None:
            time.sleep(1.0)
            requests.get(url, timeout=10)

        visit_later(COMPLETE_URL, approve)(text)

    before = provider.auth.token_requests
    started = time.monotonic()
    token = auth_identify(
        oidc_params(provider), account=ME, store=MemoryStore(), flow="device", on_prompt=on_prompt
    )
    elapsed = time.monotonic() - started
    assert token.valid
    assert provider.auth.token_requests - before == 2  # slow_down, then the tokens
    assert elapsed >= 5.05


def test_device_poll_schedule(scripted: ScriptedServer) -> None:
    """The schedule itself, against scripted answers: pending keeps the interval, every
    slow_down adds 5 s for all later polls, an interval of 0 means 5 s."""
    scripted.reply_json(
        {
            "device_code": "DEVICE-SECRET",
            "user_code": "ABCD-EFGH",
            "verification_uri": "https://login.example/device",
            "expires_in": 900,
            "interval": 0,
        }
    )
    pending = {"error": "authorization_pending"}
    slow = {"error": "slow_down"}
    for answer in (pending, slow, pending, slow, pending):
        scripted.reply_json(answer, status=400)
    scripted.reply_json({"access_token": "AT", "token_type": "Bearer", "expires_in": 60})
    params = OAuth2Parameters(
        client_id="cid",
        auth_url=scripted.url("/authorize"),
        token_url=scripted.url("/token"),
        device_authorization_url=scripted.url("/device"),
        scope="smtp",
    )
    waits: list[float] = []
    now = [0.0]

    def sleep(seconds: float) -> None:  # the schedule is checked, not the clock
        waits.append(seconds)
        now[0] += seconds

    state = device_login(params, timeout=300, on_prompt=lambda _: None, sleep=sleep,
                         clock=lambda: now[0])  # fmt: skip
    assert state.access_token == "AT"
    assert waits == [5, 5, 10, 10, 15, 15]
    polls = [seen for seen in scripted.seen if seen.path == "/token"]
    assert len(polls) == 6
    assert polls[0].form["grant_type"] == ["urn:ietf:params:oauth:grant-type:device_code"]
    assert polls[0].form["device_code"] == ["DEVICE-SECRET"]


def test_next_interval_decisions() -> None:
    assert next_interval("authorization_pending", 5) == 5
    assert next_interval("slow_down", 5) == 10
    with pytest.raises(AccessDenied):
        next_interval("access_denied", 5)
    with pytest.raises(AuthorizationTimeout, match="expired"):
        next_interval("expired_token", 5)
    with pytest.raises(AuthorizationError, match="invalid_client"):
        next_interval("invalid_client", 5)


GOOD = (
    b'{"device_code":"DEVCODE42","user_code":"U-1","verification_uri":"https://x.example/d",'
    b'"expires_in":900'
)


@pytest.mark.parametrize(
    ("interval", "expected"),
    [("", DEFAULT_INTERVAL), (',"interval":0', 5), (',"interval":-3', 5),
     (',"interval":"x"', 5), (',"interval":7', 7), (',"interval":1e999', 5)],
)  # fmt: skip
def test_device_interval_missing_zero_or_negative_means_five(
    interval: str, expected: float
) -> None:
    auth = parse_device_authorization(200, GOOD + interval.encode() + b"}")
    assert auth.interval == expected
    assert "DEVCODE42" not in repr(auth)  # the device code is secret


@pytest.mark.parametrize(
    ("status", "body", "message"),
    [
        (200, b"<html>captive portal</html>", "did not answer a JSON object"),
        (200, b"[1,2]", "did not answer a JSON object"),
        (500, b"", "did not answer a JSON object"),
        (200, b'{"user_code":"U","verification_uri":"https://x/d","expires_in":9}', "device_code"),
        (200, b'{"device_code":"D","verification_uri":"https://x/d","expires_in":9}', "user_code"),
        (200, b'{"device_code":"D","user_code":"U","expires_in":9}', "verification_uri"),
        (200, b'{"device_code":"D","user_code":"U","verification_uri":"http://evil.example/",'
              b'"expires_in":9}', "not an https URL"),
        (200, b'{"device_code":"D","user_code":"U","verification_uri":"https://x/d"}',
         "expires_in"),
        (200, b'{"device_code":"D","user_code":"U\\u001b[2J","verification_uri":"https://x/d",'
              b'"expires_in":9}', "user_code"),
        (400, b'{"error":"invalid_scope","error_description":"Invalid device flow scope"}',
         "Google refuses"),
    ],
)  # fmt: skip
def test_device_endpoint_garbage_is_a_clear_error(status: int, body: bytes, message: str) -> None:
    with pytest.raises(AuthorizationError, match=message):
        parse_device_authorization(status, body)


def test_device_endpoint_garbage_makes_no_token_request(scripted: ScriptedServer) -> None:
    scripted.reply(200, body="<html>hello</html>", Content_Type="text/html")
    params = OAuth2Parameters(
        client_id="cid",
        auth_url=scripted.url("/authorize"),
        token_url=scripted.url("/token"),
        device_authorization_url=scripted.url("/device"),
    )
    store = MemoryStore()
    with pytest.raises(AuthorizationError, match="JSON"):
        auth_identify(params, account=ME, store=store, flow="device", on_prompt=print)
    assert [seen.path for seen in scripted.seen] == ["/device"]
    assert stored(store, params, ME) is None


def test_gmail_refuses_the_device_flow() -> None:
    """Google rejects mail scopes in its device flow: refused before any request, naming
    why and what to use instead."""
    params = oauthsmtp.providers.gmail(client_id="id", client_secret="s")
    with pytest.raises(ConfigurationError) as caught:
        auth_identify(params, account="me@gmail.com", flow="device", store=MemoryStore())
    text = str(caught.value)
    assert "Google refuses the mail scope" in text
    assert 'flow="paste"' in text
    assert "import_token" in text
    assert "ssh -L" in text


def test_microsoft_preset_has_the_device_endpoint() -> None:
    params = oauthsmtp.providers.microsoft(client_id="id", tenant="organizations")
    assert params.device_authorization_url == (
        "https://login.microsoftonline.com/organizations/oauth2/v2.0/devicecode"
    )


def test_flow_must_be_known() -> None:
    params = oauthsmtp.providers.microsoft(client_id="id")
    with pytest.raises(ConfigurationError, match="flow must be one of"):
        auth_identify(params, flow="telepathy", store=MemoryStore())
    custom = OAuth2Parameters(client_id="c", auth_url="https://a.example/a",
                              token_url="https://a.example/t")  # fmt: skip
    with pytest.raises(ConfigurationError, match="no device_authorization_url"):
        auth_identify(custom, flow="device", store=MemoryStore())


# --------------------------------------------------------------------------- paste-back


def browser_ends_on(url: str) -> str:
    """What a browser's address bar shows after following the authorization URL."""
    answer = requests.get(url, allow_redirects=False, timeout=10)
    assert answer.status_code == 302, answer.text
    return answer.headers["Location"]


def read_pasted(
    capsys: pytest.CaptureFixture[str], change: Callable[[str], str] = lambda url: url
) -> Callable[[str], str]:
    def read_redirect(prompt: str) -> str:
        printed = capsys.readouterr().err
        match = re.search(r"^  (http://\S+/authorize\?\S+)$", printed, re.MULTILINE)
        assert match, printed
        return "  " + change(browser_ends_on(match.group(1))) + "\n"

    return read_redirect


def test_paste_login_end_to_end(provider: DevProvider, capsys: pytest.CaptureFixture[str]) -> None:
    """The authorization URL is printed, the pasted address is checked and exchanged, the
    token saved and usable; the redirect port needs no listener (port 0 becomes none)."""
    params = oidc_params(provider)
    store = MemoryStore()
    token = auth_identify(
        params, account=ME, store=store, flow="paste", read_redirect=read_pasted(capsys)
    )
    assert stored(store, params, ME) is not None
    assert token_identity(token.server_response, client_id=params.client_id) == (ME,)
    send_one(provider, token, "paste login")
    assert paste_redirect_uri(params) == "http://127.0.0.1/callback"


@pytest.mark.parametrize(
    ("change", "error", "message"),
    [
        (lambda url: re.sub(r"state=[^&]+", "state=forged", url), CallbackError, "wrong state"),
        (lambda url: re.sub(r"&?state=[^&]+", "", url), CallbackError, "missing or wrong state"),
        (lambda url: url.replace("127.0.0.1", "evil.example"), CallbackError, "not the redirect"),
        (lambda url: url.replace("/callback", "/other"), CallbackError, "not the redirect"),
        (lambda url: url + "&code=second", CallbackError, "repeats"),
        (lambda url: re.sub(r"iss=[^&]+", "iss=https%3A%2F%2Fevil", url), CallbackError, "issuer"),
        (lambda url: "garbage", CallbackError, "not the redirect"),
        (lambda url: "", CallbackError, "nothing was pasted"),
        (lambda url: url + "#access_token=x", CallbackError, "fragment"),
        (lambda url: re.sub(r"code=[^&]+", "error=access_denied", url), AccessDenied, "refused"),
    ],
)
def test_paste_refuses_bad_addresses_before_any_token_request(
    provider: DevProvider,
    capsys: pytest.CaptureFixture[str],
    change: Callable[[str], str],
    error: type[Exception],
    message: str,
) -> None:
    store = MemoryStore()
    params = oidc_params(provider)
    before = provider.auth.token_requests
    with pytest.raises(error, match=message):
        auth_identify(
            params, account=ME, store=store, flow="paste", read_redirect=read_pasted(capsys, change)
        )
    assert provider.auth.token_requests == before
    assert stored(store, params, ME) is None


def test_judge_pasted_keeps_the_code_out_of_messages() -> None:
    params = OAuth2Parameters(
        client_id="c",
        auth_url="https://a.example/a",
        token_url="https://a.example/t",
        redirect_url="http://localhost:9000/cb",
    )
    request = build_request(params, redirect_uri=paste_redirect_uri(params), state="S" * 22)
    assert judge_pasted(request, f"http://localhost:9000/cb?code=THE-CODE&state={'S' * 22}") == (
        "THE-CODE"
    )
    with pytest.raises(CallbackError) as caught:
        judge_pasted(request, "http://localhost:9000/cb?code=THE-CODE&state=wrong")
    assert "THE-CODE" not in str(caught.value)


def test_paste_account_mismatch_saves_nothing(
    provider: DevProvider, capsys: pytest.CaptureFixture[str]
) -> None:
    provider.user = "someone.else@example.test"
    store = MemoryStore()
    params = oidc_params(provider)
    with pytest.raises(AccountMismatch, match=r"someone\.else@example\.test"):
        auth_identify(params, account=ME, store=store, flow="paste",
                      read_redirect=read_pasted(capsys))  # fmt: skip
    assert stored(store, params, ME) is None


def test_browser_login_account_mismatch_end_to_end(provider: DevProvider) -> None:
    """The dev provider's id_token names who approved: the loopback login refuses another."""
    provider.user = "someone.else@example.test"
    store = MemoryStore()
    params = oidc_params(provider)

    def opener(url: str) -> bool:
        def follow() -> None:
            requests.get(url, timeout=10)  # follows the redirect to the loopback listener

        threading.Thread(target=follow, daemon=True).start()
        return True

    with pytest.raises(AccountMismatch) as caught:
        auth_identify(params, account=ME, store=store, open_browser=opener, timeout=20)
    assert (caught.value.expected, caught.value.actual) == (ME, "someone.else@example.test")
    assert stored(store, params, ME) is None


# --------------------------------------------------------------------------- import_token


def test_import_token_checks_with_one_refresh_then_saves(provider: DevProvider) -> None:
    """A refresh token from elsewhere: one refresh, saved, then found like any login."""
    params = oidc_params(provider)
    elsewhere = provider.login(store=MemoryStore(), scope=params.scopes)
    refresh = elsewhere.refresh_token
    assert refresh
    store = MemoryStore()
    before = provider.auth.token_requests
    token = import_token(params, refresh_token=refresh + "\n", account=ME, store=store)
    assert provider.auth.token_requests - before == 1
    assert stored(store, params, ME) is not None
    found = auth_identify(params, account=ME, store=store, interactive=False)
    assert found.access_token == token.access_token
    send_one(provider, found, "imported")


def test_import_dead_refresh_token_is_login_required(provider: DevProvider) -> None:
    params = oidc_params(provider)
    elsewhere = provider.login(store=MemoryStore(), scope=params.scopes)
    provider.auth.revoke_all_refresh_tokens()
    store = MemoryStore()
    with pytest.raises(LoginRequired, match="Nothing was saved") as caught:
        import_token(params, refresh_token=str(elsewhere.refresh_token), account=ME, store=store)
    assert str(elsewhere.refresh_token) not in str(caught.value)
    assert stored(store, params, ME) is None


def test_import_for_another_account_is_refused(provider: DevProvider) -> None:
    params = oidc_params(provider)
    elsewhere = provider.login(store=MemoryStore(), scope=params.scopes)
    store = MemoryStore()
    with pytest.raises(AccountMismatch):
        import_token(params, refresh_token=str(elsewhere.refresh_token),
                     account="other@example.test", store=store)  # fmt: skip
    assert stored(store, params, "other@example.test") is None


@pytest.mark.parametrize("bad", ["", "   ", "two words", "tab\there", "nul\x00"])
def test_import_refuses_malformed_refresh_tokens(bad: str, tmp_path: Path) -> None:
    params = OAuth2Parameters(client_id="c", auth_url="https://a.example/a",
                              token_url="https://a.example/t")  # fmt: skip
    with pytest.raises(ConfigurationError):
        import_token(params, refresh_token=bad, account=ME, store=MemoryStore())


def test_device_code_echoed_by_the_server_never_reaches_a_message(
    scripted: ScriptedServer,
) -> None:
    """The token endpoint's error_description is shown (Microsoft puts its AADSTS codes
    there), with the device code blanked out when the server echoes it."""
    scripted.reply_json(
        {
            "device_code": "DEVICE-SECRET-42",
            "user_code": "ABCD",
            "verification_uri": "https://login.example/device",
            "expires_in": 900,
            "interval": 1,
        }
    )
    scripted.reply_json(
        {"error": "invalid_request", "error_description": "bad device_code DEVICE-SECRET-42"},
        status=400,
    )
    params = OAuth2Parameters(
        client_id="cid",
        auth_url=scripted.url("/authorize"),
        token_url=scripted.url("/token"),
        device_authorization_url=scripted.url("/device"),
    )
    with pytest.raises(AuthorizationError) as caught:
        device_login(params, timeout=60, on_prompt=lambda _: None, sleep=lambda _: None)
    assert "bad device_code [secret]" in str(caught.value)  # the description, scrubbed
    assert "DEVICE-SECRET-42" not in str(caught.value)
    assert "DEVICE-SECRET-42" not in str(caught.value.error_description)
