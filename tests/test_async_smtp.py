"""AsyncSMTPSession against the development SMTP server and against hostile servers.

Each test runs its coroutine with ``asyncio.run`` (no plugin needed). The rules are those
of SMTPSession (tests/test_smtp.py): TLS before AUTH, certificates verified, one refresh
and one retry after a refused token, pipelining at about one round trip per message,
results kept across a dropped connection, only oauthsmtp's errors.
"""

from __future__ import annotations

import ast
import asyncio
import logging
import re
import threading
from collections.abc import Callable, Coroutine, Iterator
from datetime import datetime, timedelta, timezone
from email import policy
from email.parser import BytesParser
from types import SimpleNamespace
from typing import Any, TypeVar

import pytest
from hostile_smtp import HostileServer

import oauthsmtp
from oauthsmtp import (
    AsyncSMTPSession,
    AuthToken,
    ConfigurationError,
    Email,
    OAuthSMTPError,
    SMTPAuthError,
    SMTPError,
    SMTPSession,
)
from oauthsmtp._oauth.tokenresponse import TokenState
from oauthsmtp.devserver import CertificateSet, SMTPServer, make_certificates

ALICE = "alice@example.org"
BOB = "bob@example.org"
GOOD = "good-token"
VALID = {GOOD: SimpleNamespace(user=ALICE), "fresh-token": SimpleNamespace(user=ALICE)}

T = TypeVar("T")


def run(coro: Coroutine[Any, Any, T]) -> T:
    return asyncio.run(asyncio.wait_for(coro, 60))


# -- fixtures -------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def self_signed(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    return make_certificates(tmp_path_factory.mktemp("self-signed"), self_signed=True)


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
        self.threads: set[str] = set()

    def __call__(self, state: TokenState) -> TokenState:
        self.calls += 1
        self.threads.add(threading.current_thread().name)
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


def session(port: int, certs: CertificateSet, **kwargs: Any) -> AsyncSMTPSession:
    kwargs.setdefault("auth_token", token()[0])
    kwargs.setdefault("timeout", 10)
    kwargs.setdefault("ssl_context", certs.client_context())
    return AsyncSMTPSession("localhost", port, **kwargs)


def subjects(server: HostileServer) -> list[str]:
    return [
        next(line for line in m.data.split(b"\r\n") if line.startswith(b"Subject:"))[9:].decode()
        for m in server.messages
    ]


# -- the happy paths against the development server ----------------------------------------
@pytest.mark.parametrize(
    ("security", "mechanism"),
    [("starttls", "XOAUTH2"), ("starttls", "OAUTHBEARER"), ("ssl", "XOAUTH2"), ("ssl", None)],
)
def test_send_and_send_many(
    dev: SMTPServer, certs: CertificateSet, security: str, mechanism: str | None
) -> None:
    """async with / await send / await send_many over STARTTLS or implicit TLS."""
    port = dev.port if security == "starttls" else dev.tls_port

    async def main() -> tuple[Any, list[Any], str | None, dict[str, str]]:
        async with session(port, certs, security=security, mechanism=mechanism) as s:
            one = await s.send(mail(0))
            many = await s.send_many([mail(1), mail(2, to=["nobody@example.org", BOB])])
            return one, many, s.auth_mechanism, dict(s.extensions)

    one, many, used, extensions = run(main())
    assert one.ok
    assert one.code == 250
    assert [r.status for r in many] == ["sent", "sent"]
    assert many[1].refused
    assert "nobody@example.org" in many[1].refused
    assert used == (mechanism or "OAUTHBEARER")
    assert "STARTTLS" not in extensions or security == "starttls"
    assert len(dev.wait_for_messages(3)) == 3
    assert len(dev.auth_log) == 1  # one connection (a greeting probe would not AUTH)


def test_start_and_close_are_explicit_too(dev: SMTPServer, certs: CertificateSet) -> None:
    """start() connects at once; close() is idempotent; the session can start again."""
    s = session(dev.port, certs)

    async def main() -> list[bool]:
        states = [s.connected]
        await s.start()
        states.append(s.connected)
        await s.close()
        await s.close()
        states.append(s.connected)
        return states

    async def again() -> bool:
        try:
            return (await s.send(mail(0))).ok  # send() connects on first use
        finally:
            await s.close()

    assert run(main()) == [False, True, False]
    assert run(again())  # another event loop, after close(): a new connection
    assert len(dev.wait_for_messages(1)) == 1
    assert len(dev.auth_log) == 2


def test_refused_recipients_and_malformed_messages(dev: SMTPServer, certs: CertificateSet) -> None:
    """A batch keeps going past a malformed message; send() raises for one."""

    async def main() -> list[Any]:
        async with session(dev.port, certs) as s:
            with pytest.raises(ConfigurationError):
                await s.send(mail(0, sender="alice@example.org\nBcc: x@example.org"))
            bad = BytesParser(policy=policy.default).parsebytes(
                b"From: alice@example.org\r\nTo: <\r\nSubject: m3\r\n\r\nbody\r\n"
            )
            return await s.send_many([mail(1), mail(2, to=["nobody@example.org"]), bad])

    results = run(main())
    assert [r.status for r in results] == ["sent", "failed", "failed"]
    assert results[1].code == 550
    assert (results[2].message or "").startswith("refused before sending")


def test_constructor_checks_are_those_of_smtpsession() -> None:
    """The same arguments are refused with the same messages, before any connection."""
    cases: list[dict[str, Any]] = [
        {"timeout": float("inf")},
        {"port": 0},
        {"security": "TLS"},
        {"auth_token": object(), "username": ALICE},
        {"password": "a\nb", "username": ALICE},
        {"password": "x", "username": ALICE, "security": "none", "host": "smtp.example.org"},
        {"connections": 0},
        {"host": "smtp example.org"},
        {"mechanism": "PLAIN", "auth_token": token()[0]},
    ]
    for kwargs in cases:
        host = kwargs.pop("host", "smtp.example.org")
        with pytest.raises(ConfigurationError) as sync_error:
            SMTPSession(host, **kwargs)
        with pytest.raises(ConfigurationError) as async_error:
            AsyncSMTPSession(host, **kwargs)
        assert str(async_error.value) == str(sync_error.value)
        assert "a\nb" not in str(async_error.value)
    with pytest.raises(ConfigurationError, match="iterable of messages"):
        run(AsyncSMTPSession("smtp.example.org").send_many(mail(0)))  # type: ignore[arg-type]


# -- TLS rules --------------------------------------------------------------------------------
def test_starttls_is_required(hostile: Callable[..., HostileServer], certs: CertificateSet) -> None:
    """No STARTTLS offered: the session stops before AUTH; nothing secret was sent."""
    server = hostile(starttls="missing", pre_tls_auth=("XOAUTH2",))
    with pytest.raises(SMTPError, match="does not offer STARTTLS"):
        run(session(server.port, certs).start())
    assert not server.auth_attempts
    assert not any(b"AUTH" in line for c in server.connections for line in c.lines)


def test_certificates_are_verified(
    hostile: Callable[..., HostileServer], self_signed: CertificateSet, certs: CertificateSet
) -> None:
    """A self-signed certificate fails closed with a hint; the default context too."""
    server = hostile(tls_context=self_signed.server_context())
    with pytest.raises(SMTPError, match=r"does not verify.*self-signed"):
        run(session(server.port, certs).start())
    with pytest.raises(SMTPError, match="does not verify"):
        run(session(server.port, certs, ssl_context=None).start())
    assert not server.auth_attempts


def test_ehlo_is_sent_again_after_tls(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Only the post-TLS EHLO counts: AUTH offered only before TLS is not used."""
    server = hostile(pre_tls_auth=("XOAUTH2",), auth=())
    with pytest.raises(SMTPAuthError, match="offers AUTH"):
        run(session(server.port, certs).start())
    ehlos = [line for line in server.connections[0].lines if line.startswith(b"EHLO")]
    assert len(ehlos) == 2
    assert not server.auth_attempts


def test_data_injected_after_starttls_reply_is_refused(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Bytes after 220 to STARTTLS close the connection (CVE-2011-0411)."""
    server = hostile(starttls="inject")
    with pytest.raises(SMTPError, match="CVE-2011-0411"):
        run(session(server.port, certs).start())
    assert not server.auth_attempts


# -- AUTH ---------------------------------------------------------------------------------------
def test_refused_token_is_refreshed_once_off_the_loop(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """535 5.7.3 -> one refresh (in a worker thread, not the loop's) and one retry."""
    server = hostile(tokens=("fresh-token",), failure="microsoft")
    auth, refresher = token("stale-token", "fresh-token")

    async def main() -> Any:
        async with session(server.port, certs, auth_token=auth) as s:
            return await s.send(mail(0))

    assert run(main()).ok
    assert refresher.calls == 1
    assert threading.main_thread().name not in refresher.threads
    assert [a.token for a in server.auth_attempts] == ["stale-token", "fresh-token"]


def test_configuration_refusal_is_not_retried(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """535 5.7.139 (SMTP AUTH disabled for the tenant) is final: no refresh, one attempt."""
    server = hostile(failure="tenant")
    auth, refresher = token("good-token")
    with pytest.raises(SMTPAuthError) as caught:
        run(session(server.port, certs, auth_token=auth).start())
    assert caught.value.code == 535
    assert not caught.value.retryable
    assert "5.7.139" in str(caught.value)
    assert refresher.calls == 0
    assert len(server.auth_attempts) == 1
    assert "good-token" not in str(caught.value)


def test_a_refusal_is_tried_again_by_the_next_call(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A failed start() or send() leaves no stale error: the next call tries AUTH again."""
    server = hostile(failure="tenant")
    s = session(server.port, certs, auth_token=token("good-token")[0])

    async def main() -> None:
        for _ in range(2):
            with pytest.raises(SMTPAuthError, match=r"5\.7\.139"):
                await s.start()
        with pytest.raises(SMTPAuthError, match=r"5\.7\.139"):
            await s.send(mail(0))
        await s.close()

    run(main())
    assert len(server.auth_attempts) == 3


def test_too_many_challenges_and_a_3kb_token(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """The SASL exchange is SMTPSession's: '*' after 5 challenges; a 3 KB token waits for 334."""
    server = hostile(challenges=50)
    with pytest.raises(SMTPAuthError, match="more than 5 challenges"):
        run(session(server.port, certs).start())
    [attempt] = server.auth_attempts
    assert attempt.responses[-1] == b"*"
    assert len(attempt.responses) == 7  # the initial response, 5 answers, then '*'

    big = "big." + "A1b2C3d4" * 375
    server = hostile(tokens=(big,))

    async def send_big() -> bool:
        async with session(server.port, certs, auth_token=token(big)[0]) as s:
            return (await s.send(mail(0))).ok

    assert run(send_big())
    assert [a.initial_response for a in server.auth_attempts] == [False]


@pytest.mark.parametrize(("kind", "match"), [("long", "8192 octets"), ("endless", "128 lines")])
def test_reply_caps(
    hostile: Callable[..., HostileServer], certs: CertificateSet, kind: str, match: str
) -> None:
    """A 1 MB line or endless continuation lines end the session with our error."""
    server = hostile(ehlo_line=kind)
    with pytest.raises(SMTPError, match=match):
        run(session(server.port, certs).start())


def test_sync_and_async_sessions_share_one_refresh(dev: SMTPServer, certs: CertificateSet) -> None:
    """An expired token used by a blocking and an asyncio session at once: one refresh."""
    auth, refresher = token("expired-token", "fresh-token")
    auth.expire()
    barrier = threading.Barrier(2, timeout=30)

    def blocking() -> bool:
        barrier.wait()
        with SMTPSession(
            "localhost", dev.port, auth_token=auth, ssl_context=certs.client_context(), timeout=10
        ) as s:
            return s.send(mail(0)).ok

    async def main() -> list[bool]:
        async def asynchronous() -> bool:
            await asyncio.to_thread(barrier.wait)
            async with session(dev.port, certs, auth_token=auth, connections=3) as s:
                return all(r.ok for r in await s.send_many([mail(i) for i in range(1, 7)]))

        return list(await asyncio.gather(asyncio.to_thread(blocking), asynchronous()))

    assert run(main()) == [True, True]
    assert refresher.calls == 1
    assert all(ok for _, _, ok in dev.auth_log)
    assert len(dev.wait_for_messages(7)) == 7


def test_password_auth(hostile: Callable[..., HostileServer], certs: CertificateSet) -> None:
    """password= uses PLAIN (or LOGIN) after TLS, as SMTPSession does."""
    server = hostile(auth=("LOGIN",), password="s3cret")

    async def main() -> Any:
        async with session(
            server.port, certs, auth_token=None, username=ALICE, password="s3cret"
        ) as s:
            return await s.send(mail(0)), s.auth_mechanism

    result, used = run(main())
    assert result.ok
    assert used == "LOGIN"


# -- pipelining, drops and concurrency -------------------------------------------------------
def test_pipelining_costs_about_one_round_trip_per_message(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """With PIPELINING each envelope comes in one write; a batch costs ~1 write per message."""
    server = hostile()
    count = 6

    async def main() -> list[Any]:
        async with session(server.port, certs) as s:
            return await s.send_many([mail(i, cc=["c@example.org"]) for i in range(count)])

    assert all(r.ok for r in run(main()))
    assert not server.pipelining_violations
    conn = server.connections[0]
    after_auth = conn.chunks[[c.startswith(b"AUTH") for c in conn.chunks].index(True) + 1 :]
    assert len(after_auth) <= count + 2  # envelope 1, body k + envelope k+1 ..., body n, QUIT
    assert subjects(server) == [f"m{i}" for i in range(count)]


def test_without_pipelining(hostile: Callable[..., HostileServer], certs: CertificateSet) -> None:
    """Lockstep mode gives the same results."""
    server = hostile(pipelining=False, reject_rcpt=("gone@example.org",))
    batch = [mail(0), mail(1, to=["gone@example.org"]), mail(2, to=["gone@example.org", BOB])]

    async def main() -> list[Any]:
        async with session(server.port, certs) as s:
            return await s.send_many(batch)

    assert [r.status for r in run(main())] == ["sent", "failed", "sent"]
    assert subjects(server) == ["m0", "m2"]


def test_drop_before_end_of_data_reply_is_unknown(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Lost after the 3rd body: 'unknown', not resent; the rest go on a new connection."""
    server = hostile(drop_before_data_reply={0: 3})

    async def main() -> list[Any]:
        async with session(server.port, certs) as s:
            return await s.send_many([mail(i) for i in range(5)])

    results = run(main())
    assert [r.status for r in results] == ["sent", "sent", "unknown", "sent", "sent"]
    assert results[2].code is None
    assert subjects(server) == ["m0", "m1", "m2", "m3", "m4"]  # each exactly once
    assert len(server.connections) == 2


def test_drop_that_cannot_be_cured_keeps_the_results(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Every reconnect is dropped too: results so far are kept, the rest fail; ours only."""
    server = hostile(drop_on_mail={0: 3, 1: 1, 2: 1})

    async def main() -> list[Any]:
        async with session(server.port, certs) as s:
            return await s.send_many([mail(i) for i in range(5)])

    results = run(main())
    assert [r.status for r in results] == ["sent", "sent", "failed", "failed", "failed"]
    assert all("not sent" in (r.message or "") for r in results[2:])


@pytest.mark.parametrize("how", ["drop_on_mail", "bye_on_mail", "bye_on_data"])
def test_drop_before_body_resends_once(
    hostile: Callable[..., HostileServer], certs: CertificateSet, how: str
) -> None:
    """Lost before a body was sent, or a 421 refusing it: sent once, on a new connection."""
    server = hostile(**{how: {0: 2}})

    async def main() -> tuple[list[Any], bool]:
        async with session(server.port, certs) as s:
            results = await s.send_many([mail(i) for i in range(3)])
            return results, (await s.send(mail(3))).ok

    results, later = run(main())
    assert [r.status for r in results] == ["sent"] * 3
    assert later
    assert subjects(server) == ["m0", "m1", "m2", "m3"]
    assert len(server.connections) == 2


@pytest.mark.parametrize("where", ["greeting", "mail", "data"])
def test_pool_shrinks_on_connection_limit(
    hostile: Callable[..., HostileServer], certs: CertificateSet, where: str
) -> None:
    """Beyond 2 connections the server answers 432 4.3.2: the session carries on with 2."""
    server = hostile(max_connections=2, limit_at=where, data_delay=0.01)

    async def main() -> tuple[list[Any], list[Any], int]:
        async with session(server.port, certs, connections=4) as s:
            first = await s.send_many([mail(i) for i in range(20)])
            opened = len(server.connections)
            later = await s.send_many([mail(i) for i in range(20, 30)])
            return first, later, opened

    first, later, opened = run(main())
    assert [r.status for r in first + later] == ["sent"] * 30
    assert server.refused_over_limit >= 1
    assert len(server.connections) == opened  # no third connection tried again
    assert sorted(subjects(server)) == sorted(f"m{i}" for i in range(30))  # once each


def test_pool_authenticates_once_with_a_bad_token(dev: SMTPServer, certs: CertificateSet) -> None:
    """A refused token is refreshed once, by the first connection; the others never send AUTH."""
    auth, refresher = token("expired-token", "still-bad-token", "never-used")

    async def main() -> None:
        s = session(dev.port, certs, auth_token=auth, connections=4)
        try:
            with pytest.raises(SMTPAuthError):
                await s.send_many([mail(i) for i in range(8)])
        finally:
            await s.close()

    run(main())
    assert refresher.calls == 1
    assert len(dev.auth_log) == 2  # the first attempt and its one retry
    assert dev.wait_for_messages(0) == []


def test_starttls_to_an_implicit_tls_port_fails_fast_with_the_fix(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """A silent server that answers in TLS: security='ssl' is named, well before the timeout."""
    server = hostile(implicit_tls=True)
    with pytest.raises(SMTPError, match="use security='ssl'") as caught:
        run(session(server.port, certs, timeout=40).start())
    assert "sent no SMTP greeting and answers in TLS" in str(caught.value)


def test_send_raises_ours_when_no_connection_can_be_made(certs: CertificateSet) -> None:
    """Nothing listens: send() raises an OAuthSMTPError, never a foreign exception."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    s = AsyncSMTPSession("127.0.0.1", port, timeout=5, ssl_context=certs.client_context())
    with pytest.raises(OAuthSMTPError, match="connection refused"):
        run(s.send(mail(0)))
    with pytest.raises(OAuthSMTPError, match="connection refused"):
        run(s.send_many([mail(0), mail(1)]))


def test_silent_server_times_out(
    hostile: Callable[..., HostileServer], certs: CertificateSet
) -> None:
    """Every wait is bounded: no greeting within the timeout is SMTPTimeoutError."""
    server = hostile(greeting=None)
    with pytest.raises(oauthsmtp.SMTPTimeoutError, match="no greeting"):
        run(session(server.port, certs, timeout=0.5).start())


def test_concurrent_sends_share_connections_without_threads(
    dev: SMTPServer, certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """40 concurrent send() calls on one loop: 2 connections, a handful of threads at most."""
    started: list[str] = []
    original = threading.Thread.start

    def counting_start(self: threading.Thread) -> None:
        started.append(self.name)
        original(self)

    monkeypatch.setattr(threading.Thread, "start", counting_start)
    count = 40

    async def main() -> list[Any]:
        async with session(dev.port, certs, connections=2) as s:
            return list(await asyncio.gather(*(s.send(mail(i)) for i in range(count))))

    results = run(main())
    assert [r.status for r in results] == ["sent"] * count
    assert len(dev.auth_log) <= 2  # connections that logged in
    assert len(started) <= 4, started  # asyncio.to_thread's workers for the token, not 40
    assert len(dev.wait_for_messages(count)) == count


def test_import_oauthsmtp_does_not_import_asyncio() -> None:
    """The name is lazy: asyncio is imported only when AsyncSMTPSession is used."""
    import subprocess
    import sys

    code = (
        "import sys, oauthsmtp; a = 'asyncio' in sys.modules; oauthsmtp.AsyncSMTPSession; "
        "print(a, 'asyncio' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "True"]


def test_the_fastapi_sketch_in_the_docs_is_valid_python() -> None:
    """docs/sending.md's FastAPI sketch (a ```py block, not run: FastAPI is not installed)."""
    from pathlib import Path

    doc = Path(__file__).resolve().parent.parent / "docs" / "sending.md"
    sketches = re.findall(r"^```py\n(.*?)^```", doc.read_text(encoding="utf-8"), re.S | re.M)
    fastapi = [code for code in sketches if "AsyncSMTPSession" in code]
    assert len(fastapi) == 1
    tree = ast.parse(fastapi[0])
    names = {node.name for node in ast.walk(tree) if isinstance(node, ast.AsyncFunctionDef)}
    assert names == {"lifespan", "contact"}
    assert "await app.state.smtp.send(message)" in fastapi[0]


def test_debug_log_never_shows_the_token(
    dev: SMTPServer, certs: CertificateSet, caplog: pytest.LogCaptureFixture
) -> None:
    """The protocol log at DEBUG shows the commands, never the token or the SASL string."""
    import base64

    from oauthsmtp._smtp.sasl import oauthbearer_initial, xoauth2_initial

    caplog.set_level(logging.DEBUG, logger="oauthsmtp")

    async def main() -> bool:
        async with session(dev.port, certs, mechanism="XOAUTH2") as s:
            return (await s.send(mail(0))).ok

    assert run(main())
    text = caplog.text
    assert "AUTH XOAUTH2 [masked]" in text
    assert "MAIL FROM:<alice@example.org>" in text
    for secret in (
        GOOD,
        base64.b64encode(GOOD.encode()).decode(),
        xoauth2_initial(ALICE, GOOD).decode(),
        oauthbearer_initial(ALICE, GOOD, "localhost", dev.port).decode(),
    ):
        assert secret not in text
