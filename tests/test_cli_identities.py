"""`oauthsmtp login --flow device|paste`, `--issuer` (discovery), `--refresh-token-file`, and
`oauthsmtp dev-server --user`, run for real (subprocess) against the development provider,
each followed by `token`, `send` (to a delivered message) and `status`."""

from __future__ import annotations

import json
import os
import re
import shlex
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from components import Lines, spawned

from oauthsmtp import MemoryStore
from oauthsmtp.devserver import AuthServer
from oauthsmtp.devserver._certs import CertificateSet
from oauthsmtp.devserver._headless import headless_login
from oauthsmtp.devserver._smtpserver import SMTPServer

ACCOUNT = "user@example.test"


@pytest.fixture
def servers(certs: CertificateSet) -> Iterator[tuple[AuthServer, SMTPServer]]:
    with (
        AuthServer(mode="auto", user=ACCOUNT) as auth,
        SMTPServer(auth.validate_access_token, certificates=certs) as smtp,
    ):
        auth.device_interval = 0.05  # the server's setting: the CLI polls as told
        yield auth, smtp


@pytest.fixture
def env(tmp_path: Path, certs: CertificateSet) -> dict[str, str]:
    values = {
        **os.environ,
        "OAUTHSMTP_HOME": str(tmp_path / "home"),
        "OAUTHSMTP_STORE": "file",
        "BROWSER": "false",
        "SSL_CERT_FILE": str(certs.ca_cert),
        "PYTHONPATH": str(Path(__file__).parent.parent),
    }
    values.pop("DISPLAY", None)
    values.pop("CI", None)
    return values


def command(*args: str) -> list[str]:
    return [sys.executable, "-m", "oauthsmtp", *args]


def run(
    env: dict[str, str], *args: str, stdin: str = "", check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run(
        command(*args), capture_output=True, text=True, env=env, input=stdin, timeout=60,
        check=False,
    )  # fmt: skip
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def discovery_login(auth: AuthServer, smtp: SMTPServer, *extra: str) -> list[str]:
    """`login` naming only the issuer: the endpoints are discovered."""
    client = auth.register_client()
    return [
        "login",
        "--account", ACCOUNT,
        "--issuer", auth.issuer,
        f"--client-id={client.client_id}",
        f"--client-secret={client.client_secret}",
        "--scope", f"{auth.scope} openid email",
        "--smtp-host", "127.0.0.1",
        "--smtp-port", str(smtp.port),
        "--timeout", "30",
        *extra,
    ]  # fmt: skip


def use_the_account(env: dict[str, str], auth: AuthServer, smtp: SMTPServer, subject: str) -> None:
    """After any login: token, send (delivered), status (no token shown)."""
    token = run(env, "token", "--account", ACCOUNT).stdout.strip()
    assert auth.validate_access_token(token) is not None
    run(env, "send", "--account", ACCOUNT, "--to", "you@example.test", "--subject", subject,
        stdin="hello\n")  # fmt: skip
    received = smtp.wait_for_messages(1)[-1]
    assert received.subject == subject
    assert received.user == ACCOUNT
    status = run(env, "status").stdout
    assert ACCOUNT in status
    assert "refresh token held" in status
    assert token not in status


def test_login_flow_device_with_discovery(
    env: dict[str, str], servers: tuple[AuthServer, SMTPServer]
) -> None:
    """--issuer finds the device endpoint; --flow device prints the page and the code on
    stderr, polls until the page is visited, records the account; then token/send/status."""
    auth, smtp = servers
    args = discovery_login(auth, smtp, "--flow", "device")
    with spawned(command(*args), env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stdout is not None
        assert proc.stderr is not None
        err = Lines(proc.stderr)
        err.until(r"enter the code: [A-Z]{4}-[A-Z]{4}$")
        url = err.until(r"^  (http://\S+/device\?user_code=\S+) \)$").group(1)
        assert "Approved" in requests.get(url, timeout=10).text
        assert proc.wait(timeout=30) == 0, err.seen
        err.until(f"logged in as {re.escape(ACCOUNT)}")
    accounts = json.loads((Path(env["OAUTHSMTP_HOME"]) / "accounts.json").read_text())
    recorded = accounts["accounts"][ACCOUNT]
    assert recorded["device_authorization_url"] == auth.device_authorization_endpoint
    assert recorded["token_url"] == auth.token_endpoint
    use_the_account(env, auth, smtp, "device login from the command line")


def test_login_flow_paste(env: dict[str, str], servers: tuple[AuthServer, SMTPServer]) -> None:
    """--flow paste prints the URL, reads the address the browser ended on from stdin."""
    auth, smtp = servers
    args = discovery_login(auth, smtp, "--flow", "paste")
    with spawned(
        command(*args), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None
        assert proc.stderr is not None
        err = Lines(proc.stderr)
        url = err.until(r"^  (http://\S+/authorize\?\S+)$").group(1)
        ended_on = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
        assert ended_on.startswith(("http://localhost:9000?code=", "http://localhost:9000/?code="))
        proc.stdin.write(ended_on + "\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 0, err.seen
    use_the_account(env, auth, smtp, "paste login from the command line")


def test_login_flow_paste_with_a_forged_state_exits_without_a_token_request(
    env: dict[str, str], servers: tuple[AuthServer, SMTPServer]
) -> None:
    auth, smtp = servers
    args = discovery_login(auth, smtp, "--flow", "paste")
    with spawned(
        command(*args), env=env, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    ) as proc:  # fmt: skip
        assert proc.stdin is not None
        assert proc.stderr is not None
        err = Lines(proc.stderr)
        url = err.until(r"^  (http://\S+/authorize\?\S+)$").group(1)
        ended_on = requests.get(url, allow_redirects=False, timeout=10).headers["Location"]
        before = auth.token_requests
        proc.stdin.write(re.sub(r"state=[^&]+", "state=forged", ended_on) + "\n")
        proc.stdin.close()
        assert proc.wait(timeout=30) == 1
        err.until("wrong state")
    assert auth.token_requests == before
    assert not any("Traceback" in line for line in err.seen)
    assert "No accounts" in run(env, "status").stdout


def refresh_token_from_elsewhere(auth: AuthServer) -> tuple[str, list[str]]:
    """A refresh token from "another machine", and the login arguments for the same client."""
    client = auth.register_client()
    params = auth.parameters(client, "http://127.0.0.1:0/cb", scope=f"{auth.scope} openid email")
    token = headless_login(params, account=ACCOUNT, store=MemoryStore())
    assert token.refresh_token
    args = [
        "--issuer", auth.issuer,
        f"--client-id={client.client_id}",
        f"--client-secret={client.client_secret}",
        "--scope", f"{auth.scope} openid email",
    ]  # fmt: skip
    return token.refresh_token, args


def test_login_refresh_token_file_from_stdin_and_file(
    env: dict[str, str], servers: tuple[AuthServer, SMTPServer], tmp_path: Path
) -> None:
    """--refresh-token-file - reads stdin (never an argument); checked by one refresh; then the
    account works like after a browser login. A file works too."""
    auth, smtp = servers
    refresh, client_args = refresh_token_from_elsewhere(auth)
    before = auth.token_requests
    proc = run(env, "login", "--account", ACCOUNT, *client_args, "--smtp-host", "127.0.0.1",
               "--smtp-port", str(smtp.port), "--refresh-token-file", "-",
               stdin=refresh + "\n")  # fmt: skip
    assert auth.token_requests - before == 1
    assert refresh not in proc.stderr + proc.stdout
    use_the_account(env, auth, smtp, "imported from stdin")

    # The same, from a file, into a fresh home.
    refresh, client_args = refresh_token_from_elsewhere(auth)
    path = tmp_path / "rt.txt"
    path.write_text(refresh + "\n")
    env = {**env, "OAUTHSMTP_HOME": str(tmp_path / "home2")}
    run(env, "login", "--account", ACCOUNT, *client_args, "--smtp-host", "127.0.0.1",
        "--smtp-port", str(smtp.port), "--refresh-token-file", str(path))  # fmt: skip
    use_the_account(env, auth, smtp, "imported from a file")


def test_login_dead_refresh_token_exits_3_and_records_nothing(
    env: dict[str, str], servers: tuple[AuthServer, SMTPServer]
) -> None:
    auth, _smtp = servers
    refresh, client_args = refresh_token_from_elsewhere(auth)
    auth.revoke_all_refresh_tokens()
    proc = run(env, "login", "--account", ACCOUNT, *client_args, "--smtp-host", "127.0.0.1",
               "--refresh-token-file", "-", stdin=refresh, check=3)  # fmt: skip
    assert "invalid_grant" in proc.stderr
    assert refresh not in proc.stderr
    assert "No accounts" in run(env, "status").stdout


@pytest.mark.parametrize(
    ("args", "stdin", "message"),
    [
        (["--provider", "gmail", "--client-id", "x.apps.googleusercontent.com",
          "--client-secret", "s", "--flow", "device"], "", "Google refuses the mail scope"),
        (["--provider", "microsoft", "--client-id", "c", "--flow", "paste",
          "--refresh-token-file", "-"], "rt\n", "cannot be combined with --flow"),
        (["--provider", "microsoft", "--client-id", "c", "--client-secret-file", "-",
          "--refresh-token-file", "-"], "x\n", "both read standard input"),
        (["--provider", "microsoft", "--client-id", "c", "--refresh-token-file", "-"], "",
         "--refresh-token-file: standard input is empty"),
        (["--provider", "microsoft-app", "--client-id", "c", "--tenant", "t", "--flow",
          "device"], "", "--flow and --refresh-token-file do not apply"),
        (["--issuer", "http://127.0.0.1:9", "--client-id", "c", "--scope", "s",
          "--smtp-host", "h"], "", "could not discover"),
    ],
)  # fmt: skip
def test_login_bad_input_exits_2_with_a_clear_error(
    env: dict[str, str], args: list[str], stdin: str, message: str
) -> None:
    proc = run(env, "login", "--account", ACCOUNT, *args, stdin=stdin, check=None)
    assert proc.returncode == 2, proc.stderr
    assert message in proc.stderr
    assert "Traceback" not in proc.stderr
    assert len(proc.stderr.strip().splitlines()) == 1


@pytest.mark.skipif(sys.platform == "win32", reason="POSIX signals")
def test_dev_server_user_and_its_printed_device_login(env: dict[str, str], tmp_path: Path) -> None:
    """`dev-server --user` approves as that user; the printed device-login line works as is
    (discovery + device flow), and a message sent with it arrives."""
    boss = "boss@example.test"
    server = command("dev-server", "--user", boss, "--maildir", str(tmp_path / "mail"))
    with spawned(server, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as dev:
        assert dev.stdout is not None
        out = Lines(dev.stdout)
        out.until(r"^Waiting for messages; press Ctrl-C to stop\.$")
        assert out.until(r"^  approves as:\s+(\S+),").group(1) == boss
        line = out.until(r"^  (SSL_CERT_FILE=\S+ oauthsmtp login .* --flow device)$").group(1)
        words = shlex.split(line)
        login_env = {**env, "SSL_CERT_FILE": words[0].split("=", 1)[1]}
        assert words[words.index("--account") + 1] == boss
        with spawned(
            command(*words[2:]), env=login_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        ) as login:
            assert login.stderr is not None
            err = Lines(login.stderr)
            url = err.until(r"^  (http://\S+/device\?user_code=\S+) \)$").group(1)
            requests.get(url, timeout=10)
            assert login.wait(timeout=60) == 0, err.seen  # the dev server's 5 s interval
        run(login_env, "send", "--account", boss, "--to", "you@example.test", "--subject",
            "from the boss", stdin="hi\n")  # fmt: skip
        out.until(rf"from {re.escape(boss)}\s+to you@example\.test\s+subject: from the boss")
        dev.send_signal(signal.SIGTERM)
        dev.wait(timeout=20)
