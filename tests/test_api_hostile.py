"""The HTTP sending transports against answers no real API gives (tests/scripted_http.py).

A scripted server on loopback answers each POST from a script; the tests check what the
client sent and what it made of the answer: redirects not followed, oversized and garbage
bodies, a stalled answer within the deadline, and the pure reading of answers.
"""

from __future__ import annotations

import base64
import json
from datetime import datetime, timedelta, timezone
from email.utils import format_datetime
from pathlib import Path

import pytest
from scripted_http import ScriptedServer, drip, head, send_then

from oauthsmtp import APIError, Email, GmailAPISession, GraphSession
from oauthsmtp._api.answers import read_answer, retry_after_seconds


class FixedToken:
    """A token source that counts refreshes (the dev provider's tokens are tested elsewhere)."""

    def __init__(self) -> None:
        self.refreshes = 0

    @property
    def access_token(self) -> str:
        return f"secret-token-{self.refreshes}"

    def refresh(self) -> object:
        self.refreshes += 1
        return self


MESSAGE = Email(sender="me@example.test", to=["bob@example.test"], subject="Hello", text="Hi Bob.")


def gmail(server: ScriptedServer, **kwargs: object) -> GmailAPISession:
    return GmailAPISession(
        auth_token=FixedToken(),
        base_url=server.url("/gmail/v1"),
        **kwargs,  # type: ignore[arg-type]
    )


def test_gmail_request_is_the_raw_message_base64url(scripted: ScriptedServer) -> None:
    """POST users/me/messages/send, JSON {"raw": base64url(RFC 5322)}, bearer header."""
    scripted.reply_json({"id": "18c0ffee", "threadId": "18c0ffee", "labelIds": ["SENT"]})
    with gmail(scripted) as session:
        result = session.send(MESSAGE)
    assert result.ok
    assert "18c0ffee" in (result.message or "")
    [seen] = scripted.seen
    assert seen.path == "/gmail/v1/users/me/messages/send"
    assert seen.headers["Authorization"] == "Bearer secret-token-0"
    raw = json.loads(seen.body)["raw"]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_="
    assert set(raw) <= set(alphabet)
    data = base64.urlsafe_b64decode(raw)
    assert b"Subject: Hello\r\n" in data
    assert b"\r\n\r\nHi Bob." in data


def test_graph_request_is_base64_mime_as_text_plain(scripted: ScriptedServer) -> None:
    """POST /me/sendMail, Content-Type text/plain, base64 MIME body; 202 is sent."""
    scripted.reply(202)
    with GraphSession(auth_token=FixedToken(), base_url=scripted.url("/v1.0")) as session:
        result = session.send(MESSAGE)
    assert result.ok
    [seen] = scripted.seen
    assert seen.path == "/v1.0/me/sendMail"
    assert seen.headers["Content-Type"] == "text/plain"
    assert b"Subject: Hello\r\n" in base64.b64decode(seen.body, validate=True)


def test_redirect_is_not_followed(scripted: ScriptedServer) -> None:
    """A 307 to elsewhere: one request, the token goes nowhere else, the message fails."""
    scripted.reply(307, Location="http://127.0.0.1:9/steal")
    with gmail(scripted) as session:
        result = session.send(MESSAGE)
    assert result.status == "failed"
    assert result.code == 307
    assert len(scripted.seen) == 1


def test_huge_error_body_is_capped(scripted: ScriptedServer) -> None:
    """A 5 MB error body: read up to the cap, the message fails with the status."""
    scripted.reply(400, body=b"x" * (5 * 1024 * 1024), Content_Type="text/plain")
    with gmail(scripted) as session:
        result = session.send(MESSAGE)
    assert result.status == "failed"
    assert result.code == 400
    assert len(result.message or "") < 500


def test_stalled_answer_is_unknown_within_the_deadline(scripted: ScriptedServer) -> None:
    """Headers never come: after the timeout the message is unknown (it was sent)."""
    scripted.reply_raw(send_then(b"", "stall"))
    with gmail(scripted, timeout=0.5) as session:
        result = session.send(MESSAGE)
    assert result.status == "unknown"
    assert len(scripted.seen) == 1


@pytest.mark.parametrize(
    "answer",
    [
        b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\n",  # headers, then spaces
        head(200, Content_Type="application/json", Content_Length="1000") + b'{"id": "',
    ],
    ids=["dripping-headers", "dripping-body"],
)
def test_a_dripping_server_cannot_stretch_the_deadline(
    scripted: ScriptedServer, answer: bytes
) -> None:
    """A byte every 50 ms never trips a per-read timeout; the total deadline still ends it.

    Without the watchdog this request never ends (pytest-timeout fails the test).
    """
    scripted.reply_raw(drip(answer, every=0.05))
    with gmail(scripted, timeout=0.5) as session:
        result = session.send(MESSAGE)
    assert result.status == "unknown"
    assert "within 0.5 s" in (result.message or "")
    assert len(scripted.seen) == 1


def test_connection_reset_after_the_request_is_unknown(scripted: ScriptedServer) -> None:
    """Reset after reading the request: unknown, not sent again."""
    scripted.reply_raw(send_then(b"", "reset"))
    with gmail(scripted) as session:
        result = session.send(MESSAGE)
    assert result.status == "unknown"
    assert len(scripted.seen) == 1


def test_json_garbage_in_a_200_is_unknown(scripted: ScriptedServer) -> None:
    """200 with a body that is not the message resource: unknown (may have been sent)."""
    scripted.reply(200, body=b"[1, 2", Content_Type="application/json")
    with gmail(scripted) as session:
        assert session.send(MESSAGE).status == "unknown"


def test_token_is_not_in_a_failed_result(scripted: ScriptedServer) -> None:
    """An error body echoing the Authorization header never reaches the caller unbounded."""
    scripted.reply_json(
        {"error": {"code": 400, "message": "bad request", "status": "INVALID"}}, 400
    )
    with gmail(scripted) as session:
        result = session.send(MESSAGE)
    assert "secret-token" not in repr(result)
    assert result.code == 400
    assert "bad request" in (result.message or "")


# -- reading answers (pure) ---------------------------------------------------------------


@pytest.mark.parametrize(
    ("api", "status", "ctype", "body", "kind"),
    [
        ("gmail", 200, "application/json", b'{"id": "abc"}', "sent"),
        ("gmail", 200, "application/json", b"{}", "unknown"),
        ("gmail", 200, "application/json", b'{"id": 5}', "unknown"),
        ("gmail", 200, "text/html", b"<html>portal</html>", "unknown"),
        ("gmail", 200, "", b"<!DOCTYPE html><html>", "unknown"),
        ("graph", 202, "", b"", "sent"),
        ("graph", 200, "application/json", b"{}", "unknown"),
        (
            "graph",
            401,
            "application/json",
            b'{"error":{"code":"InvalidAuthenticationToken",'
            b'"message":"Access token validation failure. Invalid audience."}}',
            "config",
        ),
        (
            "graph",
            401,
            "application/json",
            b'{"error":{"code":"InvalidAuthenticationToken",'
            b'"message":"Lifetime validation failed, the token is expired."}}',
            "refresh",
        ),
        ("gmail", 401, "text/html", b"<html>login</html>", "refresh"),
        (
            "graph",
            400,
            "application/json",
            b'{"error":{"code":"BadRequest","message":'
            b'"/me request is only valid with delegated authentication flow."}}',
            "config",
        ),
        ("graph", 403, "application/json", b'{"error":{"code":"ErrorAccessDenied"}}', "config"),
        ("graph", 403, "application/json", b'{"error":{"code":"Forbidden"}}', "failed"),
        (
            "gmail",
            403,
            "application/json",
            b'{"error":{"code":403,"errors":[{"reason":"accessNotConfigured"}]}}',
            "config",
        ),
        ("gmail", 429, "application/json", b"{}", "wait"),
        ("graph", 503, "text/html", b"<html>busy</html>", "wait"),
        ("graph", 504, "", b"", "unknown"),
        ("graph", 502, "text/html", b"<html>bad gateway</html>", "unknown"),
        ("gmail", 500, "application/json", b'{"error":{"code":500,"message":"x"}}', "failed"),
        ("gmail", 400, "application/json", b'{"error": "not an object"}', "failed"),
        ("gmail", 400, "application/json", b"\xff\xfe", "failed"),
    ],
)
def test_read_answer(api: str, status: int, ctype: str, body: bytes, kind: str) -> None:
    """Each answer's meaning (docs/api.md, "Results and retries")."""
    verdict = read_answer(api, status, ctype, body)  # type: ignore[arg-type]
    assert verdict.kind == kind
    if kind == "config":
        assert verdict.fix


def test_retry_after_forms() -> None:
    """delay-seconds and HTTP-date (RFC 9110 §10.2.3); garbage is ignored."""
    now = datetime(2026, 1, 1, tzinfo=timezone.utc)
    later = format_datetime(now + timedelta(seconds=30), usegmt=True)
    assert retry_after_seconds("7", now=now.timestamp()) == 7.0
    assert retry_after_seconds(later, now=now.timestamp()) == pytest.approx(30.0)
    assert retry_after_seconds("-3", now=0) is None
    assert retry_after_seconds("soon", now=0) is None
    assert retry_after_seconds("nan", now=0) is None
    assert retry_after_seconds(None, now=0) is None
    assert read_answer("gmail", 429, "", b"", retry_after="junk").wait == 1.0


def test_tls_is_verified_and_ssl_cert_file_adds_a_ca(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An untrusted certificate: APIError, nothing sent; SSL_CERT_FILE's CA is then trusted."""
    from oauthsmtp.devserver import make_certificates

    certs = make_certificates(tmp_path)
    server = ScriptedServer(tls=certs.server_context()).start()
    try:
        monkeypatch.delenv("SSL_CERT_FILE", raising=False)
        monkeypatch.delenv("REQUESTS_CA_BUNDLE", raising=False)
        with gmail(server) as session, pytest.raises(APIError, match="TLS handshake failed"):
            session.send(MESSAGE)
        assert server.seen == []
        monkeypatch.setenv("SSL_CERT_FILE", str(certs.ca_cert))
        server.reply_json({"id": "abc"})
        with gmail(server) as session:
            assert session.send(MESSAGE).ok
        server.reply_json({"id": "def"})
        with gmail(server, ssl_context=certs.client_context()) as session:
            assert session.send(MESSAGE).ok
    finally:
        server.stop()


def test_large_gmail_message_goes_to_the_upload_uri(scripted: ScriptedServer) -> None:
    """Over 5 MB: the media-upload URI, the message itself as message/rfc822 (no base64)."""
    scripted.reply_json({"id": "big1"})
    big = Email(
        sender="me@example.test",
        to=["bob@example.test"],
        subject="Big",
        text="See attached.",
        attachments=[("big.bin", b"\x01" * (6 * 1024 * 1024))],
    )
    with gmail(scripted) as session:
        assert session.send(big).ok
    [seen] = scripted.seen
    assert seen.path == "/upload/gmail/v1/users/me/messages/send?uploadType=media"
    assert seen.headers["Content-Type"] == "message/rfc822"
    assert b"Subject: Big\r\n" in seen.body
