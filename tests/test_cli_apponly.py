"""`oauthsmtp login --provider microsoft-app | google-service-account`, then token/send/status.

Run for real (subprocess) against the development provider, to messages its SMTP
server delivered; the token is renewed by the app's own grant (no refresh token).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_apponly import make_key_and_cert

from oauthsmtp import AuthToken, FileStore, TokenKey
from oauthsmtp.devserver import AuthServer, CertificateSet
from oauthsmtp.devserver._smtpserver import SMTPServer

HERE = Path(__file__).parent
MAILBOX = "shared@example.test"
USER = "user@example.test"


@pytest.fixture
def servers(certs: CertificateSet) -> Iterator[tuple[AuthServer, SMTPServer]]:
    with (
        AuthServer() as auth,
        SMTPServer(auth.validate_access_token, certificates=certs) as smtp,
    ):
        yield auth, smtp


def expire_saved_token(cli: CLI, token_url: str, client_id: str, account: str) -> None:
    """Make the saved access token look expired to the next command (as time passing would)."""
    store = FileStore(cli.home / "tokens")
    key = TokenKey.for_account(token_url, client_id, account)
    raw = store.load(key)
    assert raw is not None
    token = AuthToken.from_json(raw)
    token.expire()
    store.save(key, token.to_json())


class CLI:
    def __init__(self, home: Path, certs: CertificateSet) -> None:
        self.home = home
        self.env = {
            **os.environ,
            "OAUTHSMTP_HOME": str(home),
            "OAUTHSMTP_STORE": "file",
            "BROWSER": "false",
            "SSL_CERT_FILE": str(certs.ca_cert),
            "PYTHONPATH": str(HERE.parent),
        }
        self.env.pop("CI", None)

    def __call__(
        self, *args: str, check: int = 0, stdin: str = ""
    ) -> subprocess.CompletedProcess[str]:
        proc = subprocess.run(
            [sys.executable, "-m", "oauthsmtp", *args],
            capture_output=True,
            text=True,
            env=self.env,
            input=stdin,
            timeout=60,
            check=False,
        )
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
        return proc


@pytest.fixture
def cli(tmp_path: Path, certs: CertificateSet) -> CLI:
    return CLI(tmp_path / "home", certs)


def _smtp_args(smtp: SMTPServer) -> list[str]:
    return ["--smtp-host", "127.0.0.1", "--smtp-port", str(smtp.port), "--security", "starttls"]


def _private(path: Path, text: str) -> Path:
    path.write_text(text)
    path.chmod(0o600)
    return path


def _send(cli: CLI, account: str, subject: str) -> None:
    proc = cli("send", "--account", account, "--to", "bob@example.org", "--subject", subject,
               stdin="hello from an app\n")  # fmt: skip
    assert proc.stdout == ""


def test_microsoft_app_with_client_secret(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """login, token (cached), status, send, login again with the recorded settings."""
    auth, smtp = servers
    app = auth.register_app(mailboxes=[MAILBOX])
    assert app.client_secret is not None
    secret_file = _private(tmp_path / "secret.txt", app.client_secret + "\n")
    proc = cli("login", "--account", MAILBOX, "--provider", "microsoft-app",
               "--client-id", app.client_id, "--tenant", "dev.test",
               "--client-secret-file", str(secret_file), "--token-url", auth.token_endpoint,
               "--scope", auth.scope, *_smtp_args(smtp))  # fmt: skip
    assert proc.stdout == ""
    assert f"app-only token for {MAILBOX} (microsoft-app, client secret)" in proc.stderr
    recorded = (cli.home / "accounts.json").read_text()
    assert app.client_secret not in recorded
    assert auth.token_requests == 1

    token = cli("token", "--account", MAILBOX).stdout.strip()
    info = auth.validate_access_token(token)
    assert info is not None
    assert info.mailboxes == (MAILBOX,)
    assert cli("token", "--account", MAILBOX).stdout.strip() == token  # still valid: no request
    assert auth.token_requests == 1

    status = cli("status", "--account", MAILBOX).stdout
    assert "app-only access token valid until" in status
    assert "NO refresh token" not in status
    assert token not in status
    row = json.loads(cli("status", "--json").stdout)["accounts"][0]
    assert row["provider"] == "microsoft-app"
    assert row["app_only"] is True

    _send(cli, MAILBOX, "app-only by secret")
    received = smtp.wait_for_messages(1)[0]
    assert received.user == MAILBOX
    assert received.subject == "app-only by secret"

    # The secret was kept in the token store: a second login needs only --account.
    cli("login", "--account", MAILBOX)
    assert auth.token_requests == 2

    # logout --revoke: an app token cannot be revoked; it says how to stop the app instead.
    proc = cli("logout", "--account", MAILBOX, "--revoke")
    assert "cannot be revoked" in proc.stderr
    assert "app registration" in proc.stderr
    assert "no token saved; the next use gets one" in cli("status").stdout
    cli("logout", "--account", MAILBOX, "--forget")
    assert "No accounts" in cli("status").stdout


def test_microsoft_app_with_certificate_renews_by_the_grant(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """private_key_jwt; a token near expiry is renewed by the grant again (no refresh token)."""
    auth, smtp = servers
    pem, cert, _ = make_key_and_cert("rsa")
    app = auth.register_app(certificate=cert, mailboxes=[MAILBOX])
    key_file = _private(tmp_path / "app.key", pem)
    cert_file = tmp_path / "app.crt"
    cert_file.write_text(cert)
    cli("login", "--account", MAILBOX, "--provider", "microsoft-app", "--client-id", app.client_id,
        "--tenant", "dev.test", "--private-key-file", str(key_file),
        "--certificate-file", str(cert_file), "--token-url", auth.token_endpoint,
        "--scope", auth.scope, *_smtp_args(smtp))  # fmt: skip
    recorded = (cli.home / "accounts.json").read_text()
    assert "PRIVATE KEY" not in recorded
    assert str(key_file) in recorded
    first = cli("token", "--account", MAILBOX).stdout.strip()
    assert auth.token_requests == 1
    expire_saved_token(cli, auth.token_endpoint, app.client_id, MAILBOX)
    second = cli("token", "--account", MAILBOX).stdout.strip()
    assert first != second
    assert auth.token_requests == 2  # renewed by one grant
    assert auth.validate_access_token(second) is not None
    expire_saved_token(cli, auth.token_endpoint, app.client_id, MAILBOX)
    _send(cli, MAILBOX, "app-only by certificate")
    assert smtp.wait_for_messages(1)[0].user == MAILBOX
    assert auth.token_requests == 3
    meta = json.loads(cli("token", "--account", MAILBOX, "--format", "json").stdout)
    assert meta["has_refresh_token"] is False
    # A key file others can read: the command works and says so.
    key_file.chmod(0o644)
    proc = cli("token", "--account", MAILBOX)
    assert "can be read by other users" in proc.stderr
    assert "chmod 600" in proc.stderr
    assert "PRIVATE KEY" not in proc.stderr


def test_google_service_account(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    auth, smtp = servers
    key = auth.register_service_account(delegated=[USER])
    key_file = _private(tmp_path / "sa.json", json.dumps(key))
    proc = cli("login", "--account", USER, "--provider", "google-service-account",
               "--key-file", str(key_file), "--scope", auth.scope, *_smtp_args(smtp))  # fmt: skip
    assert f"service account {key['client_email']}" in proc.stderr
    _send(cli, USER, "delegated")
    assert smtp.wait_for_messages(1)[0].user == USER
    assert key["private_key"].splitlines()[1] not in (cli.home / "accounts.json").read_text()


@pytest.mark.parametrize(
    ("extra", "message"),
    [
        ([], "needs --client-secret-file FILE, or --private-key-file"),
        (["--private-key-file", "k"], "needs --client-secret-file FILE, or --private-key-file"),
        (["--key-file", "sa.json"], "belong to --provider google-service-account"),
    ],
    ids=["nothing", "key-without-cert", "google-flag"],
)
def test_microsoft_app_usage_errors(cli: CLI, extra: list[str], message: str) -> None:
    proc = cli("login", "--account", MAILBOX, "--provider", "microsoft-app",
               "--client-id", "app", "--tenant", "contoso.com", *extra, check=2)  # fmt: skip
    assert message in proc.stderr


def test_bad_key_files_and_rejected_grants(
    cli: CLI, servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """Clear one-line errors (2: the files are wrong; 1: the provider refused); nothing recorded."""
    auth, smtp = servers
    pem, cert, _ = make_key_and_cert("rsa")
    _, other_cert, _ = make_key_and_cert("rsa")
    app = auth.register_app(certificate=cert, mailboxes=[MAILBOX])
    not_a_key = _private(tmp_path / "cert-as-key.pem", cert)
    key_file = _private(tmp_path / "app.key", pem)
    cert_file = tmp_path / "app.crt"
    cert_file.write_text(cert)
    other_file = tmp_path / "other.crt"
    other_file.write_text(other_cert)
    base = ["login", "--account", MAILBOX, "--provider", "microsoft-app", "--client-id",
            app.client_id, "--tenant", "dev.test", "--token-url", auth.token_endpoint,
            "--scope", auth.scope, *_smtp_args(smtp)]  # fmt: skip
    proc = cli(*base, "--private-key-file", str(not_a_key), "--certificate-file", str(cert_file),
               check=2)  # fmt: skip
    assert "not a PEM private key" in proc.stderr
    assert "Traceback" not in proc.stderr
    proc = cli(*base, "--private-key-file", str(key_file), "--certificate-file", str(other_file),
               check=2)  # fmt: skip
    assert "does not match" in proc.stderr
    secret = _private(tmp_path / "secret.txt", "not-the-secret\n")
    proc = cli("login", "--account", MAILBOX, "--provider", "microsoft-app", "--client-id",
               "nobody", "--tenant", "dev.test", "--client-secret-file", str(secret),
               "--token-url", auth.token_endpoint, "--scope", auth.scope, check=1)  # fmt: skip
    assert "invalid_client" in proc.stderr
    assert "not-the-secret" not in proc.stderr
    sa = _private(tmp_path / "sa.json", json.dumps(auth.register_service_account()))
    proc = cli("login", "--account", USER, "--provider", "google-service-account",
               "--key-file", str(sa), "--scope", auth.scope, check=1)  # fmt: skip
    assert "refused" in proc.stderr or "invalid_" in proc.stderr
    assert not (cli.home / "accounts.json").exists()
