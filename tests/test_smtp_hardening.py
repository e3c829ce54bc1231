"""SMTPSession against bad input and hostile peers: only oauthsmtp's errors come out.

A batch never aborts because of one message, a value the server controls never raises a
foreign exception, an over-long command is refused before it is sent, every constructor
argument is checked, and the errors say what to change (the port, ``security=``, the host
name, the trust anchors). Every test here failed before its fix.
"""

from __future__ import annotations

import ssl
import threading
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta, timezone
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from typing import Any

import pytest
from hostile_smtp import HostileServer

from oauthsmtp import (
    AuthToken,
    ConfigurationError,
    Email,
    OAuthSMTPError,
    SendResult,
    SMTPConnectionError,
    SMTPError,
    SMTPSession,
)
from oauthsmtp._message.prepare import OutgoingMessage
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp._smtp.transact import envelope_problem
from oauthsmtp._smtp.wire import parse_size
from oauthsmtp.devserver import CertificateSet, make_certificates

ALICE = "alice@example.org"
BOB = "bob@example.org"


def token() -> AuthToken:
    state = TokenState(
        access_token="good-token",
        refresh_token="refresh",
        expires_at=datetime.now(timezone.utc) + timedelta(hours=1),
    )
    return AuthToken(state, account=ALICE)


def session(port: int, certs: CertificateSet, **kwargs: Any) -> SMTPSession:
    kwargs.setdefault("auth_token", token())
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("ssl_context", certs.client_context())
    return SMTPSession("localhost", port, **kwargs)


def mail(n: int = 0, **kwargs: Any) -> Email:
    fields: dict[str, Any] = {"sender": ALICE, "to": [BOB], "subject": f"m{n}", "text": f"#{n}"}
    fields.update(kwargs)
    return Email(**fields)


def subjects(server: HostileServer) -> list[str]:
    return [
        next(line for line in m.data.split(b"\r\n") if line.startswith(b"Subject:"))[9:].decode()
        for m in server.messages
    ]


def parsed(raw: bytes) -> EmailMessage:
    message = BytesParser(policy=policy.default).parsebytes(raw)
    assert isinstance(message, EmailMessage)
    return message


# -- a batch never aborts because of one message ------------------------------------------
BAD_HEADERS = {
    "to-open-angle": b"From: alice@example.org\r\nTo: <\r\n",
    "cc-open-quote": b'From: alice@example.org\r\nTo: bob@example.org\r\nCc: "\r\n',
    "message-id-open-angle": b"From: alice@example.org\r\nTo: bob@example.org\r\nMessage-ID: <\r\n",
    "from-group": b"From: g:a@b.org; a@b.org\r\nTo: bob@example.org\r\n",
}


@pytest.mark.parametrize("headers", BAD_HEADERS.values(), ids=BAD_HEADERS.keys())
def test_malformed_message_fails_alone_in_a_batch(
    hostile: Callable[..., HostileServer], certs: CertificateSet, headers: bytes
) -> None:
    """Headers the email package chokes on (IndexError, ...) fail their message only."""
    server = hostile()
    bad = parsed(headers + b"Subject: bad\r\n\r\nbody\r\n")
    with session(server.port, certs) as s:
        results = s.send_many([mail(0), bad, mail(2)])
        with pytest.raises(OAuthSMTPError):
            s.send(bad)
        assert isinstance(s.submit(bad).exception(), OAuthSMTPError)
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert results[1].message is not None
    assert results[1].message.startswith("refused before sending")
    assert subjects(server) == ["m0", "m2"]


class BrokenMessage(EmailMessage):
    """A message object that fails in a way no check foresaw."""

    def walk(self) -> Iterator[Any]:
        raise RuntimeError("broken message object")


def test_any_exception_while_preparing_fails_only_that_message(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Whatever raises while preparing one message, the batch goes on and errors are ours."""
    server = hostile()
    broken = BrokenMessage()
    broken["From"], broken["To"], broken["Subject"] = ALICE, BOB, "broken"
    with session(server.port, certs, asynchronous=True) as s:
        future = s.submit(broken)  # does not raise: the future holds the error
        results = s.send_many([mail(0), broken, mail(2)])
        with pytest.raises(ConfigurationError, match="RuntimeError"):
            s.send(broken)
    error = future.exception()
    assert isinstance(error, ConfigurationError)
    assert isinstance(error.__cause__, RuntimeError)
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert subjects(server) == ["m0", "m2"]


# -- values the server controls -------------------------------------------------------------
@pytest.mark.parametrize(
    "size", ["SIZE ²", "SIZE " + "9" * 5000, "SIZE -5", "SIZE 1e9", "SIZE"], ids=str.__len__
)
def test_hostile_size_keyword_is_ignored(
    hostile: Callable[..., HostileServer], certs: CertificateSet, size: str
) -> None:
    """A SIZE that is not 1-20 ASCII digits is no limit, not a ValueError."""
    server = hostile(extensions=("8BITMIME", size))
    with session(server.port, certs) as s:
        assert [r.status for r in s.send_many([mail(0), mail(1)])] == ["sent", "sent"]
    assert subjects(server) == ["m0", "m1"]


def test_parse_size() -> None:
    """RFC 1870 size-param: 1*20DIGIT; 0 means no fixed limit."""
    assert parse_size("35882577") == 35882577
    assert parse_size(" 1000 ") == 1000
    for value in ("", "0", "²", "٣", "1e9", "-5", "9" * 21, "9" * 5000, "10 MB"):
        assert parse_size(value) is None, value


def test_hostile_value_after_a_reconnect_keeps_the_batch_results(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """The connection drops mid-batch and the new one sends SIZE ²: the results survive.

    Before the fix the ValueError escaped send_many, losing the results of messages
    already sent, so a caller retrying the batch sent them twice.
    """
    server = hostile(
        drop_before_data_reply={0: 2}, extensions_by_connection={1: ("8BITMIME", "SIZE ²")}
    )
    with session(server.port, certs) as s:
        results = s.send_many([mail(i) for i in range(4)])
    assert [r.status for r in results] == ["sent", "unknown", "sent", "sent"]
    assert subjects(server) == ["m0", "m1", "m2", "m3"]
    assert len(server.connections) == 2


def test_control_characters_in_replies_do_not_reach_messages(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A reply with an escape sequence or a bare CR is quoted without them."""
    server = hostile(reject_mail=(ALICE,))
    server.greeting = "220 hostile\x1b[2J\rready"
    with session(server.port, certs) as s:
        [result] = s.send_many([mail()])
        greeting_free = "\x1b" not in repr(s.extensions)
    assert greeting_free
    server2 = hostile(greeting="554 go away\x1b]0;owned\x07\r")
    with pytest.raises(SMTPError) as caught:
        session(server2.port, certs).start()
    text = str(caught.value) + str(caught.value.server_message)
    assert not any(c in text for c in "\x1b\x07\r")
    assert caught.value.code == 554
    assert result.status == "failed"


@pytest.mark.parametrize("pipelining", [True, False], ids=["pipelined", "lock-step"])
def test_data_answered_without_354_is_a_clear_failure(
    hostile: Callable[..., HostileServer], certs: CertificateSet, pipelining: bool
) -> None:
    """DATA answered 250 (not 354): "failed", saying the body was never sent."""
    server = hostile(data_command_reply="250 2.0.0 whatever", pipelining=pipelining)
    with session(server.port, certs) as s:
        result = s.send(mail())
    assert (result.status, result.code) == ("failed", 250)
    assert result.message is not None
    assert "instead of 354" in result.message
    assert server.messages == []


# -- command lines over 512 octets (RFC 5321 §4.5.3.1.4) -----------------------------------
LONG = "x" * 600 + "@example.org"


def test_recipient_too_long_for_rcpt_is_refused_before_sending(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """An address that makes RCPT TO longer than 512 octets fails its message, unsent."""
    server = hostile()
    long_one = EmailMessage()
    long_one["From"], long_one["To"], long_one["Subject"] = ALICE, LONG, "long"
    long_one.set_content("body")
    with session(server.port, certs) as s:
        results = s.send_many([mail(0), long_one, mail(2)])
        with pytest.raises(ConfigurationError):
            s.send(long_one)
    assert [r.status for r in results] == ["sent", "failed", "sent"]
    assert results[1].message is not None
    assert results[1].message.startswith("refused before sending")
    assert b"x" * 600 not in server.received
    assert subjects(server) == ["m0", "m2"]


def test_envelope_problem() -> None:
    """MAIL FROM and RCPT TO lines are measured in octets, CRLF included."""
    fits = "a" * (512 - len("RCPT TO:<>\r\n") - len("@example.org")) + "@example.org"
    assert envelope_problem(OutgoingMessage(ALICE, (fits,), b"")) is None
    assert envelope_problem(OutgoingMessage(ALICE, ("a" + fits,), b"")) is not None
    sender = "é" * 300 + "@example.org"  # 600 octets in UTF-8
    problem = envelope_problem(OutgoingMessage(sender, (BOB,), b"", smtputf8=True))
    assert problem is not None
    assert "MAIL FROM" in problem
    assert "512" in problem


# -- constructor arguments ----------------------------------------------------------------------
@pytest.mark.parametrize(
    "kwargs",
    [
        {"timeout": float("inf")},
        {"timeout": float("nan")},
        {"timeout": -1},
        {"timeout": 1e10},
        {"timeout": 10**400},
        {"timeout": "5"},
        {"timeout": True},
        {"port": 70000},
        {"port": -5},
        {"port": "25"},
        {"port": True},
        {"host": ""},
        {"host": "smtp example.org"},
        {"host": "smtp\x00.example.org"},
        {"host": "smtp\x1b.example.org"},
        {"host": "smtp.example.org\n"},
        {"host": "a" * 300 + ".org"},
        {"host": "a" * 64 + ".org"},
        {"host": "smtp/.example.org"},
        {"host": 5},
        {"connections": 0},
        {"connections": 1000},
        {"connections": 1.5},
        {"security": ["starttls"]},
        {"security": "TLS"},
        {"ssl_context": "yes"},
        {"asynchronous": "yes"},
        {"auth_token": object(), "username": ALICE},
        {"password": "", "username": ALICE},
        {"password": "a\nb", "username": ALICE},
        {"username": "alice\x1b@example.org", "password": "x"},
        {"local_hostname": "client example"},
        {"local_hostname": "client\x7f"},
    ],
    ids=lambda kwargs: "-".join(f"{k}={v!r}"[:24] for k, v in kwargs.items()),
)
def test_every_constructor_argument_is_checked(kwargs: dict[str, Any]) -> None:
    """Bad values fail at construction with ConfigurationError, before any connection."""
    host = kwargs.pop("host", "smtp.example.org")
    with pytest.raises(ConfigurationError) as caught:
        SMTPSession(host, **kwargs)
    assert "a\nb" not in str(caught.value)  # a password is never echoed


@pytest.mark.parametrize(
    "host", ["smtp.gmail.com", "localhost", "127.0.0.1", "::1", "[::1]", "smtp_relay.lan."]
)
def test_valid_hosts_are_accepted(host: str) -> None:
    """Host names, IP addresses and bracketed IPv6 literals are accepted."""
    assert SMTPSession(host, timeout=86400).host == host


def test_send_many_needs_an_iterable_of_messages() -> None:
    """A single message (or a non-iterable) given to send_many is a ConfigurationError."""
    s = SMTPSession("smtp.example.org")
    for wrong in (mail(), EmailMessage(), "alice@example.org", 5):
        with pytest.raises(ConfigurationError, match="send_many"):
            s.send_many(wrong)  # type: ignore[arg-type]


# -- errors that say what to change ---------------------------------------------------------
def test_starttls_to_an_implicit_tls_port_fails_fast_with_the_fix(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """security='starttls' on an implicit-TLS port: not a silent wait for the whole timeout."""
    server = hostile(implicit_tls=True)
    with pytest.raises(SMTPError) as caught:
        session(server.port, certs, timeout=30).start()
    assert f"port {server.port} expects implicit TLS: use security='ssl'" in str(caught.value)
    assert b"EHLO" not in server.received


def test_silent_server_still_times_out_with_a_hint(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """No greeting and no TLS either: a timeout that mentions security='ssl'."""
    server = hostile(greeting=None)
    with pytest.raises(SMTPError, match="no greeting") as caught:
        session(server.port, certs, timeout=0.5).start()
    assert isinstance(caught.value, TimeoutError)
    assert "security='ssl'" in str(caught.value)


def test_ssl_to_a_plain_text_server_says_use_starttls(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """security='ssl' against a server that greets in plain text."""
    server = hostile()
    with pytest.raises(SMTPError) as caught:
        session(server.port, certs, security="ssl").start()
    assert "plain text" in str(caught.value)
    assert "security='starttls'" in str(caught.value)
    assert isinstance(caught.value.__cause__, ssl.SSLError)


def test_unknown_host_says_check_the_name() -> None:
    """A host that does not resolve (RFC 6761 .invalid) names the host and what to check."""
    with pytest.raises(SMTPConnectionError) as caught:
        SMTPSession("no-such-host.invalid", timeout=10).start()
    assert "cannot find the host 'no-such-host.invalid'" in str(caught.value)
    assert "spelling" in str(caught.value)


def test_international_host_name_uses_idna_2008() -> None:
    """A non-ASCII host becomes its IDNA 2008 A-label (straße is not strasse)."""
    with pytest.raises(SMTPConnectionError) as caught:
        SMTPSession("straße.invalid", timeout=10).start()
    assert "xn--strae-oqa.invalid" in str(caught.value)


def test_connection_refused_names_the_port() -> None:
    """Nothing listening: the error says to check the port."""
    import socket

    with socket.create_server(("127.0.0.1", 0)) as listener:
        port = listener.getsockname()[1]
    with pytest.raises(SMTPConnectionError, match="nothing listens on that port"):
        SMTPSession("127.0.0.1", port, timeout=10).start()


@pytest.mark.parametrize(
    ("kind", "hint"),
    [("self_signed", "self-signed"), ("wrong_host", "another host name")],
)
def test_certificate_failures_say_what_to_change(
    hostile: Callable[..., HostileServer],
    certs: CertificateSet,
    tmp_path_factory: pytest.TempPathFactory,
    kind: str,
    hint: str,
) -> None:
    """A certificate that does not verify: the reason and the fix."""
    if kind == "self_signed":
        bad = make_certificates(tmp_path_factory.mktemp("self"), self_signed=True)
        server = hostile(tls_context=bad.server_context())
        context = None
    else:
        bad = make_certificates(tmp_path_factory.mktemp("other"), hosts=("other.example",))
        server = hostile(tls_context=bad.server_context())
        context = bad.client_context()
    s = SMTPSession("localhost", server.port, auth_token=token(), ssl_context=context, timeout=10)
    with pytest.raises(SMTPError, match="does not verify") as caught:
        s.start()
    assert hint in str(caught.value)
    assert b"AUTH" not in server.received


def test_size_refusal_is_ours_with_both_numbers(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Over the server's advertised SIZE: our check, saying so, with both numbers."""
    server = hostile(extensions=("8BITMIME", "SIZE 2000"))
    big = mail(1, attachments=[("a.bin", b"\x00" * 3000)])
    with session(server.port, certs) as s:
        result = s.send(big)
    assert isinstance(result, SendResult)
    assert result.status == "failed"
    assert result.code is None
    assert result.message is not None
    assert "2,000" in result.message
    assert "checked this before sending" in result.message
    size = len(result.message.split(" octets")[0].split()[-1])
    assert size >= 5  # "4,xxx": the message's own size is given too
    assert server.messages == []


def test_no_thread_for_the_background_sender_is_our_error(
    hostile: Callable[..., HostileServer], certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The process cannot start another thread: submit() fails its future, start() raises
    SMTPError, and send() still works in the caller's thread."""
    server = hostile()
    s = session(server.port, certs, asynchronous=True)

    start = threading.Thread.start

    def no_sender_thread(self: threading.Thread) -> None:
        if self.name == "oauthsmtp-send":  # only the session's background sender
            raise RuntimeError("can't start new thread")
        start(self)

    monkeypatch.setattr(threading.Thread, "start", no_sender_thread)
    with pytest.raises(SMTPError, match="background sender"):
        s.start()
    future = s.submit(mail(0))
    assert isinstance(future.exception(), SMTPError)
    assert s.send(mail(1)).ok
    monkeypatch.undo()
    s.close()
    assert subjects(server) == ["m1"]


def test_the_batch_example_of_the_docs_runs(capsys: pytest.CaptureFixture[str]) -> None:
    """docs/sending.md's loop over send_many's results works for Email objects too."""
    from pathlib import Path

    text = (Path(__file__).parent.parent / "docs" / "sending.md").read_text(encoding="utf-8")
    section = text[text.index("## Batches") :]
    code = section[section.index("```python") + len("```python") : section.index("```\n")]
    loop = code[code.index("\nfor ") + 1 :]
    messages = [mail(0), mail(1)]
    results = [SendResult("sent", 250, "ok"), SendResult("failed", 550, "5.1.1 no")]
    exec(loop, {"messages": messages, "results": results})  # noqa: S102 - our own docs
    assert "550" in capsys.readouterr().out
