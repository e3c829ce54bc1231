"""Reading and screening one HTTP request head on the loopback receiver. Pure logic.

The loopback port can be reached by any local process and, through the
user's browser, by any web page (RFC 8252 §8.3; the usual attacks on servers
bound to localhost). :func:`parse_head` reads a request head strictly and
bounded (no bodies are ever read: one request per connection, then close, so
nothing can be smuggled behind it); :func:`screen` refuses what only an
attacker sends:

* a ``Host`` that is not this listener's loopback name and port (DNS
  rebinding: a page on ``evil.example`` that resolves to 127.0.0.1 still
  sends ``Host: evil.example``);
* ``Sec-Fetch-Mode`` other than ``navigate`` or ``Sec-Fetch-Dest`` other than
  ``document`` (a ``fetch()``, an ``<img>``, an ``<iframe>`` from a page:
  the real redirect is a top-level navigation);
* ``Transfer-Encoding`` (a GET carries no body; the header is only useful for
  request smuggling), repeated ``Host``, folded header lines.

No CORS header is ever sent, so a page can read none of the answers, and a
preflight (``OPTIONS``) gets 405 without ``Access-Control-Allow-*``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = [
    "MAX_HEADERS",
    "MAX_HEAD_BYTES",
    "MAX_REQUEST_LINE",
    "REASONS",
    "Rejection",
    "RequestHead",
    "head_end",
    "oversized",
    "parse_head",
    "screen",
]

MAX_REQUEST_LINE = 8192
"""Longest request line (method, target, version); longer gets 414."""

MAX_HEAD_BYTES = 16384
"""Longest request head (request line and headers); longer gets 431."""

MAX_HEADERS = 100
"""Most header lines; more gets 431."""

REASONS = {
    200: "OK",
    400: "Bad Request",
    403: "Forbidden",
    404: "Not Found",
    405: "Method Not Allowed",
    408: "Request Timeout",
    409: "Conflict",
    414: "URI Too Long",
    421: "Misdirected Request",
    431: "Request Header Fields Too Large",
    500: "Internal Server Error",
    503: "Service Unavailable",
}

_TOKEN_CHARS = frozenset(
    "!#$%&'*+-.^_`|~0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ"
)


@dataclass(frozen=True)
class RequestHead:
    """A parsed request head.

    Attributes:
        method: the method, as sent (case-sensitive, RFC 9110 §9.1).
        target: the request target, decoded as Latin-1 (never logged: it carries the code).
        headers: (lower-case name, value) pairs, in order.
    """

    method: str
    target: str
    headers: tuple[tuple[str, str], ...]

    def values(self, name: str) -> list[str]:
        """Every value of header ``name`` (lower case)."""
        return [value for key, value in self.headers if key == name]


@dataclass(frozen=True)
class Rejection:
    """A request refused before it is judged: the status and a short message for the page."""

    status: int
    message: str


def head_end(buffer: bytes | bytearray) -> int:
    """Index just past the blank line that ends the head, or -1 while incomplete."""
    end = buffer.find(b"\r\n\r\n")
    if end >= 0:
        return end + 4
    end = buffer.find(b"\n\n")
    return end + 2 if end >= 0 else -1


def oversized(buffer: bytes | bytearray) -> Rejection | None:
    """For an incomplete head: 414 or 431 once it can no longer fit, else None."""
    line_end = buffer.find(b"\n")
    if (line_end < 0 and len(buffer) > MAX_REQUEST_LINE) or line_end > MAX_REQUEST_LINE:
        return Rejection(414, "The request line is too long.")
    if len(buffer) > MAX_HEAD_BYTES:
        return Rejection(431, "The request headers are too large.")
    return None


def parse_head(raw: bytes | bytearray) -> RequestHead | Rejection:
    """Parse a complete request head (RFC 9112 §2-5), strictly.

    Only ``METHOD SP origin-or-absolute-target SP HTTP/1.x`` request lines,
    ``name: value`` header lines with token names, no obs-fold.
    """
    if (oversize := oversized(raw.rstrip(b"\r\n"))) is not None:
        return oversize
    text = bytes(raw).decode("latin-1")
    lines = text.replace("\r\n", "\n").split("\n")
    while lines and lines[-1] == "":
        lines.pop()
    if not lines:
        return Rejection(400, "The request could not be read.")
    parts = lines[0].split(" ")
    if len(parts) != 3:
        return Rejection(400, "The request could not be read.")
    method, target, version = parts
    if (
        not method
        or not all(ch in _TOKEN_CHARS for ch in method)
        or version not in ("HTTP/1.0", "HTTP/1.1")
        or not target
        or not target.isprintable()
    ):
        return Rejection(400, "The request could not be read.")
    if len(lines) - 1 > MAX_HEADERS:
        return Rejection(431, "The request has too many headers.")
    headers: list[tuple[str, str]] = []
    for line in lines[1:]:
        name, sep, value = line.partition(":")
        if not sep or not name or not all(ch in _TOKEN_CHARS for ch in name):
            return Rejection(400, "The request headers are malformed.")
        headers.append((name.lower(), value.strip(" \t")))
    return RequestHead(method=method, target=target, headers=tuple(headers))


def _host_and_port(value: str) -> tuple[str, int | None] | None:
    value = value.strip().lower()
    if value.startswith("["):
        close = value.find("]")
        if close < 0:
            return None
        host, rest = value[: close + 1], value[close + 1 :]
    else:
        host, sep, port_text = value.partition(":")
        rest = sep + port_text
    if not rest:
        return host, None
    if not rest.startswith(":") or not rest[1:].isascii() or not rest[1:].isdigit():
        return None
    return host, int(rest[1:])


def screen(head: RequestHead, *, hosts: frozenset[str], port: int) -> Rejection | None:
    """Refuse what no browser following the login redirect sends (see the module docstring).

    Args:
        head: the parsed request.
        hosts: the accepted ``Host`` names, lower case (``localhost``,
            ``127.0.0.1``, ``[::1]``).
        port: the listener's port (a ``Host`` without one means 80).
    """
    host_values = head.values("host")
    if len(host_values) > 1:
        return Rejection(400, "The request repeats the Host header.")
    if host_values:
        parsed = _host_and_port(host_values[0])
        if parsed is None or parsed[0] not in hosts or (parsed[1] or 80) != port:
            return Rejection(
                421, "This server only answers requests addressed to this computer's loopback."
            )
    if head.values("transfer-encoding"):
        return Rejection(400, "Requests with a body are not accepted here.")
    modes = head.values("sec-fetch-mode")
    if modes and modes[0].lower() != "navigate":
        return Rejection(403, "Only the browser's own navigation can complete a login.")
    dests = head.values("sec-fetch-dest")
    if dests and dests[0].lower() != "document":
        return Rejection(403, "Only the browser's own navigation can complete a login.")
    return None
