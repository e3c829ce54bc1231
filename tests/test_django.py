"""oauthsmtp.integrations.django.EmailBackend: Django's mail API through the dev provider.

A real Django settings module (tests/django_project/settings.py) names the backend and the
account; ``oauthsmtp login`` records the account in a temporary OAUTHSMTP_HOME with the file
store, and Django's ``send_mail`` / ``EmailMessage`` / ``EmailMultiAlternatives`` send to the
development SMTP server, which checks the token.
"""

from __future__ import annotations

import re
import socket
import ssl
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from email import policy
from email.parser import BytesParser
from pathlib import Path

import pytest
from test_cli import ACCOUNT, CLI, login

from oauthsmtp import ConfigurationError, LoginRequired, SMTPError
from oauthsmtp._accounts import AccountRegistry
from oauthsmtp.devserver import AuthServer, CertificateSet, SMTPServer

django = pytest.importorskip("django", reason="pip install 'oauthsmtp[django]'")

from django.conf import settings  # noqa: E402
from django.core import mail  # noqa: E402
from django.core.exceptions import ImproperlyConfigured  # noqa: E402
from django.test import override_settings  # noqa: E402

from oauthsmtp.integrations.django import EmailBackend  # noqa: E402

REFUSED = "nobody@x.test"


@pytest.fixture(scope="module", autouse=True)
def django_project() -> None:
    """Django configured from tests/django_project/settings.py, once for the process."""
    if not settings.configured:
        from django_project import settings as project

        settings.configure(
            **{name: getattr(project, name) for name in dir(project) if name.isupper()}
        )
        django.setup()


@pytest.fixture
def servers(certs: CertificateSet) -> Iterator[tuple[AuthServer, SMTPServer]]:
    with (
        AuthServer(mode="auto", user=ACCOUNT) as auth,
        SMTPServer(
            auth.validate_access_token, certificates=certs, reject_recipients=[REFUSED]
        ) as smtp,
    ):
        yield auth, smtp


@pytest.fixture
def logged_in(
    tmp_path: Path,
    certs: CertificateSet,
    servers: tuple[AuthServer, SMTPServer],
    monkeypatch: pytest.MonkeyPatch,
) -> Iterator[SMTPServer]:
    """An account logged in with `oauthsmtp login`; Django's settings point at its home.

    The environment names other places, so the settings are what is used.
    """
    cli = CLI(tmp_path / "home", certs)
    auth, smtp = servers
    login(cli, auth, smtp)
    monkeypatch.setenv("OAUTHSMTP_HOME", str(tmp_path / "elsewhere"))
    monkeypatch.setenv("OAUTHSMTP_STORE", "memory")
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    with override_settings(OAUTHSMTP_HOME=str(tmp_path / "home")):
        yield smtp


def test_send_mail_uses_the_recorded_account(logged_in: SMTPServer) -> None:
    count = mail.send_mail(
        "Hello from Django", "Body text.\n", None, ["you@x.test"], fail_silently=False
    )
    assert count == 1
    received = logged_in.wait_for_messages(1, timeout=30)[0]
    assert received.user == ACCOUNT
    assert received.mail_from == ACCOUNT
    assert received.rcpt_tos == ("you@x.test",)
    message = received.message
    assert message["Subject"] == "Hello from Django"
    assert message["From"] == ACCOUNT
    assert message["To"] == "you@x.test"
    assert message["Message-ID"]
    assert b"\r\n" in received.data
    assert b"\n" not in received.data.replace(b"\r\n", b"")


def test_alternatives_attachments_cc_and_bcc(logged_in: SMTPServer) -> None:
    """Bcc recipients get the message and appear in no header; HTML and attachments arrive."""
    message = mail.EmailMultiAlternatives(
        subject="Report für Dezember",
        body="Plain text version.\n",
        from_email=f"Reports <{ACCOUNT}>",
        to=["Alice <alice@x.test>"],
        cc=["carol@x.test"],
        bcc=["hidden@x.test"],
        reply_to=["replies@x.test"],
        headers={"X-Report": "monthly"},
    )
    message.attach_alternative("<p>HTML <b>version</b></p>", "text/html")
    blob = bytes(range(256)) * 40
    message.attach("blob.bin", blob, "application/octet-stream")
    message.attach("notes.txt", "Grüße\n", "text/plain")
    assert message.send() == 1
    received = logged_in.wait_for_messages(1, timeout=30)[0]
    assert received.rcpt_tos == ("alice@x.test", "carol@x.test", "hidden@x.test")
    assert received.mail_from == ACCOUNT
    assert b"hidden@x.test" not in received.data
    assert b"Bcc" not in received.data
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    assert parsed["Subject"] == "Report für Dezember"
    assert parsed["To"] == "Alice <alice@x.test>"
    assert parsed["Cc"] == "carol@x.test"
    assert parsed["Reply-To"] == "replies@x.test"
    assert parsed["X-Report"] == "monthly"
    assert parsed.get_body(("html",)).get_content().strip() == "<p>HTML <b>version</b></p>"
    assert parsed.get_body(("plain",)).get_content() == "Plain text version.\r\n"
    attachments = {a.get_filename(): a.get_content() for a in parsed.iter_attachments()}
    assert attachments == {"blob.bin": blob, "notes.txt": "Grüße\r\n"}


def test_one_session_for_many_messages_and_the_count(logged_in: SMTPServer) -> None:
    """open()/close() keep one SMTP session; a refused message is not counted (silently)."""
    backend = mail.get_connection(fail_silently=True)
    assert isinstance(backend, EmailBackend)
    assert backend.open() is True
    assert backend.open() is False
    messages = [
        mail.EmailMessage("one", "1", None, ["a@x.test"]),
        mail.EmailMessage("two", "2", None, [REFUSED]),
        mail.EmailMessage("three", "3", None, ["b@x.test", REFUSED]),
        mail.EmailMessage("no recipient", "4", None, []),
    ]
    assert backend.send_messages(messages) == 2
    assert backend.send_messages([mail.EmailMessage("four", "4", None, ["c@x.test"])]) == 1
    backend.close()
    backend.close()
    received = logged_in.wait_for_messages(3, timeout=30)
    assert [m.message["Subject"] for m in received] == ["one", "three", "four"]
    assert received[1].rcpt_tos == ("b@x.test",)
    assert logged_in.connections == 1  # one session for both calls between open and close


def test_refused_message_raises_without_fail_silently(logged_in: SMTPServer) -> None:
    with pytest.raises(SMTPError, match="550"):
        mail.send_mail("s", "b", None, [REFUSED])
    with mail.get_connection() as backend, pytest.raises(ConfigurationError, match="recipient"):
        backend.send_messages([mail.EmailMessage("s", "b", None, ["not an address"])])


def _closed_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_server_down_fail_silently(logged_in: SMTPServer) -> None:
    with override_settings(OAUTHSMTP_SMTP_PORT=_closed_port()):
        assert mail.send_mail("s", "b", None, ["a@x.test"], fail_silently=True) == 0
        backend = mail.get_connection(fail_silently=True)
        assert backend.open() is None
        assert backend.send_messages([mail.EmailMessage("s", "b", None, ["a@x.test"])]) == 0
        with pytest.raises(SMTPError):
            mail.send_mail("s", "b", None, ["a@x.test"])
    assert logged_in.messages == []


def test_settings_are_checked(tmp_path: Path, logged_in: SMTPServer) -> None:
    with override_settings(OAUTHSMTP_ACCOUNT=None), pytest.raises(ImproperlyConfigured):
        mail.get_connection()
    with override_settings(OAUTHSMTP_STORE="vault"), pytest.raises(ImproperlyConfigured):
        mail.get_connection()
    with (
        override_settings(OAUTHSMTP_ACCOUNT="stranger@x.test"),
        pytest.raises(ConfigurationError, match="oauthsmtp login --account stranger"),
    ):
        mail.send_mail("s", "b", None, ["a@x.test"])
    with override_settings(OAUTHSMTP_HOME=str(tmp_path / "empty")):
        assert mail.send_mail("s", "b", None, ["a@x.test"], fail_silently=True) == 0
    with override_settings(OAUTHSMTP_STORE="memory"), pytest.raises(LoginRequired):
        mail.send_mail("s", "b", None, ["a@x.test"])


def test_import_oauthsmtp_does_not_import_django() -> None:
    code = (
        "import sys, oauthsmtp; "
        "print('django' in sys.modules, 'oauthsmtp.integrations' in sys.modules)"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.split() == ["False", "False"]


DOC = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"


def doc_block(number: int) -> str:
    """Python block ``number`` of docs/integrations.md."""
    blocks = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)
    assert len(blocks) == 2  # the Django settings, the logging configuration
    return str(blocks[number])


def test_the_documented_settings_send(tmp_path: Path, logged_in: SMTPServer) -> None:
    """The settings block of docs/integrations.md, with this test's account and home."""
    namespace: dict[str, object] = {}
    exec(doc_block(0).replace("alerts@example.com", ACCOUNT), namespace)  # noqa: S102
    documented = {name: value for name, value in namespace.items() if name.isupper()}
    assert documented["EMAIL_BACKEND"] == "oauthsmtp.integrations.django.EmailBackend"
    documented["OAUTHSMTP_HOME"] = settings.OAUTHSMTP_HOME  # the login of this test
    with override_settings(**documented):
        assert mail.send_mail("From the docs", "b", None, ["you@x.test"]) == 1
    (received,) = logged_in.wait_for_messages(1, timeout=30)
    assert received.message["From"] == ACCOUNT


def test_session_options_setting(
    logged_in: SMTPServer, certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """OAUTHSMTP_SMTP_OPTIONS reaches SMTPSession: here the CA to trust, not SSL_CERT_FILE."""
    monkeypatch.delenv("SSL_CERT_FILE")
    with pytest.raises(SMTPError):
        mail.send_mail("s", "b", None, ["a@x.test"])  # the dev CA is not trusted
    context = ssl.create_default_context(cafile=str(certs.ca_cert))
    with override_settings(OAUTHSMTP_SMTP_OPTIONS={"ssl_context": context}):
        assert mail.send_mail("trusted", "b", None, ["a@x.test"]) == 1
    assert [m.message["Subject"] for m in logged_in.messages] == ["trusted"]


def test_an_account_recorded_for_an_http_api_is_refused(logged_in: SMTPServer) -> None:
    """Its token is for the API's scope: the backend says so instead of failing at AUTH."""
    registry = AccountRegistry(Path(settings.OAUTHSMTP_HOME))
    recorded = registry.get(ACCOUNT)
    assert recorded is not None
    registry.put(replace(recorded, transport="api", api_url="https://graph.example.test/v1.0"))
    with pytest.raises(ConfigurationError, match="--transport smtp"):
        mail.send_mail("s", "b", None, ["a@x.test"])
    assert mail.send_mail("s", "b", None, ["a@x.test"], fail_silently=True) == 0
    assert logged_in.connections == 0
