"""The one HTTP client of the token endpoint side: a form POST, read strictly and bounded.

The code exchange, the refresh and the revocation all go through
:func:`post_form`. It is built on the standard library's sockets (no
urllib, requests or authlib), because the refresh runs in short-lived
processes (``oauthsmtp token`` as a password command) and because every rule
below must hold for every request (docs/security.md, "The token endpoint"):

* **One total deadline** per request: resolving, connecting, the TLS
  handshake, sending, the status line, the headers and the body together
  take at most ``timeout`` seconds. A server that drips one byte at a time
  cannot stretch it (each socket wait gets only what remains).
* **Bounded reads**: at most :data:`MAX_BODY_BYTES` + 1 bytes of body and
  :data:`MAX_HEAD_BYTES` of status line and headers are read, whatever the
  server announces. No compression is asked for (``Accept-Encoding:
  identity``) and a compressed answer is refused unread, so a small gzip bomb
  cannot grow in memory.
* **No redirects**: a 3xx is returned to the caller as it is (and refused).
* **TLS verified** for ``https`` (system trust store, ``SSL_CERT_FILE`` and
  ``REQUESTS_CA_BUNDLE`` added to it; certifi where Python finds no system
  store). An ``https_proxy`` from the environment is used through a
  ``CONNECT`` tunnel, so TLS still runs end to end with the token endpoint.
* **Plain http stays on this machine** (RFC 8252 §8.3 allows it for
  loopback only): the host must resolve to loopback addresses and the
  connected peer must be a loopback address; a proxy is never used for it.

Everything that goes wrong raises :class:`~oauthsmtp.TokenError`; no exception
of the socket, ssl or parsing layers leaves this module.
"""

from __future__ import annotations

import ipaddress
import os
import socket
import sys
import threading
import time
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlencode, urlsplit

from oauthsmtp._errors import ConfigurationError, TokenError
from oauthsmtp._util.net import is_loopback_address

from .hosts import is_loopback_host
from .tokenresponse import MAX_TOKEN_RESPONSE_BYTES

TYPE_CHECKING = False
if TYPE_CHECKING:
    import ssl

__all__ = [
    "MAX_BODY_BYTES",
    "MAX_HEAD_BYTES",
    "REQUEST_TIMEOUT",
    "Answer",
    "get",
    "no_proxy_covers",
    "post_form",
    "tls_context",
]

REQUEST_TIMEOUT = 30.0
"""Seconds one request may take in all (connect, send, headers and body together)."""

MAX_BODY_BYTES = MAX_TOKEN_RESPONSE_BYTES
"""Bodies are read up to this size (+1 byte, so that the caller can tell it was more)."""

MAX_HEAD_BYTES = 64 * 1024
"""The status line and the headers together; more is refused."""

_MAX_HEADERS = 100
_RECV = 65536

_HEADERS = (
    ("Accept", "application/json"),
    ("Accept-Encoding", "identity"),
    ("Content-Type", "application/x-www-form-urlencoded;charset=UTF-8"),
    ("Connection", "close"),
    ("User-Agent", "oauthsmtp"),
)


@dataclass(frozen=True)
class Answer:
    """What the server answered.

    Attributes:
        status: the HTTP status code.
        content_type: the ``Content-Type`` header ("" when absent).
        body: the body, at most :data:`MAX_BODY_BYTES` + 1 bytes.
        retry_after: the ``Retry-After`` header, or None.
    """

    status: int
    content_type: str
    body: bytes
    retry_after: str | None = None


class _Failure(Exception):
    """Internal: why the request failed, in words a user can act on."""

    def __init__(self, why: str, status: int | None = None, *, answered: bool = False) -> None:
        super().__init__(why)
        self.why = why
        self.status = status
        self.answered = answered or status is not None


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise _Failure("the request timed out")
        return left


def _host_port(netloc_host: str, port: int) -> str:
    return f"[{netloc_host}]:{port}" if ":" in netloc_host else f"{netloc_host}:{port}"


def _resolve(host: str, port: int, deadline: _Deadline) -> list[tuple[int, tuple[object, ...]]]:
    """getaddrinfo, bounded by the deadline (a stuck resolver is left behind, not waited for)."""
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        family = socket.AF_INET6 if ip.version == 6 else socket.AF_INET
        return [(family, (host, port))]
    box: list[object] = []

    def lookup() -> None:
        try:
            box.append(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except (OSError, UnicodeError) as exc:
            box.append(exc)

    worker = threading.Thread(target=lookup, daemon=True, name="oauthsmtp-resolve")
    worker.start()
    worker.join(deadline.remaining())
    if not box:
        raise _Failure(f"the name {host} could not be resolved in time")
    result = box[0]
    if isinstance(result, BaseException):
        raise _Failure(f"the name {host} could not be resolved")
    assert isinstance(result, list)  # noqa: S101 - what lookup() stores
    return [(int(family), tuple(address)) for family, _, _, _, address in result]


def _connect(host: str, port: int, *, loopback_only: bool, deadline: _Deadline) -> socket.socket:
    addresses = _resolve(host, port, deadline)
    if loopback_only:
        local = [a for a in addresses if is_loopback_address(str(a[1][0]))]
        if not local:
            shown = ", ".join(sorted({str(a[1][0]) for a in addresses}))
            raise _Failure(
                f"{host} resolves to {shown}, which is not a loopback address: credentials are "
                "never sent over plain http to another machine; use an https URL, or "
                "127.0.0.1 / [::1] for a local server"
            )
        addresses = local
    last: OSError | None = None
    for family, address in addresses:
        try:
            sock = socket.socket(family, socket.SOCK_STREAM)
        except OSError as exc:  # e.g. no IPv6 on this machine: try the next address
            last = exc
            continue
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(address)
        except _Failure:
            sock.close()
            raise
        except OSError as exc:
            sock.close()
            last = exc
            continue
        if loopback_only:
            peer = str(sock.getpeername()[0])
            if not is_loopback_address(peer):
                sock.close()
                raise _Failure(
                    f"the connection to {host} reached {peer}, which is not a loopback "
                    "address: credentials are never sent over plain http to another machine"
                )
        return sock
    if isinstance(last, TimeoutError):
        raise _Failure("the request timed out")
    raise _Failure("the connection failed")


class _Reader:
    """Reads an HTTP/1.x response from a socket; every wait bounded by the deadline."""

    def __init__(self, sock: socket.socket, deadline: _Deadline) -> None:
        self._sock = sock
        self._deadline = deadline
        self._buf = bytearray()
        self._eof = False

    def _fill(self) -> bool:
        if self._eof:
            return False
        self._sock.settimeout(self._deadline.remaining())
        data = self._sock.recv(_RECV)
        if not data:
            self._eof = True
            return False
        self._buf += data
        return True

    def head(self) -> tuple[int, dict[str, str]]:
        """The status code and the headers (lower-case names; repeats joined by ", ")."""
        while True:
            end = self._buf.find(b"\r\n\r\n")
            if end >= 0:
                break
            if len(self._buf) > MAX_HEAD_BYTES:
                raise _Failure(
                    f"the answer's headers are larger than {MAX_HEAD_BYTES} bytes", answered=True
                )
            if not self._fill():
                raise _Failure(
                    "the connection closed before a complete answer arrived", answered=True
                )
        if end > MAX_HEAD_BYTES:
            raise _Failure(
                f"the answer's headers are larger than {MAX_HEAD_BYTES} bytes", answered=True
            )
        raw = bytes(self._buf[:end]).decode("latin-1")
        del self._buf[: end + 4]
        lines = raw.split("\r\n")
        status_line = lines[0].split(" ", 2)
        if (
            len(status_line) < 2
            or status_line[0] not in ("HTTP/1.1", "HTTP/1.0")
            or len(status_line[1]) != 3
            or not (status_line[1].isascii() and status_line[1].isdigit())
        ):
            raise _Failure("the server did not answer HTTP", answered=True)
        if len(lines) - 1 > _MAX_HEADERS:
            raise _Failure(f"the answer has more than {_MAX_HEADERS} headers", answered=True)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, sep, value = line.partition(":")
            if not sep or not name or name != name.strip() or line[:1] in (" ", "\t"):
                raise _Failure("the answer's headers are malformed", answered=True)
            key = name.lower()
            value = value.strip(" \t")
            headers[key] = f"{headers[key]}, {value}" if key in headers else value
        return int(status_line[1]), headers

    @property
    def pending(self) -> bool:
        """True when bytes beyond what was parsed have arrived."""
        return bool(self._buf)

    def _take(self, limit: int) -> bytes:
        data = bytes(self._buf[:limit])
        del self._buf[:limit]
        return data

    def body(self, headers: dict[str, str], status: int) -> bytes:
        """The body, at most MAX_BODY_BYTES + 1 bytes of it."""
        cap = MAX_BODY_BYTES + 1
        if status in (204, 304) or 100 <= status < 200:
            return b""
        encoding = headers.get("content-encoding", "identity").strip().lower()
        if encoding not in ("", "identity"):
            raise _Failure(
                f"the answer is compressed ({encoding[:40]}) although none was asked for; "
                "refused unread",
                status,
            )
        transfer = headers.get("transfer-encoding")
        if transfer is not None:
            if transfer.strip().lower() != "chunked":
                raise _Failure("the answer uses an unsupported transfer encoding", status)
            return self._chunked(cap, status)
        length_text = headers.get("content-length")
        if length_text is not None:
            length_text = length_text.strip()
            if not (length_text.isascii() and length_text.isdigit()) or len(length_text) > 18:
                raise _Failure("the answer has a malformed Content-Length", status)
            wanted = min(int(length_text), cap)
            while len(self._buf) < wanted:
                if not self._fill():
                    raise _Failure("the connection closed in the middle of the answer", status)
            return self._take(wanted)
        while len(self._buf) < cap and self._fill():
            pass
        return self._take(cap)

    def _line(self, status: int) -> bytes:
        while True:
            end = self._buf.find(b"\r\n")
            if end >= 0:
                line = self._take(end)
                del self._buf[:2]
                return line
            if len(self._buf) > 4096:
                raise _Failure("the answer's chunked encoding is malformed", status)
            if not self._fill():
                raise _Failure("the connection closed in the middle of the answer", status)

    def _chunked(self, cap: int, status: int) -> bytes:
        body = bytearray()
        while len(body) < cap:
            size_text = self._line(status).split(b";", 1)[0].strip()
            try:
                if not size_text or len(size_text) > 16:
                    raise ValueError
                size = int(size_text, 16)
            except ValueError:
                raise _Failure("the answer's chunked encoding is malformed", status) from None
            if size == 0:
                return bytes(body)
            wanted = min(size, cap - len(body))
            while len(self._buf) < wanted:
                if not self._fill():
                    raise _Failure("the connection closed in the middle of the answer", status)
            body += self._take(wanted)
            if wanted < size:
                break
            if self._line(status):
                raise _Failure("the answer's chunked encoding is malformed", status)
        return bytes(body)


def tls_context() -> ssl.SSLContext:
    """:func:`oauthsmtp._util.tls.tls_context`, its failure reported as a :class:`TokenError`.

    Imported here, not at the top: ``ssl`` is loaded only for https URLs.
    """
    from oauthsmtp._util.tls import tls_context as system_tls_context

    try:
        return system_tls_context()
    except ConfigurationError as exc:
        raise TokenError(str(exc)) from None


def no_proxy_covers(host: str, no_proxy: str) -> bool:
    """True when ``no_proxy`` (comma-separated names, ``.domain`` suffixes or ``*``) covers host."""
    host = host.lower().strip("[]")
    for entry in no_proxy.replace(" ", ",").split(","):
        entry = entry.strip().lower()
        if entry.startswith("[") and "]" in entry:
            entry = entry[1 : entry.index("]")]
        elif entry.count(":") == 1:
            entry = entry.split(":", 1)[0]
        entry = entry.lstrip(".")
        if entry == "*" or (entry and (host == entry or host.endswith("." + entry))):
            return True
    return False


def _https_proxy(host: str) -> tuple[str, int, str | None] | None:
    """The ``https_proxy`` to tunnel through for ``host`` (honouring ``no_proxy``), if any.

    Returns (proxy host, proxy port, Proxy-Authorization value or None).
    """
    raw = os.environ.get("https_proxy") or os.environ.get("HTTPS_PROXY")
    if not raw:
        return None
    if no_proxy_covers(host, os.environ.get("no_proxy") or os.environ.get("NO_PROXY") or ""):
        return None
    try:  # the proxy URL may carry a password: it is never quoted in a message
        parts = urlsplit(raw if "://" in raw else f"http://{raw}")
        port = parts.port or 80
    except ValueError:
        raise _Failure("https_proxy is not a valid proxy URL") from None
    if parts.scheme.lower() != "http" or not parts.hostname:
        raise _Failure("https_proxy must be an http:// proxy URL (http://host:port)")
    auth = None
    if parts.username is not None:
        import base64

        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode("utf-8")).decode("ascii")
    return parts.hostname, port, auth


def _tunnel(sock: socket.socket, target: str, auth: str | None, deadline: _Deadline) -> None:
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}"]
    if auth:
        lines.append(f"Proxy-Authorization: {auth}")
    sock.settimeout(deadline.remaining())
    sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
    reader = _Reader(sock, deadline)
    status, _ = reader.head()
    if status != 200:
        raise _Failure(
            f"the https proxy refused the tunnel (HTTP {status}); check https_proxy "
            "(and its user name and password) or set no_proxy for this host"
        )
    if reader.pending:  # the proxy spoke before TLS started
        raise _Failure("the https proxy sent data before the tunnel opened")


def _exchange(url: str, form: dict[str, str] | None, deadline: _Deadline) -> Answer:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = parts.hostname or ""
    tls = scheme == "https"
    if not tls and not (scheme == "http" and is_loopback_host(host)):
        raise _Failure("the URL must be https (plain http only for loopback hosts)")
    port = parts.port or (443 if tls else 80)
    if not host.isascii():  # an international name: its A-label on the wire (Host, CONNECT)
        host = host.encode("idna").decode("ascii")
    target = _host_port(host, port)
    proxy = _https_proxy(host) if tls else None  # plain http never goes through a proxy
    context = tls_context() if tls else None
    if proxy is not None:
        sock = _connect(proxy[0], proxy[1], loopback_only=False, deadline=deadline)
    else:
        sock = _connect(host, port, loopback_only=not tls, deadline=deadline)
    try:
        if proxy is not None:
            _tunnel(sock, target, proxy[2], deadline)
        if context is not None:
            sock.settimeout(deadline.remaining())
            sock = context.wrap_socket(sock, server_hostname=host)
        body = urlencode(form).encode("ascii") if form is not None else b""
        path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
        if parts.query:
            path += "?" + parts.query
        bare = f"[{host}]" if ":" in host else host
        host_header = bare if parts.port is None else target
        method = "POST" if form is not None else "GET"
        head = [f"{method} {path} HTTP/1.1", f"Host: {host_header}"]
        head += [
            f"{name}: {value}"
            for name, value in _HEADERS
            if form is not None or name.lower() != "content-type"
        ]
        if form is not None:
            head.append(f"Content-Length: {len(body)}")
        sock.settimeout(deadline.remaining())
        sock.sendall(("\r\n".join(head) + "\r\n\r\n").encode("latin-1") + body)
        reader = _Reader(sock, deadline)
        status, headers = reader.head()
        while 100 <= status < 200:  # 100 Continue and friends: the real answer follows
            status, headers = reader.head()
        try:
            content = reader.body(headers, status)
        except _Failure as exc:
            raise _Failure(exc.why, status) from None
        except (OSError, ValueError) as exc:  # reset, stall or TLS failure mid-body
            why = (
                "the request timed out"
                if isinstance(exc, TimeoutError)
                else "the connection failed in the middle of the answer"
            )
            raise _Failure(why, status) from None
        return Answer(
            status=status,
            content_type=headers.get("content-type", ""),
            body=content,
            retry_after=headers.get("retry-after"),
        )
    finally:
        sock.close()


def post_form(
    url: str,
    form: dict[str, str],
    *,
    timeout: float = REQUEST_TIMEOUT,
    what: str = "token endpoint",
) -> Answer:
    """POST ``form`` (``application/x-www-form-urlencoded``) to ``url`` and read the answer.

    Args:
        url: an https URL, or an http URL on a loopback host.
        form: the fields (secrets among them are never logged or echoed).
        timeout: seconds for the whole request, from resolving the name to the
            last byte of the body.
        what: how the endpoint is named in error messages.

    Returns:
        the status, content type, body (capped) and ``Retry-After`` header.

    Raises:
        TokenError: the endpoint could not be reached, the deadline passed, or
            the answer was not well-formed HTTP (``status`` is set when the
            status line had arrived). The message names the host, never a
            secret.
    """
    return _request(url, form, timeout=timeout, what=what)


def get(url: str, *, timeout: float = REQUEST_TIMEOUT, what: str = "server") -> Answer:
    """GET ``url`` with the same rules as :func:`post_form` (discovery documents, RFC 8414).

    Raises:
        TokenError: as :func:`post_form`.
    """
    return _request(url, None, timeout=timeout, what=what)


def _request(url: str, form: dict[str, str] | None, *, timeout: float, what: str) -> Answer:
    where = urlsplit(url).netloc
    try:
        return _exchange(url, form, _Deadline(timeout))
    except _Failure as exc:
        failure = exc
    except (OSError, ValueError, UnicodeError) as exc:
        # ssl is imported only for https URLs: look it up rather than import it here.
        ssl = sys.modules.get("ssl")
        if ssl is not None and isinstance(exc, ssl.SSLCertVerificationError):
            failure = _Failure("the TLS certificate could not be verified")
        elif isinstance(exc, TimeoutError):
            failure = _Failure("the request timed out")
        else:
            failure = _Failure("the connection failed")
    if failure.answered:
        status = f" (HTTP {failure.status})" if failure.status is not None else ""
        message = f"the {what} at {where} gave no usable answer{status}: {failure.why}"
    else:
        message = (
            f"could not reach the {what} at {where}: {failure.why}; check the network and the URL"
        )
    raise TokenError(message, status=failure.status) from None
