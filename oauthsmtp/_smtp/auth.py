"""SMTP AUTH for SMTPSession: choosing a mechanism, the SASL exchange, refresh-and-retry.

:class:`TokenSource` is what AUTH needs from a token (an :class:`~oauthsmtp.AuthToken`
fits); it lives here, with its lowest user. Rules (RFC 4954, RFC 7628, docs/security.md):

* Only mechanisms the server offers after TLS are used. A token uses OAUTHBEARER when
  offered, else XOAUTH2; a password uses PLAIN, else LOGIN. Nothing that fits means an
  :class:`SMTPAuthError`: a token never falls back to a password mechanism or back.
* The initial response goes on the AUTH line only if the line stays within 512 octets
  (RFC 4954 §4, RFC 5321 §4.5.3.1.4); otherwise the client waits for an empty ``334``.
* An error challenge (``334 <base64 JSON>``, RFC 7628 §3.2.2) is answered with an empty
  line (XOAUTH2) or ``AQ==`` (OAUTHBEARER, §3.2.3); its JSON is kept as diagnostics. A
  challenge that is not base64 is answered ``*`` (cancel). More than
  :data:`MAX_CHALLENGES` challenges cancel the exchange.
* After a refusal that a fresh token may cure (``535 5.7.8``, ``535 5.7.3``...), the token
  is refreshed once and AUTH retried once; configuration errors (``535 5.7.139``, ...)
  are never retried.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Protocol

from oauthsmtp._errors import ConfigurationError, SMTPAuthError

from .sasl import (
    OAUTHBEARER_FAILURE_RESPONSE,
    XOAUTH2_FAILURE_RESPONSE,
    classify_auth_failure,
    decode_error_challenge,
    is_base64,
    login_responses,
    oauthbearer_initial,
    plain_initial,
    xoauth2_initial,
)
from .wire import Connection, Reply, SMTPConnectionError

__all__ = [
    "MAX_CHALLENGES",
    "Reopen",
    "SASLExchange",
    "TokenSource",
    "authenticate",
    "check_mechanism",
    "choose_mechanism",
    "is_token_source",
    "oauth_exchange",
    "password_exchange",
    "refusal",
]

logger = logging.getLogger("oauthsmtp.smtp")

MAX_CHALLENGES = 5
"""More server challenges than this in one AUTH exchange cancel it."""

OAUTH_MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
PASSWORD_MECHANISMS = ("PLAIN", "LOGIN")
_MAX_AUTH_LINE = 512

Reopen = Callable[[], "tuple[Connection, dict[str, str]]"]
"""Opens a new connection (connected, greeted, secured, EHLO sent) for a retried AUTH."""


class TokenSource(Protocol):
    """What SMTP AUTH needs from a token (an :class:`~oauthsmtp.AuthToken` fits)."""

    @property
    def access_token(self) -> str:
        """A usable access token (refreshed first when near expiry)."""

    def refresh(self) -> object:
        """Get a new access token now; may raise LoginRequired or TokenError."""


def is_token_source(value: object) -> bool:
    """True when ``value`` has an ``access_token`` and a callable ``refresh``.

    The token is not read (reading it may refresh it).
    """
    if not callable(getattr(value, "refresh", None)):
        return False
    return any("access_token" in vars(klass) for klass in type(value).__mro__) or (
        "access_token" in getattr(value, "__dict__", {})
    )


def check_mechanism(mechanism: str | None, *, token: bool, password: str | None) -> str | None:
    """Validate ``mechanism=`` against the kind of credential; return it upper-cased.

    Raises:
        ConfigurationError: a mechanism that does not fit the credential, or one given
            without any credential.
    """
    if mechanism is None:
        return None
    allowed = OAUTH_MECHANISMS if token else PASSWORD_MECHANISMS if password is not None else ()
    name = mechanism.upper() if isinstance(mechanism, str) else ""
    if name not in allowed:
        kind = "a token" if token else "a password" if password is not None else "no credential"
        raise ConfigurationError(
            f"mechanism={mechanism!r} does not fit {kind}; "
            f"choose one of {', '.join(allowed) or '(none: pass auth_token= or password=)'}"
        )
    return name


def choose_mechanism(offered: str, *, forced: str | None, oauth: bool, host: str) -> str:
    """Pick the mechanism from the post-TLS ``AUTH`` keyword's parameters (RFC 4954 §3).

    Raises:
        SMTPAuthError: nothing offered fits the credential (never a downgrade).
    """
    advertised = offered.upper().split()
    wanted = (forced,) if forced else OAUTH_MECHANISMS if oauth else PASSWORD_MECHANISMS
    for name in wanted:
        if name in advertised:
            return name
    kind = "an OAuth2 token" if oauth else "a password"
    raise SMTPAuthError(
        f"{host} offers AUTH {' '.join(advertised) or '(nothing)'} after TLS, which has no "
        f"mechanism for {kind} ({' or '.join(wanted)}); oauthsmtp never falls back to "
        "another kind of credential"
    )


def authenticate(
    conn: Connection,
    extensions: dict[str, str],
    *,
    reopen: Reopen,
    host: str,
    port: int,
    username: str | None,
    token: TokenSource | None,
    password: str | None,
    mechanism: str | None,
) -> tuple[Connection, dict[str, str], str | None]:
    """Authenticate on ``conn``; return the connection that ended up authenticated.

    Without credentials nothing is sent. With a token, a retryable refusal refreshes the
    token once and retries once, on the same connection or, if the server closed it, on
    a new one from ``reopen`` (then the returned connection is that one).

    Raises:
        SMTPAuthError: refused (code, server text, decoded provider error, hint), or no
            mechanism fits.
        LoginRequired, TokenError: the token could not be refreshed.
        SMTPError: the connection failed during the exchange.
    """
    if token is None and password is None:
        return conn, extensions, None
    assert username is not None  # noqa: S101 - SMTPSession requires it with credentials
    offered = extensions.get("AUTH", "")
    if token is None:
        assert password is not None  # noqa: S101
        name = choose_mechanism(offered, forced=mechanism, oauth=False, host=host)
        _run(conn, password_exchange(name, username, password, host=host))
        return conn, extensions, name

    name = choose_mechanism(offered, forced=mechanism, oauth=True, host=host)
    try:
        _run(conn, oauth_exchange(name, username, token.access_token, host, port, retried=False))
        return conn, extensions, name
    except SMTPAuthError as exc:
        if not exc.retryable:
            raise
        logger.info("AUTH %s refused (%s); refreshing the token once and retrying", name, exc.code)
    token.refresh()
    if not conn.closed:
        try:
            _run(conn, oauth_exchange(name, username, token.access_token, host, port, retried=True))
            return conn, extensions, name
        except SMTPConnectionError:
            logger.info("the server closed the connection after the refusal; reconnecting")
    new_conn, new_extensions = reopen()
    try:
        name = choose_mechanism(
            new_extensions.get("AUTH", ""), forced=mechanism, oauth=True, host=host
        )
        _run(new_conn, oauth_exchange(name, username, token.access_token, host, port, retried=True))
    except BaseException:
        new_conn.close()
        raise
    conn.close()
    return new_conn, new_extensions, name


def oauth_exchange(
    name: str, username: str, access_token: str, host: str, port: int, *, retried: bool
) -> SASLExchange:
    """The SASL exchange for a token with mechanism ``name`` (XOAUTH2 or OAUTHBEARER)."""
    if name == "XOAUTH2":
        blob, on_error = xoauth2_initial(username, access_token), XOAUTH2_FAILURE_RESPONSE
    else:
        blob = oauthbearer_initial(username, access_token, host.strip("[]"), port)
        on_error = OAUTHBEARER_FAILURE_RESPONSE
    return SASLExchange(name, [blob], on_error, host=host, oauth=True, retried=retried)


def password_exchange(name: str, username: str, password: str, *, host: str) -> SASLExchange:
    """The SASL exchange for a password with mechanism ``name`` (PLAIN or LOGIN)."""
    if name == "PLAIN":
        responses = [plain_initial(username, password)]
    else:
        responses = list(login_responses(username, password))
    return SASLExchange(name, responses, None, host=host, oauth=False)


class SASLExchange:
    """One SASL exchange (RFC 4954 §4) as a state machine without I/O.

    The caller writes :meth:`opening`, then feeds each reply to :meth:`step` and writes
    what it returns, until :meth:`step` returns None (``235``: authenticated) or raises.
    The blocking and the asyncio sessions drive the same exchange.

    Attributes:
        abandoned: set when :meth:`step` raised because the server went on challenging
            after a cancel: the connection must then be closed.
    """

    def __init__(
        self,
        name: str,
        responses: list[bytes],
        on_error: bytes | None,
        *,
        host: str,
        oauth: bool,
        retried: bool = False,
    ) -> None:
        self.name = name
        self._pending = list(responses)
        self._on_error = on_error
        self._host = host
        self._oauth = oauth
        self._retried = retried
        self._challenges = 0
        self._provider_error: dict[str, object] | None = None
        self._cancelled: str | None = None
        self.abandoned = False

    def opening(self) -> tuple[bytes, list[str]]:
        """The AUTH line (with the initial response when it fits in 512 octets) and its log."""
        name = self.name
        first = b"AUTH " + name.encode("ascii") + b" " + self._pending[0] + b"\r\n"
        if name != "LOGIN" and len(first) <= _MAX_AUTH_LINE:
            self._pending.pop(0)
            return first, [f"AUTH {name} [masked]"]
        return f"AUTH {name}\r\n".encode("ascii"), [f"AUTH {name}"]

    def step(self, reply: Reply) -> tuple[bytes, list[str]] | None:
        """What to write after ``reply``, or None once authenticated (``235``).

        Raises:
            SMTPAuthError: refused or cancelled (see :attr:`abandoned`).
        """
        name = self.name
        if reply.code == 235:
            return None
        if reply.code != 334:
            raise refusal(
                name,
                reply,
                self._provider_error,
                host=self._host,
                oauth=self._oauth,
                retried=self._retried,
                cancelled=self._cancelled,
            )
        if self._cancelled is not None:
            self.abandoned = True
            raise SMTPAuthError(
                f"AUTH {name} with {self._host} cancelled ({self._cancelled}); the server went "
                "on challenging",
                code=334,
            )
        self._challenges += 1
        challenge = reply.lines[0].strip().encode("ascii", "replace") if reply.lines else b""
        if self._challenges > MAX_CHALLENGES:
            self._cancelled = f"more than {MAX_CHALLENGES} challenges"
        elif self._pending:
            return self._pending.pop(0) + b"\r\n", ["[masked]"]
        elif self._on_error is None:
            self._cancelled = "an unexpected challenge"
        elif not is_base64(challenge):
            self._cancelled = "a challenge that is not base64 (RFC 4954 §4)"
        else:
            self._provider_error = decode_error_challenge(challenge)
            logger.debug("AUTH %s error challenge: %s", name, self._provider_error)
            on_error = self._on_error
            return on_error + b"\r\n", [on_error.decode("ascii") or "(empty line)"]
        return b"*\r\n", ["*"]


def _run(conn: Connection, exchange: SASLExchange) -> None:
    """Drive ``exchange`` on a blocking connection; return on ``235``, raise otherwise."""
    conn.write(*exchange.opening())
    while True:
        reply = conn.read_reply(mask=True)
        try:
            following = exchange.step(reply)
        except SMTPAuthError:
            if exchange.abandoned:
                conn.close()
            raise
        if following is None:
            return
        conn.write(*following)


def refusal(
    name: str,
    reply: Reply,
    provider_error: dict[str, object] | None,
    *,
    host: str,
    oauth: bool,
    retried: bool,
    cancelled: str | None,
) -> SMTPAuthError:
    failure = classify_auth_failure(reply.code, reply.text, provider_error, oauth=oauth)
    text = " ".join(reply.lines)
    if cancelled is not None:
        message = (
            f"AUTH {name} with {host} cancelled ({cancelled}); the server said {reply.code} {text}"
        )
    else:
        message = f"{host} refused AUTH {name}: {reply.code} {text}"
        if retried:
            message += " (after refreshing the token once)"
        message += f". {failure.hint[0].upper()}{failure.hint[1:]}"
    return SMTPAuthError(
        message,
        code=reply.code,
        server_message=reply.text,
        provider_error=provider_error,
        retryable=failure.retryable and cancelled is None,
    )
