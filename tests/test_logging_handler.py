"""oauthsmtp.integrations.logging.SMTPHandler: log records as mails, against real servers.

The development provider checks the token and keeps the mails; a slow server from
hostile_smtp.py holds its end-of-data reply to show that logging never waits for it.
"""

from __future__ import annotations

import logging
import logging.config
import re
import ssl
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from cli_support import make_home
from hostile_smtp import HostileServer
from test_cli import ACCOUNT, CLI, login

from oauthsmtp import ConfigurationError
from oauthsmtp.devserver import AuthServer, CertificateSet, SMTPServer
from oauthsmtp.integrations.logging import SMTPHandler

SUBJECT = "[app] %(levelname)s: %(message)s"


@pytest.fixture
def dev(
    tmp_path: Path, certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> Iterator[tuple[SMTPServer, ssl.SSLContext]]:
    """An account logged in with `oauthsmtp login` (file store); the environment names it."""
    with (
        AuthServer(mode="auto", user=ACCOUNT) as auth,
        SMTPServer(auth.validate_access_token, certificates=certs) as smtp,
    ):
        cli = CLI(tmp_path / "home", certs)
        login(cli, auth, smtp)
        monkeypatch.setenv("OAUTHSMTP_HOME", str(tmp_path / "home"))
        monkeypatch.setenv("OAUTHSMTP_STORE", "file")
        yield smtp, ssl.create_default_context(cafile=str(certs.ca_cert))


@pytest.fixture
def app_logger() -> Iterator[logging.Logger]:
    """A logger of the application under test, emptied and closed afterwards."""
    logger = logging.getLogger("app.test")
    logger.setLevel(logging.DEBUG)
    logger.propagate = False
    yield logger
    for handler in list(logger.handlers):
        handler.close()
        logger.removeHandler(handler)


def handler_for(ctx: ssl.SSLContext, **options: object) -> SMTPHandler:
    handler = SMTPHandler(
        ACCOUNT, ["oncall@x.test", "ops@x.test"], SUBJECT, ssl_context=ctx, **options
    )  # type: ignore[arg-type]
    handler.setFormatter(logging.Formatter("%(levelname)s %(name)s %(message)s"))
    return handler


def test_records_arrive_as_mails(
    dev: tuple[SMTPServer, ssl.SSLContext], app_logger: logging.Logger
) -> None:
    """Records within the window make one mail; flush sends it; close sends the rest."""
    smtp, ctx = dev
    handler = handler_for(ctx)
    app_logger.addHandler(handler)
    app_logger.error("disk %s is full", "/var")
    app_logger.warning("second record")
    handler.flush()
    first = smtp.wait_for_messages(1, timeout=30)[0]
    assert first.user == ACCOUNT
    assert first.mail_from == ACCOUNT
    assert first.rcpt_tos == ("oncall@x.test", "ops@x.test")
    assert first.message["Subject"] == "[app] ERROR: disk /var is full (+1 more)"
    assert first.message["From"] == ACCOUNT
    assert first.message["To"] == "oncall@x.test, ops@x.test"
    body = first.message.get_content()
    assert "ERROR app.test disk /var is full" in body
    assert "WARNING app.test second record" in body
    try:
        raise ValueError("boom")
    except ValueError:
        app_logger.exception("it failed")
    handler.close()
    second = smtp.wait_for_messages(2, timeout=30)[1]
    assert second.message["Subject"] == "[app] ERROR: it failed"
    assert "ValueError: boom" in second.message.get_content()
    assert handler.mails_sent == 2
    assert handler.dropped == 0


def test_a_flood_makes_few_mails(
    dev: tuple[SMTPServer, ssl.SSLContext], app_logger: logging.Logger
) -> None:
    """1,000 records: every one arrives, in at most a handful of mails."""
    smtp, ctx = dev
    handler = handler_for(ctx)
    app_logger.addHandler(handler)
    for number in range(1000):
        app_logger.error("record %d", number)
    handler.close()
    mails = smtp.messages
    assert 2 <= len(mails) <= 4  # 500 records at most per mail
    lines = [
        line
        for mail in mails
        for line in mail.message.get_content().splitlines()
        if line.startswith("ERROR app.test record ")
    ]
    assert sorted(int(line.rsplit(" ", 1)[1]) for line in lines) == list(range(1000))
    assert handler.dropped == 0


def test_a_full_queue_drops_and_counts_with_one_warning(
    dev: tuple[SMTPServer, ssl.SSLContext],
    app_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    smtp, ctx = dev
    handler = handler_for(ctx, capacity=50, max_records_per_mail=50)
    app_logger.addHandler(handler)
    for number in range(1000):
        app_logger.error("record %d", number)
    handler.close()
    err = capsys.readouterr().err
    assert err.count("further records are dropped") == 1
    dropped = handler.dropped
    assert 0 < dropped <= 1000 - 50
    mails = smtp.messages
    assert 1 <= len(mails) <= 6
    bodies = "".join(m.message.get_content() for m in mails)
    assert bodies.count("ERROR app.test record ") == 1000 - dropped
    assert "log records were dropped before this mail" in bodies


def test_rate_limit_holds_mails_and_close_is_bounded(
    dev: tuple[SMTPServer, ssl.SSLContext],
    app_logger: logging.Logger,
    capsys: pytest.CaptureFixture[str],
) -> None:
    """At most max_per_minute mails; flush and close give up after shutdown_timeout."""
    smtp, ctx = dev
    handler = handler_for(ctx, max_per_minute=2, batch_window=0, shutdown_timeout=1)
    app_logger.addHandler(handler)
    for number in range(3):
        app_logger.error("record %d", number)
        handler.flush()
    started = time.monotonic()
    handler.close()
    assert time.monotonic() - started < 30  # bounded (shutdown_timeout=1), not a minute
    assert [m.message["Subject"] for m in smtp.messages] == [
        "[app] ERROR: record 0",
        "[app] ERROR: record 1",
    ]
    assert handler.dropped == 1
    assert "1 log records were dropped at close" in capsys.readouterr().err


def test_logging_never_waits_for_a_slow_server(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, app_logger: logging.Logger
) -> None:
    """While the server holds its reply, logging calls return and nothing is sent yet."""
    make_home(tmp_path, monkeypatch)
    with HostileServer(
        starttls="missing", pre_tls_auth=("XOAUTH2",), tokens=("AT-secret",), data_delay=3
    ) as server:
        handler = SMTPHandler(
            "me@example.org",
            "oncall@x.test",
            "alert",
            batch_window=0,
            host="127.0.0.1",
            port=server.port,
            security="none",
        )
        app_logger.addHandler(handler)
        app_logger.error("first")
        deadline = time.monotonic() + 20
        while not server.messages and time.monotonic() < deadline:
            time.sleep(0.01)
        assert len(server.messages) == 1  # the server now sits on its reply for 3 s
        started = time.monotonic()
        for number in range(200):
            app_logger.error("more %d", number)
        elapsed = time.monotonic() - started
        assert handler.mails_sent == 0  # the sender is still waiting for the server
        assert elapsed < 3
        handler.close()
        assert handler.mails_sent == 2
        assert len(server.messages) == 2
        assert b"more 199" in server.messages[1].data


def test_no_recursion_through_oauthsmtp_loggers(
    dev: tuple[SMTPServer, ssl.SSLContext], app_logger: logging.Logger
) -> None:
    """With the handler on the root logger and oauthsmtp at DEBUG, sending logs but those
    records are not mailed (nor queued)."""
    smtp, ctx = dev
    seen: list[logging.LogRecord] = []

    class Collect(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    root = logging.getLogger()
    own = logging.getLogger("oauthsmtp")
    # The dev provider runs in this process; its aiosmtpd logger (in the server's thread)
    # would describe each mail to the root logger. In production the server is elsewhere.
    server_log = logging.getLogger("mail.log")
    old_levels = root.level, own.level, server_log.level
    server_log.setLevel(logging.WARNING)
    handler = handler_for(ctx)
    collect = Collect()
    root.addHandler(handler)
    own.addHandler(collect)
    root.setLevel(logging.DEBUG)
    own.setLevel(logging.DEBUG)
    try:
        app_logger.propagate = True
        app_logger.error("the only mail")
        handler.flush()
        handler.close()
    finally:
        root.removeHandler(handler)
        own.removeHandler(collect)
        root.setLevel(old_levels[0])
        own.setLevel(old_levels[1])
        server_log.setLevel(old_levels[2])
    assert any(r.name.startswith("oauthsmtp.") for r in seen)  # sending did log
    assert handler.mails_sent == 1
    (mail,) = smtp.messages
    assert "oauthsmtp." not in mail.message.get_content()
    assert handler.dropped == 0


def test_dict_config(dev: tuple[SMTPServer, ssl.SSLContext]) -> None:
    smtp, ctx = dev
    logging.config.dictConfig(
        {
            "version": 1,
            "disable_existing_loggers": False,
            "formatters": {"plain": {"format": "%(levelname)s %(message)s"}},
            "handlers": {
                "mail": {
                    "class": "oauthsmtp.integrations.logging.SMTPHandler",
                    "level": "ERROR",
                    "formatter": "plain",
                    "account": ACCOUNT,
                    "toaddrs": ["oncall@x.test"],
                    "subject": "[myapp] %(levelname)s: %(message)s",
                    "batch_window": 1,
                    "ssl_context": ctx,
                }
            },
            "loggers": {"myapp": {"handlers": ["mail"], "level": "INFO", "propagate": False}},
        }
    )
    logger = logging.getLogger("myapp")
    (handler,) = logger.handlers
    try:
        assert isinstance(handler, SMTPHandler)
        logger.info("not mailed: below the handler's level")
        logger.error("mailed")
        handler.flush()
        (mail,) = smtp.wait_for_messages(1, timeout=30)
        assert mail.message["Subject"] == "[myapp] ERROR: mailed"
        assert mail.message.get_content() == "ERROR mailed\r\n"
    finally:
        handler.close()
        logger.removeHandler(handler)
        logger.setLevel(logging.NOTSET)
        logger.propagate = True


@pytest.mark.parametrize(
    ("args", "options", "words"),
    [
        (("", "a@x.test", "s"), {}, "account"),
        ((ACCOUNT, [], "s"), {}, "recipient"),
        ((ACCOUNT, "a@x.test\r\nBcc: b@x.test", "s"), {}, "not an address"),
        ((ACCOUNT, "a@x.test", "s"), {"capacity": 0}, "capacity"),
        ((ACCOUNT, "a@x.test", "s"), {"batch_window": -1}, "batch_window"),
    ],
)
def test_arguments_are_checked(
    args: tuple[str, object, str], options: dict[str, object], words: str
) -> None:
    with pytest.raises(ConfigurationError, match=words):
        SMTPHandler(*args, **options)  # type: ignore[arg-type]


def test_the_documented_dict_config(
    dev: tuple[SMTPServer, ssl.SSLContext], certs: CertificateSet, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The logging block of docs/integrations.md, with this test's account."""
    smtp, _ = dev
    monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
    doc = Path(__file__).resolve().parent.parent / "docs" / "integrations.md"
    blocks = re.findall(r"^```python\n(.*?)^```", doc.read_text(encoding="utf-8"), re.S | re.M)
    root = logging.getLogger()
    before = list(root.handlers), root.level
    try:
        exec(blocks[1].replace("alerts@example.com", ACCOUNT), {})  # noqa: S102
        (handler,) = [h for h in root.handlers if h not in before[0]]
        handler.close()
    finally:
        for extra in [h for h in root.handlers if h not in before[0]]:
            root.removeHandler(extra)
        root.setLevel(before[1])
    (mail,) = smtp.wait_for_messages(1, timeout=30)
    assert mail.message["Subject"] == "[myapp] ERROR: the nightly export failed"
    assert mail.rcpt_tos == ("oncall@example.com",)
    assert "ERROR myapp\r\nthe nightly export failed" in mail.message.get_content()


def test_subject_is_one_line(dev: tuple[SMTPServer, ssl.SSLContext]) -> None:
    """A multi-line message becomes a one-line subject (a header cannot hold line breaks)."""
    smtp, ctx = dev
    handler = handler_for(ctx)
    record = logging.LogRecord(
        "app", logging.ERROR, __file__, 1, "line one\nBcc: x@x.test", (), None
    )
    handler.handle(record)
    handler.close()
    (mail,) = smtp.wait_for_messages(1, timeout=30)
    assert mail.message["Subject"] == "[app] ERROR: line one"
    assert mail.rcpt_tos == ("oncall@x.test", "ops@x.test")
    assert "Bcc: x@x.test" in mail.message.get_content()
