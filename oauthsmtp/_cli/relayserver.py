"""The SMTP side of ``oauthsmtp relay``: an aiosmtpd handler that passes each message on.

Imported only by :mod:`oauthsmtp._cli.relay` (it needs the optional extra
``oauthsmtp[relay]``, which brings aiosmtpd). Each message a client sends is handed whole to
``submit`` (the account's :meth:`~oauthsmtp.SMTPSession.submit`: the same queue, pipelining
and connection pool as the library), and the client's end of data is answered only with
the upstream server's verdict (:func:`reply_for`): ``250`` once it accepted the message,
``4xx`` when it failed for now (the client keeps the message and tries again), ``5xx`` when
it was refused for good. Nothing is acknowledged and then lost.
"""

from __future__ import annotations

import asyncio
import hmac
import re
from collections.abc import Callable
from concurrent.futures import Future
from typing import Any

from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from oauthsmtp._errors import ConfigurationError, LoginRequired, OAuthSMTPError, SMTPError
from oauthsmtp._message.prepare import OutgoingMessage
from oauthsmtp._smtp.transact import SendResult

from .rawmessage import normalize_line_ends, outgoing

__all__ = ["MAX_RECIPIENTS", "Busy", "PasswordCheck", "RelayHandler", "reply_for"]

MAX_RECIPIENTS = 500
"""Recipients accepted per message (RFC 5321 §4.5.3.1.8 asks for at least 100)."""

Submit = Callable[[OutgoingMessage], "Future[SendResult]"]

_UNSAFE = re.compile(r"[^\x20-\x7e]+")


def _clean(text: str | None, limit: int = 300) -> str:
    """Server text made safe for one reply line: printable ASCII, bounded."""
    return _UNSAFE.sub(" ", text or "").strip()[:limit]


def reply_for(result: SendResult) -> str:
    """The reply to the client's end of data for the upstream ``result`` (pure).

    ``250`` only when the upstream server accepted the message for every recipient. A
    message it accepted for some recipients and refused for others gets ``451`` when the
    refusals were temporary and ``554`` when one was permanent, with the recipients named,
    so the sender learns who did not get it (the client cannot be told per recipient after
    DATA, RFC 5321 §3.3); the others may get it twice if the sender tries again, which RFC
    1047 prefers to a loss.
    """
    if result.status == "unknown":
        return (
            "451 4.4.2 the upstream connection was lost before the server confirmed the "
            "message; it may or may not have been delivered"
        )
    if result.status == "deferred":
        return _clean(f"451 4.3.0 held back by a sending limit: {result.message}")
    refused = ", ".join(f"{r} ({c})" for r, (c, _) in result.refused.items())
    if result.ok and not result.refused:
        return f"250 2.0.0 sent on: {result.code} {_clean(result.message, 200)}".rstrip()
    if result.ok:
        temporary = all(400 <= c < 500 for c, _ in result.refused.values())
        code = "451 4.5.0" if temporary else "554 5.5.0"
        return _clean(f"{code} sent to the others, but the upstream server refused: {refused}")
    if result.code is None:
        return f"554 5.6.0 not sent on: {_clean(result.message)}"
    upstream = f"{result.code} {_clean(result.message, 200)}"
    if 400 <= result.code < 500:
        return f"451 4.3.0 the upstream server refused it for now: {upstream}"
    if result.refused:
        return _clean(f"550 5.1.1 the upstream server refused every recipient: {refused}")
    if result.code == 552:
        return f"552 5.3.4 the upstream server refused it as too large: {upstream}"
    return f"554 5.3.0 the upstream server refused it: {upstream}"


def reply_for_error(error: BaseException, *, account: str) -> str:
    """The reply to the client when the upstream session itself failed (always ``4xx``:
    the message is fine; the relay's account or the network must be fixed first)."""
    if isinstance(error, LoginRequired):
        return (
            f"451 4.7.0 the relay's account {account} needs a login: "
            f"oauthsmtp login --account {account}"
        )
    if isinstance(error, SMTPError) and error.code is not None:
        return f"451 4.3.0 upstream: {error.code} {_clean(str(error), 200)}"
    if isinstance(error, OAuthSMTPError):
        return f"451 4.3.0 upstream: {_clean(str(error), 200)}"
    return f"451 4.3.0 relay error: {type(error).__name__}"


class Busy(asyncio.Protocol):
    """What a client gets when ``--max-clients`` are already being served: a ``421`` greeting
    (RFC 5321 §3.1: the service is not available; the client keeps its mail and tries again
    later) and a closed connection, so a flood of connections cannot exhaust the relay."""

    def __init__(self, limit: int) -> None:
        self._limit = limit

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.WriteTransport)  # noqa: S101 - a stream socket
        transport.write(
            f"421 4.3.2 oauthsmtp-relay is serving {self._limit} clients already; "
            "try again later\r\n".encode("ascii")
        )
        transport.close()


class PasswordCheck:
    """An aiosmtpd authenticator for one local user name and password (PLAIN/LOGIN)."""

    def __init__(self, user: str, password: str) -> None:
        self._user = user.encode("utf-8")
        self._password = password.encode("utf-8")

    def __call__(
        self, server: SMTP, session: Session, envelope: Envelope, mechanism: str, data: Any
    ) -> AuthResult:
        if not isinstance(data, LoginPassword):
            return AuthResult(success=False, handled=False)
        user_ok = hmac.compare_digest(bytes(data.login), self._user)
        password_ok = hmac.compare_digest(bytes(data.password), self._password)
        return AuthResult(success=user_ok and password_ok, handled=False)


class RelayHandler:
    """aiosmtpd handler: checks addresses, and answers DATA with the upstream verdict.

    Args:
        submit: queues a message on the upstream session; its future holds the result.
        account: the account the relay sends as (for messages).
    """

    def __init__(self, submit: Submit, *, account: str) -> None:
        self._submit = submit
        self._account = account
        self.in_flight = 0

    async def handle_RCPT(
        self,
        server: SMTP,
        session: Session,
        envelope: Envelope,
        address: str,
        rcpt_options: list[str],
    ) -> str:
        if len(envelope.rcpt_tos) >= MAX_RECIPIENTS:
            return f"452 4.5.3 too many recipients (at most {MAX_RECIPIENTS} per message)"
        try:
            outgoing(b"", sender="", recipients=[address])
        except ConfigurationError:
            return "553 5.1.3 not an address this relay can send to"
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        data = envelope.original_content or b""
        sender = envelope.mail_from or ""
        try:
            message = outgoing(
                normalize_line_ends(data),
                sender="" if sender == "<>" else sender,
                recipients=list(envelope.rcpt_tos),
            )
        except ConfigurationError as exc:
            return f"554 5.6.0 {_clean(str(exc))}"
        self.in_flight += 1
        try:
            result = await asyncio.wrap_future(self._submit(message))
        except ConfigurationError as exc:  # the message itself (checked before sending)
            return f"554 5.6.0 {_clean(str(exc))}"
        except Exception as exc:  # the upstream session failed: the client keeps the message
            return reply_for_error(exc, account=self._account)
        finally:
            self.in_flight -= 1
        return reply_for(result)
