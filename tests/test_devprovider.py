"""The development provider: DevProvider, its received-messages page, and `oauthsmtp dev-server`."""

from __future__ import annotations

import base64
import html
import importlib.util
import logging
import re
import shlex
import signal
import smtplib
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from email.message import EmailMessage
from pathlib import Path

import pytest
import requests
from components import Lines, require, spawned

from oauthsmtp import (
    AccessDenied,
    AuthorizationError,
    ConfigurationError,
    OAuth2Parameters,
    SMTPAuthError,
)
from oauthsmtp._message.prepare import Email
from oauthsmtp._smtp.session import Security, SMTPSession
from oauthsmtp.devserver import (
    AuthServer,
    CertificateSet,
    DevProvider,
    ReceivedMessage,
    headless_login,
)
from oauthsmtp.devserver._mailpages import MessagesPage, download_name, printable, summarize

BOB = "bob@example.org"
HOSTILE_SUBJECT = "<script>alert('pwned')</script> & \"quotes\""


@pytest.fixture
def provider(certs: CertificateSet, tmp_path: Path) -> Iterator[DevProvider]:
    with DevProvider(certificates=certs, maildir=tmp_path / "mail") as running:
        yield running


def get(url: str, headers: dict[str, str] | None = None) -> requests.Response:
    with requests.Session() as http:
        http.trust_env = False
        response = http.get(url, timeout=10, headers=headers)
        response.close()
        return response


def port_open(port: int) -> bool:
    with socket.socket() as sock:
        sock.settimeout(2)
        return sock.connect_ex(("127.0.0.1", port)) == 0


def send(provider: DevProvider, subject: str, *, security: Security = "starttls") -> None:
    token = provider.login()
    with provider.session(auth_token=token, security=security) as session:
        result = session.send(Email(sender=provider.user, to=[BOB], subject=subject, text="Hi."))
    assert result.ok, result


# -- DevProvider ------------------------------------------------------------------------------


def test_start_and_stop(certs: CertificateSet) -> None:
    """Both servers listen while running, and nothing does after stop()."""
    provider = DevProvider(certificates=certs)
    assert not provider.running
    assert repr(provider) == "<DevProvider not running>"
    with provider as same:
        assert same is provider
        assert same.running
        ports = [provider.smtp_port, provider.smtps_port]
        http_port = int(provider.issuer.rsplit(":", 1)[1])
        assert all(port_open(p) for p in [*ports, http_port] if p is not None)
        assert provider.issuer == provider.auth.issuer
        assert provider.web_url == provider.issuer + "/messages"
        assert provider.ca_path == certs.ca_cert
        assert provider.host == "127.0.0.1"
        assert f"smtp=127.0.0.1:{provider.smtp_port}" in repr(provider)
        assert get(provider.auth.metadata_url).json()["issuer"] == provider.issuer
    assert not provider.running
    assert not any(port_open(p) for p in [*ports, http_port] if p is not None)
    provider.stop()  # idempotent


def test_start_failure_leaves_nothing_running(certs: CertificateSet) -> None:
    """A busy SMTP port fails start() and the authorization server is stopped again."""
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        provider = DevProvider(certificates=certs, smtp_port=port)
        with pytest.raises(
            OSError, match=f"the SMTP server cannot listen on 127.0.0.1 port {port}"
        ):
            provider.start()
        assert not provider.running
        assert provider.auth._httpd is None
        other = DevProvider(certificates=certs, http_port=port)
        with pytest.raises(OSError, match=f"authorization server cannot listen .* port {port}"):
            other.start()
        assert other.smtp._thread is None


def test_dev_server_command_reports_a_busy_port(tmp_path: Path) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        command = [sys.executable, "-m", "oauthsmtp", "dev-server", "--smtp-port", str(port)]
        done = subprocess.run(command, capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 1
    assert done.stdout == ""
    assert done.stderr.startswith(
        f"oauthsmtp: error: the SMTP server cannot listen on 127.0.0.1 port {port}: "
    )
    assert done.stderr.count("\n") == 1


def test_fixed_ports_and_no_implicit_tls(certs: CertificateSet) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        free = probe.getsockname()[1]
    with DevProvider(certificates=certs, http_port=free, smtps_port=None) as provider:
        assert provider.issuer == f"http://127.0.0.1:{free}"
        assert provider.smtps_port is None
        with pytest.raises(ConfigurationError, match="implicit-TLS"):
            provider.session(security="ssl")


@pytest.mark.parametrize("bad", [{"smtp_port": -1}, {"smtps_port": 70000}, {"mode": "maybe"}])
def test_bad_options(bad: dict[str, object]) -> None:
    with pytest.raises(ConfigurationError):
        DevProvider(**bad)  # type: ignore[arg-type]


def test_parameters(provider: DevProvider) -> None:
    params = provider.parameters()
    assert isinstance(params, OAuth2Parameters)
    assert params.client_id == provider.client.client_id
    assert params.client_secret == provider.client.client_secret
    assert params.auth_url == provider.auth.authorization_endpoint
    assert params.token_url == provider.auth.token_endpoint
    assert params.revocation_url == provider.auth.revocation_endpoint
    assert params.issuer == provider.issuer
    assert params.redirect_url == "http://127.0.0.1:0/callback"
    other = provider.parameters("http://localhost:9000", scope="offline_access")
    assert other.redirect_url == "http://localhost:9000"
    assert other.scope == ("offline_access",)


def test_login_and_send_over_starttls_and_implicit_tls(provider: DevProvider) -> None:
    """A token from the real flow is accepted on both ports; messages are recorded."""
    send(provider, "over STARTTLS")
    send(provider, "over implicit TLS", security="ssl")
    first, second = provider.wait_for_messages(2)
    assert [first.subject, second.subject] == ["over STARTTLS", "over implicit TLS"]
    assert first.user == provider.user
    assert first.path is not None
    assert first.path.read_bytes() == first.data
    log = provider.auth.requests_log
    assert ("GET", "/authorize") in log
    assert ("POST", "/token") in log
    provider.clear()
    assert provider.messages == []


def test_login_token_refreshes_and_is_checked_by_smtp(provider: DevProvider) -> None:
    token = provider.login()
    old = token.state.access_token
    token.refresh()
    assert token.state.access_token != old
    assert provider.auth.validate_access_token(old) is not None  # rotation keeps access tokens
    provider.auth.revoke_all_refresh_tokens()
    provider.auth.expire_access_tokens()
    with pytest.raises(Exception, match="log"):  # LoginRequired: log in again
        token.refresh()


def test_login_modes(provider: DevProvider) -> None:
    """auto approves as .user only; consent approves as the account; deny raises."""
    with pytest.raises(ConfigurationError, match="auto mode"):
        provider.login("someone.else@example.test")
    provider.user = "carol@example.test"
    assert provider.login().account == "carol@example.test"
    provider.mode = "consent"
    token = provider.login("dave@example.test")
    with provider.session(auth_token=token) as session:
        assert session.username == "dave@example.test"
        session.send(Email(sender="dave@example.test", to=[BOB], subject="consent", text="."))
    assert provider.wait_for_messages(1)[0].user == "dave@example.test"
    provider.mode = "deny"
    with pytest.raises(AccessDenied):
        provider.login()


def test_session_defaults(provider: DevProvider) -> None:
    session = provider.session()
    assert (session.host, session.port, session.security) == (
        "127.0.0.1",
        provider.smtp_port,
        "starttls",
    )
    assert session.username == provider.user
    tls = provider.session(security="ssl")
    assert tls.port == provider.smtps_port
    assert provider.session(port=2525).port == 2525
    assert provider.ssl_context().verify_mode.name == "CERT_REQUIRED"


def test_wrong_token_is_refused(provider: DevProvider) -> None:
    class Fake:
        access_token = "not-a-token"
        account = "user@example.test"

        def refresh(self) -> None:
            raise AccessDenied("no")

    session = provider.session(auth_token=Fake())
    with pytest.raises((SMTPAuthError, AccessDenied)):
        session.start()
    session.close()
    assert provider.messages == []


def test_headless_login_reports_an_unreachable_server(provider: DevProvider) -> None:
    """The headless browser's failure ends the login at once, not at its timeout."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    params = provider.parameters(auth_url=f"http://127.0.0.1:{dead}/authorize")
    started = time.monotonic()
    with pytest.raises(AuthorizationError, match="headless login failed: ConnectionError") as info:
        headless_login(params, timeout=20)
    assert time.monotonic() - started < 10
    assert "state=" not in str(info.value)
    assert f"127.0.0.1:{dead}" in str(info.value)


def test_login_command(provider: DevProvider) -> None:
    words = shlex.split(provider.login_command())
    assert words[0] == f"SSL_CERT_FILE={provider.ca_path}"
    assert words[1:3] == ["oauthsmtp", "login"]
    # --client-id=X / --client-secret=Y use the = form (a secret may start with "-").
    split: list[str] = []
    for word in words[3:]:
        if word.startswith(("--client-id=", "--client-secret=")):
            split.extend(word.split("=", 1))
        else:
            split.append(word)
    options = dict(zip(split[0::2], split[1::2], strict=True))
    assert options == {
        "--account": provider.user,
        "--provider": "custom",
        "--client-id": provider.client.client_id,
        "--client-secret": provider.client.client_secret,
        "--auth-url": provider.auth.authorization_endpoint,
        "--token-url": provider.auth.token_endpoint,
        "--scope": provider.auth.scope,
        "--revocation-url": provider.auth.revocation_endpoint,
        "--issuer": provider.issuer,
        "--redirect-url": "http://localhost:9000",
        "--smtp-host": "127.0.0.1",
        "--smtp-port": str(provider.smtp_port),
        "--security": "starttls",
    }
    assert "--account other@example.test" in provider.login_command("other@example.test")


# -- the received-messages page ---------------------------------------------------------------


def test_messages_page_lists_newest_first(provider: DevProvider) -> None:
    empty = get(provider.web_url)
    assert empty.status_code == 200
    assert 'id="no-messages"' in empty.text
    send(provider, "first")
    send(provider, "second")
    page = get(provider.web_url)
    assert page.status_code == 200
    assert page.headers["Content-Type"] == "text/html; charset=utf-8"
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert page.headers["X-Frame-Options"] == "DENY"
    assert page.headers["Cache-Control"] == "no-store"
    assert page.text.index(">second</a>") < page.text.index(">first</a>")
    assert '<a href="/messages/2">second</a>' in page.text
    assert f'<td class="from">{provider.user}</td>' in page.text
    assert f'<td class="to">{BOB}</td>' in page.text
    assert re.search(r'<td class="when">\d{4}-\d\d-\d\d \d\d:\d\d:\d\d</td>', page.text)
    assert 'id="count">2 messages' in page.text
    assert "<script" not in page.text
    assert "http" not in page.text.split("<body>")[1]
    assert get(provider.web_url + "/").status_code == 200


def test_one_message_and_its_eml(provider: DevProvider) -> None:
    send(provider, "look at me")
    [message] = provider.messages
    page = get(provider.web_url + "/1")
    assert page.status_code == 200
    assert '<h1 id="subject">look at me</h1>' in page.text
    assert '<pre id="text">Hi.\n</pre>' in page.text
    assert f"<tr><th>RCPT TO</th><td>{BOB}</td></tr>" in page.text
    assert f"<tr><th>Authenticated as</th><td>{provider.user}</td></tr>" in page.text
    assert "<tr><th>Message-ID</th><td>&lt;" in page.text
    raw = get(provider.web_url + "/1.eml")
    assert raw.status_code == 200
    assert raw.headers["Content-Type"] == "message/rfc822"
    assert raw.headers["Content-Disposition"] == 'attachment; filename="message-1.eml"'
    assert raw.content == message.data
    for missing in ("/2", "/0", "/01", "/x", "/1/extra", "/2.eml", "/-1", "/1.txt"):
        assert get(provider.web_url + missing).status_code == 404, missing


HTML_PART = (
    '<h1 id="greeting">Hello <b>Bob</b></h1>'
    "<script>document.title = 'pwned'</script>"
    '<img src="http://127.0.0.1:9/track.png">"quoted" &amp; done'
)


def rich_message(provider: DevProvider) -> EmailMessage:
    """Text and HTML parts, a Cc, and two attachments (one with a hostile file name)."""
    msg = EmailMessage()
    msg["From"] = provider.user
    msg["To"] = BOB
    msg["Cc"] = "carol@example.test, Dave <dave@example.test>"
    msg["Subject"] = "rich"
    msg.set_content("Plain text.\n")
    msg.add_alternative(HTML_PART, subtype="html")
    msg.add_attachment(b"\x00\x01binary\xff", maintype="application", subtype="octet-stream",
                       filename="report.bin")  # fmt: skip
    msg.add_attachment("<script>alert(1)</script>", subtype="html", filename='../../évil";x=1.html')
    return msg


def test_message_page_shows_html_cc_and_attachments(provider: DevProvider) -> None:
    """The HTML part renders sandboxed (escaped into srcdoc), Cc is listed, attachments download."""
    token = provider.login()
    with provider.session(auth_token=token) as session:
        assert session.send(rich_message(provider)).ok
    listing = get(provider.web_url).text
    assert '<td class="cc">carol@example.test, Dave &lt;dave@example.test&gt;</td>' in listing
    page = get(provider.web_url + "/1")
    assert "default-src 'none'" in page.headers["Content-Security-Policy"]
    assert '<pre id="text">Plain text.\n</pre>' in page.text
    frame = re.search(r'<iframe id="html"[^>]*>', page.text)
    assert frame is not None
    assert 'sandbox=""' in frame.group()
    srcdoc = re.search(r'srcdoc="([^"]*)"', frame.group())
    assert srcdoc is not None
    # The browser gets the part unchanged (line ends normalized)...
    assert html.unescape(srcdoc.group(1)) == HTML_PART + "\n"
    assert "<script" not in page.text  # ...but never as markup of the page itself
    assert "<tr><th>Cc</th><td>carol@example.test, Dave &lt;dave@example.test&gt;</td></tr>" in (
        page.text
    )
    links = re.findall(r'<a href="(/messages/1/attachments/\d+)" download>([^<]*)</a>', page.text)
    assert [name for _, name in links] == ["report.bin", "../../évil&quot;;x=1.html"]
    binary = get(provider.issuer + links[0][0])
    assert binary.status_code == 200
    assert binary.content == b"\x00\x01binary\xff"
    assert binary.headers["Content-Type"] == "application/octet-stream"
    assert binary.headers["Content-Disposition"] == 'attachment; filename="report.bin"'
    assert binary.headers["X-Content-Type-Options"] == "nosniff"
    hostile = get(provider.issuer + links[1][0])
    assert hostile.content.rstrip() == b"<script>alert(1)</script>"
    assert hostile.headers["Content-Type"] == "application/octet-stream"  # never rendered
    disposition = hostile.headers["Content-Disposition"]
    assert disposition.startswith('attachment; filename="')
    assert "/" not in disposition.split("filename*=")[0]
    assert disposition == (
        "attachment; filename=\"_vil__x_1.html\"; filename*=UTF-8''%C3%A9vil%22%3Bx%3D1.html"
    )
    for missing in ("/1/attachments/0", "/1/attachments/3", "/2/attachments/1", "/1/attachments/x"):
        assert get(provider.web_url + missing).status_code == 404, missing


def test_download_name() -> None:
    assert download_name("a b.txt", 1, 1) == 'attachment; filename="a b.txt"'
    assert download_name("", 3, 2) == 'attachment; filename="message-3-attachment-2"'
    assert download_name("a\r\nX: y", 1, 1) == (
        "attachment; filename=\"a__X_ y\"; filename*=UTF-8''a%0D%0AX%3A%20y"
    )
    assert download_name("C:\\x\\..\\ünï.pdf", 1, 1) == (
        "attachment; filename=\"_n_.pdf\"; filename*=UTF-8''%C3%BCn%C3%AF.pdf"
    )


def test_events_are_logged_without_secrets(
    provider: DevProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """Logins, refreshes and AUTH (accepted and refused) are logged; no token, code or secret."""
    caplog.set_level(logging.INFO, logger="oauthsmtp.devserver")
    token = provider.login()
    first = token.state
    token.refresh()
    with provider.session(auth_token=token) as session:
        assert session.send(Email(sender=provider.user, to=[BOB], subject="s", text=".")).ok
    with smtplib.SMTP(provider.host, provider.smtp_port, timeout=10) as client:
        client.starttls(context=provider.ssl_context())
        client.ehlo()
        wrong = base64.b64encode(
            f"user={provider.user}\x01auth=Bearer wrong-token\x01\x01".encode()
        )
        assert client.docmd("AUTH", "XOAUTH2 " + wrong.decode())[0] == 334
        assert client.docmd("")[0] == 535
    lines = [r.getMessage() for r in caplog.records if r.name.startswith("oauthsmtp.devserver")]
    client_id = provider.client.client_id
    assert f"login: {provider.user} signed in (client {client_id})" in lines
    assert (
        f"refresh: new access token and a new refresh token for {provider.user} "
        f"(client {client_id})"
    ) in lines
    assert f"AUTH OAUTHBEARER accepted for {provider.user!r}" in lines
    assert f"AUTH XOAUTH2 refused for {provider.user!r}" in lines
    text = "\n".join(lines) + caplog.text
    secrets_seen = [first.access_token, token.state.access_token, provider.client.client_secret]
    secrets_seen += [first.refresh_token or "-", token.refresh_token or "-", "wrong-token"]
    assert [s for s in secrets_seen if s and s in text] == []
    assert wrong.decode() not in text


def test_hostile_subject_is_escaped(provider: DevProvider) -> None:
    token = provider.login()
    msg = EmailMessage()
    msg["From"] = f'"<img src=x onerror=alert(1)>" <{provider.user}>'
    msg["To"] = BOB
    msg["Subject"] = HOSTILE_SUBJECT
    msg.set_content("<script>alert('body')</script>\n")
    with provider.session(auth_token=token) as session:
        assert session.send(msg).ok
    for path in ("", "/1"):
        text = get(provider.web_url + path).text
        assert "<script" not in text
        assert "<img" not in text
        assert (
            "&lt;script&gt;alert(&#x27;pwned&#x27;)&lt;/script&gt; &amp; &quot;quotes&quot;" in text
        )
    detail = get(provider.web_url + "/1").text
    assert "&lt;script&gt;alert(&#x27;body&#x27;)&lt;/script&gt;" in detail


def test_page_refuses_other_methods_and_hosts(provider: DevProvider) -> None:
    with requests.Session() as http:
        http.trust_env = False
        with http.post(provider.web_url, data={"a": "b"}, timeout=10) as post:
            assert post.status_code == 405
            assert post.headers["Allow"] == "GET, HEAD"
        with http.head(provider.web_url, timeout=10) as head:
            assert head.status_code == 200
            assert head.content == b""
    port = provider.issuer.rsplit(":", 1)[1]
    for host in ("evil.example", f"evil.example:{port}", "127.0.0.1.evil.example"):
        assert get(provider.web_url, headers={"Host": host}).status_code == 421, host
    for host in (f"localhost:{port}", f"127.0.0.1:{port}", "[::1]", f"LOCALHOST:{port}"):
        assert get(provider.web_url, headers={"Host": host}).status_code == 200, host


def test_add_page_protects_the_authorization_routes() -> None:
    server = AuthServer()

    def page(path: str, query: str) -> tuple[int, str, bytes]:
        return 200, "text/plain", f"{path}?{query}".encode()

    for prefix in ("/authorize", "/token", "/token/x", "/revoke", "/introspect"):
        with pytest.raises(ConfigurationError, match="overlaps"):
            server.add_page(prefix, page)
    for bad in ("", "/", "messages", "/messages/", "/a b", "/.well-known", "/x?y"):
        with pytest.raises(ConfigurationError, match="path_prefix"):
            server.add_page(bad, page)
    server.add_page("/hello", page)
    with pytest.raises(ConfigurationError, match="overlaps"):
        server.add_page("/hello/world", page)
    with server:
        answer = get(server.issuer + "/hello/there?x=1")
        assert answer.status_code == 200
        assert answer.text == "/hello/there?x=1"
        assert answer.headers["Content-Type"] == "text/plain"
        assert "Content-Security-Policy" not in answer.headers
        assert get(server.issuer + "/hellothere").status_code == 404
        assert get(server.authorization_endpoint).status_code == 400  # still the real endpoint


def received(data: bytes) -> ReceivedMessage:
    return ReceivedMessage(
        mail_from="<script>@example.org",
        rcpt_tos=("x@example.org",),
        data=data,
        user=None,
        received_at=datetime(2024, 5, 1, 12, 0, tzinfo=timezone.utc),
        path=None,
    )


@pytest.mark.parametrize(
    "data",
    [
        b'Subject: \x1b[2J<b>clear</b>\r\nFrom: "<i>" <a@example.org>\r\n\r\nbody\x1b[31m\r\n',
        b"Subject: =?utf-8?q?=3Cscript=3E?=\r\nTo: (<script>) <<<>>>@@\r\n\r\n",
        b"From: a@example.org\r\nContent-Type: text/html; charset=bogus\r\n\r\n<script>x</script>",
        b"\xff\xfe not an email at all <script>",
        b"",
    ],
)
def test_rendering_hostile_messages(data: bytes) -> None:
    page = MessagesPage(lambda: [received(data)])
    for path in ("/messages", "/messages/1"):
        result = page(path, "")
        status, body = result[0], result[2].decode()
        assert status == 200
        assert "<script" not in body
        assert "<i>" not in body
        assert "<b>" not in body
        assert "\x1b" not in body
    summary = summarize(received(data))
    assert "\x1b" not in printable(summary.subject)


def test_printable() -> None:
    assert printable("a\x1b[2Jb\r\nc\td\x7f\x9b") == "a\\x1b[2Jb\\r\\nc d\\x7f\\x9b"
    assert printable("Zoë ✓") == "Zoë ✓"


# -- oauthsmtp dev-server -----------------------------------------------------------------------


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_spawned_ends_a_child_that_ignores_its_stop_signal() -> None:
    """A child that ignores SIGINT cannot hang the run: the block ends, the child is killed."""
    code = (
        "import signal, time; signal.signal(signal.SIGINT, signal.SIG_IGN); "
        "print('ready', flush=True); time.sleep(600)"
    )
    started = time.monotonic()
    with spawned([sys.executable, "-c", code], stdout=subprocess.PIPE, stop_within=10) as proc:
        assert proc.stdout is not None
        Lines(proc.stdout).until("^ready$")
        proc.send_signal(signal.SIGINT)
        with pytest.raises(subprocess.TimeoutExpired):
            proc.wait(timeout=0.5)
    assert proc.returncode == -signal.SIGKILL
    assert time.monotonic() - started < 30


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
@pytest.mark.parametrize(("stop", "extra"), [(signal.SIGINT, []), (signal.SIGTERM, ["--consent"])])
def test_dev_server_command(tmp_path: Path, stop: signal.Signals, extra: list[str]) -> None:
    """`oauthsmtp dev-server`: info block, a message through the printed port, a clean stop."""
    maildir = tmp_path / "mail"
    # `python -m oauthsmtp dev-server ...`, with Ctrl-C's handler put back: a test run started
    # in the background hands its children SIGINT ignored, and SIGINT would then stop nothing.
    command = [
        sys.executable,
        "-c",
        "import signal, sys; signal.signal(signal.SIGINT, signal.default_int_handler); "
        "from oauthsmtp._cli.main import run; run()",
        "dev-server",
        "--maildir",
        str(maildir),
        *extra,
    ]
    with spawned(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        try:
            out = Lines(proc.stdout)
            out.until(r"^Waiting for messages; press Ctrl-C to stop\.$")

            def value(label: str) -> str:
                return out.until(rf"^  {label}:\s+(\S+)").group(1)

            issuer = value("issuer")
            ca_path = Path(value("CA certificate"))
            assert ca_path.is_file()
            assert value("folder") == str(maildir)
            assert value("web page") == issuer + "/messages"
            assert value("approves as").startswith("on" if extra else "user@example.test")
            login_line = out.until(r"^  (SSL_CERT_FILE=\S+ oauthsmtp login .*)$").group(1)
            assert f"--issuer {issuer}" in login_line
            params = OAuth2Parameters(
                client_id=value("client id"),
                client_secret=value("client secret"),
                auth_url=value("authorize"),
                token_url=value("token"),
                revocation_url=value("revocation"),
                scope=value("scope"),
                issuer=issuer,
                redirect_url="http://127.0.0.1:0/callback",
            )
            token = headless_login(params, account="user@example.test")
            with SMTPSession(
                value("host"),
                int(value("STARTTLS port")),
                auth_token=token,
                ssl_context=ssl.create_default_context(cafile=str(ca_path)),
            ) as session:
                result = session.send(
                    Email(sender="user@example.test", to=[BOB], subject="via the CLI", text=".")
                )
            assert result.ok
            arrival = out.until(
                rf"from user@example.test  to {BOB}  subject: via the CLI  \[(.+)\]$"
            )
            out.until(r"^\d\d:\d\d:\d\d  login: \S+ signed in \(client ")
            out.until(r"^\d\d:\d\d:\d\d  AUTH \w+ accepted for ")
            eml = maildir / arrival.group(1)
            assert eml.is_file()
            assert b"Subject: via the CLI" in eml.read_bytes()
            assert get(issuer + "/messages").text.count('<tr id="message-') == 1
        finally:
            proc.send_signal(stop)
            code = proc.wait(timeout=20)
        stdout = out.rest()
        stderr = proc.stderr.read()
    assert code == 0, stderr
    assert "Traceback" not in stderr
    assert "Traceback" not in stdout
    assert "Stopped. 1 message received" in stdout
    assert token.access_token not in stdout + stderr
    assert list(maildir.glob("*.eml")) == [eml]


def test_html_part_in_a_real_browser_runs_nothing_and_loads_nothing(
    provider: DevProvider,
) -> None:
    """Chromium shows the HTML part, but its script does not run and its resources never load."""
    require(Path("/usr/bin/chromium").exists(), "Debian's chromium", "apt-get install chromium")
    require(
        importlib.util.find_spec("playwright") is not None, "playwright", "pip install -e '.[test]'"
    )
    from playwright.sync_api import sync_playwright

    listener = socket.create_server(("127.0.0.1", 0))  # where the mail's resources point
    tracker = f"http://127.0.0.1:{listener.getsockname()[1]}/track"
    msg = EmailMessage()
    msg["From"] = provider.user
    msg["To"] = BOB
    msg["Subject"] = "tracked"
    msg.set_content("text\n")
    msg.add_alternative(
        f'<h1 id="hi">Hello Bob</h1><img src="{tracker}.png">'
        f'<link rel="stylesheet" href="{tracker}.css">'
        f'<script>fetch("{tracker}.js"); document.body.textContent = "PWNED";</script>',
        subtype="html",
    )
    with provider.session(auth_token=provider.login()) as session:
        assert session.send(msg).ok
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(
            executable_path="/usr/bin/chromium",
            args=["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"],
        )
        try:
            page = browser.new_page()
            page.goto(provider.web_url + "/1")
            body = page.frame_locator("#html").locator("body")
            assert body.locator("#hi").inner_text(timeout=10_000) == "Hello Bob"
            assert "PWNED" not in body.inner_text(timeout=10_000)
        finally:
            browser.close()
    listener.setblocking(False)
    with listener, pytest.raises(BlockingIOError):  # nobody ever connected
        listener.accept()
