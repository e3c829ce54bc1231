"""The development SMTP server and its throwaway certificates, driven by smtplib and raw sockets."""

from __future__ import annotations

import base64
import contextlib
import datetime
import gc
import json
import logging
import os
import smtplib
import socket
import ssl
import stat
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.x509.oid import ExtendedKeyUsageOID

from oauthsmtp.devserver._certs import CertificateSet, make_certificates
from oauthsmtp.devserver._smtpserver import SMTP_SCOPE, SMTPServer

ALICE = "alice@example.org"
ALICE_TOKEN = "dev-access-token-alice.0123456789"
BOB = "bob@example.org"
BOB_TOKEN = "dev-access-token-bob.0123456789"
# docs/security.md#vector-xoauth2-google and RFC 7628 §4.1 (SMTP, port 587): test vectors.
GOOGLE_USER = "someuser@example.com"
GOOGLE_TOKEN = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
GOOGLE_BLOB = (
    "dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJo"
    "ZG1semRHRXVZMjl0Q2cBAQ=="
)
RFC7628_USER = "user@example.com"
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="
RFC7628_SMTP_BLOB = (
    "bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZG"
    "OWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
BIG_TOKEN = "big." + "A1b2C3d4" * 375  # 3004 characters: a large real-world access token

TOKENS = {
    ALICE_TOKEN: SimpleNamespace(user=ALICE),
    BOB_TOKEN: SimpleNamespace(user=BOB),
    GOOGLE_TOKEN: SimpleNamespace(user=GOOGLE_USER),
    RFC7628_TOKEN: SimpleNamespace(user=RFC7628_USER),
    BIG_TOKEN: SimpleNamespace(user=ALICE),
}
MESSAGE = f"From: {ALICE}\r\nTo: {BOB}\r\nSubject: Hello from the dev server\r\n\r\nHi Bob.\r\n"


def validator(token: str) -> object | None:
    """The dict-based token validator the tests use (what AuthServer.validate_access_token does)."""
    return TOKENS.get(token)


def b64(text: str) -> str:
    return base64.b64encode(text.encode()).decode("ascii")


def xoauth2(user: str, token: str) -> str:
    return b64(f"user={user}\x01auth=Bearer {token}\x01\x01")


def oauthbearer(user: str | None, token: str, host: str = "127.0.0.1", port: int = 587) -> str:
    authzid = "" if user is None else "a=" + user.replace("=", "=3D").replace(",", "=2C")
    return b64(f"n,{authzid},\x01host={host}\x01port={port}\x01auth=Bearer {token}\x01\x01")


def challenge_json(message: bytes) -> str:
    return base64.b64decode(message, validate=True).decode()


@pytest.fixture
def ctx(certs: CertificateSet) -> ssl.SSLContext:
    return certs.client_context()


@pytest.fixture
def make_server(certs: CertificateSet) -> Iterator[Callable[..., SMTPServer]]:
    servers: list[SMTPServer] = []

    def make(**kwargs: object) -> SMTPServer:
        kwargs.setdefault("certificates", certs)
        server = SMTPServer(validator, **kwargs)  # type: ignore[arg-type]
        server.start()
        servers.append(server)
        return server

    yield make
    for server in servers:
        server.stop()


@pytest.fixture
def server(make_server: Callable[..., SMTPServer], tmp_path: Path) -> SMTPServer:
    return make_server(maildir=tmp_path / "mail")


@pytest.fixture
def smtp(server: SMTPServer, ctx: ssl.SSLContext) -> Iterator[smtplib.SMTP]:
    """An smtplib client on the submission port, after STARTTLS and a second EHLO."""
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        yield client


class RawClient:
    """A line-level SMTP client on a plain or TLS socket."""

    def __init__(self, sock: socket.socket) -> None:
        self.sock = sock
        self.file = sock.makefile("rb")

    def send(self, text: str) -> None:
        self.sock.sendall(text.encode())

    def reply(self) -> tuple[int, list[str]]:
        lines = []
        while True:
            line = self.file.readline().decode().rstrip("\r\n")
            assert line, "connection closed"
            lines.append(line[4:])
            if line[3:4] == " ":
                return int(line[:3]), lines

    def command(self, text: str) -> tuple[int, list[str]]:
        self.send(text + "\r\n")
        return self.reply()

    def starttls(self, context: ssl.SSLContext, hostname: str = "localhost") -> None:
        assert self.command("STARTTLS")[0] == 220
        self.file.close()
        self.sock = context.wrap_socket(self.sock, server_hostname=hostname)
        self.file = self.sock.makefile("rb")

    def close(self) -> None:
        self.file.close()
        self.sock.close()


@pytest.fixture
def raw_tls(server: SMTPServer, ctx: ssl.SSLContext) -> Iterator[RawClient]:
    """A raw client on the implicit-TLS port, greeted and after EHLO."""
    assert server.tls_port is not None
    sock = ctx.wrap_socket(
        socket.create_connection((server.host, server.tls_port), timeout=5),
        server_hostname="localhost",
    )
    client = RawClient(sock)
    try:
        assert client.reply()[0] == 220
        assert client.command("EHLO client.test")[0] == 250
        yield client
    finally:
        client.close()


# -- certificates ---------------------------------------------------------------------------


def test_certificate_files_and_extensions(certs: CertificateSet) -> None:
    """The CA is a CA; the server certificate names the loopback hosts, for serverAuth, 30 days."""
    assert stat.S_IMODE(certs.key.stat().st_mode) == 0o600
    ca = x509.load_pem_x509_certificate(certs.ca_cert.read_bytes())
    leaf = x509.load_pem_x509_certificate(certs.cert.read_bytes())
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert leaf.issuer == ca.subject
    eku = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert list(eku) == [ExtendedKeyUsageOID.SERVER_AUTH]
    san = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert san.get_values_for_type(x509.DNSName) == ["localhost"]
    assert [str(ip) for ip in san.get_values_for_type(x509.IPAddress)] == ["127.0.0.1", "::1"]
    now = datetime.datetime.now(datetime.timezone.utc)
    assert leaf.not_valid_before_utc < now < leaf.not_valid_after_utc
    assert leaf.not_valid_after_utc - leaf.not_valid_before_utc == datetime.timedelta(days=31)


def test_client_context_verifies_hostname(certs: CertificateSet) -> None:
    """client_context() checks the chain and the host name, like the default context."""
    context = certs.client_context()
    assert context.verify_mode == ssl.CERT_REQUIRED
    assert context.check_hostname


def test_self_signed_certificate_fails_verification(
    make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext, tmp_path: Path
) -> None:
    """A server with a lone self-signed certificate fails a client that trusts another CA."""
    lone = make_certificates(tmp_path, self_signed=True)
    assert lone.ca_cert == lone.cert
    server = make_server(certificates=lone)
    with (
        smtplib.SMTP(server.host, server.port, timeout=5) as client,
        pytest.raises(ssl.SSLCertVerificationError, match="self-signed"),
    ):
        client.starttls(context=ctx)
    # Trusted explicitly, the same certificate verifies.
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        assert client.starttls(context=lone.client_context())[0] == 220
    assert server.auth_log == []


def test_wrong_host_certificate_fails_hostname_check(
    make_server: Callable[..., SMTPServer], tmp_path: Path
) -> None:
    """A certificate for another name fails the host-name check though its CA is trusted."""
    wrong = make_certificates(tmp_path, hosts=("mail.example.net",))
    server = make_server(certificates=wrong)
    with (
        smtplib.SMTP(server.host, server.port, timeout=5) as client,
        pytest.raises(ssl.SSLCertVerificationError, match=r"not valid for '127\.0\.0\.1'"),
    ):
        client.starttls(context=wrong.client_context())


def test_make_certificates_needs_a_host(tmp_path: Path) -> None:
    """An empty host list is refused."""
    with pytest.raises(ValueError, match="at least one host"):
        make_certificates(tmp_path, hosts=())


def test_default_certificates_cover_the_hostname(ctx: ssl.SSLContext) -> None:
    """Without certificates=, the server makes its own CA, valid for its hostname too."""
    with SMTPServer(validator, hostname="smtp.oauthsmtp.test", tls_port=None) as server:
        assert server.ca_path == server.certificates.ca_cert
        client = RawClient(socket.create_connection((server.host, server.port), timeout=5))
        try:
            assert client.reply() == (220, ["smtp.oauthsmtp.test Python SMTP 1.4.6"])
            assert client.command("EHLO client.test")[0] == 250
            client.starttls(server.certificates.client_context(), "smtp.oauthsmtp.test")
            assert client.command("EHLO client.test")[1][0] == "smtp.oauthsmtp.test"
        finally:
            client.close()
        with (
            smtplib.SMTP(server.host, server.port, timeout=5) as other,
            pytest.raises(ssl.SSLCertVerificationError),
        ):
            other.starttls(context=ctx)  # the module's CA did not sign this one


# -- submission port: STARTTLS, then AUTH -----------------------------------------------------


def test_auth_not_advertised_nor_accepted_before_starttls(server: SMTPServer) -> None:
    """Before TLS the submission port offers STARTTLS but no AUTH, and refuses AUTH and MAIL."""
    with smtplib.SMTP(server.host, server.port, local_hostname="client.test", timeout=5) as client:
        client.ehlo()
        assert client.has_extn("starttls")
        assert not client.has_extn("auth")
        code, _ = client.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))
        assert code == 530
        assert client.mail(ALICE)[0] == 530
    assert server.auth_log == []


def test_ehlo_after_starttls(smtp: smtplib.SMTP) -> None:
    """After TLS: AUTH XOAUTH2 OAUTHBEARER, PIPELINING, 8BITMIME, SMTPUTF8, SIZE; no STARTTLS."""
    assert smtp.esmtp_features["auth"].split() == ["XOAUTH2", "OAUTHBEARER"]
    for extension in ("pipelining", "8bitmime", "smtputf8", "size"):
        assert smtp.has_extn(extension), extension
    assert not smtp.has_extn("starttls")


def test_xoauth2_google_vector(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """Google's documented XOAUTH2 initial response is accepted for its user."""
    assert smtp.docmd("AUTH", "XOAUTH2 " + GOOGLE_BLOB) == (235, b"2.7.0 Accepted")
    assert server.auth_log == [("XOAUTH2", GOOGLE_USER, True)]


def test_xoauth2_initial_response_then_send(
    smtp: smtplib.SMTP, server: SMTPServer, tmp_path: Path
) -> None:
    """AUTH with an initial response, then a message: stored with the user and as a .eml file."""
    assert smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235
    assert smtp.sendmail(ALICE, [BOB], MESSAGE) == {}
    [received] = server.wait_for_messages(1)
    assert received.user == ALICE
    assert received.mail_from == ALICE
    assert received.rcpt_tos == (BOB,)
    assert received.data == MESSAGE.encode()
    assert received.subject == "Hello from the dev server"
    assert received.message["To"] == BOB
    assert received.received_at.tzinfo is not None
    assert received.path is not None
    assert received.path.parent == tmp_path / "mail"
    assert received.path.suffix == ".eml"
    assert received.path.read_bytes() == received.data
    assert [p.name for p in (tmp_path / "mail").iterdir()] == [received.path.name]


def test_xoauth2_two_step(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """AUTH XOAUTH2 without an initial response gets an empty 334, then takes the blob."""
    assert smtp.docmd("AUTH", "XOAUTH2") == (334, b"")
    assert smtp.docmd(xoauth2(ALICE, ALICE_TOKEN)) == (235, b"2.7.0 Accepted")
    assert server.auth_log == [("XOAUTH2", ALICE, True)]


def test_xoauth2_user_is_case_insensitive(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """The user in the blob matches the token's mailbox case-insensitively."""
    assert smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE.upper(), ALICE_TOKEN))[0] == 235


@pytest.mark.parametrize(
    ("user", "token"),
    [(ALICE, "expired-or-unknown-token"), (ALICE, BOB_TOKEN)],
    ids=["invalid-token", "token-of-another-user"],
)
def test_xoauth2_failure_is_gmail_sequence(
    smtp: smtplib.SMTP, server: SMTPServer, user: str, token: str
) -> None:
    """A bad token gets Gmail's 334 JSON challenge, then 535 after the empty line."""
    code, message = smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(user, token))
    assert code == 334
    assert challenge_json(message) == (
        '{"status":"400","schemes":"Bearer","scope":"https://mail.oauthsmtp.test/smtp"}'
    )
    assert json.loads(challenge_json(message))["scope"] == SMTP_SCOPE
    assert smtp.docmd("") == (535, b"5.7.8 Username and Password not accepted.")
    assert server.auth_log == [("XOAUTH2", user, False)]
    # The connection stays usable: a retry with a fresh token succeeds.
    assert smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235


@pytest.mark.parametrize(
    ("answer", "expected"),
    [("Zm9v", 535), ("not base64!", 535), ("*", 501)],
    ids=["base64", "garbage", "cancel"],
)
def test_xoauth2_failure_answer(smtp: smtplib.SMTP, answer: str, expected: int) -> None:
    """Whatever follows the challenge gets 535, as at Gmail, except RFC 4954's "*" (501)."""
    assert smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, "bad-token"))[0] == 334
    assert smtp.docmd(answer)[0] == expected


@pytest.mark.parametrize(
    "blob",
    [
        b64(f"user={ALICE}\x01auth=Bearer {ALICE_TOKEN}\x01"),
        b64(f"user={ALICE}\x01\x01"),
        b64(f"user={ALICE}\x01auth=Basic {ALICE_TOKEN}\x01\x01"),
        b64(f"auth=Bearer {ALICE_TOKEN}\x01\x01"),
        b64(f"user=\x01auth=Bearer {ALICE_TOKEN}\x01\x01"),
        b64(f"user={ALICE}\x01auth=Bearer {ALICE_TOKEN}\x01user={BOB}\x01\x01"),
        b64(f"user={ALICE}\x01auth=Bearer two words\x01\x01"),
        "=",
    ],
    ids=["one-ctrl-a", "no-auth", "basic", "no-user", "empty-user", "dup", "space", "empty"],
)
def test_xoauth2_malformed(smtp: smtplib.SMTP, server: SMTPServer, blob: str) -> None:
    """A malformed XOAUTH2 response gets 501 5.5.2 and no challenge."""
    code, message = smtp.docmd("AUTH", "XOAUTH2 " + blob)
    assert code == 501
    assert message.startswith(b"5.5.2")
    assert server.auth_log == [("XOAUTH2", None, False)]


def test_auth_not_base64(smtp: smtplib.SMTP) -> None:
    """An initial response that is not base64 gets 501 5.5.2."""
    assert smtp.docmd("AUTH", "XOAUTH2 ***")[0] == 501


def test_big_token_fits(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """A 3 KB token fits in an AUTH line (aiosmtpd's stock limit is 512 octets) and in two steps."""
    line = "AUTH XOAUTH2 " + xoauth2(ALICE, BIG_TOKEN)
    assert len(line) > 4000
    assert smtp.docmd(line)[0] == 235
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=server.certificates.client_context())
        client.ehlo()
        assert client.docmd("AUTH", "OAUTHBEARER")[0] == 334
        assert client.docmd(oauthbearer(ALICE, BIG_TOKEN, port=server.port))[0] == 235


def test_line_limits(raw_tls: RawClient) -> None:
    """Only AUTH gets the long line: other commands keep 512 octets, DATA lines 1000 + CRLF."""
    assert raw_tls.command("AUTH XOAUTH2 " + "A" * 12300)[0] == 500
    assert raw_tls.command("NOOP " + "x" * 600)[0] == 500
    assert raw_tls.command("AUTH XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235
    assert raw_tls.command(f"MAIL FROM:<{ALICE}>")[0] == 250
    assert raw_tls.command(f"RCPT TO:<{BOB}>")[0] == 250
    assert raw_tls.command("DATA")[0] == 354
    assert raw_tls.command("Subject: long\r\n\r\n" + "y" * 1100 + "\r\n.")[0] == 500
    assert raw_tls.command("NOOP")[0] == 250


def test_mail_requires_auth(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """MAIL FROM before AUTH is refused with 530."""
    assert smtp.mail(ALICE)[0] == 530
    assert server.messages == []


# -- OAUTHBEARER ------------------------------------------------------------------------------


def test_oauthbearer_records_host_and_port(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """OAUTHBEARER succeeds and the server records the host and port the client sent."""
    blob = oauthbearer(ALICE, ALICE_TOKEN, host="127.0.0.1", port=server.port)
    assert smtp.docmd("AUTH", "OAUTHBEARER " + blob) == (235, b"2.7.0 Accepted")
    assert server.auth_log == [("OAUTHBEARER", ALICE, True)]
    [fields] = server.oauthbearer_fields
    assert (fields.authzid, fields.host, fields.port) == (ALICE, "127.0.0.1", str(server.port))
    assert smtp.sendmail(ALICE, [BOB], MESSAGE) == {}
    assert server.wait_for_messages(1)[0].user == ALICE


def test_oauthbearer_rfc7628_vector(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """RFC 7628 §4.1's SMTP example is accepted and its fields are decoded."""
    assert smtp.docmd("AUTH", "OAUTHBEARER " + RFC7628_SMTP_BLOB)[0] == 235
    [fields] = server.oauthbearer_fields
    assert (fields.authzid, fields.host, fields.port) == (
        RFC7628_USER,
        "server.example.com",
        "587",
    )


def test_oauthbearer_two_step_without_authzid(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """Without a= the token's own user is the identity; two-step form works."""
    assert smtp.docmd("AUTH", "OAUTHBEARER") == (334, b"")
    assert smtp.docmd(oauthbearer(None, BOB_TOKEN))[0] == 235
    assert server.auth_log == [("OAUTHBEARER", BOB, True)]
    assert server.oauthbearer_fields[0].authzid is None


def test_oauthbearer_authzid_unescaping(make_server: Callable[..., SMTPServer]) -> None:
    """=2C and =3D in a= are unescaped (RFC 5801) before comparing with the token's user."""
    odd = "o,d=d@example.org"
    TOKENS["odd-user-token"] = SimpleNamespace(user=odd)
    try:
        server = make_server(tls_port=None)
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.starttls(context=server.certificates.client_context())
            client.ehlo()
            blob = oauthbearer(odd, "odd-user-token")
            assert "a=o=2Cd=3Dd@example.org," in base64.b64decode(blob).decode()
            assert client.docmd("AUTH", "OAUTHBEARER " + blob)[0] == 235
        assert server.auth_log == [("OAUTHBEARER", odd, True)]
    finally:
        del TOKENS["odd-user-token"]


@pytest.mark.parametrize(("answer", "expected"), [("AQ==", 535), ("", 501), ("*", 501)])
def test_oauthbearer_failure(
    smtp: smtplib.SMTP, server: SMTPServer, answer: str, expected: int
) -> None:
    """A bad token gets RFC 7628's JSON challenge; AQ== then gets 535, anything else 501."""
    code, message = smtp.docmd("AUTH", "OAUTHBEARER " + oauthbearer(ALICE, "bad-token"))
    assert code == 334
    assert challenge_json(message) == (
        '{"status":"invalid_token","scope":"https://mail.oauthsmtp.test/smtp","schemes":"bearer"}'
    )
    reply = smtp.docmd(answer)
    assert reply[0] == expected
    if expected == 535:
        assert reply[1].startswith(b"5.7.8")
    assert server.auth_log == [("OAUTHBEARER", ALICE, False)]


def test_oauthbearer_authzid_must_own_the_token(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """A valid token presented for another a= user fails with the error challenge."""
    assert smtp.docmd("AUTH", "OAUTHBEARER " + oauthbearer(BOB, ALICE_TOKEN))[0] == 334
    assert smtp.docmd("AQ==")[0] == 535
    assert server.auth_log == [("OAUTHBEARER", BOB, False)]


def test_oauthbearer_discovery_probe(smtp: smtplib.SMTP) -> None:
    """RFC 7628 §4.3's probe (empty auth=) gets the error challenge."""
    probe = b64(f"n,a={ALICE},\x01host=localhost\x01port=587\x01auth=\x01\x01")
    assert smtp.docmd("AUTH", "OAUTHBEARER " + probe)[0] == 334
    assert smtp.docmd("AQ==")[0] == 535


@pytest.mark.parametrize(
    "blob",
    [
        b64(f"p=tls-unique,a={ALICE},\x01auth=Bearer {ALICE_TOKEN}\x01\x01"),
        b64(f"n,user={ALICE},\x01auth=Bearer {ALICE_TOKEN}\x01\x01"),  # RFC 7628 §4.4
        b64(f"n,a={ALICE},\x01host=localhost\x01\x01"),
        b64(f"n,a={ALICE},auth=Bearer {ALICE_TOKEN}\x01\x01"),
        b64(f"n,a=a=2Xb,\x01auth=Bearer {ALICE_TOKEN}\x01\x01"),
        b64("\x01"),
    ],
    ids=["channel-binding", "bad-gs2", "no-auth", "no-kvsep", "bad-escape", "lone-ctrl-a"],
)
def test_oauthbearer_malformed(smtp: smtplib.SMTP, blob: str) -> None:
    """A malformed OAUTHBEARER response gets 501 5.5.2."""
    code, message = smtp.docmd("AUTH", "OAUTHBEARER " + blob)
    assert (code, message[:5]) == (501, b"5.5.2")


# -- implicit TLS, pipelining, storage ----------------------------------------------------------


def test_implicit_tls_port(server: SMTPServer, ctx: ssl.SSLContext) -> None:
    """The implicit-TLS port offers AUTH at once (no STARTTLS) and accepts mail."""
    assert server.tls_port is not None
    with smtplib.SMTP_SSL(server.host, server.tls_port, context=ctx, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.esmtp_features["auth"].split() == ["XOAUTH2", "OAUTHBEARER"]
        assert client.has_extn("pipelining")
        assert client.docmd("AUTH", "XOAUTH2 " + xoauth2(BOB, BOB_TOKEN))[0] == 235
        assert client.sendmail(BOB, [ALICE], MESSAGE) == {}
    assert server.wait_for_messages(1)[0].user == BOB


def test_pipelined_transaction(raw_tls: RawClient, server: SMTPServer) -> None:
    """MAIL, RCPT and DATA in one write get their replies in order; dots are unstuffed."""
    assert raw_tls.command("AUTH XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235
    raw_tls.send(f"MAIL FROM:<{ALICE}>\r\nRCPT TO:<{BOB}>\r\nDATA\r\n")
    assert [raw_tls.reply()[0] for _ in range(3)] == [250, 250, 354]
    raw_tls.send("Subject: dots\r\n\r\n..leading dot\r\n.\r\nQUIT\r\n")
    assert [raw_tls.reply()[0] for _ in range(2)] == [250, 221]
    [received] = server.wait_for_messages(1)
    assert received.data == b"Subject: dots\r\n\r\n.leading dot\r\n"


def test_pipelining_can_be_turned_off(
    make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext
) -> None:
    """pipelining=False leaves PIPELINING out of the EHLO reply."""
    server = make_server(pipelining=False, tls_port=None)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert not client.has_extn("pipelining")
        assert client.has_extn("auth")


def test_reject_recipients(make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext) -> None:
    """Chosen recipients get 550 5.1.1; the message goes to the others."""
    server = make_server(reject_recipients=["Nobody@Example.org"])
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert client.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235
        refused = client.sendmail(ALICE, [BOB, "nobody@example.org"], MESSAGE)
    assert refused == {"nobody@example.org": (550, b"5.1.1 user unknown")}
    assert server.wait_for_messages(1)[0].rcpt_tos == (BOB,)


def test_smtputf8_message(smtp: smtplib.SMTP, server: SMTPServer) -> None:
    """An internationalized address and 8-bit body arrive intact with SMTPUTF8 recorded."""
    assert smtp.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235
    body = "Subject: Grüße\r\n\r\nÄpfel\r\n".encode()
    smtp.sendmail(ALICE, ["jörg@example.org"], body, mail_options=["SMTPUTF8", "BODY=8BITMIME"])
    [received] = server.wait_for_messages(1)
    assert received.rcpt_tos == ("jörg@example.org",)
    assert received.data == body
    assert {"SMTPUTF8", "BODY=8BITMIME"} <= set(received.mail_options)  # smtplib adds SIZE=


def test_messages_connections_and_clear(server: SMTPServer, ctx: ssl.SSLContext) -> None:
    """Two connections sending three messages; clear() forgets them (the files stay)."""
    for count in (1, 2):
        with smtplib.SMTP(server.host, server.port, timeout=5) as client:
            client.starttls(context=ctx)
            client.ehlo()
            client.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))
            for _ in range(count):
                client.sendmail(ALICE, [BOB], MESSAGE)
    messages = server.wait_for_messages(3)
    assert len(messages) == 3
    assert server.connections == 2
    paths = {m.path for m in messages}
    assert len(paths) == 3
    assert server.maildir is not None
    assert set(server.maildir.iterdir()) == paths  # no temporary files left
    server.clear()
    assert (server.messages, server.auth_log, server.connections) == ([], [], 0)
    assert set(server.maildir.iterdir()) == paths


def test_wait_for_messages_times_out(server: SMTPServer) -> None:
    """wait_for_messages raises TimeoutError when too few messages arrive."""
    with pytest.raises(TimeoutError, match="expected 1"):
        server.wait_for_messages(1, timeout=0.05)


def test_no_auth_required(make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext) -> None:
    """require_auth=False accepts mail without AUTH; the user is None."""
    server = make_server(require_auth=False, tls_port=None)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert client.sendmail(ALICE, [BOB], MESSAGE) == {}
    assert server.wait_for_messages(1)[0].user is None


def test_mechanisms_are_configurable(
    make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext
) -> None:
    """Only the chosen mechanisms are offered and accepted."""
    server = make_server(mechanisms=["XOAUTH2"], tls_port=None)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert client.esmtp_features["auth"].strip() == "XOAUTH2"
        assert client.docmd("AUTH", "OAUTHBEARER " + oauthbearer(ALICE, ALICE_TOKEN))[0] == 504
        assert client.docmd("AUTH", "PLAIN " + b64(f"\0{ALICE}\0pw"))[0] == 504


def test_password_mechanisms(make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext) -> None:
    """LOGIN/PLAIN, when chosen, check the passwords mapping (for password-AUTH tests)."""
    server = make_server(mechanisms=["LOGIN", "PLAIN"], passwords={BOB: "s3cret"}, tls_port=None)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert client.esmtp_features["auth"].split() == ["LOGIN", "PLAIN"]
        with pytest.raises(smtplib.SMTPAuthenticationError):
            client.login(BOB, "wrong")
        assert client.login(BOB, "s3cret")[0] == 235
        client.sendmail(BOB, [ALICE], MESSAGE)
    assert server.wait_for_messages(1)[0].user == BOB
    # smtplib tries PLAIN, then LOGIN, on a 535.
    assert server.auth_log == [("PLAIN", BOB, False), ("LOGIN", BOB, False), ("PLAIN", BOB, True)]


def test_stripping_mode_offers_auth_in_clear(make_server: Callable[..., SMTPServer]) -> None:
    """starttls=False: no STARTTLS and AUTH in plain text, to test that clients refuse it."""
    server = make_server(starttls=False, tls_port=None)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.ehlo()
        assert not client.has_extn("starttls")
        assert client.has_extn("auth")
        with pytest.raises(smtplib.SMTPNotSupportedError):
            client.starttls(context=server.certificates.client_context())


def test_validator_failure_is_a_temporary_error(
    make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext, caplog: pytest.LogCaptureFixture
) -> None:
    """A validator that raises gives 454; its message (it may quote the token) is not logged."""

    def broken(token: str) -> object:
        raise KeyError(token)

    server = make_server(tls_port=None)
    server.token_validator = broken
    caplog.set_level(logging.DEBUG)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert client.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 454
    assert ALICE_TOKEN not in caplog.text
    assert "KeyError" in caplog.text


def test_no_token_or_blob_in_logs(
    smtp: smtplib.SMTP, server: SMTPServer, caplog: pytest.LogCaptureFixture
) -> None:
    """At DEBUG, neither the server's logger nor aiosmtpd's shows a token or SASL blob."""
    caplog.set_level(logging.DEBUG)
    blobs = [xoauth2(ALICE, "bad-token"), xoauth2(ALICE, ALICE_TOKEN)]
    assert smtp.docmd("AUTH", "XOAUTH2 " + blobs[0])[0] == 334
    assert smtp.docmd("")[0] == 535
    assert smtp.docmd("AUTH", "XOAUTH2")[0] == 334
    assert smtp.docmd(blobs[1])[0] == 235
    smtp.sendmail(ALICE, [BOB], MESSAGE)
    server.wait_for_messages(1)
    assert "oauthsmtp.devserver.smtp" in {r.name for r in caplog.records}
    for secret in (ALICE_TOKEN, "bad-token", *blobs):
        assert secret not in caplog.text
    assert "deprecated" not in caplog.text  # aiosmtpd's Session.login_data warning, per AUTH


@pytest.mark.parametrize("host", ["0.0.0.0", "192.0.2.1", "localhost", "::"])
def test_binds_loopback_only(host: str) -> None:
    """Anything but a loopback IP literal is refused before binding."""
    with pytest.raises(ValueError, match="loopback"):
        SMTPServer(validator, host=host)


def test_unknown_mechanism_is_refused() -> None:
    """An unsupported mechanism name is refused."""
    with pytest.raises(ValueError, match="CRAM-MD5"):
        SMTPServer(validator, mechanisms=["XOAUTH2", "CRAM-MD5"])


def test_ipv6_loopback(make_server: Callable[..., SMTPServer], ctx: ssl.SSLContext) -> None:
    """host="::1" works, and the certificate covers it."""
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        pytest.skip("no IPv6 loopback")
    server = make_server(host="::1", tls_port=None)
    with smtplib.SMTP(server.host, server.port, timeout=5) as client:
        client.starttls(context=ctx)
        client.ehlo()
        assert client.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235


# -- lifecycle ----------------------------------------------------------------------------------


def _open_fds() -> set[str]:
    return set(os.listdir("/proc/self/fd"))


def test_start_stop_twice_leaves_nothing_behind(certs: CertificateSet, ctx: ssl.SSLContext) -> None:
    """Stopping closes ports and live connections, joins the thread: twice, nothing left."""
    if not Path("/proc/self/fd").is_dir():
        pytest.skip("needs /proc")
    gc.collect()
    threads_before = {t.ident for t in threading.enumerate()}
    fds_before = _open_fds()
    server = SMTPServer(validator, certificates=certs)
    ports = []
    for _ in range(2):
        server.start()
        with pytest.raises(RuntimeError, match="already running"):
            server.start()
        ports.append((server.port, server.tls_port))
        # Leave connections open across stop(): one authenticated after STARTTLS, one mid-greeting
        # on the TLS port (no handshake), one plain.
        authed = smtplib.SMTP(server.host, server.port, timeout=5)
        authed.starttls(context=ctx)
        authed.ehlo()
        assert authed.docmd("AUTH", "XOAUTH2 " + xoauth2(ALICE, ALICE_TOKEN))[0] == 235
        assert server.tls_port is not None
        idle_tls = socket.create_connection((server.host, server.tls_port), timeout=5)
        idle_plain = socket.create_connection((server.host, server.port), timeout=5)
        assert idle_plain.recv(100).startswith(b"220 ")
        server.stop()
        assert idle_plain.recv(100) == b""  # closed by the server
        for sock in (authed.sock, idle_tls, idle_plain):
            assert sock is not None
            sock.close()
        authed.close()
        for port in ports[-1]:
            assert port is not None
            with pytest.raises(ConnectionRefusedError):
                socket.create_connection((server.host, port), timeout=5).close()
    server.stop()  # idempotent
    assert ports[0] == ports[1]  # a restarted server keeps its ports
    gc.collect()
    assert {t.ident for t in threading.enumerate()} == threads_before
    assert _open_fds() <= fds_before


@pytest.mark.parametrize("port", ["submission", "implicit_tls"])
def test_stop_after_quit_on_a_tls_connection(
    make_server: Callable[..., SMTPServer],
    ctx: ssl.SSLContext,
    monkeypatch: pytest.MonkeyPatch,
    port: str,
) -> None:
    """A TLS client said QUIT but keeps its socket: stop() ends it without a thread error.

    aiosmtpd's QUIT closes the server's TLS transport twice, and on CPython 3.11.2
    (Debian 12's python3) ``abort()`` on such a transport raises AttributeError in the
    server thread, which pytest reports as an error at teardown of users' tests.
    """
    errors: list[threading.ExceptHookArgs] = []
    monkeypatch.setattr(threading, "excepthook", errors.append)
    server = make_server()
    if port == "submission":
        client = RawClient(socket.create_connection((server.host, server.port), timeout=5))
        assert client.reply()[0] == 220
        assert client.command("EHLO client.test")[0] == 250
        client.starttls(ctx)
    else:
        assert server.tls_port is not None
        sock = socket.create_connection((server.host, server.tls_port), timeout=5)
        client = RawClient(ctx.wrap_socket(sock, server_hostname="localhost"))
        assert client.reply()[0] == 220
    try:
        assert client.command("EHLO client.test")[0] == 250
        assert client.command("QUIT")[0] == 221
        server.stop()
        assert [(e.exc_type, str(e.exc_value)) for e in errors] == []
        assert f"oauthsmtp-devserver-smtp-{server.port}" not in {
            t.name for t in threading.enumerate()
        }
        # The server ended the connection (the socket's 5 s timeout bounds the wait).
        with contextlib.suppress(ssl.SSLError, ConnectionError):
            assert client.sock.recv(100) == b""
    finally:
        client.close()
