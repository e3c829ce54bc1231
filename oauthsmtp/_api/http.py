"""The HTTP client of the sending APIs: one keep-alive ``requests`` Session, bounded.

:class:`HTTPClient` posts one request and returns an :class:`HTTPAnswer`, or raises
:class:`RequestLost` saying whether the request's body may have reached the server. Rules:

* **Keep-alive**: one :class:`requests.Session` per API session, so a batch reuses its
  connection (and its TLS session).
* **Deadlines**: each request gets a total deadline. The process's one watchdog thread
  (:mod:`oauthsmtp._util.watchdog`, no thread per request) shuts the request's connection
  down when it passes, so a server that drips its headers or body one byte at a
  time cannot stretch the request (each socket wait is also bounded by the timeout).
* **Bounded bodies**: at most :data:`MAX_ANSWER_BYTES` of an answer are read; no
  compression is asked for, so nothing grows in memory beyond that.
* **TLS verified** with the same context as SMTP and the token endpoint (the system's
  trust store plus ``SSL_CERT_FILE``), or the caller's ``ssl_context``; plain ``http`` only
  to a loopback host (the development provider).
* **No redirects** are followed: a 3xx is an answer like any other.
* **No secrets in output**: the ``Authorization`` header is never logged or put in an
  error; requests' own errors are replaced by words that hold no header.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import ssl
import threading
import time
from dataclasses import dataclass, field
from typing import Any

import requests
from requests.adapters import HTTPAdapter
from urllib3.connection import HTTPConnection, HTTPSConnection
from urllib3.connectionpool import HTTPConnectionPool, HTTPSConnectionPool

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._oauth.params import is_loopback_host
from oauthsmtp._util.tls import tls_context
from oauthsmtp._util.watchdog import shared_watchdog

__all__ = ["MAX_ANSWER_BYTES", "HTTPAnswer", "HTTPClient", "RequestLost", "check_base_url"]

logger = logging.getLogger("oauthsmtp.api")

MAX_ANSWER_BYTES = 1024 * 1024
"""An answer's body is read up to this size; the rest is dropped with the connection."""


@dataclass(frozen=True)
class HTTPAnswer:
    """One answer.

    Attributes:
        status: the HTTP status code.
        content_type: the ``Content-Type`` header, "" when absent.
        body: at most :data:`MAX_ANSWER_BYTES` of the body.
        retry_after: the ``Retry-After`` header, or None.
    """

    status: int
    content_type: str
    body: bytes = field(repr=False)
    retry_after: str | None = None


class RequestLost(Exception):
    """Internal: no answer arrived.

    Attributes:
        why: what happened, without any header or token.
        body_sent: False only when the request certainly never reached the server
            (the connection or the TLS handshake failed); True when it may have.
    """

    def __init__(self, why: str, *, body_sent: bool) -> None:
        super().__init__(why)
        self.why = why
        self.body_sent = body_sent


def check_base_url(url: object, name: str = "base_url") -> str:
    """Return ``url`` without a trailing slash; https, or http to a loopback host only.

    Raises:
        ConfigurationError: not a string, not http(s), no host, or plain http elsewhere.
    """
    from urllib.parse import urlsplit

    if not isinstance(url, str) or not url or any(c in url for c in "\r\n\0 \t"):
        raise ConfigurationError(f"{name} must be an https URL, not {url!r}")
    parts = urlsplit(url)
    if parts.scheme not in ("https", "http") or not parts.hostname:
        raise ConfigurationError(f"{name} must be an https URL, not {url!r}")
    if parts.query or parts.fragment or parts.username or parts.password:
        raise ConfigurationError(f"{name} must have no query, fragment or user: {url!r}")
    if parts.scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"{name} {url!r} is plain http: the token would cross the network unencrypted; "
            "use https (plain http is allowed to a loopback address only)"
        )
    return url.rstrip("/")


class _Watch:
    """The connection a request is using, and the deadline that may shut it down."""

    def __init__(self) -> None:
        self.connection: HTTPConnection | None = None
        self.expired = False
        self._lock = threading.Lock()

    def attach(self, connection: HTTPConnection) -> None:
        with self._lock:
            self.connection = connection
            expired = self.expired
        if expired:
            self._shut(connection)

    def expire(self) -> None:
        """The deadline passed: shut the connection down (the waiting read fails at once)."""
        with self._lock:
            self.expired = True
            connection = self.connection
        if connection is not None:
            self._shut(connection)

    @staticmethod
    def _shut(connection: HTTPConnection) -> None:
        sock = getattr(connection, "sock", None)
        if sock is not None:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)


_WATCHED = threading.local()


def _attach(connection: HTTPConnection) -> None:
    watch = getattr(_WATCHED, "watch", None)
    if isinstance(watch, _Watch):
        watch.attach(connection)


class _WatchedHTTPConnection(HTTPConnection):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        _attach(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPSConnection(HTTPSConnection):
    def request(self, *args: Any, **kwargs: Any) -> Any:
        _attach(self)
        return super().request(*args, **kwargs)


class _WatchedHTTPPool(HTTPConnectionPool):
    ConnectionCls = _WatchedHTTPConnection


class _WatchedHTTPSPool(HTTPSConnectionPool):
    ConnectionCls = _WatchedHTTPSConnection


_POOLS = {"http": _WatchedHTTPPool, "https": _WatchedHTTPSPool}


class _TLSAdapter(HTTPAdapter):
    """An adapter whose connections use our verified TLS context."""

    def __init__(self, context: ssl.SSLContext | None) -> None:
        self._context = context
        super().__init__(pool_connections=1, pool_maxsize=4, max_retries=0)

    def init_poolmanager(self, *args: Any, **kwargs: Any) -> None:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        super().init_poolmanager(*args, **kwargs)
        self.poolmanager.pool_classes_by_scheme = dict(_POOLS)

    def proxy_manager_for(self, *args: Any, **kwargs: Any) -> Any:
        if self._context is not None:
            kwargs["ssl_context"] = self._context
        manager = super().proxy_manager_for(*args, **kwargs)
        manager.pool_classes_by_scheme = dict(_POOLS)
        return manager


class HTTPClient:
    """Posts requests over one keep-alive session.

    Args:
        timeout: the total deadline of one request, in seconds.
        ssl_context: the TLS context for https; None makes the standard verified one
            (system trust store plus ``SSL_CERT_FILE``). Only used for https URLs.
        https: whether https will be used (the context is made only then).

    Raises:
        ConfigurationError: ``SSL_CERT_FILE`` names a file that cannot be read.
    """

    def __init__(
        self, *, timeout: float, ssl_context: ssl.SSLContext | None = None, https: bool = True
    ) -> None:
        self.timeout = timeout
        if https and ssl_context is None:
            ssl_context = tls_context()
        self._session = requests.Session()
        self._session.trust_env = True  # https_proxy / no_proxy from the environment
        adapter = _TLSAdapter(ssl_context)
        self._session.mount("https://", adapter)
        self._session.mount("http://", adapter)
        self.requests_sent = 0

    def close(self) -> None:
        """Close the pooled connections."""
        self._session.close()

    def post(self, url: str, *, headers: dict[str, str], data: bytes) -> HTTPAnswer:
        """POST ``data`` to ``url`` and read the answer, all within the deadline.

        Raises:
            RequestLost: no complete answer arrived (``body_sent`` says whether the request
                may have reached the server).
        """
        deadline = time.monotonic() + self.timeout
        sent_headers = {"Accept": "application/json", "Accept-Encoding": "identity", **headers}
        # Plain http goes to loopback only: never through a proxy.
        proxies = {"http": "", "https": ""} if url.startswith("http://") else None
        self.requests_sent += 1
        watch = _Watch()
        alarm = shared_watchdog().call_at(deadline, watch.expire)
        _WATCHED.watch = watch
        try:
            response, body = self._exchange(url, sent_headers, data, proxies, deadline)
        except RequestLost as lost:
            if watch.expired and lost.body_sent:
                raise RequestLost(
                    f"the answer did not arrive within {self.timeout:g} s", body_sent=True
                ) from None
            raise
        finally:
            alarm.cancel()
            _WATCHED.watch = None
        if watch.expired:  # an end of file forced by the watchdog is not the whole answer
            raise RequestLost(
                f"the answer did not arrive within {self.timeout:g} s", body_sent=True
            )
        logger.debug("POST %s -> %s (%d bytes)", _no_query(url), response.status_code, len(body))
        return HTTPAnswer(
            status=response.status_code,
            content_type=response.headers.get("Content-Type", ""),
            body=body,
            retry_after=response.headers.get("Retry-After"),
        )

    def _exchange(
        self,
        url: str,
        headers: dict[str, str],
        data: bytes,
        proxies: dict[str, str] | None,
        deadline: float,
    ) -> tuple[requests.Response, bytes]:
        try:
            response = self._session.post(
                url,
                data=data,
                headers=headers,
                timeout=(self.timeout, self.timeout),
                allow_redirects=False,
                stream=True,
                proxies=proxies,
            )
        except (requests.exceptions.ConnectTimeout, requests.exceptions.SSLError) as exc:
            raise RequestLost(_why(exc), body_sent=False) from None
        except requests.exceptions.ConnectionError as exc:
            raise RequestLost(_why(exc), body_sent=not _never_connected(exc)) from None
        except requests.exceptions.RequestException as exc:
            raise RequestLost(_why(exc), body_sent=True) from None
        try:
            body = bytearray()
            for chunk in response.iter_content(65536):
                body += chunk
                if len(body) >= MAX_ANSWER_BYTES:
                    del body[MAX_ANSWER_BYTES:]
                    response.close()  # the rest is not read: drop this connection
                    break
                if time.monotonic() > deadline:
                    response.close()
                    raise RequestLost(
                        f"the answer did not arrive within {self.timeout:g} s", body_sent=True
                    )
        except requests.exceptions.RequestException as exc:
            response.close()
            raise RequestLost(_why(exc), body_sent=True) from None
        return response, bytes(body)


def _never_connected(exc: BaseException) -> bool:
    """True when the connection itself failed (refused, unreachable, DNS): nothing was sent."""
    from urllib3.exceptions import NewConnectionError

    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, NewConnectionError):
            return True
        reason = getattr(current, "reason", None)
        if isinstance(reason, BaseException) and id(reason) not in seen:
            current = reason
            continue
        args = getattr(current, "args", ())
        nested = next((a for a in args if isinstance(a, BaseException)), None)
        current = nested or current.__cause__ or current.__context__
    return False


def _why(exc: BaseException) -> str:
    """A description of a requests error that holds no header (hence no token)."""
    if isinstance(exc, requests.exceptions.SSLError):
        return "the TLS handshake failed (certificate not trusted, or not the API's host?)"
    if isinstance(exc, requests.exceptions.ConnectTimeout):
        return "connecting timed out"
    if isinstance(exc, requests.exceptions.ReadTimeout):
        return "no answer arrived in time"
    if isinstance(exc, requests.exceptions.ConnectionError):
        if _never_connected(exc):
            return "the connection could not be opened"
        return "the connection was lost before the answer arrived"
    if isinstance(exc, requests.exceptions.ChunkedEncodingError):
        return "the answer was cut off"
    return f"the request failed ({type(exc).__name__})"


def _no_query(url: str) -> str:
    return url.split("?", 1)[0]
