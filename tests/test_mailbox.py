"""imap_authenticate and pop3_authenticate against a real Dovecot that asks the dev provider.

Dovecot (tests/dovecot.py) offers XOAUTH2 and OAUTHBEARER over IMAP and POP3 and asks the
development authorization server's introspection endpoint about every token, so a token
that the provider revoked is refused by a real server, with a real error challenge.
"""

from __future__ import annotations

import base64
import imaplib
import importlib.util
import io
import logging
import poplib
import ssl
import sys
import urllib.request
from collections.abc import Iterator
from contextlib import redirect_stderr, redirect_stdout
from pathlib import Path
from typing import Any

import pytest
from dovecot import Dovecot

import oauthsmtp
from oauthsmtp.devserver import (
    AuthServer,
    CertificateSet,
    DevClient,
    headless_login,
    make_certificates,
)

USER = "user@example.test"
TIMEOUT = 15  # seconds for every socket operation of imaplib/poplib


class CountingToken:
    """A token source that delegates to an AuthToken and counts refreshes."""

    def __init__(self, token: oauthsmtp.AuthToken) -> None:
        self.token = token
        self.account = token.account
        self.refreshes = 0

    @property
    def access_token(self) -> str:
        return self.token.access_token

    def refresh(self) -> object:
        self.refreshes += 1
        return self.token.refresh()


class StaticTokens:
    """A token source whose access tokens come from a list (each refresh takes the next)."""

    def __init__(self, *tokens: str, account: str = USER) -> None:
        self.tokens = list(tokens)
        self.account = account
        self.refreshes = 0

    @property
    def access_token(self) -> str:
        return self.tokens[min(self.refreshes, len(self.tokens) - 1)]

    def refresh(self) -> object:
        self.refreshes += 1
        return None


@pytest.fixture(scope="module")
def certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_certificates(tmp_path_factory.mktemp("certs"))


@pytest.fixture(scope="module")
def auth() -> Iterator[AuthServer]:
    with AuthServer(mode="auto", user=USER) as server:
        yield server


@pytest.fixture(scope="module")
def dovecot(auth: AuthServer, certificates: CertificateSet) -> Iterator[Dovecot]:
    # Dovecot introspects as a confidential client of its own (RFC 7662 §2.1).
    client = auth.register_client(client_id="dovecot", client_secret="dovecot-introspects")
    base = auth.introspection_endpoint
    assert base.startswith("http://")
    url = f"http://{client.client_id}:{client.client_secret}@{base[len('http://') :]}"
    with Dovecot(certificates, url) as server:
        yield server
        # Nothing went wrong inside Dovecot (a service that failed to start, a chroot it
        # may not do, an introspection request it could not make).
        problems = [
            line for line in server.log().splitlines() if " Error: " in line or " Fatal: " in line
        ]
        assert not problems, "\n".join(problems)


@pytest.fixture
def client(auth: AuthServer) -> DevClient:
    """A confidential client of the provider, new for each test."""
    return auth.register_client()


@pytest.fixture
def token(auth: AuthServer, client: DevClient) -> oauthsmtp.AuthToken:
    """A fresh token for USER from the real authorization-code flow (headless)."""
    params = auth.parameters(client, redirect_url="http://127.0.0.1:0/callback")
    return headless_login(params, account=USER)


@pytest.fixture
def context(certificates: CertificateSet) -> ssl.SSLContext:
    return certificates.client_context()


def imaps(dovecot: Dovecot, context: ssl.SSLContext | None) -> imaplib.IMAP4_SSL:
    return imaplib.IMAP4_SSL(
        "127.0.0.1", dovecot.ports["imaps"], ssl_context=context, timeout=TIMEOUT
    )


def pop3s(dovecot: Dovecot, context: ssl.SSLContext | None) -> poplib.POP3_SSL:
    return poplib.POP3_SSL("127.0.0.1", dovecot.ports["pop3s"], context=context, timeout=TIMEOUT)


def revoke_access_token(auth: AuthServer, client: DevClient, access_token: str) -> None:
    """Revoke one access token at the provider (RFC 7009), leaving its refresh token alive."""
    assert client.client_secret is not None
    body = f"token={access_token}&token_type_hint=access_token".encode()
    request = urllib.request.Request(auth.revocation_endpoint, data=body, method="POST")
    credentials = base64.b64encode(f"{client.client_id}:{client.client_secret}".encode())
    request.add_header("Authorization", "Basic " + credentials.decode())
    request.add_header("Content-Type", "application/x-www-form-urlencoded")
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    with opener.open(request, timeout=TIMEOUT) as response:
        assert response.status == 200


def secrets_of(access_token: str, port: int) -> list[str]:
    """The token and every SASL string built from it (base64), as a leak would show them."""
    xoauth2 = f"user={USER}\x01auth=Bearer {access_token}\x01\x01".encode()
    bearer = (
        f"n,a={USER},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {access_token}\x01\x01"
    ).encode()
    return [access_token] + [base64.b64encode(raw).decode() for raw in (xoauth2, bearer)]


# --------------------------------------------------------------------------- success


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_imap_login_then_select(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext, mechanism: str
) -> None:
    """IMAPS: the token logs in with each mechanism Dovecot offers, and SELECT works."""
    imap = imaps(dovecot, context)
    try:
        assert f"AUTH={mechanism}" in imap.capabilities
        used = oauthsmtp.imap_authenticate(imap, token, mechanism=mechanism)
        assert used == mechanism
        assert imap.state == "AUTH"
        typ, data = imap.select("INBOX")
        assert (typ, data) == ("OK", [b"0"])
        assert imap.state == "SELECTED"
    finally:
        imap.logout()
    assert f"Login: user=<{USER}>, method={mechanism}" in dovecot.log()


def test_imap_after_starttls_chooses_oauthbearer(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    """IMAP on the plain port after STARTTLS: the mechanism comes from the capabilities."""
    imap = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=TIMEOUT)
    try:
        imap.starttls(context)
        assert oauthsmtp.imap_authenticate(imap, token) == "OAUTHBEARER"
        assert imap.select("INBOX", readonly=True)[0] == "OK"
    finally:
        imap.logout()


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_pop3_login_then_stat(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext, mechanism: str
) -> None:
    """POP3S: the token logs in with each mechanism, and STAT works."""
    pop = pop3s(dovecot, context)
    try:
        assert mechanism in pop.capa()["SASL"]
        assert oauthsmtp.pop3_authenticate(pop, token, mechanism=mechanism) == mechanism
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()
    assert f"Login: user=<{USER}>, method={mechanism}" in dovecot.log()


def test_pop3_after_stls(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    """POP3 on the plain port after STLS, user given explicitly."""
    pop = poplib.POP3("127.0.0.1", dovecot.ports["pop3"], timeout=TIMEOUT)
    try:
        pop.stls(context)
        assert oauthsmtp.pop3_authenticate(pop, token.access_token, USER) == "OAUTHBEARER"
        assert pop.stat() == (0, 0)
    finally:
        pop.quit()


# --------------------------------------------------------------------------- TLS first


def test_imap_without_tls_is_refused_before_anything_is_sent(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    """A plain IMAP connection gets ConfigurationError; the same connection still works
    after STARTTLS, so no AUTHENTICATE went out (it would have left a command pending)."""
    imap = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=TIMEOUT)
    try:
        with pytest.raises(oauthsmtp.ConfigurationError, match="not encrypted") as info:
            oauthsmtp.imap_authenticate(imap, token)
        assert "starttls" in str(info.value)
        imap.starttls(context)
        assert oauthsmtp.imap_authenticate(imap, token) == "OAUTHBEARER"
    finally:
        imap.logout()


def test_pop3_without_tls_is_refused(dovecot: Dovecot, token: oauthsmtp.AuthToken) -> None:
    """A plain POP3 connection gets ConfigurationError naming STLS; the server saw no AUTH."""
    pop = poplib.POP3("127.0.0.1", dovecot.ports["pop3"], timeout=TIMEOUT)
    try:
        with pytest.raises(oauthsmtp.ConfigurationError, match=r"not encrypted.*stls"):
            oauthsmtp.pop3_authenticate(pop, token)
        # Still in the AUTHORIZATION state, nothing pending: CAPA answers normally.
        assert "STLS" in pop.capa()
    finally:
        pop.quit()


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_tls_without_certificate_check_is_refused(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, protocol: str
) -> None:
    """imaplib's and poplib's default context verifies nothing: refused, with the fix."""
    if protocol == "IMAP":
        imap = imaps(dovecot, None)
        try:
            with pytest.raises(oauthsmtp.ConfigurationError, match="certificate") as info:
                oauthsmtp.imap_authenticate(imap, token)
            assert "ssl_context=ssl.create_default_context()" in str(info.value)
        finally:
            imap.logout()
    else:
        pop = pop3s(dovecot, None)
        try:
            with pytest.raises(oauthsmtp.ConfigurationError, match="certificate") as info:
                oauthsmtp.pop3_authenticate(pop, token)
            assert "context=ssl.create_default_context()" in str(info.value)
        finally:
            pop.quit()


def test_plaintext_on_loopback_only_when_asked(
    dovecot: Dovecot, token: oauthsmtp.AuthToken
) -> None:
    """allow_plaintext_loopback=True lets a token cross a plain connection to 127.0.0.1
    (Dovecot, too, counts loopback as secure), as security="none" does for SMTP."""
    imap = imaplib.IMAP4("127.0.0.1", dovecot.ports["imap"], timeout=TIMEOUT)
    try:
        used = oauthsmtp.imap_authenticate(imap, token, allow_plaintext_loopback=True)
        assert used == "OAUTHBEARER"
        assert imap.select("INBOX")[0] == "OK"
    finally:
        imap.logout()


# --------------------------------------------------------------------------- refusals


@pytest.mark.parametrize(
    ("mechanism", "provider_error"),
    [
        ("XOAUTH2", {"status": "401", "schemes": "bearer", "scope": "mail"}),
        ("OAUTHBEARER", {"status": "invalid_token"}),
    ],
)
def test_imap_invalid_token_gives_mailbox_auth_error(
    dovecot: Dovecot, context: ssl.SSLContext, mechanism: str, provider_error: dict[str, str]
) -> None:
    """A token the provider never issued: MailboxAuthError with Dovecot's decoded JSON,
    after the failure response of RFC 7628 §3.2.3; one refresh, one retry, then the error."""
    source = StaticTokens("never-issued-1", "never-issued-2")
    imap = imaps(dovecot, context)
    try:
        with pytest.raises(oauthsmtp.MailboxAuthError) as info:
            oauthsmtp.imap_authenticate(imap, source, mechanism=mechanism)
        assert imap.state == "NONAUTH"
    finally:
        imap.logout()
    error = info.value
    assert error.protocol == "IMAP"
    assert error.mechanism == mechanism
    assert error.provider_error == provider_error
    assert error.server_message == "[AUTHENTICATIONFAILED] Authentication failed."
    assert error.retryable
    assert source.refreshes == 1
    assert "after refreshing the token once" in str(error)
    assert "never-issued" not in str(error) + repr(error.args)


@pytest.mark.parametrize("mechanism", ["XOAUTH2", "OAUTHBEARER"])
def test_pop3_invalid_token_gives_mailbox_auth_error(
    dovecot: Dovecot, context: ssl.SSLContext, mechanism: str
) -> None:
    """The same over POP3: -ERR [AUTH] (RFC 3206), the provider's JSON, one refresh."""
    source = StaticTokens("never-issued-1", "never-issued-2")
    pop = pop3s(dovecot, context)
    try:
        with pytest.raises(oauthsmtp.MailboxAuthError) as info:
            oauthsmtp.pop3_authenticate(pop, source, mechanism=mechanism)
        assert pop.capa()  # the session goes on after the refusal
    finally:
        pop.quit()
    error = info.value
    assert error.protocol == "POP3"
    assert error.server_message == "[AUTH] Authentication failed."
    assert error.provider_error is not None
    assert error.provider_error["status"] in ("401", "invalid_token")
    assert source.refreshes == 1
    assert "never-issued" not in str(error)


@pytest.mark.parametrize("protocol", ["IMAP", "POP3"])
def test_revoked_access_token_is_refreshed_once_and_retried(
    dovecot: Dovecot,
    auth: AuthServer,
    client: DevClient,
    token: oauthsmtp.AuthToken,
    context: ssl.SSLContext,
    protocol: str,
) -> None:
    """The provider revoked the access token (it still looks valid here): the server
    refuses it, the token is refreshed once, and the login succeeds on the same connection."""
    revoked = token.access_token
    revoke_access_token(auth, client, revoked)
    counting = CountingToken(token)
    if protocol == "IMAP":
        imap = imaps(dovecot, context)
        try:
            oauthsmtp.imap_authenticate(imap, counting)
            assert imap.select("INBOX")[0] == "OK"
        finally:
            imap.logout()
    else:
        pop = pop3s(dovecot, context)
        try:
            oauthsmtp.pop3_authenticate(pop, counting)
            assert pop.stat() == (0, 0)
        finally:
            pop.quit()
    assert counting.refreshes == 1
    assert token.access_token != revoked


def test_revoked_grant_needs_a_login(
    dovecot: Dovecot,
    auth: AuthServer,
    client: DevClient,
    token: oauthsmtp.AuthToken,
    context: ssl.SSLContext,
) -> None:
    """Access and refresh token both revoked: the refresh fails with LoginRequired."""
    revoke_access_token(auth, client, token.access_token)
    auth.revoke_all_refresh_tokens()
    imap = imaps(dovecot, context)
    try:
        with pytest.raises(oauthsmtp.LoginRequired):
            oauthsmtp.imap_authenticate(imap, token)
    finally:
        imap.logout()


def test_token_for_another_user_is_refused(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    """user= names another mailbox than the token's: Dovecot refuses, we say so."""
    imap = imaps(dovecot, context)
    try:
        with pytest.raises(oauthsmtp.MailboxAuthError, match="refused IMAP AUTHENTICATE"):
            oauthsmtp.imap_authenticate(imap, token, "someone-else@example.test")
    finally:
        imap.logout()


def test_already_logged_in_is_a_configuration_error(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    imap = imaps(dovecot, context)
    try:
        oauthsmtp.imap_authenticate(imap, token)
        with pytest.raises(oauthsmtp.ConfigurationError, match="not-authenticated state"):
            oauthsmtp.imap_authenticate(imap, token)
    finally:
        imap.logout()


def test_user_defaults_to_the_token_account_or_must_be_given(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    imap = imaps(dovecot, context)
    try:
        with pytest.raises(oauthsmtp.ConfigurationError, match="pass user="):
            oauthsmtp.imap_authenticate(imap, token.access_token)
        assert imap.state == "NONAUTH"
    finally:
        imap.logout()


# --------------------------------------------------------------------------- no secret anywhere


def _debug_everything(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)  # every logger, oauthsmtp's included


@pytest.mark.parametrize("good", [True, False], ids=["accepted", "refused"])
def test_no_secret_in_imap_debug_output_logs_or_errors(
    dovecot: Dovecot,
    auth: AuthServer,
    client: DevClient,
    token: oauthsmtp.AuthToken,
    context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    good: bool,
) -> None:
    """imaplib at debug level 5, our DEBUG logs, the error: no token, no SASL string."""
    _debug_everything(caplog)
    access = token.access_token
    if not good:
        revoke_access_token(auth, client, access)
        auth.revoke_all_refresh_tokens()
    source: Any = token if good else StaticTokens(access)
    imap = imaps(dovecot, context)
    imap.debug = 5
    out = io.StringIO()
    error: BaseException | None = None
    with redirect_stderr(out), redirect_stdout(out):
        try:
            for mechanism in ("XOAUTH2", "OAUTHBEARER"):
                try:
                    oauthsmtp.imap_authenticate(imap, source, mechanism=mechanism)
                except oauthsmtp.MailboxAuthError as exc:
                    error = exc
                if good:
                    break
            imap.print_log()
        finally:
            imap.logout()
    text = out.getvalue() + caplog.text + (f"{error}{error!r}" if error else "")
    assert "AUTHENTICATE" in text  # the debug output and logs were captured
    assert (error is None) == good
    for secret in secrets_of(access, dovecot.ports["imaps"]):
        assert secret not in text


@pytest.mark.parametrize("good", [True, False], ids=["accepted", "refused"])
def test_no_secret_in_pop3_debug_output_logs_or_errors(
    dovecot: Dovecot,
    token: oauthsmtp.AuthToken,
    context: ssl.SSLContext,
    caplog: pytest.LogCaptureFixture,
    good: bool,
) -> None:
    """poplib at debug level 2 (it prints every command it sends), our logs, the error."""
    _debug_everything(caplog)
    access = token.access_token if good else "not-a-live-token-0123456789"
    source: Any = token if good else StaticTokens(access)
    pop = pop3s(dovecot, context)
    pop.set_debuglevel(2)
    out = io.StringIO()
    error: BaseException | None = None
    with redirect_stderr(out), redirect_stdout(out):
        try:
            for mechanism in ("XOAUTH2", "OAUTHBEARER"):
                try:
                    oauthsmtp.pop3_authenticate(pop, source, mechanism=mechanism)
                except oauthsmtp.MailboxAuthError as exc:
                    error = exc
                if good:
                    break
        finally:
            pop.quit()
    text = out.getvalue() + caplog.text + (f"{error}{error!r}" if error else "")
    assert "*cmd*" in text  # poplib's own debug output was captured
    assert "AUTH" in caplog.text
    assert (error is None) == good
    for secret in secrets_of(access, dovecot.ports["pop3s"]):
        assert secret not in text


def test_example_read_imap_against_dovecot(
    dovecot: Dovecot, token: oauthsmtp.AuthToken, context: ssl.SSLContext
) -> None:
    """examples/gmail/read_imap.py's read_inbox, pointed at Dovecot instead of Gmail."""
    message = (
        b"From: Friend <friend@example.test>\r\nTo: user@example.test\r\n"
        b"Date: Sat, 05 Dec 2026 09:00:00 +0000\r\n"
        b"Subject: =?utf-8?q?Caf=C3=A9_tomorrow?=\r\n\r\nSee you there.\r\n"
    )
    imap = imaps(dovecot, context)
    try:
        oauthsmtp.imap_authenticate(imap, token)
        assert imap.append("INBOX", None, None, message)[0] == "OK"
    finally:
        imap.logout()

    examples = Path(__file__).resolve().parent.parent / "examples" / "gmail"
    sys.path.insert(0, str(examples))  # read_imap imports _common from its folder
    try:
        spec = importlib.util.spec_from_file_location("read_imap", examples / "read_imap.py")
        assert spec is not None
        assert spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        spec.loader.exec_module(module)
    finally:
        sys.path.remove(str(examples))
    lines = module.read_inbox(lambda: imaps(dovecot, context), token, USER, limit=5)
    assert lines == [
        f"logged in to IMAP as {USER} with OAUTHBEARER",
        "INBOX: 1 message(s)",
        "  Sat, 05 Dec 2026 09:00:00 +0000 | Friend <friend@example.test> | Café tomorrow",
    ]
