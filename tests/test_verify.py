"""SMTPSession.verify(): connect, TLS, EHLO, AUTH, RSET, QUIT, and what it learnt.

Against the development SMTP server (both ports) and the scripted servers of
``hostile_smtp``: nothing is ever sent, and the errors are those ``send()`` raises.
"""

from __future__ import annotations

import asyncio
import dataclasses
import ssl
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from types import SimpleNamespace
from typing import Any

import pytest
from hostile_smtp import HostileServer

from oauthsmtp import (
    AsyncSMTPSession,
    AuthToken,
    Email,
    OAuthSMTPError,
    SMTPAuthError,
    SMTPError,
    SMTPSession,
    VerifyResult,
)
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp.devserver import CertificateSet, SMTPServer, make_certificates

ALICE = "alice@example.org"
GOOD = "good-token"


@pytest.fixture
def dev(certs: CertificateSet) -> Iterator[SMTPServer]:
    with SMTPServer({GOOD: SimpleNamespace(user=ALICE)}.get, certificates=certs) as server:
        yield server


@pytest.fixture
def hostile(certs: CertificateSet) -> Iterator[Callable[..., HostileServer]]:
    started: list[HostileServer] = []

    def start(**kwargs: Any) -> HostileServer:
        kwargs.setdefault("tls_context", certs.server_context())
        server = HostileServer(**kwargs).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()
        assert not server.errors, server.errors


def token(access: str = GOOD) -> AuthToken:
    state = TokenState(
        access_token=access,
        refresh_token="refresh",
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return AuthToken(state, account=ALICE, refresher=lambda _state: state)


def session(port: int, certs: CertificateSet, **kwargs: Any) -> SMTPSession:
    kwargs.setdefault("auth_token", token())
    kwargs.setdefault("timeout", 5)
    return SMTPSession("localhost", port, ssl_context=certs.client_context(), **kwargs)


def test_verify_starttls_reports_what_it_learnt(dev: SMTPServer, certs: CertificateSet) -> None:
    """STARTTLS + XOAUTH2/OAUTHBEARER: mechanism, extensions, SIZE, TLS, certificate, greeting."""
    info = session(dev.port, certs).verify()
    assert isinstance(info, VerifyResult)
    assert info.mechanism in {"XOAUTH2", "OAUTHBEARER"}
    assert {"XOAUTH2", "OAUTHBEARER"} <= set(info.mechanisms)
    assert "STARTTLS" not in info.extensions  # only the post-TLS EHLO is kept
    assert str(info.tls_version).startswith("TLSv1.")
    assert info.certificate_subject == "O=oauthsmtp development, CN=localhost"
    assert info.certificate_issuer == "O=oauthsmtp development, CN=oauthsmtp development CA"
    assert info.greeting
    assert (info.host, info.port, info.security) == ("localhost", dev.port, "starttls")
    assert dev.auth_log[-1][1:] == (ALICE, True)
    assert dev.messages == []
    with pytest.raises(dataclasses.FrozenInstanceError):
        info.mechanism = "PLAIN"  # type: ignore[misc]


def test_verify_implicit_tls(dev: SMTPServer, certs: CertificateSet) -> None:
    """security='ssl' on the implicit-TLS port, OAUTHBEARER forced."""
    assert dev.tls_port is not None
    info = session(dev.tls_port, certs, security="ssl", mechanism="OAUTHBEARER").verify()
    assert info.mechanism == "OAUTHBEARER"
    assert info.security == "ssl"
    assert info.tls_version is not None
    assert dev.messages == []


def test_verify_sends_rset_and_quit_and_no_mail(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """The whole conversation: EHLO, STARTTLS, EHLO, AUTH, RSET, QUIT; never MAIL."""
    server = hostile(extensions=("8BITMIME", "SIZE 35882577"))
    info = session(server.port, certs).verify()
    server.wait_closed()
    verbs = [line.split()[0].upper() for line in server.connections[0].lines]
    assert verbs == [b"EHLO", b"STARTTLS", b"EHLO", b"AUTH", b"RSET", b"QUIT"]
    assert info.size_limit == 35882577
    assert info.greeting == "hostile.test ESMTP ready"
    assert server.messages == []


def test_verify_leaves_an_open_session_alone(dev: SMTPServer, certs: CertificateSet) -> None:
    """verify() uses a connection of its own; the session's connection keeps working."""
    with session(dev.port, certs) as s:
        s.verify()
        assert s.connected
        assert s.send(Email(sender=ALICE, to=[ALICE], subject="s", text="t")).ok
    assert dev.connections == 2


def raised(call: Callable[[], object]) -> OAuthSMTPError:
    with pytest.raises(OAuthSMTPError) as caught:
        call()
    return caught.value


def message() -> Email:
    return Email(sender=ALICE, to=[ALICE], subject="s", text="t")


@pytest.mark.parametrize(
    "server_options",
    [
        {"failure": "tenant"},
        {"failure": "microsoft", "tokens": ()},
        {"auth": ("LOGIN",)},
        {"starttls": "missing"},
        {"implicit_tls": True},
    ],
    ids=["5.7.139", "5.7.3", "no-oauth-mechanism", "no-starttls", "implicit-tls-port"],
)
def test_verify_raises_what_send_raises(
    hostile: Callable[..., HostileServer], certs: CertificateSet, server_options: dict[str, Any]
) -> None:
    """The same exception type, code and message as send() for each way AUTH or TLS fails."""
    server = hostile(**server_options)
    by_verify = raised(lambda: session(server.port, certs).verify())
    by_send = raised(lambda: session(server.port, certs).send(message()))
    assert type(by_verify) is type(by_send)
    assert str(by_verify) == str(by_send)
    assert getattr(by_verify, "code", None) == getattr(by_send, "code", None)
    assert server.messages == []


def test_verify_untrusted_certificate(
    hostile: Callable[..., HostileServer], tmp_path_factory: pytest.TempPathFactory
) -> None:
    """A certificate that does not verify ends the attempt before AUTH, as sending does."""
    other = make_certificates(tmp_path_factory.mktemp("other"))
    server = hostile(tls_context=other.server_context())
    trusting_nothing = ssl.create_default_context()
    s = SMTPSession(
        "localhost", server.port, auth_token=token(), timeout=5, ssl_context=trusting_nothing
    )
    error = raised(s.verify)
    assert isinstance(error, SMTPError)
    assert not isinstance(error, SMTPAuthError)
    assert "certificate" in str(error).lower()
    assert server.auth_attempts == []


@pytest.mark.parametrize(
    ("failure", "code", "enhanced"),
    [
        ("tenant", 535, "5.7.139"),
        ("mailbox", 535, "5.7.139"),
        ("basic-auth", 550, "5.7.30"),
        ("bad-token", 535, "5.7.3"),
        ("connections", 432, "4.3.2"),
    ],
)
def test_dev_server_plays_provider_refusals(
    certs: CertificateSet, failure: str, code: int, enhanced: str
) -> None:
    """SMTPServer(auth_failure=...) answers AUTH as Microsoft 365 does; verify() reports it."""
    with SMTPServer(
        {GOOD: SimpleNamespace(user=ALICE)}.get, certificates=certs, auth_failure=failure
    ) as server:
        error = raised(lambda: session(server.port, certs).verify())
        assert isinstance(error, SMTPError)
        assert error.code == code
        assert enhanced in str(error.server_message)
        assert server.auth_log
        assert not any(ok for _, _, ok in server.auth_log)
        server.auth_failure = None  # switched off while running
        assert session(server.port, certs).verify().mechanism is not None


def test_dev_server_refuses_an_unknown_failure_switch(certs: CertificateSet) -> None:
    with pytest.raises(ValueError, match="auth_failure must be"):
        SMTPServer({}.get, certificates=certs, auth_failure="sometimes")


# -- AsyncSMTPSession.verify(): the same checks on the event loop ---------------------------


def async_session(port: int, certs: CertificateSet, **kwargs: Any) -> AsyncSMTPSession:
    kwargs.setdefault("auth_token", token())
    kwargs.setdefault("timeout", 5)
    return AsyncSMTPSession("localhost", port, ssl_context=certs.client_context(), **kwargs)


def test_async_verify_is_what_the_blocking_verify_learns(
    dev: SMTPServer, certs: CertificateSet
) -> None:
    """Both ports: the asyncio verify() returns the same VerifyResult as the blocking one."""
    assert dev.tls_port is not None
    for port, security in ((dev.port, "starttls"), (dev.tls_port, "ssl")):
        blocking = session(port, certs, security=security).verify()
        by_asyncio = asyncio.run(async_session(port, certs, security=security).verify())
        assert by_asyncio == blocking
        assert by_asyncio.certificate_subject == "O=oauthsmtp development, CN=localhost"
        assert str(by_asyncio.tls_version).startswith("TLSv1.")
    assert dev.messages == []


def test_async_verify_sends_rset_and_quit_and_no_mail(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """EHLO, STARTTLS, EHLO, AUTH, RSET, QUIT; never MAIL; the session stays usable."""
    server = hostile(extensions=("8BITMIME", "SIZE 35882577"))

    async def main() -> VerifyResult:
        async with async_session(server.port, certs) as s:
            info = await s.verify()
            assert s.connected  # start()'s own connection is left alone
            return info

    info = asyncio.run(main())
    server.wait_closed()
    verbs = [line.split()[0].upper() for line in server.connections[1].lines]
    assert verbs == [b"EHLO", b"STARTTLS", b"EHLO", b"AUTH", b"RSET", b"QUIT"]
    assert info.size_limit == 35882577
    assert info.greeting == "hostile.test ESMTP ready"
    assert server.messages == []


@pytest.mark.parametrize(
    "server_options",
    [{"failure": "tenant"}, {"auth": ("LOGIN",)}, {"starttls": "missing"}],
    ids=["5.7.139", "no-oauth-mechanism", "no-starttls"],
)
def test_async_verify_raises_what_verify_raises(
    hostile: Callable[..., HostileServer], certs: CertificateSet, server_options: dict[str, Any]
) -> None:
    server = hostile(**server_options)
    blocking = raised(lambda: session(server.port, certs).verify())
    by_asyncio = raised(lambda: asyncio.run(async_session(server.port, certs).verify()))
    assert type(by_asyncio) is type(blocking)
    assert str(by_asyncio) == str(blocking)
    assert getattr(by_asyncio, "code", None) == getattr(blocking, "code", None)
    assert server.messages == []
