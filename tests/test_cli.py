"""The oauthsmtp command, run for real (subprocess) against the development provider."""

from __future__ import annotations

import base64
import json
import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from components import require_program

from oauthsmtp.devserver import AuthServer
from oauthsmtp.devserver._certs import CertificateSet
from oauthsmtp.devserver._smtpserver import SMTPServer

HERE = Path(__file__).parent
ACCOUNT = "user@example.test"


@pytest.fixture
def servers(certs: CertificateSet) -> Iterator[tuple[AuthServer, SMTPServer]]:
    with (
        AuthServer(mode="auto", user=ACCOUNT) as auth,
        SMTPServer(auth.validate_access_token, certificates=certs) as smtp,
    ):
        yield auth, smtp


class CLI:
    """Runs `python -m oauthsmtp` with a private home, a file store and the fake browser."""

    def __init__(self, home: Path, certs: CertificateSet) -> None:
        self.env = {
            **os.environ,
            "OAUTHSMTP_HOME": str(home),
            "OAUTHSMTP_STORE": "file",
            "BROWSER": f"{sys.executable} {HERE / 'fake_browser.py'} %s",
            "FAKE_BROWSER_LOG": str(home / "browser.json"),
            "SSL_CERT_FILE": str(certs.ca_cert),
            "PYTHONPATH": str(HERE.parent),
        }
        self.env.pop("CI", None)
        self.client_secret: str | None = None

    def __call__(
        self, *args: str, stdin: str | None = None, check: int | None = 0
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "oauthsmtp", *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin if stdin is not None else "",
            timeout=60,
            check=False,
        )
        if check is not None:
            assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc


@pytest.fixture
def cli(tmp_path: Path, certs: CertificateSet) -> CLI:
    return CLI(tmp_path / "home", certs)


def login(
    cli: CLI,
    auth: AuthServer,
    smtp: SMTPServer,
    *,
    secret_from: str = "flag",
    smtp_port: int | None = None,
) -> subprocess.CompletedProcess[str]:
    """Log in against the dev provider; the secret from the flag, a file or stdin."""
    client = auth.register_client()
    cli.client_secret = client.client_secret
    secret = client.client_secret or ""
    stdin = None
    if secret_from == "file":
        path = Path(cli.env["OAUTHSMTP_HOME"]).parent / "client-secret.txt"
        path.write_text(secret + "\n")
        secret_args = ["--client-secret-file", str(path)]
    elif secret_from == "stdin":
        stdin = secret + "\n"
        secret_args = ["--client-secret-file", "-"]
    else:
        # The = form: a generated secret may start with "-", which argparse would take for
        # an option (docs/cli.md says the same to users).
        secret_args = [f"--client-secret={secret}"]
    return cli(
        "login",
        "--account", ACCOUNT,
        "--provider", "custom",
        f"--client-id={client.client_id}",
        *secret_args,
        "--auth-url", auth.authorization_endpoint,
        "--token-url", auth.token_endpoint,
        "--revocation-url", auth.revocation_endpoint,
        "--issuer", auth.issuer,
        "--scope", auth.scope,
        "--redirect-url", "http://127.0.0.1:0/callback",
        "--smtp-host", "127.0.0.1",
        "--smtp-port", str(smtp.port if smtp_port is None else smtp_port),
        "--security", "starttls",
        "--timeout", "30",
        stdin=stdin,
    )  # fmt: skip


def expire_stored_token(home: Path) -> None:
    for path in (home / "tokens").glob("*.json"):
        data = json.loads(path.read_text())
        if not data["token"].startswith("{"):
            continue  # the client secret's entry
        token = json.loads(data["token"])
        if "access_token" in token:
            token["expires_at"] = "2000-01-01T00:00:00+00:00"
            data["token"] = json.dumps(token)
            path.write_text(json.dumps(data))


def test_version_and_help(cli: CLI) -> None:
    """--version, and --help on every command, for newcomers."""
    assert cli("--version").stdout.startswith("oauthsmtp ")
    for command in (
        "login",
        "token",
        "send",
        "status",
        "logout",
        "providers",
        "dev-server",
        "demo",
    ):
        out = cli(command, "--help").stdout
        assert f"usage: oauthsmtp {command}" in out
    assert "usage: oauthsmtp account set" in cli("account", "set", "--help").stdout
    assert "exit codes" in cli("--help").stdout


def test_usage_errors_exit_2(cli: CLI) -> None:
    """Bad usage: exit 2 and a one-line error."""
    proc = cli("token", check=2)
    assert "oauthsmtp: error:" in proc.stderr
    assert "--account" in proc.stderr
    assert cli("frobnicate", check=2).stdout == ""


def test_unknown_account_needs_login_exit_3(cli: CLI) -> None:
    """token for an account never logged in: exit 3, one line naming the command."""
    proc = cli("token", "--account", "nobody@example.test", check=3)
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("oauthsmtp: error:")
    assert "oauthsmtp login --account nobody@example.test" in lines[0]
    assert "Traceback" not in proc.stderr


def test_providers_lists_presets(cli: CLI) -> None:
    """providers shows endpoints and SMTP servers."""
    out = cli("providers").stdout
    assert "smtp.gmail.com:587" in out
    assert "https://oauth2.googleapis.com/token" in out
    assert "smtp.office365.com:587" in out


def test_login_token_status_send_logout(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """The whole command-line life of an account."""
    auth, smtp = servers
    proc = login(cli, auth, smtp)
    assert proc.stdout == ""
    assert f"logged in as {ACCOUNT}" in proc.stderr
    settings = json.loads((tmp_path / "home" / "accounts.json").read_text())
    assert ACCOUNT in settings["accounts"]
    assert cli.client_secret
    assert cli.client_secret not in json.dumps(settings)  # the secret went to the token store

    token = cli("token", "--account", ACCOUNT).stdout
    assert token.endswith("\n")
    assert token.count("\n") == 1
    assert auth.validate_access_token(token.strip()) is not None

    blob = base64.b64decode(cli("token", "--account", ACCOUNT, "--format", "xoauth2").stdout)
    assert blob == f"user={ACCOUNT}\x01auth=Bearer {token.strip()}\x01\x01".encode()
    bearer = base64.b64decode(cli("token", "--account", ACCOUNT, "--format", "oauthbearer").stdout)
    assert bearer.startswith(f"n,a={ACCOUNT},\x01".encode())
    assert f"port={smtp.port}".encode() in bearer
    meta = json.loads(cli("token", "--account", ACCOUNT, "--format", "json").stdout)
    assert meta["access_token"] == token.strip()
    assert meta["has_refresh_token"] is True

    status = cli("status").stdout
    assert ACCOUNT in status
    assert "refresh token held" in status
    assert token.strip() not in status
    rows = json.loads(cli("status", "--json").stdout)["accounts"]
    assert rows[0]["account"] == ACCOUNT
    assert rows[0]["has_refresh_token"] is True
    assert token.strip() not in json.dumps(rows)

    body = tmp_path / "body.txt"
    body.write_text("Hello from the command line\n")
    attachment = tmp_path / "notes.txt"
    attachment.write_text("attached")
    proc = cli(
        "send", "--account", ACCOUNT, "--to", "you@example.test", "--bcc", "hidden@example.test",
        "--subject", "CLI test", "--body-file", str(body), "--attach", str(attachment),
    )  # fmt: skip
    assert proc.stdout == ""
    received = smtp.wait_for_messages(1)[0]
    assert received.subject == "CLI test"
    assert set(received.rcpt_tos) == {"you@example.test", "hidden@example.test"}
    assert b"hidden@example.test" not in received.data
    assert received.user == ACCOUNT
    assert "Hello from the command line" in received.data.decode()

    proc = cli("send", "--account", ACCOUNT, "--to", "you@example.test", "--subject", "stdin",
               stdin="body from stdin\n")  # fmt: skip
    assert "body from stdin" in smtp.wait_for_messages(2)[1].data.decode()

    cli("logout", "--account", ACCOUNT, "--revoke")
    assert auth.validate_access_token(token.strip()) is None
    assert cli("token", "--account", ACCOUNT, check=3).stdout == ""
    assert "not logged in" in cli("status").stdout

    # The settings and client secret stay: logging in again needs only --account.
    (tmp_path / "home" / "browser.json").unlink()
    cli("login", "--account", ACCOUNT, "--timeout", "30")
    assert auth.validate_access_token(cli("token", "--account", ACCOUNT).stdout.strip())
    cli("logout", "--account", ACCOUNT, "--forget")
    assert "No accounts" in cli("status").stdout


def test_expired_token_is_refreshed_silently(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """token refreshes an expired access token; stdout carries only the new token."""
    auth, smtp = servers
    login(cli, auth, smtp)
    first = cli("token", "--account", ACCOUNT).stdout.strip()
    expire_stored_token(tmp_path / "home")
    before = auth.token_requests
    proc = cli("token", "--account", ACCOUNT)
    assert proc.stdout.strip() != first
    assert auth.validate_access_token(proc.stdout.strip()) is not None
    assert auth.token_requests - before == 1
    assert proc.stderr == ""


def test_revoked_refresh_token_exits_3_with_hint(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """A dead refresh token: exit 3, one line on stderr naming the login command."""
    auth, smtp = servers
    login(cli, auth, smtp)
    expire_stored_token(tmp_path / "home")
    auth.revoke_all_refresh_tokens()
    proc = cli("token", "--account", ACCOUNT, check=3)
    assert proc.stdout == ""
    assert len(proc.stderr.strip().splitlines()) == 1
    assert f"oauthsmtp login --account {ACCOUNT}" in proc.stderr
    assert "Traceback" not in proc.stderr
    assert "auth_identify" not in proc.stderr  # command-line advice, not Python


def test_second_login_replaces_the_token(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """Logging in again (with only --account) replaces the token."""
    auth, smtp = servers
    login(cli, auth, smtp)
    first = cli("token", "--account", ACCOUNT).stdout.strip()
    (tmp_path / "home" / "browser.json").unlink()
    cli("login", "--account", ACCOUNT, "--timeout", "30")
    second = cli("token", "--account", ACCOUNT).stdout.strip()
    assert first != second
    assert auth.validate_access_token(second) is not None


def test_debug_shows_detail_without_secrets(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """--debug prints protocol detail to stderr, never the token."""
    auth, smtp = servers
    login(cli, auth, smtp)
    expire_stored_token(tmp_path / "home")
    proc = cli("--debug", "token", "--account", ACCOUNT)
    token = proc.stdout.strip()
    assert "oauthsmtp.token" in proc.stderr
    assert token not in proc.stderr
    proc = cli("token", "--account", "nobody@example.test", "--debug", check=3)


@pytest.mark.parametrize("secret_from", ["file", "stdin"])
def test_client_secret_from_a_file_or_stdin(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path, secret_from: str
) -> None:
    """--client-secret-file FILE and -: the login works, the secret never reaches argv."""
    auth, smtp = servers
    proc = login(cli, auth, smtp, secret_from=secret_from)
    assert f"logged in as {ACCOUNT}" in proc.stderr
    assert cli.client_secret
    assert cli.client_secret not in proc.stderr
    assert auth.validate_access_token(cli("token", "--account", ACCOUNT).stdout.strip())
    # A later refresh needs the saved secret: it was saved from the file as well.
    expire_stored_token(tmp_path / "home")
    assert auth.validate_access_token(cli("token", "--account", ACCOUNT).stdout.strip())


def test_send_overrides_and_account_set(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """A wrong recorded port: send --smtp-port reaches the server once; account set fixes it."""
    auth, smtp = servers
    with socket.socket() as closed:
        closed.bind(("127.0.0.1", 0))
        wrong = closed.getsockname()[1]
    login(cli, auth, smtp, smtp_port=wrong)
    message = ["send", "--account", ACCOUNT, "--to", "you@example.test", "--subject"]
    failed = cli(*message, "recorded", stdin="x\n", check=1)
    assert str(wrong) in failed.stderr
    cli(*message, "override", "--smtp-port", str(smtp.port), stdin="x\n")
    assert smtp.wait_for_messages(1)[0].subject == "override"
    assert f"127.0.0.1:{wrong} (starttls)" in cli("status").stdout  # for one run only
    cli("account", "set", "--account", ACCOUNT, "--smtp-port", str(smtp.port))
    assert f"127.0.0.1:{smtp.port} (starttls)" in cli("status").stdout
    cli(*message, "recorded again", stdin="x\n")
    assert smtp.wait_for_messages(2)[1].subject == "recorded again"
    assert auth.validate_access_token(cli("token", "--account", ACCOUNT).stdout.strip())


def test_no_browser_prints_url_and_waits(cli: CLI, servers: tuple[AuthServer, SMTPServer]) -> None:
    """login --no-browser: the URL and a waiting line on stderr, then a timeout error."""
    auth, _ = servers
    client = auth.register_client()
    proc = cli(
        "login", "--account", ACCOUNT, "--provider", "custom", f"--client-id={client.client_id}",
        "--auth-url", auth.authorization_endpoint, "--token-url", auth.token_endpoint,
        "--scope", auth.scope, "--smtp-host", "127.0.0.1", "--redirect-url",
        "http://127.0.0.1:0/cb", "--no-browser", "--timeout", "1",
        check=1,
    )  # fmt: skip
    assert proc.stdout == ""
    assert auth.authorization_endpoint in proc.stderr
    assert "Waiting up to 1 seconds" in proc.stderr
    assert "ssh -L" in proc.stderr
    assert proc.stderr.strip().splitlines()[-1].startswith("oauthsmtp: error:")


MSMTP_CONFIG = """\
defaults
logfile {log}

account dev
host 127.0.0.1
port {port}
tls on
tls_starttls on
tls_trust_file {ca}
auth {auth}
user {user}
from {user}
passwordeval "{python} -m oauthsmtp token --account {user}"

account default : dev
"""


@pytest.mark.parametrize("mechanism", ["xoauth2", "oauthbearer"])
def test_msmtp_sends_with_passwordeval(
    cli: CLI,
    servers: tuple[AuthServer, SMTPServer],
    tmp_path: Path,
    certs: CertificateSet,
    mechanism: str,
) -> None:
    """Debian's msmtp sends through the dev server with `oauthsmtp token` as passwordeval."""
    require_program("msmtp", "msmtp")
    auth, smtp = servers
    login(cli, auth, smtp)
    config = tmp_path / "msmtprc"
    config.write_text(
        MSMTP_CONFIG.format(
            log=tmp_path / "msmtp.log",
            port=smtp.port,
            ca=certs.ca_cert,
            auth=mechanism,
            user=ACCOUNT,
            python=sys.executable,
        )
    )
    config.chmod(0o600)
    message = f"From: {ACCOUNT}\nTo: you@example.test\nSubject: via msmtp {mechanism}\n\nhi\n"
    started = time.monotonic()
    proc = subprocess.run(
        ["msmtp", "-C", str(config), "-a", "dev", "you@example.test"],
        input=message,
        capture_output=True,
        text=True,
        env=cli.env,
        timeout=60,
        check=False,
    )
    assert proc.returncode == 0, (proc.stdout, proc.stderr, (tmp_path / "msmtp.log").read_text())
    received = smtp.wait_for_messages(1, timeout=max(1.0, 30 - (time.monotonic() - started)))[0]
    assert received.subject == f"via msmtp {mechanism}"
    assert received.user == ACCOUNT
    assert smtp.auth_log[-1][0] == mechanism.upper()
