"""The command line with --transport api: login, account set and send through the emulated APIs.

Runs ``python -m oauthsmtp`` for real against the development provider (its authorization
server, SMTP server and API emulation), with a private home, the file store and the
stand-in browser (tests/fake_browser.py).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from oauthsmtp.devserver import DevProvider

HERE = Path(__file__).parent
ACCOUNT = "user@example.test"


@pytest.fixture(scope="module")
def provider() -> Iterator[DevProvider]:
    with DevProvider(smtps_port=None, user=ACCOUNT) as running:
        yield running


def cli(
    home: Path, provider: DevProvider, *args: str, check: int | None = 0
) -> subprocess.CompletedProcess[str]:
    env = {
        **os.environ,
        "OAUTHSMTP_HOME": str(home),
        "OAUTHSMTP_STORE": "file",
        "BROWSER": f"{sys.executable} {HERE / 'fake_browser.py'} %s",
        "FAKE_BROWSER_LOG": str(home / "browser.json"),
        "SSL_CERT_FILE": str(provider.ca_path),
        "PYTHONPATH": str(HERE.parent),
    }
    env.pop("CI", None)
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", *args],
        capture_output=True,
        text=True,
        env=env,
        input="",
        timeout=60,
        check=False,
    )
    if check is not None:
        assert proc.returncode == check, (proc.returncode, proc.stdout, proc.stderr)
    return proc


def login(home: Path, provider: DevProvider, scope: str, *extra: str) -> str:
    client = provider.auth.register_client()
    auth = provider.auth
    proc = cli(
        home, provider,
        "login", "--account", ACCOUNT, "--provider", "custom",
        f"--client-id={client.client_id}", f"--client-secret={client.client_secret}",
        "--auth-url", auth.authorization_endpoint, "--token-url", auth.token_endpoint,
        "--issuer", auth.issuer, "--scope", scope,
        "--redirect-url", "http://127.0.0.1:0/callback",
        "--smtp-host", "127.0.0.1", "--smtp-port", str(provider.smtp_port),
        "--timeout", "30", *extra,
    )  # fmt: skip
    return proc.stderr


def send(home: Path, provider: DevProvider, subject: str, check: int = 0) -> str:
    body = home.parent / "body.txt"
    body.write_text("Hello through the API\n")
    proc = cli(
        home, provider,
        "send", "--account", ACCOUNT, "--to", "you@example.test", "--bcc", "hid@example.test",
        "--subject", subject, "--body-file", str(body),
        check=check,
    )  # fmt: skip
    return proc.stderr


@pytest.mark.parametrize("api", ["graph", "gmail"])
def test_login_transport_api_then_send_uses_the_api(
    tmp_path: Path, provider: DevProvider, api: str
) -> None:
    """login --transport api records it; send goes through the API into the same mailbox."""
    provider.clear()
    home = tmp_path / "home"
    url = provider.graph_api_url if api == "graph" else provider.gmail_api_url
    scope = provider.GRAPH_API_SCOPE if api == "graph" else provider.GMAIL_API_SCOPE
    said = login(home, provider, f"{scope} offline_access", "--transport", "api", "--api-url", url)
    assert ("Microsoft Graph" if api == "graph" else "Gmail API") in said
    recorded = json.loads((home / "accounts.json").read_text())["accounts"][ACCOUNT]
    assert recorded["transport"] == "api"
    assert recorded["api_url"] == url
    status = cli(home, provider, "status").stdout
    assert f"sends:    through the API ({api} {url})" in status
    rows = json.loads(cli(home, provider, "status", "--json").stdout)["accounts"]
    assert rows[0]["transport"] == "api"
    said = send(home, provider, f"via {api}")
    assert "sent through" in said
    [received] = provider.messages
    assert received.subject == f"via {api}"
    assert set(received.rcpt_tos) == {"you@example.test", "hid@example.test"}
    assert b"hid@example.test" not in received.data
    [request] = provider.api.requests
    assert request.api == api
    assert provider.smtp.auth_log == []  # SMTP was not used


def test_account_set_switches_transport_and_says_to_log_in_again(
    tmp_path: Path, provider: DevProvider
) -> None:
    """account set --transport api/smtp: recorded; send follows it. The login consented to
    both resources, so no new login is asked for: Graph's token is redeemed from it (the
    hint for a login of one resource: tests/test_cli_auto.py)."""
    provider.clear()
    home = tmp_path / "home"
    login(home, provider, f"{provider.auth.scope} {provider.GRAPH_API_SCOPE} offline_access")
    send(home, provider, "over smtp")
    assert provider.api.requests == []
    proc = cli(
        home, provider, "account", "set", "--account", ACCOUNT,
        "--transport", "api", "--api-url", provider.graph_api_url,
    )  # fmt: skip
    assert "Microsoft Graph" in proc.stderr
    assert "log in again" not in proc.stderr  # the login serves Graph too
    send(home, provider, "over graph")
    assert [m.subject for m in provider.messages] == ["over smtp", "over graph"]
    assert len(provider.api.requests) == 1
    proc = cli(home, provider, "send", "--account", ACCOUNT, "--to", "x@example.test",
               "--subject", "s", "--smtp-host", "127.0.0.1", check=2)  # fmt: skip
    assert "sends through the API" in proc.stderr
    bad = cli(home, provider, "account", "set", "--account", ACCOUNT,
              "--api-url", "http://graph.example.com/v1.0", check=None)  # fmt: skip
    assert bad.returncode != 0
    assert "plain http" in bad.stderr


def test_api_refusal_is_one_line_with_the_fix(tmp_path: Path, provider: DevProvider) -> None:
    """A configuration 403 from Graph: exit 1, one line naming Mail.Send, nothing sent."""
    provider.clear()
    home = tmp_path / "home"
    login(home, provider, f"{provider.GRAPH_API_SCOPE} offline_access",
          "--transport", "api", "--api-url", provider.graph_api_url)  # fmt: skip
    provider.api.fail_next("403")
    said = send(home, provider, "refused", check=1)
    lines = said.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith("oauthsmtp: error:")
    assert "Mail.Send" in lines[0]
    assert provider.messages == []


def test_demo_transport_api_sends_through_graph(tmp_path: Path) -> None:
    """`oauthsmtp demo --transport api`: both messages through the Graph emulation, exit 0."""
    env = {k: v for k, v in os.environ.items() if k not in ("BROWSER", "DISPLAY", "CI")}
    env["OAUTHSMTP_HOME"] = str(tmp_path / "home")
    env["PYTHONPATH"] = str(HERE.parent)
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", "demo", "--transport", "api"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())
    assert "send a message through Microsoft Graph" in out
    assert out.count("server answered: 202 accepted (202)") == 2
    assert "GraphSession(...).send(...)" in out
    assert not (tmp_path / "home").exists()


def test_account_settings_transport_values() -> None:
    """transport is smtp or api; which API follows the provider (custom: the URL's path)."""
    from oauthsmtp import ConfigurationError
    from oauthsmtp._accounts import AccountSettings

    base = {
        "account": ACCOUNT,
        "provider": "custom",
        "client_id": "cid",
        "auth_url": "https://auth.example/authorize",
        "token_url": "https://auth.example/token",
        "scope": ("s",),
        "redirect_url": "http://127.0.0.1:0/cb",
        "smtp_host": "127.0.0.1",
        "smtp_port": 587,
        "security": "starttls",
    }
    with pytest.raises(ConfigurationError, match="transport"):
        AccountSettings(**base, transport="ftp")  # type: ignore[arg-type]
    gmail = AccountSettings(**base, transport="api", api_url="http://127.0.0.1:1/gmail/v1")  # type: ignore[arg-type]
    graph = AccountSettings(**base, transport="api", api_url="http://127.0.0.1:1/graph/v1.0")  # type: ignore[arg-type]
    assert (gmail.api, graph.api) == ("gmail", "graph")
    assert AccountSettings.from_dict(gmail.to_dict()) == gmail
    old = {k: v for k, v in gmail.to_dict().items() if k not in ("transport", "api_url")}
    assert AccountSettings.from_dict(old).transport == "smtp"  # files written before stay SMTP


def test_microsoft_app_login_transport_api_sends_as_its_mailbox(
    tmp_path: Path, provider: DevProvider
) -> None:
    """login --provider microsoft-app --transport api: send goes to /users/{account}."""
    provider.clear()
    home = tmp_path / "home"
    mailbox = "shared@example.test"
    app = provider.auth.register_app(mailboxes=[mailbox])
    assert app.client_secret is not None
    secret_file = tmp_path / "secret.txt"
    secret_file.write_text(app.client_secret + "\n")
    secret_file.chmod(0o600)
    cli(
        home, provider,
        "login", "--account", mailbox, "--provider", "microsoft-app",
        "--client-id", app.client_id, "--tenant", "dev.test",
        "--client-secret-file", str(secret_file), "--token-url", provider.auth.token_endpoint,
        "--scope", provider.GRAPH_API_SCOPE,
        "--transport", "api", "--api-url", provider.graph_api_url,
    )  # fmt: skip
    body = tmp_path / "body.txt"
    body.write_text("From the app\n")
    proc = cli(home, provider, "send", "--account", mailbox, "--to", "you@example.test",
               "--subject", "app via graph", "--body-file", str(body))  # fmt: skip
    assert "sent through Microsoft Graph" in proc.stderr
    [request] = provider.api.requests
    assert request.path == f"/graph/v1.0/users/{mailbox}/sendMail"
    [received] = provider.messages
    assert received.user == mailbox
