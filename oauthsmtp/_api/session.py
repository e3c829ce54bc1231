"""The sending loop shared by both HTTP APIs: prepare, post, read, refresh, wait, report.

:class:`APISession` is built from an :class:`Endpoint` (what one API wants on the wire:
:mod:`oauthsmtp._api.gmail`, :mod:`oauthsmtp._api.graph`), an
:class:`~oauthsmtp._api.http.HTTPClient` and a token. It gives both APIs the contract of
:class:`~oauthsmtp.SMTPSession`: ``send`` and ``send_many`` take an
:class:`~oauthsmtp.Email` or an :class:`~email.message.EmailMessage` and return
:class:`~oauthsmtp.SendResult` values with the same meaning:

* ``"sent"``: the API accepted the message (``code`` is the HTTP status);
* ``"failed"``: this message was refused (``code`` and ``message`` hold the API's status and
  error) or never left (refused before sending: malformed, or over the API's size limit);
* ``"unknown"``: the request went out and no usable answer came back (connection lost,
  a gateway's 502/504, a 2xx that is not the API's answer); never sent again.

Retries (docs/api.md): a 401 refreshes the token once (``token.refresh()``, the same
single-flight path SMTP uses) and retries once; 429 and 503 wait ``Retry-After`` (at most
``max_retry_wait`` seconds each, at most ``retries`` times); a configuration refusal
raises :class:`~oauthsmtp.APIError` naming the fix and is never retried.

Sending limits (``limits=``, ``limits_store=``; docs/limits.md): each request holds a
connection slot while in flight, each message a message slot until its request's answer is
read (:mod:`oauthsmtp._api.limits`).
"""

from __future__ import annotations

import logging
import ssl
import time
from collections.abc import Callable, Iterable
from email.message import Message
from email.parser import BytesHeaderParser
from email.utils import getaddresses
from typing import TYPE_CHECKING, Protocol

from oauthsmtp._errors import APIError, ConfigurationError, OAuthSMTPError
from oauthsmtp._limits.budget import Hold
from oauthsmtp._message.prepare import Email, OutgoingMessage, prepare_message
from oauthsmtp._smtp.auth import TokenSource, is_token_source
from oauthsmtp._smtp.session import SendResult

from .answers import API, Verdict, read_answer
from .http import HTTPAnswer, HTTPClient, RequestLost
from .limits import RequestLimiter, Tracked, request_limiter

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["MAX_RETRY_WAIT", "APISession", "Endpoint", "Job", "fail_rest", "raw_with_bcc"]

logger = logging.getLogger("oauthsmtp.api")

MAX_RETRY_WAIT = 60.0
"""Default cap, in seconds, on one wait asked by ``Retry-After``."""


class Endpoint(Protocol):
    """What one API wants on the wire (implemented for Gmail and Graph)."""

    api: API
    name: str
    url: str
    limit: int
    limit_text: str

    def size(self, raw: bytes) -> int:
        """The size measured against :attr:`limit` (the request body the API counts)."""

    def request(self, raw: bytes) -> tuple[str, dict[str, str], bytes]:
        """The URL, headers (no Authorization) and body that send ``raw``."""


def raw_with_bcc(outgoing: OutgoingMessage) -> bytes:
    """The RFC 5322 message for an API that takes recipients from the headers.

    :func:`~oauthsmtp._message.prepare.prepare_message` removes Bcc (SMTP carries blind
    recipients in the envelope). The Gmail API and Graph read recipients from To, Cc and
    Bcc and remove Bcc themselves before delivery, so the envelope's blind recipients are
    put back as one ``Bcc`` header.
    """
    end = outgoing.data.find(b"\r\n\r\n")  # the header section only: no copy of the body
    head = (outgoing.data if end < 0 else outgoing.data[:end]) + b"\r\n\r\n"
    headers = BytesHeaderParser().parsebytes(head)
    visible = {
        address.casefold()
        for _, address in getaddresses(
            [str(v) for name in ("to", "cc") for v in headers.get_all(name, [])]
        )
    }
    blind = [r for r in outgoing.recipients if r.casefold() not in visible]
    if not blind:
        return outgoing.data
    return b"Bcc: " + ", ".join(blind).encode("utf-8") + b"\r\n" + outgoing.data


class Job:
    """One message on its way: its bytes (None when refused before sending) and result;
    ``track`` holds its place in the sending budget (None without limits)."""

    __slots__ = ("error", "raw", "result", "track")

    def __init__(
        self,
        raw: bytes | None,
        result: SendResult | None = None,
        error: ConfigurationError | None = None,
        track: Tracked | None = None,
    ) -> None:
        self.raw = raw
        self.result = result
        self.error = error
        self.track = track


class APISession:
    """Send through an HTTP API with the same contract as :class:`~oauthsmtp.SMTPSession`.

    Use :class:`~oauthsmtp.GmailAPISession` or :class:`~oauthsmtp.GraphSession`; they
    build this with their endpoint.
    """

    def __init__(
        self,
        endpoint: Endpoint,
        *,
        auth_token: TokenSource,
        timeout: float = 60,
        max_retry_wait: float = MAX_RETRY_WAIT,
        retries: int = 3,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] = time.sleep,
        limits: object = None,
        limits_store: object = None,
        mailbox: str = "me",
    ) -> None:
        if not is_token_source(auth_token):
            raise ConfigurationError(
                "auth_token must be an oauthsmtp.AuthToken (or have an access_token property "
                f"and a refresh() method), not {type(auth_token).__name__}"
            )
        for name, value in (("timeout", timeout), ("max_retry_wait", max_retry_wait)):
            if (
                isinstance(value, bool)
                or not isinstance(value, (int, float))
                or not 0 <= value <= 86400
                or (name == "timeout" and value == 0)
            ):
                raise ConfigurationError(f"{name} must be a number of seconds, not {value!r}")
        if isinstance(retries, bool) or not isinstance(retries, int) or not 0 <= retries <= 10:
            raise ConfigurationError(
                f"retries must be a whole number from 0 to 10, not {retries!r}"
            )
        self._endpoint = endpoint
        self._token = auth_token
        self.timeout = float(timeout)
        self.max_retry_wait = float(max_retry_wait)
        self.retries = retries
        if ssl_context is not None and not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigurationError(
                f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}"
            )
        self._ssl_context = ssl_context
        self._sleep = sleep
        self._client: HTTPClient | None = None
        self._limiter: RequestLimiter | None = request_limiter(
            limits, limits_store, mailbox, timeout=self.timeout, sleep=sleep
        )

    # -- lifecycle --------------------------------------------------------------------------
    def start(self) -> APISession:
        """Open the HTTP session (connections open on the first request); returns self."""
        if self._client is None:
            self._client = HTTPClient(
                timeout=self.timeout,
                ssl_context=self._ssl_context,
                https=self._endpoint.url.startswith("https:"),
            )
        return self

    def close(self) -> None:
        """Close the kept-alive connections (idempotent)."""
        if self._client is not None:
            self._client.close()
            self._client = None

    def __enter__(self) -> APISession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    @property
    def api_name(self) -> str:
        """The API's name for messages: ``"the Gmail API"`` or ``"Microsoft Graph"``."""
        return self._endpoint.name

    @property
    def requests_sent(self) -> int:
        """HTTP requests sent so far by this session (retries included)."""
        return 0 if self._client is None else self._client.requests_sent

    # -- sending ----------------------------------------------------------------------------
    def send(self, message: Email | Message) -> SendResult:
        """Send one message and return its :class:`~oauthsmtp.SendResult`.

        Raises:
            ConfigurationError: the message is malformed or over the API's size limit,
                before anything is sent.
            APIError: the API refuses the session (token refused after one refresh, token
                for another API, API not enabled, permission missing, mailbox without a
                licence), or cannot be reached (nothing was sent).
            LoginRequired, TokenError: the token could not be refreshed.
        """
        job = self._prepare(message)
        if job.error is not None:
            raise job.error
        return self._deliver(job)

    def send_many(self, messages: Iterable[Email | Message]) -> list[SendResult]:
        """Send messages one after the other over the kept-alive connection.

        One bad message does not stop the batch: a malformed or oversized one fails
        without reaching the API, a refused one carries the API's status and error.

        Returns:
            One :class:`~oauthsmtp.SendResult` per message, in order.

        Raises:
            ConfigurationError: ``messages`` is not an iterable of messages.
            APIError, LoginRequired, TokenError: only when no message of the batch got an
                answer yet; after that, the remaining messages are ``"failed"`` with the
                reason (nothing of theirs was sent).
        """
        if isinstance(messages, (Email, Message, str, bytes)) or not isinstance(messages, Iterable):
            raise ConfigurationError(
                "send_many() takes an iterable of messages (a list of oauthsmtp.Email or "
                f"EmailMessage), not {type(messages).__name__}; use send() for one message"
            )
        jobs = [self._prepare(m) for m in messages]
        try:
            self._deliver_all(jobs)
        finally:
            if self._limiter is not None:  # tickets of messages that were never sent
                self._limiter.answered(job.track for job in jobs if job.track is not None)
        return [job.result or SendResult("failed", None, "not sent") for job in jobs]

    def __repr__(self) -> str:
        return (
            f"{type(self).__name__}(api={self._endpoint.name!r}, open={self._client is not None})"
        )

    # -- internals --------------------------------------------------------------------------
    def _prepare(self, message: Email | Message) -> Job:
        endpoint = self._endpoint
        try:
            outgoing = prepare_message(message)
            raw = raw_with_bcc(outgoing)
        except Exception as exc:  # one message's problem, whatever raised it
            error = exc if isinstance(exc, ConfigurationError) else None
            if error is None:
                error = ConfigurationError(
                    f"the message cannot be sent: {type(exc).__name__}: {exc}"
                )
                error.__cause__ = exc
            return Job(None, SendResult("failed", None, f"refused before sending: {error}"), error)
        size = endpoint.size(raw)
        if size > endpoint.limit:
            error = ConfigurationError(
                f"the message is too large for {endpoint.name}: {size:,} bytes to send, and "
                f"{endpoint.limit_text}; make the attachments smaller, or send it over SMTP"
            )
            return Job(None, SendResult("failed", None, f"refused before sending: {error}"), error)
        return Job(raw, track=None if self._limiter is None else Tracked(outgoing))

    def _deliver_all(self, jobs: list[Job]) -> None:
        """Send every prepared job, one request each; apply send_many's raising rule."""
        answered = False
        for index, job in enumerate(jobs):
            if job.result is not None:
                continue
            try:
                job.result = self._deliver(job)
            except OAuthSMTPError as exc:
                if not answered:
                    raise
                fail_rest(jobs[index:], exc)
                return
            answered = True

    def _deliver(self, job: Job) -> SendResult:
        """Send one prepared job in its own request (taking its message slot first)."""
        if self._limiter is not None and job.track is not None:
            verdict = self._limiter.admit(job.track, False)
            if isinstance(verdict, SendResult):
                return verdict
        return self._post_one(job)

    def _post_one(self, job: Job) -> SendResult:
        """Send one prepared job, admitted already, in its own request."""
        assert job.raw is not None  # noqa: S101 - only prepared jobs are delivered
        url, headers, body = self._endpoint.request(job.raw)
        tracks = [] if job.track is None else [job.track]
        outcome = self._exchange(url, headers, body, tracks=tracks)
        if isinstance(outcome, SendResult):
            return outcome
        verdict = outcome
        said = f"{verdict.error}: {verdict.text}" if verdict.error else verdict.text
        if verdict.kind == "sent":
            return SendResult("sent", verdict.status, verdict.text)
        return SendResult("failed" if verdict.kind == "failed" else "unknown", verdict.status, said)

    def _exchange(
        self,
        url: str,
        headers: dict[str, str],
        body: bytes,
        *,
        answer_to: list[HTTPAnswer] | None = None,
        tracks: list[Tracked] | None = None,
    ) -> SendResult | Verdict:
        """Post one request under the retry rules; the final verdict, or a result already.

        With sending limits, ``tracks`` are the request's messages, admitted already for
        the first attempt: each attempt holds a connection slot until its answer is read,
        then hands the messages' tickets back; each retry admits them again (new message
        slots, not counted against the daily caps twice).

        Returns a :class:`Verdict` of kind ``"sent"``, ``"failed"`` or ``"unknown"`` (the
        answer itself is appended to ``answer_to`` when given), or a :class:`SendResult`
        when no answer came after the request was sent (``"unknown"``) or the waits ran out
        (``"failed"``).

        Raises:
            APIError: a configuration refusal, a 401 after a refresh, or the API could not
                be reached (nothing was sent).
        """
        client = self.start()._client
        assert client is not None  # noqa: S101 - start() sets it
        endpoint = self._endpoint
        refreshed = False
        waits = 0
        attempts = 0
        while True:
            gate = self._gate(tracks or [], again=attempts > 0)
            if isinstance(gate, SendResult):
                return gate
            attempts += 1
            bearer = {"Authorization": "Bearer " + self._token.access_token}
            try:
                answer = client.post(url, headers={**headers, **bearer}, data=body)
            except RequestLost as lost:
                if lost.body_sent:
                    return SendResult(
                        "unknown",
                        None,
                        f"{lost.why} after the request was sent to {endpoint.name}; the "
                        "message may or may not have been sent, so it was not sent again",
                    )
                raise APIError(
                    f"{endpoint.name} could not be reached: {lost.why}; nothing was sent",
                    retryable=True,
                ) from None
            finally:
                if gate is not None:
                    gate.release()
                if self._limiter is not None and tracks:
                    self._limiter.answered(tracks)
            verdict = read_answer(
                endpoint.api,
                answer.status,
                answer.content_type,
                answer.body,
                retry_after=answer.retry_after,
                now=time.time(),
            )
            said = f"{verdict.error}: {verdict.text}" if verdict.error else verdict.text
            if verdict.kind in ("sent", "failed", "unknown"):
                if answer_to is not None:
                    answer_to.append(answer)
                return verdict
            if verdict.kind == "config":
                raise APIError(
                    f"{endpoint.name} refused ({verdict.status} {said}); {verdict.fix}; "
                    "nothing will be sent until this is fixed",
                    status=verdict.status,
                    error=verdict.error,
                )
            if verdict.kind == "refresh":
                if refreshed:
                    raise APIError(
                        f"{endpoint.name} refused the token ({verdict.status} {said}) even "
                        "after a refresh; log in again, or check that the token is for this API",
                        status=verdict.status,
                        error=verdict.error,
                    )
                logger.debug("%s answered 401: refreshing the token once", endpoint.name)
                self._token.refresh()
                refreshed = True
                continue
            wait = verdict.wait or 0.0
            if waits >= self.retries or wait > self.max_retry_wait:
                why = (
                    f"asked to wait {wait:g} s, more than max_retry_wait={self.max_retry_wait:g}"
                    if wait > self.max_retry_wait
                    else f"still {verdict.status} after {waits} retries"
                )
                return SendResult(
                    "failed",
                    verdict.status,
                    f"{said} ({why}; the message was not sent: try again later)",
                )
            waits += 1
            logger.debug("%s answered %d: waiting %g s", endpoint.name, verdict.status, wait)
            self._sleep(wait)

    def _gate(self, tracks: list[Tracked], *, again: bool) -> Hold | SendResult | None:
        """Before one attempt under sending limits: admit ``tracks`` again for a retry,
        then take a connection slot (None without limits). A result: the attempt is not
        made (every message of the request gets it; their tickets are handed back)."""
        limiter = self._limiter
        if limiter is None:
            return None
        if again:
            for track in tracks:
                verdict = limiter.admit(track, False)
                if isinstance(verdict, SendResult):
                    limiter.answered(tracks)
                    return verdict
        hold = limiter.connection()
        if isinstance(hold, SendResult):
            limiter.answered(tracks)
        return hold


def fail_rest(jobs: list[Job], error: OAuthSMTPError) -> None:
    """Mark every job without a result as failed (not sent) because of ``error``."""
    for job in jobs:
        if job.result is None:
            job.result = SendResult("failed", None, f"not sent: {error}")
