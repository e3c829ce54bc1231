"""App-only identities: client credentials (secret or private_key_jwt) and service accounts.

The assertions are checked as values (header, claims, signature with the
certificate's key); every grant is then run for real against the development
provider, to a message its SMTP server delivered.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import logging
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from cryptography.x509.oid import NameOID
from joserfc import jwk, jws, jwt

import oauthsmtp
from oauthsmtp import (
    ClientCredentials,
    ConfigurationError,
    Email,
    FileStore,
    MemoryStore,
    SMTPAuthError,
    TokenError,
    app_token,
    providers,
)
from oauthsmtp._oauth.appgrants import app_grant_form, request_app_token
from oauthsmtp._oauth.assertions import CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT
from oauthsmtp._oauth.httpclient import post_form
from oauthsmtp._tokens.apponly import app_token_key
from oauthsmtp.devserver import CertificateSet, DevProvider

MAILBOX = "shared@example.test"
BOB = "bob@example.org"
NOW = dt.datetime(2026, 1, 2, 3, 4, 5, tzinfo=dt.timezone.utc)


def make_key_and_cert(kind: str = "rsa") -> tuple[str, str, bytes]:
    """(private key PEM, certificate PEM, certificate DER) of a new self-signed certificate."""
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey
    if kind == "rsa":
        key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    else:
        key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "oauthsmtp test app")])
    now = dt.datetime.now(dt.timezone.utc)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - dt.timedelta(minutes=5))
        .not_valid_after(now + dt.timedelta(days=1))
        .sign(key, hashes.SHA256())
    )
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    der = cert.public_bytes(serialization.Encoding.DER)
    return pem, cert.public_bytes(serialization.Encoding.PEM).decode("ascii"), der


@pytest.fixture(scope="module")
def rsa_app() -> tuple[str, str, bytes]:
    return make_key_and_cert("rsa")


@pytest.fixture
def provider(certs: CertificateSet) -> Iterator[DevProvider]:
    with DevProvider(certificates=certs) as running:
        yield running


def _b64url_sha256(data: bytes) -> str:
    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def _send(provider: DevProvider, token: oauthsmtp.AuthToken, user: str) -> None:
    with provider.session(auth_token=token, username=user) as session:
        result = session.send(Email(sender=user, to=[BOB], subject="app-only", text="hello"))
    assert result.ok


# --------------------------------------------------------------------------- assertions (pure)


@pytest.mark.parametrize(("kind", "alg"), [("rsa", "PS256"), ("ec", "ES256")], ids=["rsa", "ec"])
def test_private_key_jwt_assertion_per_rfc7523(kind: str, alg: str) -> None:
    """Header x5t#S256 = the certificate's SHA-256; iss = sub = client id; aud; short exp; jti."""
    pem, cert, der = make_key_and_cert(kind)
    creds = providers.microsoft_app(
        client_id="app-1", tenant="contoso.onmicrosoft.com", private_key=pem, certificate=cert
    )
    form = app_grant_form(creds, now=NOW)
    again = app_grant_form(creds, now=NOW)
    assert form["grant_type"] == "client_credentials"
    assert form["client_id"] == "app-1"
    assert form["scope"] == "https://outlook.office365.com/.default"
    assert form["client_assertion_type"] == CLIENT_ASSERTION_TYPE
    assert "client_secret" not in form
    public = x509.load_pem_x509_certificate(cert.encode()).public_key()
    key = jwk.import_key(
        public.public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        ),
        "RSA" if kind == "rsa" else "EC",
    )
    token = jwt.decode(form["client_assertion"], key, algorithms=[alg])
    assert token.header == {"alg": alg, "typ": "JWT", "x5t#S256": _b64url_sha256(der)}
    claims = token.claims
    assert claims["iss"] == claims["sub"] == "app-1"
    assert (
        claims["aud"]
        == "https://login.microsoftonline.com/contoso.onmicrosoft.com/oauth2/v2.0/token"
    )
    assert claims["iat"] == claims["nbf"] == int(NOW.timestamp())
    assert claims["exp"] - claims["iat"] == 300
    assert len(claims["jti"]) >= 20
    assert (
        jwt.decode(again["client_assertion"], key, algorithms=[alg]).claims["jti"] != claims["jti"]
    )
    assert creds.thumbprint == _b64url_sha256(der)


def test_service_account_assertion_is_a_jwt_bearer_grant(rsa_app: tuple[str, str, bytes]) -> None:
    """RFC 7523 §2.1: iss = client_email, sub = the delegated user, scope, RS256 with kid."""
    pem, _, _ = rsa_app
    info = {
        "type": "service_account",
        "client_email": "sa@project.iam.gserviceaccount.com",
        "client_id": "1234567890",
        "private_key_id": "kid-1",
        "private_key": pem,
        "token_uri": "https://oauth2.googleapis.com/token",
    }
    creds = providers.google_service_account(info, subject="user@example.com")
    form = app_grant_form(creds, now=NOW)
    assert set(form) == {"grant_type", "assertion"}
    assert form["grant_type"] == JWT_BEARER_GRANT
    header = jws.extract_compact(form["assertion"].encode()).headers()
    assert header == {"alg": "RS256", "typ": "JWT", "kid": "kid-1"}
    claims = json.loads(jws.extract_compact(form["assertion"].encode()).payload)
    assert claims["iss"] == "sa@project.iam.gserviceaccount.com"
    assert claims["sub"] == "user@example.com"
    assert claims["aud"] == "https://oauth2.googleapis.com/token"
    assert claims["scope"] == "https://mail.google.com/"
    assert claims["exp"] - claims["iat"] == 300
    without = providers.google_service_account(info)
    assert "sub" not in json.loads(
        jws.extract_compact(app_grant_form(without, now=NOW)["assertion"].encode()).payload
    )


# --------------------------------------------------------------------------- bad input


def test_a_key_file_that_is_not_a_key(tmp_path: Path, rsa_app: tuple[str, str, bytes]) -> None:
    _, cert, _ = rsa_app
    for text in ("not a key at all", cert):  # garbage, and the certificate given as the key
        with pytest.raises(ConfigurationError, match="not a PEM private key") as caught:
            providers.microsoft_app(
                client_id="a", tenant="contoso.com", private_key=text, certificate=cert
            )
        assert text[:40] not in str(caught.value)
    path = tmp_path / "key.pem"
    path.write_text("-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n")
    path.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not a PEM private key"):
        providers.microsoft_app(
            client_id="a", tenant="contoso.com", private_key=path, certificate=cert
        )
    with pytest.raises(ConfigurationError, match="cannot read"):
        providers.microsoft_app(
            client_id="a", tenant="contoso.com", private_key=tmp_path / "none.pem", certificate=cert
        )


def test_an_encrypted_or_weak_key_is_refused() -> None:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    encrypted = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.BestAvailableEncryption(b"passphrase"),
    )
    with pytest.raises(ConfigurationError, match="encrypted"):
        ClientCredentials(client_id="a", token_url="https://t.example/token", private_key=encrypted)
    weak = rsa.generate_private_key(public_exponent=65537, key_size=1024).private_bytes(  # noqa: S505 - the weak key under test
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    with pytest.raises(ConfigurationError, match="1024-bit"):
        ClientCredentials(client_id="a", token_url="https://t.example/token", private_key=weak)
    from cryptography.hazmat.primitives.asymmetric import dsa

    for other in (dsa.generate_private_key(2048), ec.generate_private_key(ec.SECP384R1())):
        pem = other.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
        with pytest.raises(ConfigurationError, match=r"RSA key .* or an EC P-256 key"):
            providers.microsoft_app(
                client_id="a", tenant="c.com", private_key=pem, certificate="unused"
            )


def test_a_certificate_that_does_not_match_the_key(rsa_app: tuple[str, str, bytes]) -> None:
    pem, _, _ = rsa_app
    _, other_cert, _ = make_key_and_cert("rsa")
    with pytest.raises(ConfigurationError, match="does not match"):
        providers.microsoft_app(
            client_id="a", tenant="contoso.com", private_key=pem, certificate=other_cert
        )
    with pytest.raises(ConfigurationError, match="not a PEM certificate"):
        providers.microsoft_app(
            client_id="a", tenant="contoso.com", private_key=pem, certificate="garbage"
        )


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"tenant": "common", "client_secret": "s"}, "your own tenant"),
        ({"tenant": "organizations", "client_secret": "s"}, "your own tenant"),
        ({"tenant": "contoso.com"}, "client_secret, or private_key"),
        ({"tenant": "contoso.com", "client_secret": "s", "private_key": "k"}, "not both"),
        ({"tenant": "contoso.com", "private_key": "k"}, "needs the certificate"),
        ({"tenant": "contoso.com", "client_secret": "s\r\nX"}, "control characters"),
    ],
    ids=["common", "organizations", "nothing", "both", "no-cert", "crlf-secret"],
)
def test_microsoft_app_refuses_what_cannot_work(kwargs: dict[str, str], match: str) -> None:
    with pytest.raises(ConfigurationError, match=match):
        providers.microsoft_app(client_id="a", **kwargs)  # type: ignore[arg-type]


def test_a_service_account_file_that_is_not_one(tmp_path: Path) -> None:
    bad = tmp_path / "sa.json"
    bad.write_text("{not json")
    bad.chmod(0o600)
    with pytest.raises(ConfigurationError, match="not JSON"):
        providers.google_service_account(bad)
    bad.write_text(json.dumps({"type": "authorized_user", "refresh_token": "secret-rt"}))
    with pytest.raises(ConfigurationError, match="not a service account key") as caught:
        providers.google_service_account(str(bad))
    assert "secret-rt" not in str(caught.value)
    with pytest.raises(ConfigurationError, match="lacks private_key"):
        providers.google_service_account(
            {"type": "service_account", "client_email": "a@b.c", "token_uri": "https://t/"}
        )


def test_a_key_file_others_can_read_gets_a_warning(
    tmp_path: Path, rsa_app: tuple[str, str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    pem, cert, _ = rsa_app
    key = tmp_path / "app.key"
    key.write_text(pem)
    key.chmod(0o600)
    with caplog.at_level(logging.WARNING, logger="oauthsmtp"):
        providers.microsoft_app(client_id="a", tenant="c.com", private_key=key, certificate=cert)
    assert not caplog.records
    key.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="oauthsmtp"):
        providers.microsoft_app(client_id="a", tenant="c.com", private_key=key, certificate=cert)
    assert len(caplog.records) == 1
    message = caplog.records[0].getMessage()
    assert "can be read by other users" in message
    assert f"chmod 600 {key}" in message
    assert "PRIVATE KEY" not in caplog.text


def test_keys_and_secrets_never_in_reprs(rsa_app: tuple[str, str, bytes]) -> None:
    pem, cert, _ = rsa_app
    body = pem.splitlines()[1]
    with_key = providers.microsoft_app(
        client_id="a", tenant="c.com", private_key=pem, certificate=cert
    )
    with_secret = providers.microsoft_app(
        client_id="a", tenant="c.com", client_secret="s3cr3t-v4lue"
    )
    for creds in (with_key, with_secret):
        text = repr(creds) + str(creds) + repr(creds._key)
        assert body not in text
        assert "s3cr3t-v4lue" not in text
        assert "***" in text


# ------------------------------------------------------------------ against the dev provider


def test_client_secret_app_token_sends_as_its_mailbox(provider: DevProvider) -> None:
    app = provider.auth.register_app(mailboxes=[MAILBOX])
    assert app.client_secret is not None
    creds = providers.microsoft_app(
        client_id=app.client_id,
        tenant="dev.test",
        client_secret=app.client_secret,
        token_url=provider.auth.token_endpoint,
        scope=provider.auth.scope,
    )
    token = app_token(creds, account=MAILBOX, store=MemoryStore())
    assert token.refresh_token is None
    assert token.account == MAILBOX
    _send(provider, token, MAILBOX)
    assert [m.user for m in provider.smtp.messages] == [MAILBOX]
    # The app was not given this mailbox (no Add-MailboxPermission): refused at AUTH.
    with pytest.raises(SMTPAuthError):
        _send(provider, token, "ceo@example.test")
    assert len(provider.smtp.messages) == 1


def test_private_key_jwt_app_token_sends(
    provider: DevProvider, rsa_app: tuple[str, str, bytes]
) -> None:
    pem, cert, _ = rsa_app
    app = provider.auth.register_app(certificate=cert, mailboxes=[MAILBOX])
    creds = providers.microsoft_app(
        client_id=app.client_id,
        tenant="dev.test",
        private_key=pem,
        certificate=cert,
        token_url=provider.auth.token_endpoint,
        scope=provider.auth.scope,
    )
    token = app_token(creds, account=MAILBOX, store=MemoryStore())
    _send(provider, token, MAILBOX)
    assert provider.smtp.messages[-1].user == MAILBOX


def test_service_account_with_delegation_sends_as_the_subject(provider: DevProvider) -> None:
    key = provider.auth.register_service_account(delegated=["user@example.test"])
    creds = providers.google_service_account(
        key, subject="user@example.test", scope=provider.auth.scope
    )
    token = app_token(creds, store=MemoryStore())
    assert token.account == "user@example.test"
    _send(provider, token, "user@example.test")
    with pytest.raises(SMTPAuthError):
        _send(provider, token, "other@example.test")
    with pytest.raises(ConfigurationError, match="delegated subject"):
        app_token(creds, account="other@example.test", store=MemoryStore())


def test_the_server_rejects_the_grant(
    provider: DevProvider, rsa_app: tuple[str, str, bytes], caplog: pytest.LogCaptureFixture
) -> None:
    """A wrong secret, an unregistered certificate, a subject without delegation: TokenError."""
    pem, cert, _ = rsa_app
    url, scope = provider.auth.token_endpoint, provider.auth.scope
    app = provider.auth.register_app(mailboxes=[MAILBOX])
    wrong = ClientCredentials(
        client_id=app.client_id, token_url=url, scope=scope, client_secret="wrong-secret-value"
    )
    caplog.set_level(logging.DEBUG)
    with pytest.raises(TokenError) as caught:
        app_token(wrong, account=MAILBOX, store=MemoryStore())
    assert caught.value.error == "invalid_client"
    assert "wrong-secret-value" not in str(caught.value) + caplog.text
    other_pem, other_cert, _ = make_key_and_cert("rsa")
    cert_app = provider.auth.register_app(certificate=cert, mailboxes=[MAILBOX])
    impostor = ClientCredentials(
        client_id=cert_app.client_id,
        token_url=url,
        scope=scope,
        private_key=other_pem,
        certificate=other_cert,
    )
    with pytest.raises(TokenError) as caught:
        request_app_token(impostor)
    assert caught.value.error == "invalid_client"
    key = provider.auth.register_service_account(delegated=["user@example.test"])
    creds = providers.google_service_account(key, subject="boss@example.test", scope=scope)
    with pytest.raises(TokenError) as caught:
        app_token(creds, store=MemoryStore())
    assert caught.value.error in {"invalid_client", "invalid_grant"}
    assert "BEGIN" not in caplog.text
    assert pem.splitlines()[1] not in caplog.text


def test_a_replayed_client_assertion_is_refused(
    provider: DevProvider, rsa_app: tuple[str, str, bytes]
) -> None:
    """The same jti twice: the second request fails (each request makes a fresh one)."""
    pem, cert, _ = rsa_app
    app = provider.auth.register_app(certificate=cert, mailboxes=[MAILBOX])
    creds = ClientCredentials(
        client_id=app.client_id,
        token_url=provider.auth.token_endpoint,
        scope=provider.auth.scope,
        private_key=pem,
        certificate=cert,
    )
    form = app_grant_form(creds, now=dt.datetime.now(dt.timezone.utc))
    assert post_form(creds.token_url, form).status == 200
    replay = post_form(creds.token_url, form)
    assert replay.status == 400
    assert b"invalid_client" in replay.body
    request_app_token(creds)
    request_app_token(creds)  # fresh jti each time: both accepted


@pytest.mark.parametrize(
    ("status", "content_type", "body"),
    [
        (200, "text/html", b"<html>captive portal</html>"),
        (200, "application/json", b"[1, 2]"),
        (200, "application/json", b'{"token_type": "Bearer"}'),
        (200, "application/json", b'{"access_token": "x", "token_type": "mac"}'),
        (500, "application/json", b"{}"),
    ],
    ids=["html", "array", "no-access-token", "mac", "500"],
)
def test_garbage_answers(scripted: object, status: int, content_type: str, body: bytes) -> None:
    server = scripted
    server.reply(status, body=body, Content_Type=content_type)  # type: ignore[attr-defined]
    creds = ClientCredentials(
        client_id="app",
        token_url=server.url(),
        scope="s",
        client_secret="the-secret",  # type: ignore[attr-defined]
    )
    store = MemoryStore()
    with pytest.raises(TokenError) as caught:
        app_token(creds, account=MAILBOX, store=store)
    assert "the-secret" not in str(caught.value)
    assert store.load(app_token_key(creds, MAILBOX)) is None


def test_renewal_is_single_flight_across_threads_and_token_objects(
    provider: DevProvider, tmp_path: Path
) -> None:
    """8 threads, two AuthToken objects (as two processes would hold) on one store: 1 grant."""
    app = provider.auth.register_app(mailboxes=[MAILBOX])
    creds = ClientCredentials(
        client_id=app.client_id,
        token_url=provider.auth.token_endpoint,
        scope=provider.auth.scope,
        client_secret=app.client_secret,
    )
    store = FileStore(tmp_path / "tokens")
    first = app_token(creds, account=MAILBOX, store=store)
    second = app_token(creds, account=MAILBOX, store=store)
    assert first.access_token == second.access_token  # the second came from the store
    before = provider.auth.token_requests
    provider.auth.expire_access_tokens()
    first.expire()
    second.expire()
    store.save(app_token_key(creds, MAILBOX), first.to_json())  # time passed for the store too
    seen: list[str] = []
    barrier = threading.Barrier(8)

    def use(token: oauthsmtp.AuthToken) -> None:
        barrier.wait(timeout=10)
        seen.append(token.access_token)

    threads = [threading.Thread(target=use, args=((first, second)[i % 2],)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert provider.auth.token_requests - before == 1
    assert len(set(seen)) == 1
    assert len(seen) == 8
    _send(provider, first, MAILBOX)
    third = app_token(creds, account=MAILBOX, store=store)  # valid in the store: no request
    assert provider.auth.token_requests - before == 1
    assert third.access_token == seen[0]


def test_app_token_refuses_person_parameters(provider: DevProvider) -> None:
    with pytest.raises(ConfigurationError, match="ClientCredentials"):
        app_token(provider.parameters(), store=MemoryStore())  # type: ignore[arg-type]


def test_import_oauthsmtp_does_not_load_cryptography() -> None:
    """``import oauthsmtp`` stays cheap, and an app with a secret loads no JOSE or key code."""
    import subprocess
    import sys

    code = (
        "import sys, oauthsmtp; oauthsmtp.providers; oauthsmtp.app_token; "
        "oauthsmtp.ClientCredentials(client_id='a', token_url='https://t.example/', "
        "client_secret='s'); "
        "print(sorted(m for m in ('cryptography', 'joserfc') if m in sys.modules))"
    )
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTEST")}
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env=env,
        timeout=60,
    ).stdout.strip()
    assert out == "[]"


def test_a_refused_app_token_is_renewed_once_by_the_session(provider: DevProvider) -> None:
    """The server expired the token early: 535, one new grant, the message goes."""
    app = provider.auth.register_app(mailboxes=[MAILBOX])
    creds = ClientCredentials(
        client_id=app.client_id,
        token_url=provider.auth.token_endpoint,
        scope=provider.auth.scope,
        client_secret=app.client_secret,
    )
    token = app_token(creds, account=MAILBOX, store=MemoryStore())
    first = token.access_token
    provider.auth.expire_access_tokens()
    before = provider.auth.token_requests
    _send(provider, token, MAILBOX)
    assert provider.auth.token_requests - before == 1
    assert token.access_token != first
    assert provider.smtp.messages[-1].user == MAILBOX


def test_a_short_lived_app_token_is_not_renewed_on_every_use(certs: CertificateSet) -> None:
    """A 45 s token (less than twice the 60 s leeway) is used, then renewed; refresh() renews."""
    with DevProvider(certificates=certs, access_token_lifetime=45) as short:
        app = short.auth.register_app(mailboxes=[MAILBOX])
        creds = ClientCredentials(
            client_id=app.client_id,
            token_url=short.auth.token_endpoint,
            scope=short.auth.scope,
            client_secret=app.client_secret,
        )
        store = MemoryStore()
        token = app_token(creds, account=MAILBOX, store=store)
        value = token.access_token
        assert token.access_token == value
        assert app_token(creds, account=MAILBOX, store=store).access_token == value
        assert short.auth.token_requests == 1
        token.refresh()
        assert token.access_token != value
        assert short.auth.token_requests == 2
        _send(short, token, MAILBOX)


_WORKER = """
import sys
import oauthsmtp
client_id, secret, token_url, scope, folder, account = sys.argv[1:]
creds = oauthsmtp.ClientCredentials(
    client_id=client_id, token_url=token_url, scope=scope, client_secret=secret
)
sys.stdin.readline()  # all start together
token = oauthsmtp.app_token(creds, account=account, store=oauthsmtp.FileStore(folder))
print(token.access_token)
"""


def test_renewal_is_single_flight_across_processes(provider: DevProvider, tmp_path: Path) -> None:
    """4 processes find the stored app token expired at once: exactly 1 grant request."""
    import subprocess
    import sys

    app = provider.auth.register_app(mailboxes=[MAILBOX])
    assert app.client_secret is not None
    creds = ClientCredentials(
        client_id=app.client_id,
        token_url=provider.auth.token_endpoint,
        scope=provider.auth.scope,
        client_secret=app.client_secret,
    )
    folder = tmp_path / "tokens"
    store = FileStore(folder)
    token = app_token(creds, account=MAILBOX, store=store)
    token.expire()
    store.save(app_token_key(creds, MAILBOX), token.to_json())
    before = provider.auth.token_requests
    args = [app.client_id, app.client_secret, creds.token_url, provider.auth.scope]
    workers = [
        subprocess.Popen(
            [sys.executable, "-c", _WORKER, *args, str(folder), MAILBOX],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for _ in range(4)
    ]
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    outputs = [worker.communicate(timeout=60) for worker in workers]
    assert all(worker.returncode == 0 for worker in workers), outputs
    tokens = {out.strip() for out, _ in outputs}
    assert len(tokens) == 1
    assert provider.auth.token_requests - before == 1
    assert provider.auth.validate_access_token(tokens.pop()) is not None


def test_the_dev_server_checks_assertions_as_providers_do(
    provider: DevProvider, rsa_app: tuple[str, str, bytes]
) -> None:
    """An expired assertion, or one for another audience: refused (RFC 7523 §3)."""
    pem, cert, _ = rsa_app
    app = provider.auth.register_app(certificate=cert, mailboxes=[MAILBOX])
    key = provider.auth.register_service_account(delegated=[MAILBOX])
    url, scope = provider.auth.token_endpoint, provider.auth.scope
    client = ClientCredentials(
        client_id=app.client_id, token_url=url, scope=scope, private_key=pem, certificate=cert
    )
    bearer = providers.google_service_account(key, subject=MAILBOX, scope=scope)
    old = dt.datetime.now(dt.timezone.utc) - dt.timedelta(hours=2)
    for creds in (client, bearer):
        stale = post_form(url, app_grant_form(creds, now=old))
        assert stale.status in (400, 401)
        assert b"invalid_client" in stale.body or b"invalid_grant" in stale.body
    elsewhere = ClientCredentials(
        client_id=app.client_id,
        token_url=url,
        scope=scope,
        private_key=pem,
        certificate=cert,
        audience="https://login.example/other",
    )
    with pytest.raises(TokenError) as caught:
        request_app_token(elsewhere)
    assert caught.value.error == "invalid_client"
    # Only what was registered: an app with a secret and a certificate, a mailbox that is not one.
    with pytest.raises(ConfigurationError, match="not both"):
        provider.auth.register_app(client_secret="s" * 20, certificate=cert)
    with pytest.raises(ConfigurationError, match="email address"):
        provider.auth.register_app(mailboxes=["not an address"])


def test_metadata_advertises_the_app_only_grants(provider: DevProvider) -> None:
    """RFC 8414 metadata fetched over HTTP names the grants and client authentication the
    app-only logins above really use, so discovery-driven clients can find them."""
    import urllib.request

    url = provider.auth.issuer + "/.well-known/oauth-authorization-server"
    with urllib.request.urlopen(url, timeout=10) as answer:
        meta = json.load(answer)
    assert {"client_credentials", JWT_BEARER_GRANT} <= set(meta["grant_types_supported"])
    assert {"authorization_code", "refresh_token"} <= set(meta["grant_types_supported"])
    assert "private_key_jwt" in meta["token_endpoint_auth_methods_supported"]
    assert {"RS256", "PS256"} <= set(meta["token_endpoint_auth_signing_alg_values_supported"])
    # Revocation and introspection still take only the people's methods.
    assert "private_key_jwt" not in meta["revocation_endpoint_auth_methods_supported"]
