"""The development provider's emulation of the Gmail API and Microsoft Graph sending endpoints.

:class:`APIServer` is a small HTTP/1.1 server (keep-alive) on a loopback port that answers:

* ``POST /gmail/v1/users/{me|user}/messages/send`` with ``{"raw": <base64url message>}``:
  ``200 {"id", "threadId", "labelIds": ["SENT"]}`` (Gmail API ``users.messages.send``);
* ``POST /graph/v1.0/me/sendMail`` and ``/graph/v1.0/users/{user}/sendMail`` with a
  base64 MIME body (``Content-Type: text/plain``): ``202`` with no body (Graph ``sendMail``).

Each request's bearer token is checked with the authorization server's
``validate_access_token``, and its scope must be the API's own (the audience check):
:data:`GMAIL_API_SCOPE` for Gmail (else ``403`` insufficient scopes, as Google answers) and
:data:`GRAPH_API_SCOPE` for Graph (else ``401 InvalidAuthenticationToken`` "Invalid
audience", as Graph answers). An unknown, expired or revoked token gets ``401``. Accepted
messages go to the same store as SMTP's (``deliver`` is :meth:`SMTPServer.record`), so the
messages page and ``wait_for_messages`` show them.

Error switches for tests: :meth:`APIServer.fail_next` answers the next requests with a
401, a configuration 403, a 429/503 with ``Retry-After``, a 5xx, an HTML page, a 200
without an id, or drops the connection after reading the request.

For development and tests only: nothing here protects anything.
"""

from __future__ import annotations

import base64
import binascii
import json
import logging
import secrets
import socket
import threading
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from ._apibodies import (
    FAILURES,
    Forced,
    forced_answer,
    google_error,
    graph_error,
    mime_from_graph_json,
    route,
    split_envelope,
    to_json,
)
from ._authmodels import GMAIL_API_SCOPE, GRAPH_API_SCOPE, TokenInfo

__all__ = ["FAILURES", "GMAIL_API_SCOPE", "GRAPH_API_SCOPE", "APIRequest", "APIServer"]

_LOG = logging.getLogger("oauthsmtp.devserver")

MAX_REQUEST_BYTES = 48 * 1024 * 1024
"""Requests larger than this are refused unread (413)."""

GRAPH_MAX_REQUEST = 4 * 1024 * 1024
GMAIL_MAX_MESSAGE = 36_700_160

Deliver = Callable[[str, "tuple[str, ...]", bytes, "str | None"], object]
Validate = Callable[[str], "TokenInfo | None"]


@dataclass(frozen=True)
class APIRequest:
    """One request the emulation answered (no token kept).

    Attributes:
        api: ``"gmail"`` or ``"graph"`` (``""`` for an unknown path).
        path: the request path.
        status: the status answered (0 when the connection was dropped).
        user: the identity of the accepted token, or None.
    """

    api: str
    path: str
    status: int
    user: str | None


class APIServer:
    """The Gmail API and Microsoft Graph sending endpoints, emulated on loopback.

    Args:
        validate: returns what is known about a live access token, or None
            (:meth:`AuthServer.validate_access_token`).
        deliver: keeps an accepted message: ``deliver(mail_from, rcpt_tos, data, user)``
            (:meth:`SMTPServer.record`).
        host: the loopback address to listen on.
        port: the port; 0 picks a free one.
    """

    def __init__(
        self, validate: Validate, deliver: Deliver, *, host: str = "127.0.0.1", port: int = 0
    ) -> None:
        self._validate = validate
        self._deliver = deliver
        self._host = host
        self._port = port
        self._lock = threading.Lock()
        self._forced: deque[Forced] = deque()
        self.reject_recipients: set[str] = set()
        """Recipients (lower case) refused with ``400`` (Gmail ``invalidArgument``, Graph
        ``ErrorInvalidRecipients``), like the SMTP server's ``reject_recipients``."""
        self._requests: list[APIRequest] = []
        self._httpd: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle
    def start(self) -> APIServer:
        """Bind and serve in a background thread; returns self."""
        handler = _handler_class(self)
        httpd = ThreadingHTTPServer((self._host, self._port), handler)
        httpd.daemon_threads = True
        self._httpd = httpd
        self._port = httpd.server_address[1]
        self._thread = threading.Thread(
            target=httpd.serve_forever,
            kwargs={"poll_interval": 0.05},
            name="oauthsmtp-dev-api",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving (idempotent)."""
        httpd, self._httpd = self._httpd, None
        if httpd is not None:
            httpd.shutdown()
            httpd.server_close()
        if self._thread is not None:
            self._thread.join(10)
            self._thread = None

    @property
    def port(self) -> int:
        """The port listened on."""
        return self._port

    @property
    def gmail_url(self) -> str:
        """The Gmail API base URL to pass as ``GmailAPISession(base_url=...)``."""
        return f"http://{self._host}:{self._port}/gmail/v1"

    @property
    def graph_url(self) -> str:
        """The Graph base URL to pass as ``GraphSession(base_url=...)``."""
        return f"http://{self._host}:{self._port}/graph/v1.0"

    # -- switches and records
    def fail_next(
        self, kind: str, *, count: int = 1, retry_after: str | None = None, after: int = 0
    ) -> None:
        """Answer the next ``count`` requests with a forced failure.

        Args:
            kind: one of :data:`FAILURES`: ``"401"`` (token refused), ``"403"`` (permission
                missing), ``"403-disabled"`` (Gmail API not enabled), ``"403-license"``
                (Graph mailbox without a licence), ``"429"``, ``"500"``, ``"503"``,
                ``"html"`` (200 with an HTML page), ``"no-id"`` (200 without a message id),
                ``"drop"`` (read the request, then close the connection unanswered).
            count: how many requests in a row.
            retry_after: the ``Retry-After`` header of a 429/503.
            after: answer this many requests normally first.

        Raises:
            ValueError: an unknown kind.
        """
        if kind not in FAILURES:
            raise ValueError(f"kind must be one of {', '.join(FAILURES)}, not {kind!r}")
        with self._lock:
            self._forced.extend(Forced("pass", None) for _ in range(after))
            self._forced.extend(Forced(kind, retry_after) for _ in range(count))

    @property
    def requests(self) -> list[APIRequest]:
        """The requests answered so far, oldest first (a copy)."""
        with self._lock:
            return list(self._requests)

    def clear(self) -> None:
        """Forget recorded requests, pending forced failures and refused recipients."""
        with self._lock:
            self._requests.clear()
            self._forced.clear()
            self.reject_recipients.clear()

    # -- handling (HTTP threads)
    def _take_forced(self) -> Forced | None:
        with self._lock:
            return self._forced.popleft() if self._forced else None

    def _record(self, api: str, path: str, status: int, user: str | None) -> None:
        with self._lock:
            self._requests.append(APIRequest(api, path, status, user))

    def handle(
        self, path: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes] | None:
        """Answer one POST: (status, headers, body), or None to drop the connection."""
        api, user_part = route(path)
        if not api:
            self._record("", path, 404, None)
            return 404, {"Content-Type": "application/json"}, b'{"error":{"code":404}}'
        forced = self._take_forced()
        if forced is not None and forced.kind != "pass":
            kind = {"graph-batch": "graph", "gmail-upload": "gmail"}.get(api, api)
            answer = forced_answer(kind, forced)
            self._record(api, path, 0 if answer is None else answer[0], None)
            return answer
        if api == "graph-batch":
            return self._batch(path, headers, body)
        status, extra, data, user = self._send(api, user_part, headers, body)
        self._record(api, path, status, user)
        return status, extra, data

    def _batch(self, path: str, headers: Any, body: bytes) -> tuple[int, dict[str, str], bytes]:
        """JSON batching: up to 20 requests, run in order; ``dependsOn`` a failed one: 424."""
        json_type = {"Content-Type": "application/json; charset=UTF-8"}
        try:
            requests = json.loads(body.decode("utf-8"))["requests"]
            if not isinstance(requests, list) or not 1 <= len(requests) <= 20:
                raise ValueError
        except (UnicodeDecodeError, ValueError, KeyError, TypeError):
            self._record("graph-batch", path, 400, None)
            data = graph_error("BadRequest", "Invalid batch payload format (1 to 20 requests).")
            return 400, json_type, to_json(data)
        statuses: dict[str, int] = {}
        responses = []
        for request in requests:
            request = request if isinstance(request, dict) else {}
            key = str(request.get("id"))
            depends = request.get("dependsOn") or []
            item_body: Any
            answer: dict[str, str]
            if any(not 200 <= statuses.get(str(d), 0) < 300 for d in depends):
                status, answer = 424, {}
                item_body = graph_error("FailedDependency", "A request it depends on failed.")
            else:
                api, user_part = route("/graph/v1.0" + str(request.get("url", "")))
                inner = {str(k): str(v) for k, v in (request.get("headers") or {}).items()}
                inner["Authorization"] = headers.get("Authorization", "")
                payload = json.dumps(request.get("body")).encode()
                if api != "graph" or str(request.get("method", "")).upper() != "POST":
                    status, answer = 400, {}
                    item_body = graph_error("BadRequest", "Unsupported request in this batch.")
                else:
                    status, answer, raw, user = self._send(api, user_part, inner, payload)
                    item_body = json.loads(raw) if raw else None
                    self._record("graph", f"$batch {request.get('url')}", status, user)
            statuses[key] = status
            item: dict[str, Any] = {"id": key, "status": status, "headers": answer}
            if item_body is not None:
                item["body"] = item_body
            responses.append(item)
        self._record("graph-batch", path, 200, None)
        return 200, json_type, to_json({"responses": responses})

    def _send(
        self, api: str, user_part: str, headers: Any, body: bytes
    ) -> tuple[int, dict[str, str], bytes, str | None]:
        json_type = {"Content-Type": "application/json; charset=UTF-8"}
        authorization = headers.get("Authorization", "")
        token = authorization[7:] if authorization[:7].lower() == "bearer " else ""
        info = self._validate(token) if token else None
        if info is None:
            if api == "gmail":
                data = google_error(
                    401,
                    "Request had invalid authentication credentials.",
                    "UNAUTHENTICATED",
                    "ACCESS_TOKEN_EXPIRED" if token else "CREDENTIALS_MISSING",
                )
            else:
                data = graph_error(
                    "InvalidAuthenticationToken",
                    "Lifetime validation failed, the token is expired."
                    if token
                    else "Access token is empty.",
                )
            return (
                401,
                {**json_type, "WWW-Authenticate": 'Bearer error="invalid_token"'},
                to_json(data),
                None,
            )
        if api in ("gmail", "gmail-upload"):
            upload = api == "gmail-upload"
            return self._gmail(info, user_part, headers, body, json_type, upload=upload)
        return self._graph(info, user_part, headers, body, json_type)

    def _gmail(
        self,
        info: TokenInfo,
        user_part: str,
        headers: Any,
        body: bytes,
        json_type: dict[str, str],
        *,
        upload: bool = False,
    ) -> tuple[int, dict[str, str], bytes, str | None]:
        if GMAIL_API_SCOPE not in info.scope:
            data = google_error(
                403,
                "Request had insufficient authentication scopes.",
                "PERMISSION_DENIED",
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            )
            return 403, json_type, to_json(data), None
        if user_part not in ("me", info.user):
            data = google_error(
                403, "Delegation denied for " + info.user, "PERMISSION_DENIED", "forbidden"
            )
            return 403, json_type, to_json(data), None
        try:
            if upload:  # the media upload: the message itself, as message/rfc822
                if not headers.get("Content-Type", "").lower().startswith("message/rfc822"):
                    raise ValueError
                message = body
            else:
                payload = json.loads(body.decode("utf-8"))
                raw = payload["raw"]
                message = base64.urlsafe_b64decode(raw + "=" * (-len(raw) % 4))
        except (UnicodeDecodeError, ValueError, KeyError, TypeError, binascii.Error):
            data = google_error(
                400, "Invalid value for ByteString", "INVALID_ARGUMENT", "invalidArgument"
            )
            return 400, json_type, to_json(data), None
        if len(message) > GMAIL_MAX_MESSAGE:
            data = google_error(
                413, "Request payload size exceeds the limit", "INVALID_ARGUMENT", "badRequest"
            )
            return 413, json_type, to_json(data), None
        problem = self._accept(message, info.user)
        if problem:
            data = google_error(400, problem, "INVALID_ARGUMENT", "invalidArgument")
            return 400, json_type, to_json(data), None
        message_id = secrets.token_hex(8)
        answer = {"id": message_id, "threadId": message_id, "labelIds": ["SENT"]}
        return 200, json_type, to_json(answer), info.user

    def _graph(
        self, info: TokenInfo, user_part: str, headers: Any, body: bytes, json_type: dict[str, str]
    ) -> tuple[int, dict[str, str], bytes, str | None]:
        if GRAPH_API_SCOPE not in info.scope:
            data = graph_error(
                "InvalidAuthenticationToken", "Access token validation failure. Invalid audience."
            )
            return 401, json_type, to_json(data), None
        app_only = not info.user and bool(info.mailboxes)
        if app_only and user_part == "me":
            data = graph_error(
                "BadRequest", "/me request is only valid with delegated authentication flow."
            )
            return 400, json_type, to_json(data), None
        allowed = {m.casefold() for m in info.mailboxes} if app_only else {info.user.casefold()}
        if user_part != "me" and user_part.casefold() not in allowed:
            data = graph_error(
                "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
            return 403, json_type, to_json(data), None
        if len(body) > GRAPH_MAX_REQUEST:
            data = graph_error("RequestEntityTooLarge", "The request is larger than 4 MB.")
            return 413, json_type, to_json(data), None
        content_type = headers.get("Content-Type", "").lower()
        if content_type.startswith("application/json"):
            try:
                converted = mime_from_graph_json(json.loads(body.decode("utf-8")))
            except (UnicodeDecodeError, ValueError):
                converted = "The body is not JSON."
            if isinstance(converted, str):
                data = graph_error("ErrorInvalidRequest", converted)
                return 400, json_type, to_json(data), None
            body = base64.b64encode(converted)
        elif not content_type.startswith("text/plain"):
            data = graph_error("ErrorInvalidRequest", "Send MIME as text/plain, or JSON.")
            return 415, json_type, to_json(data), None
        try:
            message = base64.b64decode(body, validate=True)
        except (binascii.Error, ValueError):
            data = graph_error(
                "ErrorMimeContentInvalidBase64String", "Invalid base64 string for MIME content."
            )
            return 400, json_type, to_json(data), None
        mailbox = info.user or user_part  # app-only: the mailbox named in the path
        problem = self._accept(message, mailbox)
        if problem:
            data = graph_error("ErrorInvalidRecipients", problem)
            return 400, json_type, to_json(data), None
        return 202, {}, b"", mailbox

    def _accept(self, raw: bytes, user: str) -> str | None:
        """Take the envelope from the headers, drop Bcc, keep the message; or say why not."""
        envelope = split_envelope(raw)
        if isinstance(envelope, str):
            return envelope
        sender, recipients, data = envelope
        refused = [r for r in recipients if r.casefold() in self.reject_recipients]
        if refused:
            return f"The recipient {refused[0]} is not valid."
        self._deliver(sender or user, recipients, data, user)
        return None


def _handler_class(server: APIServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"  # keep-alive, as the real APIs
        timeout = 30

        def setup(self) -> None:
            super().setup()
            # As real API front ends do: a response's header and body writes never wait
            # for a delayed ACK (Nagle), which would add tens of milliseconds per answer.
            self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

        def do_POST(self) -> None:
            length_text = self.headers.get("Content-Length")
            if length_text is None or not length_text.isdigit():
                self._answer(411, {"Content-Type": "text/plain"}, b"Content-Length required")
                return
            length = int(length_text)
            if length > MAX_REQUEST_BYTES:
                self.close_connection = True
                self._answer(413, {"Content-Type": "text/plain"}, b"too large")
                return
            body = self.rfile.read(length)
            answer = server.handle(self.path, self.headers, body)
            if answer is None:
                self.close_connection = True
                return
            self._answer(*answer)

        def do_GET(self) -> None:
            self._answer(405, {"Content-Type": "text/plain", "Allow": "POST"}, b"POST only")

        def _answer(self, status: int, headers: dict[str, str], body: bytes) -> None:
            self.send_response(status)
            for name, value in headers.items():
                self.send_header(name, value)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            _LOG.debug("api %s", args[1] if len(args) > 1 else "")

    return Handler
