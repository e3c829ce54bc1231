"""`oauthsmtp sendmail`: sendmail's flags, the message passed on intact, sysexits codes, and
the real git send-email and mutt calling it, against the development provider."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from email import policy
from email.message import EmailMessage
from email.parser import BytesParser
from pathlib import Path

import pytest
from components import require_program
from test_cli import ACCOUNT, CLI, login

from oauthsmtp._cli.rawmessage import normalize_line_ends, split_message
from oauthsmtp._cli.sendmail import MAX_MESSAGE_BYTES, SendmailError, read_message
from oauthsmtp._cli.sendmailargs import SendmailOptions, SendmailUsageError, parse_sendmail_args
from oauthsmtp.devserver import AuthServer, CertificateSet, SMTPServer

EX_USAGE, EX_DATAERR, EX_NOUSER, EX_TEMPFAIL, EX_CONFIG = 64, 65, 67, 75, 78


# -- the flags (pure) ------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "expected"),
    [
        (["a@x.test"], SendmailOptions(recipients=("a@x.test",))),
        (["-t", "-i"], SendmailOptions(read_recipients=True, ignored=("-i",))),
        (["-ti"], SendmailOptions(read_recipients=True, ignored=("-i",))),
        (["-oi", "a@x.test"], SendmailOptions(recipients=("a@x.test",), ignored=("-oi",))),
        (["-o", "i"], SendmailOptions(ignored=("-oi",))),
        (
            ["-fme@x.test", "b@x.test"],
            SendmailOptions(recipients=("b@x.test",), sender="me@x.test"),
        ),
        (
            ["-f", "me@x.test", "-F", "Me Myself"],
            SendmailOptions(sender="me@x.test", full_name="Me Myself"),
        ),
        (["-r", "me@x.test"], SendmailOptions(sender="me@x.test")),
        (["--account", "me@x.test"], SendmailOptions(account="me@x.test")),
        (
            ["--account=me@x.test", "b@x.test"],
            SendmailOptions(recipients=("b@x.test",), account="me@x.test"),
        ),
        (["b@x.test", "-t"], SendmailOptions(recipients=("b@x.test",), read_recipients=True)),
        (["--", "-odd@x.test", "-t"], SendmailOptions(recipients=("-odd@x.test", "-t"))),
        (
            [
                "-oem",
                "-odi",
                "-B8BITMIME",
                "-N",
                "never",
                "-R",
                "hdrs",
                "-v",
                "-bm",
                "-oi",
                "c@x.test",
            ],
            SendmailOptions(
                recipients=("c@x.test",),
                ignored=("-oem", "-odi", "-B 8BITMIME", "-N never", "-R hdrs", "-v", "-bm", "-oi"),
            ),
        ),
        (["--help"], SendmailOptions(help=True)),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_flags(argv: list[str], expected: SendmailOptions) -> None:
    """sendmail's common flags as git send-email, mutt and cron write them."""
    assert parse_sendmail_args(argv) == expected


@pytest.mark.parametrize(
    ("argv", "words"),
    [
        (["-bs"], "-bs is not supported"),
        (["-bp"], "-bp is not supported"),
        (["-q"], "unknown option -q"),
        (["-f"], "-f needs a value"),
        (["--account"], "--account needs"),
        (["--frobnicate"], "unknown option --frobnicate"),
    ],
    ids=lambda value: " ".join(value) if isinstance(value, list) else "",
)
def test_flags_refused(argv: list[str], words: str) -> None:
    """A mode this stand-in has not (queue, daemon, SMTP on stdin) is a usage error."""
    with pytest.raises(SendmailUsageError, match=words):
        parse_sendmail_args(argv)


# -- the message (pure) ----------------------------------------------------------------------


def test_split_keeps_fields_and_body_byte_for_byte() -> None:
    """Folded fields stay folded; Bcc goes with its continuation lines; the body is untouched."""
    data = normalize_line_ends(
        b"From: a@x.test\nTo: b@x.test,\n c@x.test\nBcc: d@x.test,\n\te@x.test\n"
        b"Subject: =?utf-8?q?caf=C3=A9?=\n\nbody\n.\n..dots\n"
    )
    message = split_message(data)
    assert message.names() == ["from", "to", "bcc", "subject"]
    assert message.values("to") == ["b@x.test, c@x.test"]
    assert message.without("bcc").to_bytes() == data.replace(
        b"Bcc: d@x.test,\r\n\te@x.test\r\n", b""
    )


def test_mbox_from_line_dropped_and_headerless_input_is_body() -> None:
    """An mbox 'From ' line is not a header; input that starts with text is all body."""
    assert split_message(
        b"From abc Mon Sep 17 00:00:00 2001\r\nSubject: s\r\n\r\nb\r\n"
    ).names() == ["subject"]
    headerless = split_message(b"just a line\r\nand another\r\n")
    assert headerless.fields == ()
    assert headerless.body == b"just a line\r\nand another\r\n"


def test_read_message_is_bounded() -> None:
    """Past the cap, EX_DATAERR and nothing is kept."""
    assert read_message(io.BytesIO(b"x" * 100), limit=100) == b"x" * 100
    with pytest.raises(SendmailError) as caught:
        read_message(io.BytesIO(b"x" * 101), limit=100)
    assert caught.value.code == EX_DATAERR
    assert MAX_MESSAGE_BYTES >= 35 * 1024 * 1024  # Gmail's encoded limit fits


# -- against the development provider --------------------------------------------------------


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


def sendmail(
    cli: CLI, *args: str, data: bytes, check: int | None = 0
) -> subprocess.CompletedProcess[bytes]:
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", "sendmail", *args],
        input=data,
        capture_output=True,
        env=cli.env,
        timeout=60,
        check=False,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stderr.decode())
    return proc


def rich_message() -> bytes:
    """A multipart message with a folded header, non-ASCII text, a binary attachment, a Bcc."""
    message = EmailMessage(policy=policy.SMTP)
    message["From"] = f"Me <{ACCOUNT}>"
    message["To"] = "you@x.test, Other <other@x.test>"
    message["Cc"] = "cc@x.test"
    message["Bcc"] = "hidden@x.test"
    message["Subject"] = "Grüße " + "long subject words " * 6
    message["Message-ID"] = "<fixed@x.test>"
    message["Date"] = "Sat, 05 Dec 2026 08:00:00 +0000"
    message.set_content("Hällo\n.\nline after a lone dot\n..two dots\n", cte="8bit")
    message.add_attachment(
        bytes(range(256)) * 64, maintype="application", subtype="octet-stream", filename="blob.bin"
    )
    return message.as_bytes()


def test_t_sends_the_message_intact_with_bcc_removed(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """-t -i: recipients from To/Cc/Bcc, every byte but the Bcc field arrives unchanged."""
    auth, smtp = servers
    login(cli, auth, smtp)
    data = rich_message()
    sendmail(cli, "-t", "-i", f"--account={ACCOUNT}", "extra@x.test", data=data)
    received = smtp.wait_for_messages(1, timeout=30)[0]
    assert received.rcpt_tos == (
        "extra@x.test",
        "you@x.test",
        "other@x.test",
        "cc@x.test",
        "hidden@x.test",
    )
    assert received.mail_from == ACCOUNT
    assert received.user == ACCOUNT
    assert b"hidden@x.test" not in received.data
    assert received.data == data.replace(b"Bcc: hidden@x.test\r\n", b"")
    parsed = BytesParser(policy=policy.default).parsebytes(received.data)
    attachment = next(parsed.iter_attachments())
    assert attachment.get_content() == bytes(range(256)) * 64
    assert "BODY=8BITMIME" in received.mail_options


def test_arguments_envelope_and_added_headers(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """Without -t only the arguments are recipients; -f/-F shape the envelope and a missing
    From; Date and Message-ID are added; a line holding only '.' does not end the message
    (with or without -i: nothing after it is ever dropped)."""
    auth, smtp = servers
    login(cli, auth, smtp)
    data = b"To: shown@x.test\nSubject: cron output\n\nline 1\n.\nnot cut\n"
    sendmail(cli, "-F", "Cron Daemon", f"-f{ACCOUNT}", "only@x.test", data=data)
    received = smtp.wait_for_messages(1, timeout=30)[0]
    assert received.rcpt_tos == ("only@x.test",)
    message = received.message
    assert message["From"] == f"Cron Daemon <{ACCOUNT}>"
    assert message["Date"]
    assert message["Message-ID"]
    assert received.data.endswith(b"Subject: cron output\r\n\r\nline 1\r\n.\r\nnot cut\r\n")


@pytest.mark.parametrize(
    ("args", "data", "code", "words"),
    [
        ([], b"Subject: s\n\nb\n", EX_USAGE, "no recipient"),
        (["-t"], b"Subject: s\n\nb\n", EX_DATAERR, "no recipient"),
        (["-t"], b"To: alice@x.test)<bob@x.test>\n\nb\n", EX_DATAERR, "does not parse cleanly"),
        (["bad\x01@"], b"Subject: s\n\nb\n", EX_USAGE, "recipient"),
        (["nobody@x.test"], b"Subject: s\n\nb\n", EX_NOUSER, "nobody@x.test"),
        (["--account", "stranger@x.test", "a@x.test"], b"\n", EX_CONFIG, "stranger@x.test"),
        (["-q"], b"", EX_USAGE, "unknown option -q"),
    ],
    ids=[
        "no-recipient",
        "t-no-recipient",
        "bad-header",
        "bad-argument",
        "refused",
        "unknown-account",
        "usage",
    ],
)
def test_exit_codes(
    cli: CLI,
    servers: tuple[AuthServer, SMTPServer],
    args: list[str],
    data: bytes,
    code: int,
    words: str,
) -> None:
    """sysexits.h codes, one line on stderr that says why, nothing sent."""
    auth, smtp = servers
    login(cli, auth, smtp)
    proc = sendmail(cli, *args, data=data, check=code)
    stderr = proc.stderr.decode()
    assert words in stderr
    assert stderr.count("\n") == 1
    assert "Traceback" not in stderr
    assert smtp.messages == []


def test_login_needed_and_unreachable_are_tempfail(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """A server that is down and a logged-out account both exit 75 (EX_TEMPFAIL: try later)."""
    auth, smtp = servers
    login(cli, auth, smtp)
    smtp.stop()
    proc = sendmail(cli, "a@x.test", data=b"Subject: s\n\nb\n", check=EX_TEMPFAIL)
    assert "127.0.0.1" in proc.stderr.decode()
    cli("logout", "--account", ACCOUNT)
    proc = sendmail(cli, "a@x.test", data=b"Subject: s\n\nb\n", check=EX_TEMPFAIL)
    assert "oauthsmtp login" in proc.stderr.decode()


def test_login_required_is_tempfail(cli: CLI, servers: tuple[AuthServer, SMTPServer]) -> None:
    """A recorded account whose refresh token was revoked: EX_TEMPFAIL with the login hint."""
    auth, smtp = servers
    login(cli, auth, smtp)
    auth.revoke_all_refresh_tokens()
    from test_cli import expire_stored_token

    expire_stored_token(Path(cli.env["OAUTHSMTP_HOME"]))
    proc = sendmail(cli, "a@x.test", data=b"Subject: s\n\nb\n", check=EX_TEMPFAIL)
    assert f"oauthsmtp login --account {ACCOUNT}" in proc.stderr.decode()
    assert smtp.messages == []


def test_only_recorded_account_is_the_default(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """No --account: the one recorded account; OAUTHSMTP_ACCOUNT names another."""
    auth, smtp = servers
    login(cli, auth, smtp)
    sendmail(cli, "a@x.test", data=b"Subject: default\n\nb\n")
    assert smtp.wait_for_messages(1, timeout=30)[0].user == ACCOUNT
    cli.env["OAUTHSMTP_ACCOUNT"] = "other@x.test"
    proc = sendmail(cli, "a@x.test", data=b"Subject: s\n\nb\n", check=EX_CONFIG)
    assert "other@x.test" in proc.stderr.decode()


# -- the real programs -----------------------------------------------------------------------


def git(repo: Path, env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        ["git", "-C", str(repo), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (args, proc.stdout, proc.stderr)
    return proc


def test_git_send_email(cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path) -> None:
    """Debian's git send-email with --sendmail-cmd sends a patch, Cc and Bcc included."""
    require_program("git", "git")
    probe = subprocess.run(
        ["git", "send-email", "-h"], capture_output=True, text=True, timeout=60, check=False
    )
    require(probe, "git send-email", "apt-get install git-email")
    # --cc/--bcc need Mail::Address, which git-email only recommends.
    perl = subprocess.run(
        ["perl", "-MMail::Address", "-e", "1"],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    require(perl, "Perl's Mail::Address", "apt-get install libmailtools-perl")
    auth, smtp = servers
    login(cli, auth, smtp)
    env = {
        **cli.env,
        "HOME": str(tmp_path),
        "GIT_CONFIG_NOSYSTEM": "1",
        "GIT_AUTHOR_NAME": "Pat Ch",
        "GIT_AUTHOR_EMAIL": ACCOUNT,
        "GIT_COMMITTER_NAME": "Pat Ch",
        "GIT_COMMITTER_EMAIL": ACCOUNT,
    }
    repo = tmp_path / "repo"
    repo.mkdir()
    git(repo, env, "init", "-q")
    (repo / "file.txt").write_text("one\n")
    git(repo, env, "add", "file.txt")
    git(repo, env, "commit", "-q", "-m", "first")
    (repo / "file.txt").write_text("one\ntwö\n")
    git(repo, env, "commit", "-q", "-a", "-m", "Add a second line")
    git(
        repo,
        env,
        "send-email",
        f"--sendmail-cmd={sys.executable} -m oauthsmtp sendmail",
        "--to=maintainer@x.test",
        "--cc=list@x.test",
        "--bcc=archive@x.test",
        f"--from=Pat Ch <{ACCOUNT}>",
        f"--envelope-sender={ACCOUNT}",
        "--confirm=never",
        "--suppress-cc=all",
        "--8bit-encoding=UTF-8",
        "-1",
    )
    received = smtp.wait_for_messages(1, timeout=30)[0]
    assert set(received.rcpt_tos) == {"maintainer@x.test", "list@x.test", "archive@x.test"}
    assert received.mail_from == ACCOUNT
    assert b"archive@x.test" not in received.data
    message = received.message
    assert message["Subject"] == "[PATCH] Add a second line"
    assert "+twö\r\n" in message.get_content()


def require(probe: subprocess.CompletedProcess[str], what: str, install: str) -> None:
    from components import require as require_component

    # `git send-email -h` prints its usage and exits 129; a missing git-email says so.
    missing = any(
        words in probe.stderr for words in ("is not a git command", "not found", "Can't locate")
    )
    require_component(not missing, what, install)


def test_mutt_batch_mode(cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path) -> None:
    """Debian's mutt in batch mode with `set sendmail=...`: text and an attachment arrive."""
    require_program("mutt", "mutt")
    auth, smtp = servers
    login(cli, auth, smtp)
    attachment = tmp_path / "report.pdf"
    attachment.write_bytes(b"%PDF-1.4\n" + bytes(range(256)) * 16)
    muttrc = tmp_path / "muttrc"
    muttrc.write_text(
        f'set sendmail="{sys.executable} -m oauthsmtp sendmail --account {ACCOUNT}"\n'
        f'set from="{ACCOUNT}"\nset realname="Mutt User"\nset use_from=yes\n'
        'set use_envelope_from=yes\nset record=""\nset copy=no\nset charset=utf-8\n'
        "set send_charset=utf-8\nset sendmail_wait=0\n"
        f'set folder="{tmp_path}/Mail"\nset spoolfile="{tmp_path}/Mail/inbox"\n'
    )
    (tmp_path / "Mail").mkdir()
    env = {**cli.env, "HOME": str(tmp_path), "TERM": "dumb", "EMAIL": ACCOUNT}
    proc = subprocess.run(
        [
            "mutt",
            "-n",
            "-F",
            str(muttrc),
            "-s",
            "Grüße from mutt",
            "-c",
            "cc@x.test",
            "-a",
            str(attachment),
            "--",
            "friend@x.test",
        ],
        input=b"Hello from mutt.\n.\nAfter a lone dot.\n",
        capture_output=True,
        env=env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr)
    received = smtp.wait_for_messages(1, timeout=30)[0]
    assert set(received.rcpt_tos) == {"friend@x.test", "cc@x.test"}
    assert received.mail_from == ACCOUNT
    message = received.message
    assert message["Subject"] == "Grüße from mutt"
    assert message["From"] == f"Mutt User <{ACCOUNT}>"
    body = message.get_body(("plain",))
    assert body is not None
    assert body.get_content().replace("\r\n", "\n") == "Hello from mutt.\n.\nAfter a lone dot.\n"
    pdf = next(message.iter_attachments())
    assert pdf.get_filename() == "report.pdf"
    assert pdf.get_content() == attachment.read_bytes()


def test_sendmail_command_starts_cheaply() -> None:
    """The command module stays importable without the CLI's heavy modules (start-up cost)."""
    code = (
        "import sys, oauthsmtp._cli.main as m; m.command('sendmail'); "
        "print(sorted(n for n in ('oauthsmtp._smtp.session', 'aiosmtpd') if n in sys.modules))"
    )
    proc = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
        env={**os.environ, "PYTHONPATH": str(Path(__file__).parent.parent)},
    )
    assert proc.stdout.strip() == "[]"


def test_some_recipients_refused_is_nouser_naming_them(
    cli: CLI, servers: tuple[AuthServer, SMTPServer]
) -> None:
    """One recipient refused, one accepted: the accepted one gets it; exit 67 says who not."""
    auth, smtp = servers
    login(cli, auth, smtp)
    proc = sendmail(cli, "ok@x.test", "nobody@x.test", data=b"Subject: s\n\nb\n", check=EX_NOUSER)
    assert "nobody@x.test" in proc.stderr.decode()
    assert "did not get it" in proc.stderr.decode()
    assert [m.rcpt_tos for m in smtp.messages] == [("ok@x.test",)]
