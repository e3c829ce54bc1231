"""GraphSession.send_many with JSON batching ($batch), against the dev provider's Graph emulation.

Up to 20 messages per request, chained with dependsOn; a refused message makes the later
ones 424 (not run), which go into the next batch; messages JSON cannot carry faithfully are
sent alone as MIME; one result per message, in order.
"""

from __future__ import annotations

import base64
from collections.abc import Iterator
from email.message import EmailMessage

import pytest

import oauthsmtp
from oauthsmtp import Email
from oauthsmtp._api.graphjson import graph_message
from oauthsmtp._api.session import raw_with_bcc
from oauthsmtp._message.prepare import prepare_message
from oauthsmtp.devserver import DevProvider

SCOPE = f"{DevProvider.GRAPH_API_SCOPE} offline_access"


@pytest.fixture(scope="module")
def provider() -> Iterator[DevProvider]:
    with DevProvider(smtps_port=None) as running:
        yield running


@pytest.fixture
def token(provider: DevProvider) -> oauthsmtp.AuthToken:
    provider.clear()
    return provider.login(scope=SCOPE)


def mail(provider: DevProvider, subject: str, to: str = "bob@example.test") -> Email:
    return Email(sender=provider.user, to=[to], subject=subject, text="Hi.")


def batches(provider: DevProvider) -> int:
    return sum(r.api == "graph-batch" for r in provider.api.requests)


def test_twenty_five_messages_take_two_batch_requests(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """25 messages: one batch of 20 and one of 5; all sent, in order, one result each."""
    with provider.graph_session(auth_token=token) as session:
        results = session.send_many([mail(provider, f"m{i:02d}") for i in range(25)])
        assert session.requests_sent == 2
    assert [r.status for r in results] == ["sent"] * 25
    assert batches(provider) == 2
    assert [m.subject for m in provider.messages] == [f"m{i:02d}" for i in range(25)]


def test_a_refused_message_does_not_stop_the_others(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """#3 refused (400): #4-#6 answered 424 are sent in a second batch, not lost or doubled."""
    provider.api.reject_recipients.add("nobody@example.test")
    messages = [mail(provider, f"m{i}") for i in range(1, 7)]
    messages[2] = mail(provider, "m3", to="nobody@example.test")
    with provider.graph_session(auth_token=token) as session:
        results = session.send_many(messages)
    assert [r.status for r in results] == ["sent", "sent", "failed", "sent", "sent", "sent"]
    assert results[2].code == 400
    assert "ErrorInvalidRecipients" in (results[2].message or "")
    assert batches(provider) == 2
    assert [m.subject for m in provider.messages] == ["m1", "m2", "m4", "m5", "m6"]


def test_messages_json_cannot_carry_go_alone_as_mime_in_order(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """A reply (In-Reply-To) is sent alone as MIME; the others around it in batches."""
    reply = EmailMessage()
    reply["From"] = provider.user
    reply["To"] = "bob@example.test"
    reply["Subject"] = "reply"
    reply["In-Reply-To"] = "<original@example.test>"
    reply.set_content("Answer.")
    messages = [mail(provider, "a"), mail(provider, "b"), reply, mail(provider, "c")]
    with provider.graph_session(auth_token=token) as session:
        results = session.send_many(messages)
    assert all(r.ok for r in results)
    assert [m.subject for m in provider.messages] == ["a", "b", "reply", "c"]
    assert b"In-Reply-To: <original@example.test>" in provider.messages[2].data
    kinds = [r.api for r in provider.api.requests if not r.path.startswith("$batch")]
    assert kinds == ["graph-batch", "graph", "graph"]  # a+b batched; reply; c alone


def test_a_lost_batch_is_unknown_and_never_sent_again(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """The connection drops after the batch was sent: every message in it is unknown."""
    provider.api.fail_next("drop")
    with provider.graph_session(auth_token=token) as session:
        results = session.send_many([mail(provider, f"m{i}") for i in range(3)])
    assert [r.status for r in results] == ["unknown"] * 3
    assert len(provider.api.requests) == 1


@pytest.mark.parametrize(("kind", "requests"), [("401", 2), ("429", 2)])
def test_batch_refresh_and_retry_after(
    provider: DevProvider, token: oauthsmtp.AuthToken, kind: str, requests: int
) -> None:
    """A 401 on the batch refreshes once; a 429 waits Retry-After; then the batch is sent."""
    waits: list[float] = []
    before = token.access_token
    provider.api.fail_next(kind, retry_after="3")
    with provider.graph_session(auth_token=token, sleep=waits.append) as session:
        results = session.send_many([mail(provider, f"m{i}") for i in range(3)])
    assert all(r.ok for r in results)
    assert batches(provider) == requests
    assert (token.access_token != before) == (kind == "401")
    assert waits == ([3.0] if kind == "429" else [])


def test_batch_configuration_refusal_raises_when_nothing_was_sent(
    provider: DevProvider, token: oauthsmtp.AuthToken
) -> None:
    """Another user's mailbox without permission: APIError naming Mail.Send, nothing sent."""
    with (
        provider.graph_session(auth_token=token, user="boss@example.test") as session,
        pytest.raises(oauthsmtp.APIError, match=r"Mail\.Send"),
    ):
        session.send_many([mail(provider, "a"), mail(provider, "b")])
    assert provider.messages == []


def test_graph_json_form_is_faithful() -> None:
    """Text and HTML, an attachment, Cc, Bcc, Reply-To and X- headers map to Graph's JSON."""
    email = Email(
        sender="Me <me@example.test>",
        to=["bob@example.test"],
        cc=["carol@example.test"],
        bcc=["dave@example.test"],
        reply_to=["replies@example.test"],
        subject="Report",
        text="plain",
        html="<p>rich</p>",
        attachments=[("data.bin", b"\x00\x01\x02")],
        headers={"X-Campaign": "42"},
    )
    outgoing = prepare_message(email)
    form = graph_message(raw_with_bcc(outgoing))
    assert form is not None
    message = form["message"]
    assert message["subject"] == "Report"
    assert message["body"] == {"contentType": "HTML", "content": "<p>rich</p>\n"}
    assert message["from"] == {"emailAddress": {"address": "me@example.test", "name": "Me"}}
    assert message["ccRecipients"] == [{"emailAddress": {"address": "carol@example.test"}}]
    assert message["bccRecipients"] == [{"emailAddress": {"address": "dave@example.test"}}]
    assert message["replyTo"] == [{"emailAddress": {"address": "replies@example.test"}}]
    [attachment] = message["attachments"]
    assert base64.b64decode(attachment["contentBytes"]) == b"\x00\x01\x02"
    assert attachment["name"] == "data.bin"
    assert message["internetMessageHeaders"] == [{"name": "X-Campaign", "value": "42"}]


@pytest.mark.parametrize(
    "header", [("In-Reply-To", "<a@b>"), ("References", "<a@b>"), ("List-Unsubscribe", "<x>")]
)
def test_graph_json_refuses_what_it_would_lose(header: tuple[str, str]) -> None:
    """Headers Graph's JSON cannot carry: no JSON form (the message goes as MIME)."""
    message = EmailMessage()
    message["From"] = "me@example.test"
    message["To"] = "bob@example.test"
    message["Subject"] = "s"
    message[header[0]] = header[1]
    message.set_content("x")
    assert graph_message(prepare_message(message).data) is None
