"""transport="auto": a Graph token from the SMTP login, and AutoSession's switch.

Against the development provider, which plays Microsoft here: a login that consents to its
SMTP scope and its Graph emulation's gets a token for the first only, a refresh with
``scope=`` redeems one for the other, every refresh rotates the refresh token (and revokes
the old one), and both endpoints check the token's audience. Its SMTP server plays
Microsoft 365's refusals (``auth_failure=``).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from hostile_smtp import HostileServer

import oauthsmtp
from oauthsmtp import APIError, AutoSession, Email, FileStore, SMTPAuthError
from oauthsmtp._api.auto import refused_for_configuration
from oauthsmtp._oauth.scopes import first_resource, resource_groups
from oauthsmtp._tokens.manager import audience_key
from oauthsmtp.devserver import CertificateSet, DevProvider

GRAPH = f"{DevProvider.GRAPH_API_SCOPE} offline_access"


@pytest.fixture(scope="module")
def provider() -> Iterator[DevProvider]:
    with DevProvider(smtps_port=None) as running:
        yield running


@pytest.fixture(autouse=True)
def _reset(provider: DevProvider) -> Iterator[None]:
    provider.clear()
    provider.smtp.auth_failure = None
    user = provider.user
    yield
    provider.smtp.auth_failure = None
    provider.user = user


def both_scopes(provider: DevProvider) -> str:
    """What providers.microsoft(api="auto") asks for, in the dev provider's scopes."""
    return f"{provider.auth.scope} offline_access openid email {provider.GRAPH_API_SCOPE}"


def mail(provider: DevProvider, subject: str) -> Email:
    return Email(sender=provider.user, to=["bob@example.test"], subject=subject, text="Hi.")


def token_posts(provider: DevProvider) -> int:
    return provider.auth.requests_log.count(("POST", "/token"))


# -- the pure parts -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("code", "text", "expected"),
    [
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
              "for the Mailbox. Visit https://aka.ms/smtp_auth_disabled", True),
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled "
              "for the Tenant.", True),
        (550, "5.7.30 Basic authentication is not supported for Client Submission.", True),
        (535, "5.7.8 Username and Password not accepted.", False),
        (535, "5.7.3 Authentication unsuccessful", False),
        (454, "4.7.0 Temporary authentication failure", False),
        (435, "5.7.139 (a 4xx never switches)", False),
        (None, "5.7.139", False),
        (535, "5.7.1390 Authentication unsuccessful", False),
        (550, "25.7.30 Basic authentication", False),
    ],
    ids=["mailbox", "tenant", "basic-auth", "bad-credentials", "bad-token", "temporary",
         "4xx", "no-reply", "longer-code", "prefixed-code"],
)  # fmt: skip
def test_only_the_configuration_refusals_switch(
    code: int | None, text: str, expected: bool
) -> None:
    """5.7.139 and 5.7.30 in a 5xx reply switch; bad tokens, 4xx and no reply never do."""
    assert refused_for_configuration(code, text) is expected


def test_a_token_request_names_one_microsoft_resource() -> None:
    """api="auto" consents to two resources; a token request asks for the first only."""
    params = oauthsmtp.providers.microsoft(client_id="c", api="auto")
    smtp, graph = "https://outlook.office.com/SMTP.Send", "https://graph.microsoft.com/Mail.Send"
    assert params.scopes[0] == smtp
    assert graph in params.scopes
    assert resource_groups(params.scopes) == [(smtp,), (graph,)]
    assert first_resource(params.scopes) == (smtp, "offline_access", "openid", "email")
    google = oauthsmtp.providers.gmail(client_id="c", client_secret="s", api="auto")
    assert google.scopes == ("https://mail.google.com/", "openid", "email")  # one token, both
    assert first_resource(google.scopes) == google.scopes
    with pytest.raises(oauthsmtp.ConfigurationError, match="auto"):
        oauthsmtp.providers.microsoft(client_id="c", api="yes")  # type: ignore[arg-type]


# -- a Graph token from the SMTP login --------------------------------------------------------


def test_login_for_both_gets_an_smtp_token_and_redeems_a_graph_one(
    provider: DevProvider, tmp_path: Path
) -> None:
    """The login's token is for SMTP only; token_for_scope redeems a Graph token with one
    refresh whose rotated refresh token is saved into the login's entry; the next process
    (a new manager on the same store) still refreshes; logout removes both entries."""
    store = FileStore(tmp_path / "tokens")
    token = provider.login(scope=both_scopes(provider), store=store)
    assert provider.auth.scope in token.scope
    assert provider.GRAPH_API_SCOPE not in token.scope  # one resource per token
    with provider.graph_session(auth_token=token) as session, pytest.raises(APIError):
        session.send(mail(provider, "refused"))  # 401 Invalid audience
    key = token.refresher.key  # type: ignore[union-attr]
    first_refresh_token = token.refresh_token
    posts = token_posts(provider)

    graph = oauthsmtp.token_for_scope(token, GRAPH)
    assert token_posts(provider) == posts + 1
    assert provider.GRAPH_API_SCOPE in graph.scope
    assert graph.refresh_token is None  # the login keeps the refresh token
    stored = oauthsmtp.AuthToken.from_json(store.load(key) or "")
    assert stored.refresh_token not in (None, first_refresh_token)  # rotated and saved
    assert stored.access_token == token.state.access_token  # the SMTP token is untouched
    with provider.graph_session(auth_token=graph) as session:
        assert session.send(mail(provider, "via graph")).ok
    # Kept: a second call (this process or another) makes no request.
    again = oauthsmtp.token_for_scope(token, GRAPH)
    assert again.access_token == graph.access_token
    assert token_posts(provider) == posts + 1

    # The next process: every access token expired, its old refresh token revoked by the
    # rotation; it logs in without a browser from what was saved.
    provider.auth.expire_access_tokens()
    params = provider.parameters(scope=both_scopes(provider))
    later = oauthsmtp.auth_identify(params, account=provider.user, store=store, interactive=False)
    with provider.session(auth_token=later) as session:
        assert session.send(mail(provider, "via smtp, next process")).ok
    graph_later = oauthsmtp.token_for_scope(later, GRAPH)
    with provider.graph_session(auth_token=graph_later) as session:
        assert session.send(mail(provider, "via graph, next process")).ok
    assert [m.subject for m in provider.messages] == [
        "via graph",
        "via smtp, next process",
        "via graph, next process",
    ]
    oauthsmtp.revoke_token(params, later)
    assert store.load(key) is None
    assert store.load(audience_key(key)) is None


def test_graph_token_renewals_are_single_flight_and_keep_the_login(
    provider: DevProvider, tmp_path: Path
) -> None:
    """Eight threads find the Graph token expired at once: one refresh request; then the
    SMTP token's own refresh uses the refresh token the Graph refresh rotated."""
    store = FileStore(tmp_path / "tokens")
    token = provider.login(scope=both_scopes(provider), store=store)
    graph = oauthsmtp.token_for_scope(token, GRAPH)
    graph.expire()
    posts = token_posts(provider)
    barrier = threading.Barrier(8)
    seen: list[str] = []

    def use() -> None:
        barrier.wait(timeout=10)
        seen.append(graph.access_token)

    threads = [threading.Thread(target=use) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=30)
    assert len(seen) == 8
    assert len(set(seen)) == 1
    assert token_posts(provider) == posts + 1
    token.expire()
    with provider.session(auth_token=token) as session:  # refreshes with the rotated token
        assert session.send(mail(provider, "smtp after graph refresh")).ok
    assert token_posts(provider) == posts + 2


def test_token_for_scope_returns_the_token_that_already_serves(provider: DevProvider) -> None:
    """Google's way: a token granted the scope already is returned as it is, no request."""
    token = provider.login(scope=f"{provider.auth.scope} {provider.GMAIL_API_SCOPE}")
    posts = token_posts(provider)
    assert oauthsmtp.token_for_scope(token, provider.GMAIL_API_SCOPE) is token
    assert token_posts(provider) == posts
    bare = oauthsmtp.AuthToken(token.state)  # not attached to a store
    with pytest.raises(oauthsmtp.ConfigurationError, match="auth_identify"):
        oauthsmtp.token_for_scope(bare, GRAPH)


def test_redeeming_a_scope_never_consented_is_the_providers_refusal(
    provider: DevProvider,
) -> None:
    """A login without the Graph consent: TokenError invalid_scope, the login survives."""
    token = provider.login(scope=f"{provider.auth.scope} offline_access")
    with pytest.raises(oauthsmtp.TokenError) as caught:
        oauthsmtp.token_for_scope(token, GRAPH)
    assert caught.value.error == "invalid_scope"
    with provider.session(auth_token=token) as session:
        assert session.send(mail(provider, "still fine")).ok


# -- AutoSession ------------------------------------------------------------------------------


class Factory:
    """Builds the Graph session at the switch, the way the command line does; counts calls."""

    def __init__(self, provider: DevProvider, token: oauthsmtp.AuthToken) -> None:
        self.provider, self.token, self.calls = provider, token, 0

    def __call__(self) -> oauthsmtp.GraphSession:
        self.calls += 1
        graph = oauthsmtp.token_for_scope(self.token, GRAPH)
        return self.provider.graph_session(auth_token=graph)


def auto(provider: DevProvider) -> tuple[AutoSession, Factory]:
    token = provider.login(scope=both_scopes(provider))
    factory = Factory(provider, token)
    return AutoSession(provider.session(auth_token=token), factory), factory


def test_auto_with_smtp_working_sends_over_smtp_and_never_touches_the_api(
    provider: DevProvider,
) -> None:
    """SMTP works: every result says smtp; no Graph token, no API request."""
    session, factory = auto(provider)
    posts = token_posts(provider)
    with session:
        one = session.send(mail(provider, "one"))
        two, three = session.send_many([mail(provider, "two"), mail(provider, "three")])
    assert [r.transport for r in (one, two, three)] == ["smtp"] * 3
    assert all(r.ok for r in (one, two, three))
    assert session.transport == "smtp"
    assert session.switched_because is None
    assert factory.calls == 0
    assert provider.api.requests == []
    assert token_posts(provider) == posts
    assert [m.subject for m in provider.messages] == ["one", "two", "three"]


@pytest.mark.parametrize("failure", ["mailbox", "tenant", "basic-auth"])
def test_auto_switches_on_configuration_refusal_and_says_so_once(
    provider: DevProvider, failure: str, caplog: pytest.LogCaptureFixture
) -> None:
    """AUTH refused with 5.7.139/5.7.30: the message goes through Graph (once), the rest of
    the session too; the result says api; one WARNING names the permanent fix."""
    provider.user = f"{failure}@example.test"  # the WARNING is once per account and process
    provider.smtp.auth_failure = failure
    session, factory = auto(provider)
    with caplog.at_level(logging.INFO, logger="oauthsmtp.auto"), session:
        first = session.send(mail(provider, "first"))
        rest = session.send_many([mail(provider, "second"), mail(provider, "third")])
    assert first.ok
    assert first.transport == "api"
    assert first.code == 202
    assert [(r.ok, r.transport) for r in rest] == [(True, "api"), (True, "api")]
    assert session.transport == "api"
    assert (session.switched_because or "").startswith(("535 5.7.139", "550 5.7.30"))
    assert factory.calls == 1
    assert [m.subject for m in provider.messages] == ["first", "second", "third"]
    kinds = [r.api for r in provider.api.requests]
    assert kinds.count("graph-batch") == 1
    assert kinds[0] == "graph"
    assert [ok for _, _, ok in provider.smtp.auth_log] == [False]  # AUTH tried once
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1
    text = warnings[0].getMessage()
    assert "Microsoft Graph" in text
    assert "--transport api" in text
    assert "--transport auto" in text
    # A second session in the same process: INFO, not another WARNING.
    session2, _ = auto(provider)
    with caplog.at_level(logging.INFO, logger="oauthsmtp.auto"), session2:
        assert session2.send(mail(provider, "fourth")).transport == "api"
    assert len([r for r in caplog.records if r.levelno == logging.WARNING]) == 1


class BadToken:
    """A token SMTP refuses with 535 5.7.8 even after the one refresh (refresh changes
    nothing): the server's answer to bad credentials."""

    account = "user@example.test"
    access_token = "not-a-token-this-server-issued"

    def refresh(self) -> BadToken:
        return self


@pytest.mark.parametrize("failure", ["bad-token", "connections", None])
def test_auto_never_switches_on_other_refusals(provider: DevProvider, failure: str | None) -> None:
    """535 5.7.3 (bad token), 432 4.3.2 (too many connections), 535 5.7.8 (bad credentials):
    raised as SMTP raised them; the API is never built and nothing is sent."""
    provider.smtp.auth_failure = failure
    if failure is None:
        token: object = BadToken()
    else:
        token = provider.login(scope=both_scopes(provider))
    built: list[int] = []

    def factory() -> oauthsmtp.GraphSession:  # pragma: no cover - must not be called
        built.append(1)
        raise AssertionError("the API must not be used")

    session = AutoSession(provider.session(auth_token=token, username=provider.user), factory)
    with pytest.raises(SMTPAuthError) as caught:
        session.start()
    with pytest.raises(SMTPAuthError):
        session.send(mail(provider, "never"))
    with pytest.raises(SMTPAuthError):
        session.send_many([mail(provider, "never")])
    session.close()
    expected = {"bad-token": "5.7.3", "connections": "4.3.2", None: "5.7.8"}[failure]
    assert expected in (caught.value.server_message or "")
    assert built == []
    assert session.transport == "smtp"
    assert provider.api.requests == []
    assert provider.messages == []


def test_auto_takes_a_ready_api_session_and_reports_an_unusable_api(
    provider: DevProvider,
) -> None:
    """api= may be a session; when the API refuses too, its error is raised and nothing is
    sent."""
    provider.smtp.auth_failure = "mailbox"
    token = provider.login(scope=both_scopes(provider))
    graph = oauthsmtp.token_for_scope(token, GRAPH)
    provider.api.fail_next("403-license")
    ready = provider.graph_session(auth_token=graph)
    session = AutoSession(provider.session(auth_token=token), ready)
    with session, pytest.raises(APIError, match="licence"):
        session.send(mail(provider, "refused twice"))
    assert session.api is ready
    assert session.transport == "api"
    assert provider.messages == []
    with pytest.raises(oauthsmtp.ConfigurationError):
        AutoSession(provider.session(auth_token=token), "graph")  # type: ignore[arg-type]


# -- refusals of a message's own transaction (a scripted server) -----------------------------

BASIC_AUTH_OFF = "550 5.7.30 Basic authentication is not supported for Client Submission."


class GoodToken:
    """The token the scripted server accepts."""

    account = "user@example.test"
    access_token = "good-token"

    def refresh(self) -> GoodToken:
        return self


def scripted_auto(
    provider: DevProvider, server: HostileServer, certs: CertificateSet
) -> AutoSession:
    smtp = oauthsmtp.SMTPSession(
        "localhost",
        server.port,
        auth_token=GoodToken(),
        username=provider.user,
        ssl_context=certs.client_context(),
    )
    token = provider.login(scope=GRAPH)
    return AutoSession(smtp, lambda: provider.graph_session(auth_token=token))


def test_a_message_refused_with_5_7_30_at_mail_goes_through_the_api_alone(
    provider: DevProvider,
    hostile: Callable[..., HostileServer],
    certs: CertificateSet,
) -> None:
    """A batch over SMTP where one MAIL is answered 550 5.7.30: that message (and no other)
    is sent again through Graph; the others stay SMTP's."""
    server = hostile(reject_mail=("blocked@example.test",), reject_mail_reply=BASIC_AUTH_OFF)
    session = scripted_auto(provider, server, certs)
    batch = [
        mail(provider, "one"),
        Email(sender="blocked@example.test", to=["bob@example.test"], subject="two", text="x"),
        mail(provider, "three"),
    ]
    with session:
        results = session.send_many(batch)
    assert [(r.status, r.transport) for r in results] == [
        ("sent", "smtp"),
        ("sent", "api"),
        ("sent", "smtp"),
    ]
    over_smtp = server.messages
    assert len(over_smtp) == 2
    assert b"Subject: one" in over_smtp[0].data
    assert b"Subject: three" in over_smtp[1].data
    assert [m.subject for m in provider.messages] == ["two"]


@pytest.mark.parametrize(
    ("reply", "switches"),
    [(BASIC_AUTH_OFF, True), ("550 5.7.1 Delivery not authorized", False)],
    ids=["5.7.30", "5.7.1"],
)
def test_an_end_of_data_refusal_switches_only_for_configuration(
    provider: DevProvider,
    hostile: Callable[..., HostileServer],
    certs: CertificateSet,
    reply: str,
    switches: bool,
) -> None:
    """The body was sent and refused: 550 5.7.30 is a definite "not taken" and goes through
    Graph; 550 5.7.1 is the server's answer about this message and stays failed."""
    server = hostile(data_reply=reply)
    session = scripted_auto(provider, server, certs)
    with session:
        result = session.send(mail(provider, "refused at data"))
    if switches:
        assert (result.status, result.transport) == ("sent", "api")
        assert [m.subject for m in provider.messages] == ["refused at data"]
    else:
        assert (result.status, result.transport, result.code) == ("failed", "smtp", 550)
        assert provider.messages == []


def test_when_the_api_fails_mid_batch_smtp_results_are_kept(
    provider: DevProvider,
    hostile: Callable[..., HostileServer],
    certs: CertificateSet,
) -> None:
    """One message refused with 5.7.30, and the API refuses too: the batch does not raise
    (others got answers); that message is failed with both reasons, the others are sent."""
    server = hostile(reject_mail=("blocked@example.test",), reject_mail_reply=BASIC_AUTH_OFF)
    session = scripted_auto(provider, server, certs)
    provider.api.fail_next("403-license")
    batch = [
        mail(provider, "one"),
        Email(sender="blocked@example.test", to=["bob@example.test"], subject="two", text="x"),
    ]
    with session:
        first, second = session.send_many(batch)
    assert (first.status, first.transport) == ("sent", "smtp")
    assert (second.status, second.code) == ("failed", 550)
    assert "5.7.30" in (second.message or "")
    assert "the API could not send it either" in (second.message or "")
    assert provider.messages == []


def test_an_api_that_cannot_be_built_is_reported_with_smtps_refusal(
    provider: DevProvider, caplog: pytest.LogCaptureFixture
) -> None:
    """The Graph token cannot be redeemed (no consent): the provider's error is raised, and
    a WARNING says SMTP was refused first; nothing is sent, the session did not switch."""
    provider.smtp.auth_failure = "tenant"
    token = provider.login(scope=f"{provider.auth.scope} offline_access")  # no Graph consent
    session = AutoSession(
        provider.session(auth_token=token),
        lambda: provider.graph_session(auth_token=oauthsmtp.token_for_scope(token, GRAPH)),
    )
    with (
        caplog.at_level(logging.WARNING, logger="oauthsmtp.auto"),
        pytest.raises(oauthsmtp.TokenError, match="invalid_scope"),
    ):
        session.start()
    session.close()
    [warning] = caplog.records
    assert "5.7.139" in warning.getMessage()
    assert "cannot be used" in warning.getMessage()
    assert session.transport == "smtp"
    assert provider.messages == []
