"""`oauthsmtp relay` in a real subprocess: swaks and smtplib as clients, the development
provider upstream; replies only after upstream answered, loopback only, local AUTH,
bounded size, concurrent clients, clean shutdown on SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import signal
import smtplib
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from email import policy
from email.message import EmailMessage
from pathlib import Path

import pytest
from components import Lines, require_program, spawned
from test_cli import ACCOUNT, CLI, login

from oauthsmtp._cli import values
from oauthsmtp._cli.relayserver import reply_for
from oauthsmtp._smtp.transact import SendResult
from oauthsmtp.devserver import AuthServer, CertificateSet, SMTPServer

PASSWORD = "local-relay-password"


# -- replies (pure) --------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("result", "start"),
    [
        (SendResult("sent", 250, "2.0.0 OK queued"), "250 2.0.0 sent on: 250 2.0.0 OK queued"),
        (SendResult("unknown"), "451 4.4.2"),
        (SendResult("failed", 421, "4.3.2 try later"), "451 4.3.0"),
        (SendResult("failed", 554, "5.7.1 spam"), "554 5.3.0"),
        (SendResult("failed", 552, "5.3.4 too big"), "552 5.3.4"),
        (SendResult("failed", None, "server lacks SMTPUTF8"), "554 5.6.0"),
        (SendResult("failed", 550, "no", {"a@x.test": (550, "no")}), "550 5.1.1"),
        (SendResult("sent", 250, "OK", {"a@x.test": (450, "later")}), "451 4.5.0"),
        (SendResult("sent", 250, "OK", {"a@x.test": (550, "no")}), "554 5.5.0"),
    ],
    ids=[
        "sent",
        "unknown",
        "temporary",
        "permanent",
        "size",
        "unsendable",
        "all-refused",
        "some-refused-temporary",
        "some-refused-permanent",
    ],
)
def test_reply_for(result: SendResult, start: str) -> None:
    """250 only when every recipient got it; temporary upstream failures are 4xx."""
    reply = reply_for(result)
    assert reply.startswith(start)
    assert "\r" not in reply
    assert "\n" not in reply


def test_reply_text_cannot_inject_lines() -> None:
    """Upstream text with CR/LF becomes one reply line."""
    reply = reply_for(SendResult("failed", 554, "bad\r\n250 OK\r\n"))
    assert reply == "554 5.3.0 the upstream server refused it: 554 bad 250 OK"


# -- the relay, for real ---------------------------------------------------------------------


@pytest.fixture
def cli(tmp_path: Path, certs: CertificateSet) -> CLI:
    return CLI(tmp_path / "home", certs)


@pytest.fixture
def servers(certs: CertificateSet) -> Iterator[tuple[AuthServer, SMTPServer]]:
    with (
        AuthServer(mode="auto", user=ACCOUNT) as auth,
        SMTPServer(
            auth.validate_access_token, certificates=certs, reject_recipients=["nobody@x.test"]
        ) as smtp,
    ):
        yield auth, smtp


class Relay:
    def __init__(self, proc: subprocess.Popen[str], lines: Lines, port: int) -> None:
        self.proc = proc
        self.lines = lines
        self.port = port

    def stop(self, signum: int = signal.SIGTERM) -> str:
        """Signal the relay; it must exit 0 within a bound. Returns its stderr."""
        self.proc.send_signal(signum)
        assert self.proc.wait(timeout=30) == 0, self.lines.rest()
        return self.lines.rest()


@contextmanager
def relay(cli: CLI, *args: str) -> Iterator[Relay]:
    command = [sys.executable, "-m", "oauthsmtp", "relay", "--account", ACCOUNT,
               "--listen", "127.0.0.1:0", *args]  # fmt: skip
    with spawned(command, env=cli.env, stdin=subprocess.DEVNULL, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        lines = Lines(proc.stderr)
        match = lines.until(r"listening on 127\.0\.0\.1:(\d+)", timeout=30)
        yield Relay(proc, lines, int(match.group(1)))


def rich_message(to: str = "you@x.test") -> EmailMessage:
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = ACCOUNT
    message["To"] = to
    message["Subject"] = "Scan 0042 " + "long words " * 8
    message.set_content("Grüße from the scanner\n.\n")
    message.add_attachment(bytes(range(256)) * 256, maintype="application", subtype="pdf",
                           filename="scan.pdf")  # fmt: skip
    return message


def test_smtplib_message_arrives_intact_and_answer_waits_for_upstream(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """smtplib, plain SMTP on loopback: by the time it gets 250 the upstream server already
    holds the message, byte for byte, sent with the account's token."""
    auth, smtp = servers
    login(cli, auth, smtp)
    message = rich_message()
    data = message.as_bytes()
    with relay(cli) as r:
        with smtplib.SMTP("127.0.0.1", r.port, timeout=30) as client:
            code, _ = client.ehlo()
            assert code == 250
            assert client.has_extn("size")
            assert not client.has_extn("auth")  # no --user: nothing to log in to
            refused = client.sendmail(ACCOUNT, ["you@x.test", "bcc@x.test"], data)
            assert refused == {}
            assert len(smtp.messages) == 1  # no waiting: upstream answered before our 250
        r.stop()
    received = smtp.messages[0]
    assert received.user == ACCOUNT
    assert received.rcpt_tos == ("you@x.test", "bcc@x.test")
    assert received.mail_from == ACCOUNT
    assert received.data == data


def test_swaks_with_auth_plain_on_loopback_and_starttls(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """swaks with AUTH PLAIN and LOGIN: plain on loopback, and after STARTTLS with the
    relay's own certificate; an attachment arrives intact."""
    require_program("swaks", "swaks")
    auth, smtp = servers
    login(cli, auth, smtp)
    password_file = tmp_path / "relay-password"
    password_file.write_text(PASSWORD + "\n")
    password_file.chmod(0o644)
    attachment = tmp_path / "scan.pdf"
    attachment.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 64)
    with relay(cli, "--user", "scanner", "--password-file", str(password_file)) as r:
        for extra in (["--auth", "PLAIN"], ["--auth", "LOGIN", "--tls"]):
            proc = subprocess.run(
                ["swaks", "--server", "127.0.0.1", "--port", str(r.port), "--from", ACCOUNT,
                 "--to", "you@x.test", "--auth-user", "scanner", "--auth-password", PASSWORD,
                 "--header", f"Subject: swaks {extra[1]}", "--attach", f"@{attachment}",
                 "--timeout", "30", *extra],
                capture_output=True, text=True, timeout=60, check=False,
            )  # fmt: skip
            assert proc.returncode == 0, proc.stdout + proc.stderr
            arrow = "<~" if "--tls" in extra else "<-"  # swaks marks lines read over TLS
            assert f"{arrow}  250 2.0.0 sent on" in proc.stdout
        stderr = r.stop()
    assert "can be read by other users; chmod 600 it" in stderr
    assert [m.subject for m in smtp.messages] == ["swaks PLAIN", "swaks LOGIN"]
    for received in smtp.messages:
        part = next(received.message.iter_attachments())
        assert part.get_content() == attachment.read_bytes()


def test_auth_required_and_checked(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """With --user, MAIL before AUTH is refused, a wrong password too; nothing goes upstream.
    STARTTLS is offered with a certificate made at start."""
    auth, smtp = servers
    login(cli, auth, smtp)
    password_file = tmp_path / "relay-password"
    password_file.write_text(PASSWORD)
    password_file.chmod(0o600)
    with relay(cli, "--user", "scanner", "--password-file", str(password_file)) as r:
        with smtplib.SMTP("127.0.0.1", r.port, timeout=30) as client:
            client.ehlo()
            assert client.has_extn("starttls")
            code, _ = client.mail(ACCOUNT)
            assert code == 530
            with pytest.raises(smtplib.SMTPAuthenticationError) as caught:
                client.login("scanner", "wrong")
            assert caught.value.smtp_code == 535
        with smtplib.SMTP("127.0.0.1", r.port, timeout=30) as client:
            client.starttls(context=ssl._create_unverified_context())  # noqa: S323 - self-signed
            client.login("scanner", PASSWORD)
            assert client.sendmail(ACCOUNT, ["you@x.test"], b"Subject: ok\r\n\r\nhi\r\n") == {}
        assert "warning" not in r.stop()
    assert [m.subject for m in smtp.messages] == ["ok"]


def test_upstream_failures_reach_the_client(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """A refused recipient is 550 after DATA; the upstream server down is 451 (the client
    keeps the message); a message over --max-size is 552 before anything goes upstream."""
    auth, smtp = servers
    login(cli, auth, smtp)
    with relay(cli, "--max-size", "2000") as r:
        with smtplib.SMTP("127.0.0.1", r.port, timeout=30) as client:
            with pytest.raises(smtplib.SMTPDataError) as caught:
                client.sendmail(ACCOUNT, ["nobody@x.test"], b"Subject: s\r\n\r\nhi\r\n")
            assert caught.value.smtp_code == 550
            assert b"nobody@x.test" in caught.value.smtp_error
            with pytest.raises(smtplib.SMTPException) as too_big:
                client.sendmail(ACCOUNT, ["you@x.test"], b"Subject: s\r\n\r\n" + b"x" * 3000)
            assert "552" in str(too_big.value)
        assert smtp.messages == []
        smtp.stop()
        with smtplib.SMTP("127.0.0.1", r.port, timeout=60) as client:
            with pytest.raises(smtplib.SMTPDataError) as down:
                client.sendmail(ACCOUNT, ["you@x.test"], b"Subject: s\r\n\r\nhi\r\n")
            assert down.value.smtp_code == 451
        r.stop()


def test_concurrent_clients(cli: CLI, servers: tuple[AuthServer, SMTPServer]) -> None:
    """Eight clients at once: each gets 250, and each message arrives once."""
    auth, smtp = servers
    login(cli, auth, smtp)
    errors: list[BaseException] = []
    with relay(cli) as r:
        barrier = threading.Barrier(8, timeout=30)

        def send(number: int) -> None:
            try:
                with smtplib.SMTP("127.0.0.1", r.port, timeout=30) as client:
                    client.ehlo()
                    barrier.wait()
                    message = f"Subject: client {number}\r\n\r\nhello\r\n".encode()
                    assert client.sendmail(ACCOUNT, [f"to{number}@x.test"], message) == {}
            except BaseException as exc:
                errors.append(exc)

        threads = [threading.Thread(target=send, args=(n,)) for n in range(8)]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(60)
        assert not any(thread.is_alive() for thread in threads)
        stderr = r.stop(signal.SIGINT)
    assert "stopping: no new connections" in stderr
    assert "relay: stopped" in stderr
    assert errors == []
    assert sorted(m.subject for m in smtp.messages) == sorted(f"client {n}" for n in range(8))


def test_clients_beyond_max_clients_get_421_and_later_ones_are_served(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """--max-clients 2: a third client is told 421 (try later) and closed; once one of the
    two leaves, the next client is served and its message arrives."""
    auth, smtp = servers
    login(cli, auth, smtp)
    with relay(cli, "--max-clients", "2") as r:
        first = smtplib.SMTP("127.0.0.1", r.port, timeout=30)
        second = smtplib.SMTP("127.0.0.1", r.port, timeout=30)
        try:
            assert first.ehlo()[0] == 250
            assert second.ehlo()[0] == 250
            with pytest.raises(smtplib.SMTPConnectError) as refused:
                smtplib.SMTP("127.0.0.1", r.port, timeout=30)
            assert refused.value.smtp_code == 421
            assert b"4.3.2" in refused.value.smtp_error
            assert b"try again later" in refused.value.smtp_error
            first.quit()
            message = b"Subject: after the crowd\r\n\r\nhello\r\n"
            for _ in range(100):  # the relay notices the first client left within a moment
                try:
                    third = smtplib.SMTP("127.0.0.1", r.port, timeout=30)
                    break
                except smtplib.SMTPConnectError:
                    threading.Event().wait(0.05)
            else:
                pytest.fail("a client was still refused after one of two left")
            with third:
                assert third.sendmail(ACCOUNT, ["to@x.test"], message) == {}
        finally:
            second.close()
        r.stop()
    assert [m.subject for m in smtp.messages] == ["after the crowd"]


def test_non_loopback_refused_without_allow_remote(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """--listen 0.0.0.0 without --allow-remote: exit 2 before binding anything."""
    auth, smtp = servers
    login(cli, auth, smtp)
    proc = cli("relay", "--account", ACCOUNT, "--listen", "0.0.0.0:0", check=2)
    assert "--allow-remote" in proc.stderr
    proc = cli("relay", "--account", ACCOUNT, "--listen", "localhost:2525", check=2)
    assert "IP address" in proc.stderr


def test_missing_extra_named(cli: CLI) -> None:
    """Without aiosmtpd the error names the extra to install."""
    code = (
        "import sys; sys.modules['aiosmtpd'] = None\n"
        "from oauthsmtp._cli.main import main\n"
        "sys.exit(main(['relay', '--listen', '127.0.0.1:0']))\n"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, env=cli.env, timeout=60,
        check=False,
    )  # fmt: skip
    assert proc.returncode == 1
    assert "pip install 'oauthsmtp[relay]'" in proc.stderr


def test_login_needed_upstream_is_451_with_the_command(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """The account's refresh token revoked while the relay runs: the client gets 451 (it keeps
    the message) naming the login command; the relay keeps running."""
    auth, smtp = servers
    login(cli, auth, smtp)
    with relay(cli) as r:
        auth.revoke_all_refresh_tokens()
        auth.expire_access_tokens()
        with (
            smtplib.SMTP("127.0.0.1", r.port, timeout=60) as client,
            pytest.raises(smtplib.SMTPDataError) as caught,
        ):
            client.sendmail(ACCOUNT, ["you@x.test"], b"Subject: s\r\n\r\nhi\r\n")
        assert caught.value.smtp_code == 451
        assert f"oauthsmtp login --account {ACCOUNT}".encode() in caught.value.smtp_error
        assert r.proc.poll() is None
        r.stop()
    assert smtp.messages == []


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("127.0.0.1:2525", ("127.0.0.1", 2525)),
        ("[::1]:0", ("::1", 0)),
        ("0.0.0.0:25", ("0.0.0.0", 25)),
    ],
)
def test_listen_address(text: str, expected: tuple[str, int]) -> None:
    """--listen takes an IP literal and a port (0: any free one)."""
    assert values.listen_address(text) == expected


@pytest.mark.parametrize("text", ["localhost:2525", "127.0.0.1", ":2525", "127.0.0.1:65536"])
def test_listen_address_refused(text: str) -> None:
    """Host names, a missing host or port, and ports out of range are usage errors."""
    with pytest.raises(argparse.ArgumentTypeError):
        values.listen_address(text)
