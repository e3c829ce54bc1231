"""GmailAPISession and GraphSession against the development provider's API emulation.

Every test sends real HTTP requests to the emulated endpoints on loopback, with real tokens
from the development authorization server; what a user would notice is asserted: results,
what arrived in the mailbox, how many requests went out, and which error names the fix.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator

import pytest

import oauthsmtp
from oauthsmtp import APIError, ConfigurationError, Email, GmailAPISession, GraphSession
from oauthsmtp.devserver import DevProvider

BOTH = f"{DevProvider.GMAIL_API_SCOPE} {DevProvider.GRAPH_API_SCOPE} offline_access"


@pytest.fixture(scope="module")
def provider() -> Iterator[DevProvider]:
    with DevProvider(smtps_port=None) as running:
        yield running


@pytest.fixture
def token(provider: DevProvider) -> oauthsmtp.AuthToken:
    provider.clear()
    return provider.login(scope=BOTH)


def mail(provider: DevProvider, subject: str = "Hello", **kwargs: object) -> Email:
    return Email(
        sender=provider.user,
        to=["bob@example.test"],
        subject=subject,
        text="Hi Bob.",
        **kwargs,  # type: ignore[arg-type]
    )


class Sleeps:
    """A stand-in for time.sleep that records the waits asked for."""

    def __init__(self) -> None:
        self.waits: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.waits.append(seconds)


@pytest.mark.parametrize("api", ["gmail", "graph"])
def test_send_reaches_the_mailbox_with_bcc_in_the_envelope_only(
    provider: DevProvider, token: oauthsmtp.AuthToken, api: str
) -> None:
    """One message: sent, in the shared store; Bcc recipients get it, no Bcc header shows."""
    session = (
        provider.gmail_api_session(auth_token=token)
        if api == "gmail"
        else provider.graph_session(auth_token=token)
    )
    with session:
        result = session.send(mail(provider, bcc=["carol@example.test"]))
    assert result.ok
    assert result.code == (200 if api == "gmail" else 202)
    if api == "gmail":
        assert "id " in (result.message or "")
    [received] = provider.messages
    assert received.rcpt_tos == ("bob@example.test", "carol@example.test")
    assert received.user == provider.user
    assert b"carol@example.test" not in received.data
    assert received.subject == "Hello"


def test_graph_users_path_for_a_named_mailbox(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """user= sends through /users/{user}/sendMail."""
    with provider.graph_session(auth_token=token, user=provider.user) as session:
        assert session.send(mail(provider)).ok
    [request] = provider.api.requests
    assert request.path == f"/graph/v1.0/users/{provider.user}/sendMail"


def test_graph_other_mailbox_without_permission_names_the_fix(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """A 403 ErrorAccessDenied is configuration: raised at once, names Mail.Send, not retried."""
    with (
        provider.graph_session(auth_token=token, user="boss@example.test") as session,
        pytest.raises(APIError, match=r"Mail\.Send") as caught,
    ):
        session.send(mail(provider))
    assert caught.value.status == 403
    assert caught.value.error == "ErrorAccessDenied"
    assert len(provider.api.requests) == 1
    assert provider.messages == []


@pytest.mark.parametrize("api", ["gmail", "graph"])
def test_expired_token_is_refreshed_once_and_the_message_sent(
    provider: DevProvider, token: oauthsmtp.AuthToken, api: str
) -> None:
    """The server stops accepting the token: one 401, one refresh, one retry, sent."""
    before = token.access_token
    provider.auth.expire_access_tokens()  # the client still thinks its token is valid
    session = (
        provider.gmail_api_session(auth_token=token)
        if api == "gmail"
        else provider.graph_session(auth_token=token)
    )
    with session:
        result = session.send(mail(provider))
    assert result.ok
    assert [r.status for r in provider.api.requests] == [401, result.code]
    assert token.access_token != before
    assert len(provider.messages) == 1


def test_a_second_401_after_the_refresh_raises(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """401, refresh, 401 again: APIError after exactly two requests; nothing sent."""
    provider.api.fail_next("401", count=2)
    with (
        provider.gmail_api_session(auth_token=token) as session,
        pytest.raises(APIError, match="even after a refresh") as caught,
    ):
        session.send(mail(provider))
    assert caught.value.status == 401
    assert len(provider.api.requests) == 2
    assert provider.messages == []


def test_token_for_another_audience_is_not_refreshed(provider: DevProvider) -> None:
    """An SMTP-only token sent to Graph: 401 'Invalid audience' names the fix, no refresh."""
    provider.clear()
    smtp_token = provider.login()  # the SMTP scope only
    before = smtp_token.access_token
    with (
        provider.graph_session(auth_token=smtp_token) as session,
        pytest.raises(APIError, match="another API") as caught,
    ):
        session.send(mail(provider))
    assert caught.value.status == 401
    assert len(provider.api.requests) == 1
    assert smtp_token.access_token == before


def test_gmail_token_without_gmail_send_names_the_scope(provider: DevProvider) -> None:
    """Gmail answers 403 insufficient scopes: the error names gmail.send and api=True."""
    provider.clear()
    smtp_token = provider.login()
    with (
        provider.gmail_api_session(auth_token=smtp_token) as session,
        pytest.raises(APIError, match=r"gmail\.send.*api=True"),
    ):
        session.send(mail(provider))
    assert len(provider.api.requests) == 1


@pytest.mark.parametrize(
    ("api", "kind", "words"),
    [
        ("gmail", "403-disabled", "enable the Gmail API"),
        ("graph", "403-license", "Exchange Online licence"),
    ],
)
def test_configuration_403_is_not_retried_and_names_the_fix(
    provider: DevProvider, token: oauthsmtp.AuthToken, api: str, kind: str, words: str
) -> None:
    """API not enabled / mailbox not licensed: one request, APIError with the fix."""
    provider.api.fail_next(kind)
    session = (
        provider.gmail_api_session(auth_token=token)
        if api == "gmail"
        else provider.graph_session(auth_token=token)
    )
    with session, pytest.raises(APIError, match=words):
        session.send(mail(provider))
    assert len(provider.api.requests) == 1


@pytest.mark.parametrize("status", ["429", "503"])
def test_retry_after_is_honoured(
    provider: DevProvider, token: oauthsmtp.AuthToken, status: str
) -> None:
    """429/503 with Retry-After: 2 waits 2 s (through sleep=), retries, sends."""
    sleeps = Sleeps()
    provider.api.fail_next(status, retry_after="2")
    with provider.graph_session(auth_token=token, sleep=sleeps) as session:
        result = session.send(mail(provider))
    assert result.ok
    assert sleeps.waits == [2.0]
    assert [r.status for r in provider.api.requests] == [int(status), 202]


def test_retry_after_beyond_the_cap_fails_without_waiting(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """A Retry-After longer than max_retry_wait: failed at once, the wait and cap named."""
    sleeps = Sleeps()
    provider.api.fail_next("429", retry_after="3600")
    with provider.gmail_api_session(auth_token=token, sleep=sleeps, max_retry_wait=30) as session:
        result = session.send(mail(provider))
    assert result.status == "failed"
    assert result.code == 429
    assert "3600" in (result.message or "")
    assert "max_retry_wait=30" in (result.message or "")
    assert sleeps.waits == []
    assert provider.messages == []


def test_throttling_that_lasts_fails_after_the_retries(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """503 four times with retries=3: four requests, then failed (not unknown)."""
    sleeps = Sleeps()
    provider.api.fail_next("503", count=4)
    with provider.graph_session(auth_token=token, sleep=sleeps, retries=3) as session:
        result = session.send(mail(provider))
    assert result.status == "failed"
    assert result.code == 503
    assert len(provider.api.requests) == 4
    assert len(sleeps.waits) == 3


@pytest.mark.parametrize(
    ("api", "kind", "status"),
    [
        ("gmail", "drop", "unknown"),
        ("graph", "drop", "unknown"),
        ("gmail", "html", "unknown"),
        ("gmail", "no-id", "unknown"),
        ("graph", "no-id", "unknown"),
        ("gmail", "500", "failed"),
    ],
)
def test_outcomes_that_cannot_be_known_are_never_sent_again(
    provider: DevProvider, token: oauthsmtp.AuthToken, api: str, kind: str, status: str
) -> None:
    """Dropped after the body, HTML 200, 200 without an id: unknown, one request only."""
    provider.api.fail_next(kind)
    session = (
        provider.gmail_api_session(auth_token=token)
        if api == "gmail"
        else provider.graph_session(auth_token=token, batch=False)
    )
    with session:
        results = session.send_many([mail(provider, "first"), mail(provider, "second")])
    assert [r.status for r in results] == [status, "sent"]
    assert len(provider.api.requests) == 2  # the first was not sent again
    assert [m.subject for m in provider.messages] == ["second"]


def test_oversized_message_is_refused_before_sending_with_the_limit_named(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """Over Graph's 4 MB request limit: ConfigurationError naming it; no request at all."""
    big = mail(provider, attachments=[("big.bin", b"\0" * (3_200_000))])
    with provider.graph_session(auth_token=token) as session:
        with pytest.raises(ConfigurationError, match=r"4 MB \(4,194,304 bytes\)"):
            session.send(big)
        results = session.send_many([big, mail(provider, "small")])
    assert results[0].status == "failed"
    assert "refused before sending" in (results[0].message or "")
    assert results[1].ok
    assert len(provider.api.requests) == 1


def test_send_many_keeps_one_connection_and_reports_each_message(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """Ten messages: ten requests, ten results in order, all delivered."""
    with provider.gmail_api_session(auth_token=token) as session:
        results = session.send_many([mail(provider, f"m{i}") for i in range(10)])
        assert session.requests_sent == 10
    assert all(r.ok for r in results)
    assert [m.subject for m in provider.messages] == [f"m{i}" for i in range(10)]


def test_configuration_error_mid_batch_fails_the_rest_without_sending(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """First sent; then a configuration 403: the rest are failed 'not sent', not raised."""
    provider.api.fail_next("403", after=1)
    with provider.graph_session(auth_token=token, batch=False) as session:
        results = session.send_many([mail(provider, "a"), mail(provider, "b"), mail(provider, "c")])
    assert [r.status for r in results] == ["sent", "failed", "failed"]
    assert "Mail.Send" in (results[1].message or "")
    assert "not sent" in (results[2].message or "")
    assert len(provider.api.requests) == 2
    assert [m.subject for m in provider.messages] == ["a"]


def test_configuration_error_before_any_answer_raises_from_send_many(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """Nothing of the batch answered yet: send_many raises, like SMTPSession."""
    provider.api.fail_next("403")
    with (
        provider.graph_session(auth_token=token) as session,
        pytest.raises(APIError, match=r"Mail\.Send"),
    ):
        session.send_many([mail(provider, "a"), mail(provider, "b")])
    assert len(provider.api.requests) == 1


def test_unreachable_api_raises_and_sends_nothing(token: oauthsmtp.AuthToken) -> None:
    """A closed port: APIError saying nothing was sent (the connection never opened)."""
    import socket

    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with (
        GmailAPISession(auth_token=token, base_url=f"http://127.0.0.1:{port}/gmail/v1") as s,
        pytest.raises(APIError, match="nothing was sent"),
    ):
        s.send(Email(sender="a@example.test", to=["b@example.test"], subject="x", text="y"))


@pytest.mark.parametrize(
    "url", ["http://graph.example.com/v1.0", "ftp://x/", "https://x/?a=1", "", "https://u:p@x/"]
)
def test_plain_http_off_loopback_and_odd_urls_are_refused(
    token: oauthsmtp.AuthToken, url: str
) -> None:
    """The token never crosses the network unencrypted; malformed URLs are refused."""
    with pytest.raises(ConfigurationError):
        GraphSession(auth_token=token, base_url=url)


@pytest.mark.parametrize("user", ["", "a/b", "x?y", " padded", "a\nb", 5])
def test_graph_user_must_be_a_plain_identifier(token: oauthsmtp.AuthToken, user: object) -> None:
    """user= goes into a path: slashes, queries, whitespace and non-strings are refused."""
    with pytest.raises(ConfigurationError):
        GraphSession(auth_token=token, user=user)  # type: ignore[arg-type]


def test_no_token_in_errors_logs_or_reprs(
    provider: DevProvider, token: oauthsmtp.AuthToken, caplog: pytest.LogCaptureFixture
) -> None:
    """DEBUG logs, the error and the session's repr hold no access token."""
    caplog.set_level(logging.DEBUG)
    provider.api.fail_next("401", count=2)
    with provider.graph_session(auth_token=token) as session:
        with pytest.raises(APIError) as caught:
            session.send(mail(provider))
        text = f"{caught.value!s} {caught.value!r} {session!r} {caplog.text}"
    assert token.access_token not in text
    assert "Bearer " not in text


def test_presets_ask_for_the_api_scopes() -> None:
    """api=True: gmail.send (not the restricted mail.google.com) and Graph Mail.Send."""
    gmail = oauthsmtp.providers.gmail(client_id="id", client_secret="s", api=True)
    assert gmail.scopes == ("https://www.googleapis.com/auth/gmail.send", "openid", "email")
    microsoft = oauthsmtp.providers.microsoft(client_id="id", tenant="contoso.com", api=True)
    assert microsoft.scopes == (
        "https://graph.microsoft.com/Mail.Send",
        "offline_access",
        "openid",
        "email",
    )
    assert (
        "https://mail.google.com/"
        in oauthsmtp.providers.gmail(client_id="i", client_secret="s").scopes
    )


def test_smtp_auth_disabled_explanation_names_the_api_transport() -> None:
    """535 5.7.139 (SMTP AUTH off): explain() offers the API transport and its command."""
    text = oauthsmtp.explain(
        "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
        "the Mailbox"
    )
    assert text is not None
    assert "--transport api" in text
    assert "Microsoft Graph" in text


def test_large_gmail_message_through_the_upload_uri_arrives(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """A 6 MB message: the emulation's media-upload endpoint keeps it byte for byte."""
    payload = bytes(range(256)) * (6 * 1024 * 4)
    with provider.gmail_api_session(auth_token=token) as session:
        result = session.send(mail(provider, "big", attachments=[("big.bin", payload)]))
    assert result.ok
    [request] = provider.api.requests
    assert request.api == "gmail-upload"
    [received] = provider.messages
    [part] = list(received.message.iter_attachments())
    assert part.get_content() == payload


def test_app_only_token_sends_through_graph_users_path(provider: DevProvider) -> None:
    """providers.microsoft_app(api=True) + GraphSession(user=...): /users/{mailbox}; /me is
    refused with the fix (pass user=); a mailbox the app was not given: ErrorAccessDenied."""
    provider.clear()
    app = provider.auth.register_app(mailboxes=["shared@example.test"])
    creds = oauthsmtp.providers.microsoft_app(
        client_id=app.client_id,
        tenant="dev.test",
        client_secret=app.client_secret,
        token_url=provider.auth.token_endpoint,
        scope=provider.GRAPH_API_SCOPE,  # real Graph: api=True asks for .../.default
    )
    token = oauthsmtp.app_token(creds, account="shared@example.test", store=oauthsmtp.MemoryStore())
    message = Email(sender="shared@example.test", to=["bob@example.test"], subject="app", text="x")
    with provider.graph_session(auth_token=token, user="shared@example.test") as session:
        assert session.send(message).ok
    [received] = provider.messages
    assert received.user == "shared@example.test"
    with (
        provider.graph_session(auth_token=token) as session,
        pytest.raises(APIError, match="user="),
    ):
        session.send(message)
    with (
        provider.graph_session(auth_token=token, user="ceo@example.test") as session,
        pytest.raises(APIError, match=r"Mail\.Send"),
    ):
        session.send(message)
    assert len(provider.messages) == 1
    graph = oauthsmtp.providers.microsoft_app(
        client_id="app", tenant="contoso.com", client_secret="s", api=True
    )
    assert graph.scope == ("https://graph.microsoft.com/.default",)
