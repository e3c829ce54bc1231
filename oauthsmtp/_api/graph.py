"""GraphSession: sending through Microsoft Graph's ``sendMail`` with a MIME body.

The request is ``POST {base_url}/me/sendMail`` (delegated token) or
``POST {base_url}/users/{user}/sendMail`` (app-only token, ``user=`` a user id or user
principal name) with ``Content-Type: text/plain`` and the RFC 5322 message, base64-encoded,
as the body. Graph answers ``202 Accepted`` with no body (and no message id). A request
must stay under 4 MB, which holds about 3 MB of message once base64-encoded.
"""

from __future__ import annotations

import base64
import json
import ssl
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Literal
from urllib.parse import quote

from oauthsmtp._errors import APIError, ConfigurationError, OAuthSMTPError
from oauthsmtp._limits.rules import SendLimits
from oauthsmtp._smtp.session import SendResult
from oauthsmtp._util.jsonobject import load_json_object

from .answers import API, read_answer
from .graphjson import BATCH_MAX_MESSAGE_BYTES, MAX_BATCH, graph_message
from .http import check_base_url
from .limits import check_mailbox
from .session import MAX_RETRY_WAIT, APISession, Job, fail_rest

if TYPE_CHECKING:
    from oauthsmtp._smtp.auth import TokenSource

__all__ = ["GRAPH_API_URL", "GRAPH_MAX_REQUEST_BYTES", "GraphEndpoint", "GraphSession"]

GRAPH_API_URL = "https://graph.microsoft.com/v1.0"
"""Microsoft Graph's base URL (national clouds have their own: pass ``base_url=``)."""

GRAPH_MAX_REQUEST_BYTES = 4 * 1024 * 1024
"""Graph's limit on one sendMail request: 4 MB, the base64-encoded message included."""


def check_user(user: object) -> str | None:
    """``user=`` for GraphSession: None, or a user id / principal name usable in a path.

    Raises:
        ConfigurationError: not a string, empty, or with characters a path cannot hold.
    """
    if user is None:
        return None
    if (
        not isinstance(user, str)
        or not user
        or len(user) > 320
        or any(c in user for c in "/\\?#%")
        or not user.isprintable()
        or user != user.strip()
    ):
        raise ConfigurationError(
            f"user must be a mailbox's user id or user principal name, not {user!r}"
        )
    return user


class GraphEndpoint:
    """``sendMail`` with a MIME body on the wire."""

    api: API = "graph"
    name = "Microsoft Graph"
    limit = GRAPH_MAX_REQUEST_BYTES
    limit_text = (
        "Microsoft Graph accepts sendMail requests of at most 4 MB (4,194,304 bytes), "
        "the base64-encoded message included (about 3 MB of message)"
    )

    def __init__(self, base_url: str, user: str | None) -> None:
        path = "/me" if user is None else "/users/" + quote(user, safe="@.-_")
        self.path = path + "/sendMail"
        self.url = base_url + self.path
        self.batch_url = base_url + "/$batch"

    def size(self, raw: bytes) -> int:
        return 4 * ((len(raw) + 2) // 3)

    def request(self, raw: bytes) -> tuple[str, dict[str, str], bytes]:
        return self.url, {"Content-Type": "text/plain"}, base64.b64encode(raw)


class GraphSession(APISession):
    """Send through Microsoft Graph with the contract of :class:`~oauthsmtp.SMTPSession`.

    For Microsoft 365 tenants where SMTP AUTH is off. A delegated token
    (``providers.microsoft(..., api=True)``: ``Mail.Send offline_access``) sends as the
    signed-in user through ``/me``; an app-only token (``providers.microsoft_app(...)``,
    application permission ``Mail.Send``) needs ``user=`` and sends through
    ``/users/{user}``.

    Args:
        auth_token: an :class:`~oauthsmtp.AuthToken`; a 401 refreshes it once and retries once.
        user: None for ``/me`` (delegated); else the mailbox's user id or user principal name.
        base_url: Graph's base URL (default :data:`GRAPH_API_URL`; national clouds differ);
            https, or http to a loopback address (the development provider's
            ``graph_api_url``).
        timeout, max_retry_wait, retries, ssl_context, sleep, limits, limits_store: as for
            :class:`~oauthsmtp.GmailAPISession` (``oauthsmtp.providers.GRAPH_LIMITS``:
            Graph's 4 requests at once per mailbox); a ``$batch`` request holds one
            connection slot and each of its messages a message slot.
        mailbox: the name the budget is kept under (default ``user``, or ``"me"``).
        batch: let :meth:`send_many` use JSON batching (``POST /$batch``, up to 20
            messages per request, chained with ``dependsOn`` so that they run one after
            the other as a mailbox allows). Only messages up to 256 KB that Graph's JSON
            form carries faithfully are batched (see :mod:`oauthsmtp._api.graphjson`); the
            others are sent alone as MIME. False: one MIME request per message.

    Raises:
        ConfigurationError: a malformed option.
    """

    def __init__(
        self,
        *,
        auth_token: TokenSource,
        user: str | None = None,
        base_url: str = GRAPH_API_URL,
        timeout: float = 60,
        max_retry_wait: float = MAX_RETRY_WAIT,
        retries: int = 3,
        ssl_context: ssl.SSLContext | None = None,
        sleep: Callable[[float], None] | None = None,
        limits: SendLimits | None = None,
        limits_store: object = None,
        mailbox: str | None = None,
        batch: bool = True,
    ) -> None:
        extra = {} if sleep is None else {"sleep": sleep}
        self.user = check_user(user)
        self.batch = bool(batch)
        self._graph = GraphEndpoint(check_base_url(base_url), self.user)
        super().__init__(
            self._graph,
            auth_token=auth_token,
            timeout=timeout,
            max_retry_wait=max_retry_wait,
            retries=retries,
            ssl_context=ssl_context,
            limits=limits,
            limits_store=limits_store,
            mailbox=check_mailbox(mailbox) or self.user or "me",
            **extra,
        )

    # -- JSON batching ------------------------------------------------------------------------
    def _deliver_all(self, jobs: list[Job]) -> None:
        """send_many's delivery: runs of JSON-convertible messages in batches, in order."""
        if not self.batch:
            super()._deliver_all(jobs)
            return
        run: list[tuple[Job, dict[str, Any]]] = []
        try:
            for job in jobs:
                if job.result is not None or job.raw is None:
                    continue
                small = len(job.raw) <= BATCH_MAX_MESSAGE_BYTES
                form = graph_message(job.raw) if small else None
                if form is None:
                    self._send_batched(run)
                    run = []
                    job.result = self._deliver(job)
                else:
                    run.append((job, form))
            self._send_batched(run)
        except OAuthSMTPError as exc:
            if not any(job.result is not None and job.raw is not None for job in jobs):
                raise
            fail_rest(jobs, exc)

    def _send_batched(self, items: list[tuple[Job, dict[str, Any]]]) -> None:
        """Send ``items`` in ``$batch`` requests; each job gets its result.

        Requests in one batch are chained (``dependsOn`` the previous one). A message that
        Graph did not run because an earlier one failed (``424 Failed Dependency``) goes
        into the next batch; one refused for its token or throttled (401, 429, 503) is sent
        again alone, where the usual refresh and ``Retry-After`` rules apply.
        """
        queue = list(items)
        while queue:
            chunk: list[tuple[Job, dict[str, Any]]] = []
            size = 0
            taken = 0
            for job, form in queue[:MAX_BATCH]:
                encoded = len(json.dumps(form))
                if chunk and size + encoded > self._graph.limit - 4096:
                    break
                if self._limiter is not None and job.track is not None:
                    # each message takes its own slot; one whose slot is far away while
                    # the batch holds others goes into the next batch (its slot kept)
                    verdict = self._limiter.admit_to_batch(job.track, bool(chunk))
                    if verdict is False:
                        break
                    if isinstance(verdict, SendResult):
                        job.result = verdict
                        taken += 1
                        continue
                chunk.append((job, form))
                size += encoded
                taken += 1
            queue = queue[taken:]
            if len(chunk) == 1:
                chunk[0][0].result = self._post_one(chunk[0][0])
                continue
            if chunk:
                queue = self._one_batch(chunk) + queue

    def _one_batch(
        self, chunk: list[tuple[Job, dict[str, Any]]]
    ) -> list[tuple[Job, dict[str, Any]]]:
        """One ``$batch`` request; returns the items to send again in the next batch."""
        requests = []
        for index, (_, form) in enumerate(chunk):
            request: dict[str, Any] = {
                "id": str(index + 1),
                "method": "POST",
                "url": self._graph.path,
                "headers": {"Content-Type": "application/json"},
                "body": form,
            }
            if index:
                request["dependsOn"] = [str(index)]
            requests.append(request)
        body = json.dumps({"requests": requests}).encode("utf-8")
        answers: list[Any] = []
        outcome = self._exchange(
            self._graph.batch_url,
            {"Content-Type": "application/json"},
            body,
            answer_to=answers,
            tracks=[job.track for job, _ in chunk if job.track is not None],
        )
        if isinstance(outcome, SendResult):
            for job, _ in chunk:
                job.result = outcome
            return []
        responses = _batch_responses(answers[0].body) if answers and outcome.status == 200 else None
        if responses is None:
            kind: Literal["failed", "unknown"] = "failed" if outcome.kind == "failed" else "unknown"
            said = f"{outcome.error}: {outcome.text}" if outcome.error else outcome.text
            for job, _ in chunk:
                job.result = SendResult(kind, outcome.status, f"batch: {said}")
            return []
        again: list[tuple[Job, dict[str, Any]]] = []
        alone: list[Job] = []
        refusal: APIError | None = None
        for index, (job, form) in enumerate(chunk):
            item = responses.get(str(index + 1))
            if item is None:
                job.result = SendResult(
                    "unknown",
                    None,
                    "the batch answer has no response for this message; it may or may not "
                    "have been sent, so it was not sent again",
                )
                continue
            status, item_body, retry_after = item
            if status == 424 and index:
                again.append((job, form))
                continue
            verdict = read_answer(
                "graph", status, "application/json", item_body, retry_after=retry_after
            )
            said = f"{verdict.error}: {verdict.text}" if verdict.error else verdict.text
            if verdict.kind == "sent":
                job.result = SendResult("sent", status, "accepted (202, in a batch)")
            elif verdict.kind == "failed":
                job.result = SendResult("failed", status, said)
            elif verdict.kind == "unknown":
                job.result = SendResult("unknown", status, said)
            elif verdict.kind == "config":
                refusal = refusal or APIError(
                    f"{self._graph.name} refused ({status} {said}); {verdict.fix}; "
                    "nothing will be sent until this is fixed",
                    status=status,
                    error=verdict.error,
                )
            else:
                alone.append(job)
        if refusal is not None:
            raise refusal
        for job in alone:
            job.result = self._deliver(job)
        return again


def _batch_responses(body: bytes) -> dict[str, tuple[int, bytes, str | None]] | None:
    """``{id: (status, body as JSON bytes, Retry-After)}`` from a ``$batch`` answer, or None."""
    data = load_json_object(body)
    items = data.get("responses") if data is not None else None
    if not isinstance(items, list):
        return None
    found: dict[str, tuple[int, bytes, str | None]] = {}
    for item in items:
        if not isinstance(item, dict):
            continue
        key, status = item.get("id"), item.get("status")
        if not isinstance(key, str) or isinstance(status, bool) or not isinstance(status, int):
            continue
        headers = item.get("headers")
        retry_after = None
        if isinstance(headers, dict):
            value = next((v for k, v in headers.items() if str(k).lower() == "retry-after"), None)
            retry_after = str(value) if value is not None else None
        payload = item.get("body")
        found.setdefault(
            key, (status, b"" if payload is None else json.dumps(payload).encode(), retry_after)
        )
    return found
