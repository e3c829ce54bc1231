"""SMTPSession against the development SMTP server and against hostile servers.

The happy paths (STARTTLS + XOAUTH2, implicit TLS + OAUTHBEARER, batches, refresh and retry)
run against oauthsmtp's own development server; the SMTP rules of docs/security.md (TLS
before AUTH, certificate checks, the SASL failure path, line lengths, retries, injection,
timeouts) run against the purpose-built servers of ``hostile_smtp``.
"""

from __future__ import annotations

import base64
import logging
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import Future
from datetime import datetime, timedelta, timezone
from email.message import EmailMessage, Message
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from hostile_smtp import HostileServer

from oauthsmtp import (
    AuthToken,
    ConfigurationError,
    Email,
    SendResult,
    SMTPAuthError,
    SMTPConnectionError,
    SMTPError,
    SMTPSession,
    SMTPTimeoutError,
)
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._smtp.sasl import oauthbearer_initial, xoauth2_initial
from oauthsmtp.devserver import CertificateSet, SMTPServer, make_certificates

ALICE = "alice@example.org"
BOB = "bob@example.org"
GOOD = "good-token"
BIG = "big." + "A1b2C3d4" * 375  # a 3 KB access token, as Microsoft issues
VALID = {
    GOOD: SimpleNamespace(user=ALICE),
    "fresh-token": SimpleNamespace(user=ALICE),
    BIG: SimpleNamespace(user=ALICE),
}


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_certificates(tmp_path_factory.mktemp("self-signed"), self_signed=True)


@pytest.fixture(scope="module")
def wrong_host(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_certificates(tmp_path_factory.mktemp("wrong-host"), hosts=("other.example",))


@pytest.fixture
def dev(certs: CertificateSet) -> Iterator[SMTPServer]:
    """The development SMTP server: STARTTLS on .port, implicit TLS on .tls_port."""
    with SMTPServer(VALID.get, certificates=certs, reject_recipients=("nobody@example.org",)) as s:
        yield s


class Refresher:
    """A refresher that hands out the given tokens in turn and counts its calls."""

    def __init__(self, *tokens: str) -> None:
        self.tokens = list(tokens)
        self.calls = 0

    def __call__(self, state: TokenState) -> TokenState:
        self.calls += 1
        return TokenState(
            access_token=self.tokens.pop(0),
            refresh_token="refresh",
            expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
        )


def token(access: str = GOOD, *then: str) -> tuple[AuthToken, Refresher]:
    refresher = Refresher(*then)
    state = TokenState(
        access_token=access,
        refresh_token="refresh",
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return AuthToken(state, refresher=refresher, account=ALICE), refresher


def mail(n: int = 0, **kwargs: Any) -> Email:
    fields: dict[str, Any] = {"sender": ALICE, "to": [BOB], "subject": f"m{n}", "text": f"#{n}"}
    fields.update(kwargs)
    return Email(**fields)


def session(port: int, ctx: ssl.SSLContext | None, **kwargs: Any) -> SMTPSession:
    kwargs.setdefault("auth_token", token()[0])
    kwargs.setdefault("username", ALICE)
    kwargs.setdefault("timeout", 5)
    return SMTPSession("localhost", port, ssl_context=ctx, **kwargs)


def subjects(server: HostileServer) -> list[str]:
    return [
        next(line for line in m.data.split(b"\r\n") if line.startswith(b"Subject:"))[9:].decode()
        for m in server.messages
    ]


# -- happy paths against the development server -------------------------------------------
def test_starttls_xoauth2(dev: SMTPServer, certs: CertificateSet) -> None:
    """STARTTLS + XOAUTH2: the message arrives as sent, Bcc only in the envelope."""
    message = mail(
        subject="Grüße",
        text="Hello",
        html="<p>Hello</p>",
        bcc=["carol@example.org"],
        attachments=[("report.pdf", b"%PDF-1.4")],
    )
    with session(dev.port, certs.client_context(), mechanism="XOAUTH2") as s:
        assert s.auth_mechanism == "XOAUTH2"
        result = s.send(message)
    assert result == SendResult("sent", 250, "2.0.0 OK queued")
    assert result.ok
    [received] = dev.wait_for_messages(1)
    assert received.rcpt_tos == (BOB, "carol@example.org")
    assert b"carol" not in received.data
    assert received.subject == "Grüße"
    assert received.user == ALICE
    assert dev.auth_log == [("XOAUTH2", ALICE, True)]


def test_implicit_tls_oauthbearer(dev: SMTPServer, certs: CertificateSet) -> None:
    """Implicit TLS + OAUTHBEARER (chosen by default) with the real host and port fields."""
    assert dev.tls_port
    with session(dev.tls_port, certs.client_context(), security="ssl") as s:
        assert s.auth_mechanism == "OAUTHBEARER"
        assert s.send(mail()).ok
    [fields] = dev.oauthbearer_fields
    assert (fields.authzid, fields.host, fields.port) == (ALICE, "localhost", str(dev.tls_port))


def test_batch_on_one_connection(dev: SMTPServer, certs: CertificateSet) -> None:
    """send_many: one result per message, in order, over one connection."""
    messages = [mail(i) for i in range(5)]
    messages.insert(2, mail(99, to=["nobody@example.org"]))
    messages.insert(4, mail(98, to=["nobody@example.org", BOB]))
    with session(dev.port, certs.client_context()) as s:
        results = s.send_many(messages)
    assert [r.status for r in results] == ["sent"] * 2 + ["failed"] + ["sent"] * 4
    assert results[2].code == 550
    assert results[2].refused == {"nobody@example.org": (550, "5.1.1 user unknown")}
    assert results[4].ok
    assert results[4].refused == {"nobody@example.org": (550, "5.1.1 user unknown")}
    received = dev.wait_for_messages(6)
    assert [m.subject for m in received] == ["m0", "m1", "m2", "m98", "m3", "m4"]
    assert dev.connections == 1


def test_refresh_and_retry_after_rejected_token(dev: SMTPServer, certs: CertificateSet) -> None:
    """A refused token is refreshed exactly once and AUTH retried once."""
    auth, refresher = token("expired-token", "fresh-token")
    with session(dev.port, certs.client_context(), auth_token=auth) as s:
        assert s.send(mail()).ok
    assert refresher.calls == 1
    assert [ok for _, _, ok in dev.auth_log] == [False, True]


def test_refresh_does_not_help(dev: SMTPServer, certs: CertificateSet) -> None:
    """Still refused after one refresh: SMTPAuthError with code, text and provider JSON."""
    auth, refresher = token("expired-token", "still-bad-token", "never-used")
    s = session(dev.port, certs.client_context(), auth_token=auth)
    with pytest.raises(SMTPAuthError) as caught:
        s.start()
    assert refresher.calls == 1
    assert len(dev.auth_log) == 2
    error = caught.value
    assert error.code == 535
    assert error.server_message is not None
    assert "5.7.8" in error.server_message
    assert error.provider_error is not None
    assert error.provider_error["status"] == "invalid_token"
    assert "after refreshing the token once" in str(error)
    assert not s.connected


def test_big_token_uses_two_step_auth(dev: SMTPServer, certs: CertificateSet) -> None:
    """A 3 KB token does not fit 512 octets: AUTH without initial response (RFC 4954 §4)."""
    with session(dev.port, certs.client_context(), auth_token=token(BIG)[0]) as s:
        assert s.send(mail()).ok


def test_asynchronous_mode(dev: SMTPServer, certs: CertificateSet) -> None:
    """submit() returns futures at once; close() waits for every queued message."""
    s = session(dev.port, certs.client_context(), asynchronous=True)
    with s:
        futures = [s.submit(mail(i)) for i in range(4)]
        assert all(isinstance(f, Future) for f in futures)
        bad = s.submit(mail(9, to=["nobody@example.org"]))
    assert [f.result().status for f in futures] == ["sent"] * 4
    assert bad.result().code == 550
    assert [m.subject for m in dev.wait_for_messages(4)] == ["m0", "m1", "m2", "m3"]


def test_send_in_asynchronous_mode_returns_a_result(dev: SMTPServer, certs: CertificateSet) -> None:
    """With asynchronous=True, send() still returns a SendResult, after the queued messages."""
    with session(dev.port, certs.client_context(), asynchronous=True) as s:
        queued = [s.submit(mail(i)) for i in range(3)]
        result = s.send(mail(3))
        assert isinstance(result, SendResult)
        assert result.ok
        assert all(f.done() for f in queued)  # it waited its turn behind them
        with pytest.raises(ConfigurationError):
            s.send(Message())  # no From, no recipient: refused before sending
    assert [m.subject for m in dev.wait_for_messages(4)] == ["m0", "m1", "m2", "m3"]


def test_send_from_a_future_callback(dev: SMTPServer, certs: CertificateSet) -> None:
    """send() inside a done-callback (the sender's own thread) sends instead of deadlocking."""
    s = session(dev.port, certs.client_context(), asynchronous=True).start()
    inner: list[SendResult] = []
    done = threading.Event()

    def again(_: Future[SendResult]) -> None:
        inner.append(s.send(mail(1)))
        done.set()

    s.submit(mail(0)).add_done_callback(again)
    assert done.wait(10), "send() in the callback did not return"
    s.close()
    assert [r.status for r in inner] == ["sent"]
    assert [m.subject for m in dev.wait_for_messages(2)] == ["m0", "m1"]


def test_submit_without_asynchronous_mode(dev: SMTPServer, certs: CertificateSet) -> None:
    """submit() works on any session: the background sender starts on first use."""
    with session(dev.port, certs.client_context()) as s:
        future = s.submit(mail(0))
        assert s.send(mail(1)).ok
        assert future.result().ok
    assert [m.subject for m in dev.wait_for_messages(2)] == ["m0", "m1"]


def test_asynchronous_send_many(dev: SMTPServer, certs: CertificateSet) -> None:
    """send_many in asynchronous mode still returns results, in order."""
    with session(dev.port, certs.client_context(), asynchronous=True) as s:
        results = s.send_many([mail(i) for i in range(3)])
    assert [r.ok for r in results] == [True] * 3


def test_smtputf8_when_an_address_needs_it(dev: SMTPServer, certs: CertificateSet) -> None:
    """A non-ASCII local part is sent with SMTPUTF8, which the server offers."""
    with session(dev.port, certs.client_context()) as s:
        assert s.send(mail(to=["ñoño@example.org"])).ok
    [received] = dev.wait_for_messages(1)
    assert "SMTPUTF8" in received.mail_options
    assert received.rcpt_tos == ("ñoño@example.org",)


def test_emailmessage_is_accepted(dev: SMTPServer, certs: CertificateSet) -> None:
    """A standard-library EmailMessage is sent with its envelope taken from its headers."""
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg["Cc"] = "carol@example.org"
    msg["Subject"] = "stdlib"
    msg.set_content("line\n.leading dot\n")
    with session(dev.port, certs.client_context()) as s:
        assert s.send(msg).ok
    [received] = dev.wait_for_messages(1)
    assert received.rcpt_tos == (BOB, "carol@example.org")
    assert b"\r\n.leading dot\r\n" in received.data


# -- TLS before AUTH, failing closed (RFC 3207 §6) ------------------------------------------------
@pytest.mark.parametrize("mode", ["missing", "refuse", "syntax", "inject"])
def test_starttls_fails_closed(
    hostile: Callable[..., HostileServer], certs: CertificateSet, mode: str
) -> None:
    """STARTTLS stripped, refused (454) or followed by injected lines: no AUTH is ever sent."""
    server = hostile(starttls=mode, pre_tls_auth=("PLAIN", "XOAUTH2"))
    s = session(server.port, certs.client_context())
    with pytest.raises(SMTPError) as caught:
        s.start()
    assert b"AUTH" not in server.received
    assert GOOD.encode() not in server.received
    assert not isinstance(caught.value, SMTPAuthError)
    expected = {"refuse": 454, "syntax": 501}.get(mode)
    assert caught.value.code == expected


def test_stripping_server_is_never_given_a_password(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """The same holds for a password session."""
    server = hostile(starttls="missing", pre_tls_auth=("PLAIN", "LOGIN"), password="pw")
    with pytest.raises(SMTPError):
        SMTPSession("localhost", server.port, username=ALICE, password="pw", timeout=5).start()
    assert b"AUTH" not in server.received


def test_loopback_without_tls_allowed_for_testing(hostile: Callable[..., HostileServer]) -> None:
    """security='none' may carry credentials to a loopback address only."""
    server = hostile(starttls="missing", pre_tls_auth=("XOAUTH2",), pipelining=False)
    with SMTPSession(
        "127.0.0.1", server.port, security="none", auth_token=token()[0], timeout=5
    ) as s:
        assert s.send(mail()).ok
    with pytest.raises(ConfigurationError):
        SMTPSession("smtp.example.org", security="none", username=ALICE, password="pw")


# -- certificates and host names are verified -------------------------------------
@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_self_signed_certificate_refused(
    hostile: Callable[..., HostileServer], self_signed: CertificateSet, security: str
) -> None:
    """A self-signed certificate fails the default context before AUTH (both modes)."""
    server = hostile(tls_context=self_signed.server_context(), implicit_tls=security == "ssl")
    s = session(server.port, None, security=security)
    with pytest.raises(SMTPError, match="does not verify") as caught:
        s.start()
    assert isinstance(caught.value.__cause__, ssl.SSLCertVerificationError)
    assert b"AUTH" not in server.received


def test_wrong_host_name_refused(
    hostile: Callable[..., HostileServer], wrong_host: CertificateSet
) -> None:
    """A trusted certificate for another host name is refused."""
    server = hostile(tls_context=wrong_host.server_context())
    with pytest.raises(SMTPError, match="does not verify"):
        session(server.port, wrong_host.client_context()).start()
    assert b"AUTH" not in server.received


def test_ssl_cert_file_is_honoured(
    dev: SMTPServer, certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """With no ssl_context, SSL_CERT_FILE names the trust anchors (as OpenSSL reads it)."""
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    with session(dev.port, None) as s:
        assert s.send(mail()).ok


# -- re-EHLO after TLS, trust only the post-TLS list (RFC 3207 §4.2) -------------------------------
def test_only_post_tls_capabilities_are_trusted(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Pre-TLS AUTH lists are forgotten: EHLO is sent again after TLS."""
    server = hostile(pre_tls_auth=("PLAIN",), auth=("XOAUTH2",), extensions=())
    with session(server.port, certs.client_context()) as s:
        assert s.auth_mechanism == "XOAUTH2"
        assert "STARTTLS" not in s.extensions
    ehlos = [line for line in server.connections[0].lines if line.startswith(b"EHLO")]
    assert len(ehlos) == 2


# -- SASL failure path, line length, retry policy, mechanisms -------------------
@pytest.mark.parametrize(
    ("mechanism", "answer"), [("XOAUTH2", b""), ("OAUTHBEARER", b"AQ==")], ids=["xoauth2", "bearer"]
)
def test_error_challenge_answered(
    hostile: Callable[..., HostileServer], certs: CertificateSet, mechanism: str, answer: bytes
) -> None:
    """The 334 JSON is answered with an empty line (XOAUTH2) or AQ== (OAUTHBEARER)."""
    server = hostile()
    auth, refresher = token("bad-one", "bad-two")
    with pytest.raises(SMTPAuthError) as caught:
        session(server.port, certs.client_context(), auth_token=auth, mechanism=mechanism).start()
    assert [a.responses[-1] for a in server.auth_attempts] == [answer, answer]
    assert caught.value.provider_error == {
        "status": "400",
        "schemes": "Bearer",
        "scope": "https://mail.google.com/",
    }
    assert "https://mail.google.com/" in str(caught.value)
    assert refresher.calls == 1


def test_challenge_not_base64_is_cancelled(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A challenge that is not base64 is answered '*' (RFC 4954 §4)."""
    server = hostile(failure="plain")
    with pytest.raises(SMTPAuthError, match="cancelled"):
        session(server.port, certs.client_context(), auth_token=token("bad")[0]).start()
    assert server.auth_attempts[0].responses[-1] == b"*"


def test_too_many_challenges(hostile: Callable[..., HostileServer], certs: CertificateSet) -> None:
    """More than 5 challenges: the client cancels with '*' and fails."""
    server = hostile(challenges=50)
    with pytest.raises(SMTPAuthError, match="more than 5 challenges"):
        session(server.port, certs.client_context()).start()
    [attempt] = server.auth_attempts
    assert attempt.responses[-1] == b"*"
    assert len(attempt.responses) == 7  # the initial response, 5 answers, then '*'


@pytest.mark.parametrize(("access", "initial"), [(GOOD, True), (BIG, False)], ids=["small", "3KB"])
def test_initial_response_only_within_512_octets(
    hostile: Callable[..., HostileServer], certs: CertificateSet, access: str, initial: bool
) -> None:
    """AUTH carries the initial response only when the line fits 512 octets."""
    server = hostile(tokens=(access,))
    with session(server.port, certs.client_context(), auth_token=token(access)[0]):
        pass
    [attempt] = server.auth_attempts
    assert attempt.initial_response is initial
    assert attempt.line_length <= 512
    assert attempt.token == access


def test_tenant_disabled_is_not_retried(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """535 5.7.139 is a configuration error: no refresh, one attempt, a hint to fix it."""
    server = hostile(failure="tenant")
    auth, refresher = token()
    with pytest.raises(SMTPAuthError) as caught:
        session(server.port, certs.client_context(), auth_token=auth).start()
    error = caught.value
    assert refresher.calls == 0
    assert len(server.auth_attempts) == 1
    assert error.code == 535
    assert not error.retryable
    assert error.server_message is not None
    assert "SmtpClientAuthentication is disabled" in error.server_message
    assert "Set-CASMailbox" in str(error)


def test_microsoft_535_then_success_after_refresh(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """535 5.7.3, one refresh, then success on the same connection."""
    server = hostile(failure="microsoft", tokens=("fresh-token",), auth=("LOGIN", "XOAUTH2"))
    auth, refresher = token("stale-token", "fresh-token")
    with session(server.port, certs.client_context(), auth_token=auth) as s:
        assert s.send(mail()).ok
    assert refresher.calls == 1
    assert [a.token for a in server.auth_attempts] == ["stale-token", "fresh-token"]
    assert len(server.connections) == 1


def test_only_auth_login_offered_to_a_token(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """No OAuth mechanism after TLS: a clear error, never a password fallback."""
    server = hostile(auth=("LOGIN",))
    with pytest.raises(SMTPAuthError, match="never falls back"):
        session(server.port, certs.client_context()).start()
    assert b"AUTH" not in server.received


def test_forced_mechanism_must_be_offered(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """mechanism='OAUTHBEARER' with a server offering only XOAUTH2 fails clearly."""
    server = hostile(auth=("XOAUTH2",))
    with pytest.raises(SMTPAuthError, match="OAUTHBEARER"):
        session(server.port, certs.client_context(), mechanism="OAUTHBEARER").start()


@pytest.mark.parametrize(
    ("offered", "used"), [(("LOGIN",), "LOGIN"), (("LOGIN", "PLAIN"), "PLAIN")]
)
def test_password_session(
    hostile: Callable[..., HostileServer],
    certs: CertificateSet,
    offered: tuple[str, ...],
    used: str,
) -> None:
    """password=: PLAIN when offered, else LOGIN, over TLS."""
    server = hostile(auth=offered, password="pw")
    with session(server.port, certs.client_context(), auth_token=None, password="pw") as s:
        assert s.auth_mechanism == used
        assert s.send(mail()).ok
    assert server.auth_attempts[0].user == ALICE


def test_internationalized_user(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """An EAI user name is sent as UTF-8."""
    server = hostile()
    with session(server.port, certs.client_context(), username="ñoño@example.org"):
        pass
    assert server.auth_attempts[0].user == "ñoño@example.org"


# -- caps and timeouts ------------------------------------------------
@pytest.mark.parametrize(("kind", "match"), [("long", "8192 octets"), ("endless", "128 lines")])
def test_reply_caps(
    hostile: Callable[..., HostileServer], certs: CertificateSet, kind: str, match: str
) -> None:
    """A 1 MB line or endless continuation lines end the session with an error."""
    server = hostile(ehlo_line=kind)
    with pytest.raises(SMTPError, match=match):
        session(server.port, certs.client_context()).start()


def test_silent_server_times_out() -> None:
    """Every read has a deadline; the error is a TimeoutError too."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
        s = session(port, None, timeout=0.3)
        with pytest.raises(SMTPTimeoutError) as caught:
            s.start()
    assert isinstance(caught.value, TimeoutError)


def test_connection_refused_is_a_connection_error() -> None:
    """Nothing listening: SMTPConnectionError, also a ConnectionError."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(ConnectionError) as caught:
        session(port, None).start()
    assert isinstance(caught.value, SMTPConnectionError)


# -- injection ------------------------------------------------------
def test_injection_refused_before_anything_is_sent(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A legacy message with an injected header raises; nothing reaches the server."""
    server = hostile()
    msg = Message()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg["Subject"] = "hi\r\nBcc: evil@example.org"
    with session(server.port, certs.client_context()) as s:
        with pytest.raises(ConfigurationError):
            s.send(msg)
        results = s.send_many([mail(0), msg, mail(2)])
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert results[1].code is None
    assert results[1].message is not None
    assert results[1].message.startswith("refused before sending")
    assert b"evil" not in server.received
    assert subjects(server) == ["m0", "m2"]


# -- pipelining, batches and drops --------------------------------------------------------------
def test_pipelined_envelope_in_one_write(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """With PIPELINING, each envelope comes in one write, and a batch costs ~1 write/message."""
    server = hostile()
    count = 6
    with session(server.port, certs.client_context()) as s:
        results = s.send_many([mail(i, cc=["c@example.org"]) for i in range(count)])
    assert all(r.ok for r in results)
    assert not server.pipelining_violations
    conn = server.connections[0]
    after_auth = conn.chunks[[c.startswith(b"AUTH") for c in conn.chunks].index(True) + 1 :]
    assert len(after_auth) <= count + 2  # envelope 1, body k + envelope k+1 ..., body n, QUIT
    assert subjects(server) == [f"m{i}" for i in range(count)]


def test_failed_envelope_is_reset(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A refused MAIL or an all-refused RCPT gets RSET; the batch carries on."""
    server = hostile(reject_mail=("blocked@example.org",), reject_rcpt=("gone@example.org",))
    batch = [
        mail(0),
        mail(1, sender="blocked@example.org"),
        mail(2, to=["gone@example.org"]),
        mail(3),
    ]
    with session(server.port, certs.client_context()) as s:
        results = s.send_many(batch)
    assert [r.status for r in results] == ["sent", "failed", "failed", "sent"]
    assert (results[1].code, results[1].refused) == (550, {})
    assert results[2].refused == {"gone@example.org": (550, "5.1.1 User unknown")}
    assert server.received.count(b"RSET\r\n") == 2
    assert subjects(server) == ["m0", "m3"]


@pytest.mark.parametrize("pipelining", [True, False])
def test_drop_on_rset_does_not_resend_the_failed_message(
    hostile: Callable[..., HostileServer], certs: CertificateSet, pipelining: bool
) -> None:
    """A message already refused stays refused when the connection drops at its RSET."""
    server = hostile(
        reject_mail=("blocked@example.org",), drop_on_rset={0: 1}, pipelining=pipelining
    )
    batch = [mail(0), mail(1, sender="blocked@example.org"), mail(2)]
    with session(server.port, certs.client_context()) as s:
        results = s.send_many(batch)
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert server.received.count(b"MAIL FROM:<blocked@example.org>") == 1
    assert subjects(server) == ["m0", "m2"]


def test_without_pipelining(hostile: Callable[..., HostileServer], certs: CertificateSet) -> None:
    """Lockstep mode gives the same results."""
    server = hostile(pipelining=False, reject_rcpt=("gone@example.org",))
    batch = [mail(0), mail(1, to=["gone@example.org"]), mail(2, to=["gone@example.org", BOB])]
    with session(server.port, certs.client_context()) as s:
        results = s.send_many(batch)
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert subjects(server) == ["m0", "m2"]


class CountingToken:
    """A duck-typed token that counts how often it is read."""

    def __init__(self) -> None:
        self.reads = 0

    @property
    def access_token(self) -> str:
        self.reads += 1
        return GOOD

    def refresh(self) -> None:
        raise AssertionError("no refresh expected")


def test_drop_before_end_of_data_reply_is_unknown(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Lost after the 3rd body: it is 'unknown' and not resent; the rest go on a new connection."""
    server = hostile(drop_before_data_reply={0: 3})
    auth = CountingToken()
    with session(server.port, certs.client_context(), auth_token=auth) as s:
        results = s.send_many([mail(i) for i in range(5)])
    assert [r.status for r in results] == ["sent", "sent", "unknown", "sent", "sent"]
    assert results[2].code is None
    assert subjects(server) == ["m0", "m1", "m2", "m3", "m4"]  # each exactly once
    assert len(server.connections) == 2
    assert auth.reads == 2  # the token is read again for the new connection


@pytest.mark.parametrize("how", ["drop_on_mail", "bye_on_mail", "bye_on_data"])
def test_drop_before_body_resends_once(
    hostile: Callable[..., HostileServer], certs: CertificateSet, how: str
) -> None:
    """Lost before a body was sent, or a 421 refusing it: it is sent once, on a new connection."""
    server = hostile(**{how: {0: 2}})
    with session(server.port, certs.client_context()) as s:
        results = s.send_many([mail(i) for i in range(3)])
        assert s.send(mail(3)).ok
    assert [r.status for r in results] == ["sent"] * 3
    assert subjects(server) == ["m0", "m1", "m2", "m3"]
    assert len(server.connections) == 2


def test_idle_drop_between_sends(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A server that closed an idle connection: the next send() reconnects."""
    server = hostile(drop_on_mail={0: 2}, pipelining=False)
    with session(server.port, certs.client_context()) as s:
        assert s.send(mail(0)).ok
        assert s.send(mail(1)).ok
    assert subjects(server) == ["m0", "m1"]


def test_server_that_keeps_dropping(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """No progress on two connections in a row: the rest of the batch fails, nothing twice."""
    server = hostile(drop_on_mail={0: 2, 1: 1, 2: 1})
    with session(server.port, certs.client_context()) as s:
        results = s.send_many([mail(i) for i in range(3)])
    assert [r.status for r in results] == ["sent", "failed", "failed"]
    assert results[1].message is not None
    assert results[1].message.startswith("not sent")
    assert subjects(server) == ["m0"]


def test_nothing_answered_raises(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """send_many raises when the session fails before any message got an answer."""
    server = hostile(drop_on_mail={0: 1, 1: 1})
    s = session(server.port, certs.client_context())
    with pytest.raises(SMTPConnectionError):
        s.send_many([mail(0)])
    s.close()


def test_asynchronous_errors_reach_the_future(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Session and message errors are set on the futures, not raised by send()."""
    server = hostile(failure="tenant")
    s = session(server.port, certs.client_context(), asynchronous=True)
    future = s.submit(mail())
    invalid = Message()
    invalid["To"] = BOB
    bad = s.submit(invalid)
    s.close()
    assert isinstance(future.exception(), SMTPAuthError)
    assert isinstance(bad.exception(), ConfigurationError)


# -- no secret in logs, output, errors or reprs ----------------------------------------
def test_no_secret_in_logs(
    hostile: Callable[..., HostileServer],
    certs: CertificateSet,
    caplog: pytest.LogCaptureFixture,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """DEBUG logs, captured output, errors and reprs never show a token or a SASL blob."""
    caplog.set_level(logging.DEBUG, logger="oauthsmtp")
    server = hostile(tokens=("fresh-secret-token-2",))
    auth, _ = token("stale-secret-token-1", "fresh-secret-token-2")
    s = session(server.port, certs.client_context(), auth_token=auth)
    with s:
        assert s.send(mail()).ok
        text = repr(s)
    pw_server = hostile(auth=("PLAIN",), password="pass-secret-3")
    with pytest.raises(SMTPAuthError) as caught:
        session(
            pw_server.port, certs.client_context(), auth_token=None, password="wrong-secret-4"
        ).start()
    text += str(caught.value) + repr(caught.value)
    captured = capsys.readouterr()
    everything = caplog.text + captured.out + captured.err + text
    assert "C: AUTH XOAUTH2" in caplog.text or "C: AUTH OAUTHBEARER" in caplog.text
    secrets = ["stale-secret-token-1", "fresh-secret-token-2", "wrong-secret-4"]
    for secret in secrets[:2]:
        secrets.append(xoauth2_initial(ALICE, secret).decode())
        secrets.append(oauthbearer_initial(ALICE, secret, "localhost", server.port).decode())
        secrets.append(base64.b64encode(secret.encode()).decode()[:16])
    secrets.append(base64.b64encode(b"\x00" + ALICE.encode() + b"\x00wrong-secret-4").decode())
    for secret in secrets:
        assert secret not in everything


# -- configuration ------------------------------------------------------------------------------
@pytest.mark.parametrize(("security", "port"), [("starttls", 587), ("ssl", 465), ("none", 25)])
def test_default_ports(security: str, port: int) -> None:
    """port=None picks 587, 465 or 25."""
    assert SMTPSession("smtp.example.org", security=security).port == port  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "kwargs",
    [
        {"security": "tls"},
        {"port": 0},
        {"timeout": 0},
        {"auth_token": object(), "password": "x", "username": ALICE},
        {"password": "x"},
        {"password": "x", "username": ALICE, "mechanism": "XOAUTH2"},
        {"auth_token": token()[0], "mechanism": "PLAIN"},
        {"mechanism": "XOAUTH2"},
        {"security": "none", "ssl_context": ssl.create_default_context()},
        {"username": "a@x\r\nMAIL FROM:<y>", "password": "x"},
        {"local_hostname": "evil\r\nRSET"},
    ],
    ids=[
        "security",
        "port",
        "timeout",
        "token-and-password",
        "no-username",
        "mech-vs-password",
        "mech-vs-token",
        "mech-without-credential",
        "context-without-tls",
        "username-crlf",
        "ehlo-crlf",
    ],
)
def test_configuration_errors(kwargs: dict[str, Any]) -> None:
    """Inconsistent options fail at construction with ConfigurationError."""
    with pytest.raises(ConfigurationError):
        SMTPSession("smtp.example.org", **kwargs)


def test_username_defaults_to_token_account() -> None:
    """An AuthToken's account is the default username."""
    assert SMTPSession("smtp.example.org", auth_token=token()[0]).username == ALICE


def test_send_result() -> None:
    """SendResult: ok, a read-only refused map, raise_for_status."""
    sent = SendResult("sent", 250, "OK", {"x@example.org": (550, "no")})
    assert sent.ok
    assert sent.raise_for_status() is sent
    with pytest.raises(TypeError):
        sent.refused["y"] = (1, "")  # type: ignore[index]
    failed = SendResult("failed", 552, "too big")
    assert not failed.ok
    with pytest.raises(SMTPError) as caught:
        failed.raise_for_status()
    assert caught.value.code == 552


def test_file_attachment(dev: SMTPServer, certs: CertificateSet, tmp_path: Path) -> None:
    """Attachments by path arrive intact."""
    path = tmp_path / "report.pdf"
    path.write_bytes(bytes(range(256)) * 100)
    with session(dev.port, certs.client_context()) as s:
        assert s.send(mail(attachments=[path])).ok
    [received] = dev.wait_for_messages(1)
    [part] = received.message.iter_attachments()
    assert part.get_content() == path.read_bytes()


# -- pipelining against the development server (aiosmtpd) ----------------------------------------
@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
def test_batch_results_in_order_against_dev_server(certs: CertificateSet, pipelining: bool) -> None:
    """Replies are matched to messages in order, a refused recipient in the middle included."""
    with SMTPServer(
        VALID.get, certificates=certs, pipelining=pipelining, reject_recipients=("x@example.org",)
    ) as server:
        batch = [mail(i) for i in range(6)]
        batch[2] = mail(2, to=["x@example.org"])  # refused: the only recipient
        batch[4] = mail(4, to=[BOB, "x@example.org", "carol@example.org"])  # one of three
        with session(server.port, certs.client_context()) as s:
            assert ("PIPELINING" in s.extensions) is pipelining
            results = s.send_many(batch)
        assert [r.status for r in results] == ["sent", "sent", "failed", "sent", "sent", "sent"]
        assert (results[2].code, dict(results[2].refused)) == (
            550,
            {"x@example.org": (550, "5.1.1 user unknown")},
        )
        assert results[4].refused == {"x@example.org": (550, "5.1.1 user unknown")}
        received = server.wait_for_messages(5)
        assert [m.subject for m in received] == ["m0", "m1", "m3", "m4", "m5"]
        assert received[3].rcpt_tos == (BOB, "carol@example.org")
        assert server.connections == 1


def test_one_megabyte_attachment_arrives_intact(dev: SMTPServer, certs: CertificateSet) -> None:
    """A 1 MB attachment (Email and EmailMessage) decodes to the same bytes on the server."""
    import os

    payload = os.urandom(1024 * 1024) + b"\r\n.\r\n.." + bytes(range(256))
    message = mail(1, attachments=[("blob.bin", payload)], text=".leading dot\n.\n")
    stdlib = EmailMessage()
    stdlib["From"], stdlib["To"], stdlib["Subject"] = ALICE, BOB, "m2"
    stdlib.set_content(".a line with a dot\n")
    stdlib.add_attachment(payload, maintype="application", subtype="octet-stream", filename="b")
    with session(dev.port, certs.client_context()) as s:
        assert [r.status for r in s.send_many([message, stdlib])] == ["sent", "sent"]
    for received in dev.wait_for_messages(2):
        [part] = received.message.iter_attachments()
        assert part.get_content() == payload
        body = received.message.get_body(("plain",))
        assert body is not None
        assert body.get_content().startswith(".")


# -- a pool of connections ---------------------------------------------------------------------
def test_pool_results_in_input_order(dev: SMTPServer, certs: CertificateSet) -> None:
    """connections=4: one result per message in input order; connections reused later."""
    batch = [mail(i) for i in range(40)]
    batch[5] = mail(5, to=["nobody@example.org"])
    batch[23] = mail(23, to=[BOB, "nobody@example.org"])
    with session(dev.port, certs.client_context(), connections=4) as s:
        results = s.send_many(batch)
        assert 1 < s.open_connections <= 4
        assert [r.status for r in results] == ["sent"] * 5 + ["failed"] + ["sent"] * 34
        assert results[5].refused == {"nobody@example.org": (550, "5.1.1 user unknown")}
        assert results[23].refused == {"nobody@example.org": (550, "5.1.1 user unknown")}
        more = s.send_many([mail(i) for i in range(100, 140)])
        assert all(r.ok for r in more)
        assert s.send(mail(200)).ok
        assert dev.connections <= 4  # never more, even across calls
        assert len(dev.auth_log) == dev.connections  # each one opened once, then reused
    received = dev.wait_for_messages(80)
    assert sorted(m.subject for m in received) == sorted(
        [f"m{i}" for i in range(40) if i != 5] + [f"m{i}" for i in range(100, 140)] + ["m200"]
    )
    assert [m.rcpt_tos for m in received if m.subject == "m23"] == [(BOB,)]


def test_send_many_connections_argument(dev: SMTPServer, certs: CertificateSet) -> None:
    """send_many(connections=) overrides the session's setting; surplus connections close."""
    with session(dev.port, certs.client_context()) as s:
        assert all(r.ok for r in s.send_many([mail(i) for i in range(9)], connections=3))
        assert s.open_connections == 3
        assert all(r.ok for r in s.send_many([mail(i) for i in range(4)], connections=2))
        assert s.open_connections <= 2
        with pytest.raises(ConfigurationError):
            s.send_many([mail()], connections=0)
    assert not s.connected
    assert dev.connections == 3
    with pytest.raises(ConfigurationError):
        SMTPSession("smtp.example.org", connections=True)  # type: ignore[arg-type]


def test_pool_never_exceeds_its_size(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """However large the batch, no more than N connections are open at once."""
    server = hostile(data_delay=0.01)
    with session(server.port, certs.client_context(), connections=3) as s:
        for round_ in range(3):
            results = s.send_many([mail(i) for i in range(10 * round_, 10 * round_ + 10)])
            assert all(r.ok for r in results)
            assert s.open_connections == 3
    assert server.peak_open == 3
    assert len(server.connections) == 3
    assert sorted(subjects(server)) == sorted(f"m{i}" for i in range(30))
    assert not server.pipelining_violations


@pytest.mark.parametrize("where", ["greeting", "mail", "data"])
def test_pool_shrinks_on_connection_limit(
    hostile: Callable[..., HostileServer], certs: CertificateSet, where: str
) -> None:
    """Beyond 2 connections the server answers 432 4.3.2: the pool carries on with 2.

    Whether the refusal comes at the greeting, at MAIL or at the end of data, every message
    is sent exactly once, and later batches never open more than the server accepted.
    """
    server = hostile(max_connections=2, limit_at=where, data_delay=0.01)
    with session(server.port, certs.client_context(), connections=4) as s:
        results = s.send_many([mail(i) for i in range(20)])
        assert [r.status for r in results] == ["sent"] * 20
        assert s.open_connections == 2
        opened = len(server.connections)
        later = s.send_many([mail(i) for i in range(20, 30)])
        assert [r.status for r in later] == ["sent"] * 10
    assert server.refused_over_limit >= 1
    assert len(server.connections) == opened  # the pool did not try a third one again
    assert sorted(subjects(server)) == sorted(f"m{i}" for i in range(30))  # once each


def test_connection_limit_on_the_only_connection(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """If the one connection is over the limit (others hold the slots), the batch fails clearly."""
    server = hostile(max_connections=0, limit_at="mail")
    with (
        session(server.port, certs.client_context(), connections=2) as s,
        pytest.raises(SMTPConnectionError) as caught,
    ):
        s.send_many([mail(0), mail(1)])
    assert caught.value.code == 432
    assert server.messages == []


def test_pool_authenticates_once_with_a_bad_token(dev: SMTPServer, certs: CertificateSet) -> None:
    """A refused token is refreshed once, by the first connection; the others never send AUTH."""
    auth, refresher = token("expired-token", "still-bad-token", "never-used")
    s = session(dev.port, certs.client_context(), auth_token=auth, connections=4)
    with pytest.raises(SMTPAuthError):
        s.send_many([mail(i) for i in range(8)])
    s.close()
    assert refresher.calls == 1
    assert len(dev.auth_log) == 2  # the first attempt and its one retry
    assert dev.wait_for_messages(0) == []


def test_pool_refreshes_an_expired_token_once(dev: SMTPServer, certs: CertificateSet) -> None:
    """An expired token is refreshed once for the whole pool, before any AUTH."""
    auth, refresher = token("expired-token", "fresh-token")
    auth.expire()
    with session(dev.port, certs.client_context(), auth_token=auth, connections=4) as s:
        assert all(r.ok for r in s.send_many([mail(i) for i in range(12)]))
    assert refresher.calls == 1
    assert [ok for _, _, ok in dev.auth_log] == [True] * 4


def test_pool_in_asynchronous_mode(dev: SMTPServer, certs: CertificateSet) -> None:
    """Asynchronous sending spreads queued messages over the pool; results reach the futures."""
    with session(dev.port, certs.client_context(), asynchronous=True, connections=3) as s:
        futures = [s.submit(mail(i)) for i in range(15)]
        batch = s.send_many([mail(i) for i in range(15, 20)])
    assert [f.result().status for f in futures] == ["sent"] * 15
    assert [r.status for r in batch] == ["sent"] * 5
    assert dev.connections <= 3
    assert sorted(m.subject for m in dev.wait_for_messages(20)) == sorted(
        f"m{i}" for i in range(20)
    )


def test_pool_survives_a_dropped_connection(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """One pool connection dropped mid-body: that message is unknown, the rest sent once."""
    server = hostile(drop_before_data_reply={1: 2}, data_delay=0.01)
    with session(server.port, certs.client_context(), connections=3) as s:
        results = s.send_many([mail(i) for i in range(15)])
    statuses = [r.status for r in results]
    assert statuses.count("unknown") == 1
    assert statuses.count("sent") == 14
    assert len(server.connections) == 4  # the dropped one was replaced
    stored = subjects(server)
    assert sorted(stored) == sorted(f"m{i}" for i in range(15))  # the unknown one arrived too
    assert server.peak_open <= 3


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
def test_drop_after_any_number_of_replies(
    hostile: Callable[..., HostileServer], certs: CertificateSet, pipelining: bool
) -> None:
    """Wherever the connection drops, no message is lost or sent twice.

    The server closes the first connection after n reply lines, for every n from the
    greeting to past the end of the batch: "sent" means stored once, "failed" never
    stored, "unknown" at most once, and at most one message is "unknown".
    """
    for n in range(12, 45):  # 12 reply lines: greeting, EHLO, STARTTLS, EHLO, AUTH
        server = hostile(drop_after_replies={0: n}, pipelining=pipelining)
        with session(server.port, certs.client_context()) as s:
            results = s.send_many([mail(i, cc=["c@example.org"]) for i in range(5)])
        stored = subjects(server)
        for i, result in enumerate(results):
            count = stored.count(f"m{i}")
            assert count == {"sent": 1, "failed": 0, "unknown": count}[result.status], (n, i)
            assert count <= 1, (n, i)
        assert [r.status for r in results].count("unknown") <= 1, n
        assert all(r.status != "failed" for r in results), n
        server.stop()


def test_connection_limit_replies() -> None:
    """Which replies mean "too many connections" (and which do not)."""
    from oauthsmtp._smtp.transact import is_connection_limit

    assert is_connection_limit(432, "4.3.2 Concurrent connections limit exceeded. Visit ...")
    assert is_connection_limit(432, "4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded")
    assert is_connection_limit(421, "4.3.2 The maximum number of concurrent connections has ...")
    assert not is_connection_limit(421, "4.3.2 Service shutting down")
    assert not is_connection_limit(432, "4.7.12 A password transition is needed")
    assert not is_connection_limit(550, "5.3.2 concurrent connections")
    assert not is_connection_limit(None, None)


# -- SSL_CERT_FILE means the same for SMTP as for the token endpoint -----------------------------
def test_ssl_cert_file_adds_a_ca_for_smtp(
    dev: SMTPServer, certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Without ssl_context=, SMTP trusts the system store plus SSL_CERT_FILE (added)."""
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    tok, _ = token()
    with pytest.raises(SMTPError, match="certificate"):
        SMTPSession("localhost", port=dev.port, auth_token=tok, username=ALICE, timeout=10).send(
            mail()
        )
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    with SMTPSession("localhost", port=dev.port, auth_token=tok, username=ALICE, timeout=10) as s:
        assert s.send(mail()).ok


def test_missing_ssl_cert_file_is_an_error_for_smtp(
    dev: SMTPServer, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("SSL_CERT_FILE", str(tmp_path / "missing.pem"))
    tok, _ = token()
    with pytest.raises(ConfigurationError, match=r"SSL_CERT_FILE.*missing\.pem"):
        SMTPSession("localhost", port=dev.port, auth_token=tok, username=ALICE, timeout=10).send(
            mail()
        )
