"""The HTTP face of the development authorization server: what each request gets.

The routing table (paths and the methods each accepts) and ``Endpoints``, the
base class of :class:`~oauthsmtp.devserver.AuthServer` that holds everything a
request reaches: the endpoint URLs and the RFC 8414 metadata document, the
routing itself, ``GET /authorize`` (approve, deny, or the consent page and its
``POST /authorize`` answer; every redirect carries ``iss``), the hand-over of
``/token``, ``/revoke`` and ``/introspect`` to authlib under the store's lock,
the extra pages of :meth:`~oauthsmtp.devserver.AuthServer.add_page`, and the
record of what was requested. Its methods run in the HTTP threads.
"""

from __future__ import annotations

import hmac
import re
import secrets
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from email.message import Message
from typing import TYPE_CHECKING, Any
from urllib.parse import urlencode, urlsplit

from authlib.oauth2.rfc6749 import OAuth2Error

from oauthsmtp._errors import ConfigurationError

from ._authapps import ALGORITHMS, APP_AUTH_METHODS
from ._authcore import Core
from ._authgrants import HTTPRequest
from ._authhttp import (
    HTML_HEADERS,
    BadRequest,
    Response,
    Router,
    html_response,
    json_error,
    json_response,
    parse_params,
    text_response,
)
from ._authmodels import (
    AUTH_METHODS,
    CLIENT_CREDENTIALS,
    EXTRA_SCOPES,
    GRANT_TYPES,
    JWT_BEARER,
    SCOPE,
    valid_email,
)
from ._pages import render_consent, render_device, render_device_done, render_error

_CONSENT_LIFETIME = 600  # seconds a consent page stays answerable
_MAX_PENDING = 256  # consent pages kept at once (oldest dropped first)

_PATH_AUTHORIZE = "/authorize"
_PATH_TOKEN = "/token"  # noqa: S105 - a URL path, not a secret
_PATH_REVOKE = "/revoke"
_PATH_INTROSPECT = "/introspect"
_PATH_METADATA = "/.well-known/oauth-authorization-server"
_PATH_OPENID = "/.well-known/openid-configuration"
_PATH_JWKS = "/jwks"
_PATH_DEVICE_AUTHORIZATION = "/device_authorization"
_PATH_DEVICE = "/device"
_PATH_FAVICON = "/favicon.ico"
_ALLOWED_METHODS = {
    _PATH_AUTHORIZE: ("GET", "POST"),
    _PATH_TOKEN: ("POST",),
    _PATH_REVOKE: ("POST",),
    _PATH_INTROSPECT: ("POST",),
    _PATH_METADATA: ("GET",),
    _PATH_OPENID: ("GET",),
    _PATH_JWKS: ("GET",),
    _PATH_DEVICE_AUTHORIZATION: ("POST",),
    _PATH_DEVICE: ("GET", "POST"),
}
_PAGE_PREFIX = re.compile(r"^(/[A-Za-z0-9_\-]+)+$")
_PAGE_HOSTS = frozenset({"localhost", "127.0.0.1", "[::1]"})

PageResult = tuple[int, str, bytes] | tuple[int, str, bytes, Sequence[tuple[str, str]]]
"""What a page handler returns: ``(status, content_type, body)``, optionally plus extra headers."""

PageHandler = Callable[[str, str], PageResult]
"""A page handler added with :meth:`AuthServer.add_page`: ``handler(path, query) -> result``."""


def _origin(uri: str) -> str:
    parts = urlsplit(uri)
    return f"{parts.scheme}://{parts.netloc}"


def _host_name(host: str) -> str:
    """The name part of a Host header, lower case: ``[::1]:8080`` -> ``[::1]``."""
    host = host.lower()
    if host.startswith("["):
        return host.split("]", 1)[0] + "]"
    return host.split(":", 1)[0]


def _page_covers(prefix: str, path: str) -> bool:
    """True when ``path`` is ``prefix`` itself or lies below it (``/p/...`` or ``/p.ext``)."""
    return path == prefix or path.startswith((prefix + "/", prefix + "."))


@dataclass(eq=False)
class PendingConsent:
    """An authorization request waiting on the consent page."""

    request_id: str
    csrf_token: str = field(repr=False)
    params: tuple[tuple[str, str], ...] = field(repr=False)
    client_id: str
    scopes: tuple[str, ...]
    redirect_origin: str
    created_at: float


class Endpoints:
    """What HTTP clients of :class:`~oauthsmtp.devserver.AuthServer` see (its base class).

    The HTTP threads call ``_record`` and ``_route``. The attributes below are
    set by ``AuthServer.__init__``.
    """

    _core: Core
    _lock: threading.RLock
    _mode: str
    _user: str
    _pending: dict[str, PendingConsent]
    _pages: dict[str, PageHandler]
    _token_requests: int
    _requests_log: list[tuple[str, str]]
    _device_forms: dict[str, float]

    if TYPE_CHECKING:

        @property
        def issuer(self) -> str: ...

    # -- addresses

    @property
    def authorization_endpoint(self) -> str:
        """The authorization endpoint URL (``issuer + "/authorize"``)."""
        return self.issuer + _PATH_AUTHORIZE

    @property
    def token_endpoint(self) -> str:
        """The token endpoint URL (``issuer + "/token"``)."""
        return self.issuer + _PATH_TOKEN

    @property
    def revocation_endpoint(self) -> str:
        """The RFC 7009 revocation endpoint URL (``issuer + "/revoke"``)."""
        return self.issuer + _PATH_REVOKE

    @property
    def introspection_endpoint(self) -> str:
        """The RFC 7662 introspection endpoint URL (``issuer + "/introspect"``)."""
        return self.issuer + _PATH_INTROSPECT

    @property
    def metadata_url(self) -> str:
        """The RFC 8414 metadata URL (``issuer + "/.well-known/oauth-authorization-server"``)."""
        return self.issuer + _PATH_METADATA

    @property
    def device_authorization_endpoint(self) -> str:
        """The RFC 8628 device authorization endpoint (``issuer + "/device_authorization"``)."""
        return self.issuer + _PATH_DEVICE_AUTHORIZATION

    @property
    def verification_uri(self) -> str:
        """The page where a device login's code is entered (``issuer + "/device"``)."""
        return self.issuer + _PATH_DEVICE

    @property
    def openid_configuration_url(self) -> str:
        """The OpenID Connect Discovery URL (``issuer + "/.well-known/openid-configuration"``)."""
        return self.issuer + _PATH_OPENID

    def openid_configuration(self) -> dict[str, Any]:
        """The OpenID Connect Discovery 1.0 document: the RFC 8414 metadata plus the OIDC fields."""
        data = self.metadata()
        data.update(
            {
                "jwks_uri": self.issuer + _PATH_JWKS,
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["ES256"],
                "claims_supported": ["iss", "sub", "aud", "exp", "iat", "email"],
            }
        )
        return data

    def metadata(self) -> dict[str, Any]:
        """The RFC 8414 authorization server metadata served at the well-known URL."""
        methods = list(AUTH_METHODS)
        return {
            "issuer": self.issuer,
            "authorization_endpoint": self.authorization_endpoint,
            "token_endpoint": self.token_endpoint,
            "device_authorization_endpoint": self.device_authorization_endpoint,
            "revocation_endpoint": self.revocation_endpoint,
            "introspection_endpoint": self.introspection_endpoint,
            "scopes_supported": [SCOPE, *EXTRA_SCOPES],
            "response_types_supported": ["code"],
            "response_modes_supported": ["query"],
            # People's grants, then the app-only ones (RFC 6749 §4.4, RFC 7523 §2.1).
            "grant_types_supported": [*GRANT_TYPES, CLIENT_CREDENTIALS, JWT_BEARER],
            # private_key_jwt (RFC 7523 §2.2) is for registered apps at the token endpoint.
            "token_endpoint_auth_methods_supported": list(APP_AUTH_METHODS),
            "token_endpoint_auth_signing_alg_values_supported": list(ALGORITHMS),
            "revocation_endpoint_auth_methods_supported": methods,
            "introspection_endpoint_auth_methods_supported": methods,
            "code_challenge_methods_supported": ["S256"],
            "authorization_response_iss_parameter_supported": True,
        }

    # -- extra pages

    def add_page(self, path_prefix: str, handler: PageHandler) -> None:
        """Serve ``GET`` (and ``HEAD``) requests under ``path_prefix`` with ``handler``.

        A small extension hook for development tools that want a page next to the
        authorization endpoints (the development provider's received-messages
        page uses it). ``handler(path, query)`` is called, in an HTTP thread, for
        ``path_prefix`` itself and for every path below it (``path_prefix + "/..."``
        or ``path_prefix + ".ext"``), with the path and the raw query string, and
        returns ``(status, content_type, body)`` or ``(status, content_type, body,
        headers)``. HTML answers get the same Content-Security-Policy as the
        server's own pages (no scripts, nothing loaded from elsewhere).

        Pages are served only to requests whose ``Host`` header names loopback
        (``localhost``, ``127.0.0.1`` or ``[::1]``), which keeps DNS-rebinding web
        pages from reading them; other methods get ``405``. The authorization
        server's own paths cannot be replaced.

        Args:
            path_prefix: an absolute path such as ``/messages`` (letters, digits,
                ``-`` and ``_`` segments; no trailing slash).
            handler: the function that answers.

        Raises:
            ConfigurationError: for a malformed prefix, or one that would cover
                one of the server's own paths or an already added page.
        """
        if not isinstance(path_prefix, str) or not _PAGE_PREFIX.match(path_prefix):
            raise ConfigurationError(
                f"path_prefix must look like /name or /name/sub, not {path_prefix!r}"
            )
        own = (*_ALLOWED_METHODS, _PATH_FAVICON)
        with self._lock:
            taken = (*own, *self._pages)
            for path in taken:
                if _page_covers(path_prefix, path) or _page_covers(path, path_prefix):
                    raise ConfigurationError(f"path_prefix {path_prefix!r} overlaps {path!r}")
            self._pages[path_prefix] = handler

    def _page_for(self, path: str) -> PageHandler | None:
        with self._lock:
            for prefix, handler in self._pages.items():
                if _page_covers(prefix, path):
                    return handler
        return None

    def _serve_page(
        self, handler: PageHandler, method: str, path: str, query: str, headers: Message
    ) -> Response:
        if method not in ("GET", "HEAD"):
            return text_response(405, "Method not allowed.\n", [("Allow", "GET, HEAD")])
        host = str(headers.get("Host") or "").strip()
        if host and _host_name(host) not in _PAGE_HOSTS:
            return text_response(421, "This page is served to loopback host names only.\n")
        result = handler(path, query)
        status, content_type, body = result[0], result[1], result[2]
        extra = list(result[3]) if len(result) == 4 else []
        if content_type.split(";", 1)[0].strip().lower() == "text/html":
            base = [(n, v) for n, v in HTML_HEADERS if n != "Content-Type"]
        else:
            base = []
        return Response(status, [("Content-Type", content_type), *base, *extra], body)

    # -- what was requested

    @property
    def token_requests(self) -> int:
        """How many POST requests reached ``/token`` (valid or not)."""
        with self._lock:
            return self._token_requests

    @property
    def requests_log(self) -> list[tuple[str, str]]:
        """A copy of the ``(method, path)`` of every request received, oldest first.

        Paths carry no query string; bodies are never recorded.
        """
        with self._lock:
            return list(self._requests_log)

    # -- request handling

    def _record(self, method: str, path: str) -> None:
        with self._lock:
            self._requests_log.append((method, path))

    def _route(
        self,
        method: str,
        path: str,
        query: str,
        headers: Message,
        read_body: Callable[[], str],
    ) -> Response:
        if path == _PATH_FAVICON:
            return text_response(404, "Not found.\n")
        allowed = _ALLOWED_METHODS.get(path)
        if allowed is None:
            page = self._page_for(path)
            if page is not None:
                return self._serve_page(page, method, path, query, headers)
            return text_response(404, "Not found.\n")
        if method not in allowed:
            return text_response(405, "Method not allowed.\n", [("Allow", ", ".join(allowed))])
        if path == _PATH_METADATA:
            return json_response(200, self.metadata())
        if path == _PATH_OPENID:
            return json_response(200, self.openid_configuration())
        if path == _PATH_JWKS:
            return json_response(200, self._core.jwks())
        if path == _PATH_AUTHORIZE and method == "GET":
            return self._authorize(query, headers)
        if path == _PATH_DEVICE and method == "GET":
            return self._device_page(query)
        if path == _PATH_TOKEN:
            with self._lock:
                self._token_requests += 1
        try:
            form = parse_params(read_body())
        except BadRequest as exc:
            if path == _PATH_AUTHORIZE:
                return html_response(exc.status, render_error("invalid_request", exc.description))
            return json_error(exc.status, "invalid_request", exc.description)
        if path == _PATH_AUTHORIZE:
            return self._consent_answer(form)
        if path == _PATH_DEVICE:
            return self._device_answer(form)
        request = HTTPRequest("POST", self.issuer + path, headers, form)
        try:
            with self._lock:
                if path == _PATH_TOKEN:
                    response: Response = self._core.create_token_response(request)
                elif path == _PATH_REVOKE:
                    response = self._core.create_endpoint_response("revocation", request)
                elif path == _PATH_DEVICE_AUTHORIZATION:
                    response = self._core.create_endpoint_response("device_authorization", request)
                else:
                    response = self._core.create_endpoint_response("introspection", request)
        except ValueError:
            # authlib refuses to build an error whose text would quote bad input.
            return json_error(400, "invalid_request", "The request is malformed.")
        return response

    def _authorize(self, query: str, headers: Message) -> Response:
        """GET /authorize: validate, then approve, deny or show the consent page."""
        try:
            params = parse_params(query)
        except BadRequest as exc:
            return html_response(400, render_error("invalid_request", exc.description))
        mode = self._mode
        request = HTTPRequest("GET", self.issuer + _PATH_AUTHORIZE, headers, params)
        with self._lock:
            try:
                grant = self._core.get_consent_grant(request)
            except OAuth2Error as error:
                return self._authorization_error(error)
            except ValueError:
                return html_response(
                    400, render_error("invalid_request", "The authorization request is malformed.")
                )
            if mode == "consent":
                return self._consent_page(grant, params)
            return self._complete(grant, self._user if mode == "auto" else None)

    def _complete(self, grant: Any, user: str | None) -> Response:
        """Issue the code (user given) or access_denied (user None) as a redirect with ``iss``."""
        response: Response = self._core.create_authorization_response(
            request=grant.request, grant_user=user, grant=grant
        )
        if response.status != 302:
            return html_response(
                400, render_error("invalid_request", "The authorization request is invalid.")
            )
        return self._add_issuer(response)

    def _authorization_error(self, error: Any) -> Response:
        """Redirect an error to the client when its redirect URI is trusted, else show it."""
        if error.redirect_uri:
            status, body, headers = error()
            return self._add_issuer(self._core.handle_response(status, body, headers))
        description = str(error.get_error_description() or "The request was refused.")
        return html_response(400, render_error(str(error.error), description))

    def _add_issuer(self, response: Response) -> Response:
        """Add ``iss`` to the Location of an authorization response (RFC 9207)."""
        headers = []
        for name, value in response.headers:
            if name.lower() == "location":
                separator = "&" if "?" in value else "?"
                value = value + separator + urlencode({"iss": self.issuer})
            headers.append((name, value))
        return Response(response.status, headers, response.body)

    def _consent_page(self, grant: Any, params: list[tuple[str, str]]) -> Response:
        now = self._core.clock()
        pending = PendingConsent(
            request_id=secrets.token_urlsafe(16),
            csrf_token=secrets.token_urlsafe(32),
            params=tuple(params),
            client_id=grant.request.client.client_id,
            scopes=tuple(str(grant.request.scope).split()),
            redirect_origin=_origin(grant.redirect_uri),
            created_at=now,
        )
        with self._lock:
            for key in [
                k for k, p in self._pending.items() if p.created_at + _CONSENT_LIFETIME < now
            ]:
                del self._pending[key]
            while len(self._pending) >= _MAX_PENDING:
                del self._pending[next(iter(self._pending))]
            self._pending[pending.request_id] = pending
        return self._render_consent(pending, self._user, None, 200)

    @staticmethod
    def _render_consent(
        pending: PendingConsent, email: str, message: str | None, status: int
    ) -> Response:
        page = render_consent(
            client_id=pending.client_id,
            scopes=pending.scopes,
            redirect_origin=pending.redirect_origin,
            email=email,
            request_id=pending.request_id,
            csrf_token=pending.csrf_token,
            message=message,
        )
        return html_response(status, page)

    def _consent_answer(self, form: list[tuple[str, str]]) -> Response:
        """POST /authorize: the consent form's Approve or Deny."""
        fields = dict(form)
        request_id = fields.get("request_id", "")
        csrf_token = fields.get("csrf_token", "")
        with self._lock:
            pending = self._pending.get(request_id)
            if pending is not None and self._core.clock() > pending.created_at + _CONSENT_LIFETIME:
                del self._pending[request_id]
                pending = None
        if pending is None:
            return html_response(
                400,
                render_error(
                    "invalid_request",
                    "This consent form has expired or was already answered. "
                    "Start the login again from the application.",
                ),
            )
        if not hmac.compare_digest(pending.csrf_token.encode(), csrf_token.encode("utf-8")):
            return html_response(
                403, render_error("invalid_request", "The consent form's CSRF token is wrong.")
            )
        decision = fields.get("decision")
        user: str | None
        if decision == "approve":
            email = fields.get("email", "").strip()
            if not valid_email(email):
                return self._render_consent(pending, email, "Enter an email address.", 400)
            user = email
        elif decision == "deny":
            user = None
        else:
            return html_response(
                400, render_error("invalid_request", "The consent form has no decision.")
            )
        request = HTTPRequest("GET", self.issuer + _PATH_AUTHORIZE, {}, list(pending.params))
        with self._lock:
            if self._pending.pop(request_id, None) is None:
                return html_response(
                    400, render_error("invalid_request", "This consent form was already answered.")
                )
            try:
                grant = self._core.get_consent_grant(request)
            except OAuth2Error as error:
                return self._authorization_error(error)
            return self._complete(grant, user)

    # -- the device login's verification page (RFC 8628 §3.3)

    def _device_form(
        self, user_code: str, email: str, message: str | None, status: int
    ) -> Response:
        now = self._core.clock()
        token = secrets.token_urlsafe(32)
        with self._lock:
            for key in [k for k, t in self._device_forms.items() if t + _CONSENT_LIFETIME < now]:
                del self._device_forms[key]
            while len(self._device_forms) >= _MAX_PENDING:
                del self._device_forms[next(iter(self._device_forms))]
            self._device_forms[token] = now
        page = render_device(user_code=user_code, email=email, csrf_token=token, message=message)
        return html_response(status, page)

    def _device_page(self, query: str) -> Response:
        """GET /device[?user_code=...]: auto mode approves a known code at once, deny mode
        denies it, consent mode (or no code) shows the form."""
        try:
            user_code = dict(parse_params(query)).get("user_code", "").strip()
        except BadRequest as exc:
            return html_response(exc.status, render_error("invalid_request", exc.description))
        mode = self._mode
        if not user_code or mode == "consent":
            return self._device_form(user_code, self._user, None, 200)
        record = self._core.dev_device_by_user_code(user_code)
        if record is None:
            return self._device_form(user_code, self._user, "Unknown or expired code.", 400)
        user = self._user if mode == "auto" else None
        self._core.dev_decide_device(record, user)
        return html_response(200, render_device_done(approved=user is not None, user=user))

    def _device_answer(self, form: list[tuple[str, str]]) -> Response:
        """POST /device: the verification form's Approve or Deny."""
        fields = dict(form)
        token = fields.get("csrf_token", "")
        with self._lock:
            issued = self._device_forms.pop(token, None) if token else None
        if issued is None or self._core.clock() > issued + _CONSENT_LIFETIME:
            return html_response(
                403,
                render_error("invalid_request", "This form has expired; open the page again."),
            )
        user_code = fields.get("user_code", "").strip()
        email = fields.get("email", "").strip()
        record = self._core.dev_device_by_user_code(user_code)
        if record is None:
            return self._device_form(user_code, email, "Unknown or expired code.", 400)
        decision = fields.get("decision")
        if decision == "approve":
            if not valid_email(email):
                return self._device_form(user_code, email, "Enter an email address.", 400)
            self._core.dev_decide_device(record, email)
            return html_response(200, render_device_done(approved=True, user=email))
        if decision == "deny":
            self._core.dev_decide_device(record, None)
            return html_response(200, render_device_done(approved=False, user=None))
        return self._device_form(user_code, email, "Choose Approve or Deny.", 400)


class EndpointRouter(Router):
    """The :class:`~._authhttp.Router` the HTTP layer calls: each request goes to ``endpoints``."""

    def __init__(self, endpoints: Endpoints) -> None:
        self._endpoints = endpoints

    def record(self, method: str, path: str) -> None:
        self._endpoints._record(method, path)

    def route(
        self,
        method: str,
        path: str,
        query: str,
        headers: Message,
        read_body: Callable[[], str],
    ) -> Response:
        return self._endpoints._route(method, path, query, headers, read_body)
