"""XOAUTH2/OAUTHBEARER logins on the caller's ``imaplib`` and ``poplib`` objects (I/O).

:func:`imap_authenticate` and :func:`pop3_authenticate` take a connection the caller opened
(``imaplib.IMAP4_SSL``, or ``IMAP4`` after ``starttls()``; ``poplib.POP3_SSL``, or ``POP3``
after ``stls()``) and log it in with an OAuth2 token, with the same rules as SMTP AUTH:

* TLS with a verified certificate first (:func:`~oauthsmtp._mailbox.rules.check_transport`);
  nothing is sent otherwise.
* The mechanism comes from what the server offers over TLS: OAUTHBEARER (RFC 7628), else
  XOAUTH2 (Google's); never a password mechanism.
* An error challenge (the server's base64 JSON, RFC 7628 §3.2.2) is answered with an empty
  response (XOAUTH2) or ``%x01`` (OAUTHBEARER, §3.2.3), and its JSON is kept on the error.
* A refusal that a fresh token may cure refreshes the token once and tries once more on
  the same connection (IMAP and POP3 both allow another attempt after a failed one).

Secrets: the SASL response never reaches imaplib's or poplib's debug output. imaplib sends
it as a continuation and logs only its length; POP3 lines are written to the socket here,
not through ``poplib``'s ``_putcmd``, which prints commands at any debug level. Exceptions
and the ``oauthsmtp.mailbox`` logger carry no token and no SASL string.
"""

from __future__ import annotations

import base64
import binascii
import imaplib
import logging
import poplib
import socket
import ssl
from collections.abc import Callable
from typing import Any

from oauthsmtp._errors import ConfigurationError, MailboxAuthError
from oauthsmtp._smtp.auth import TokenSource
from oauthsmtp._smtp.sasl import (
    OAUTHBEARER_FAILURE_RESPONSE,
    XOAUTH2_FAILURE_RESPONSE,
    decode_error_challenge,
    is_base64,
    oauthbearer_initial,
    xoauth2_initial,
)
from oauthsmtp._util.net import peer_is_loopback

from .rules import (
    MailProtocol,
    Transport,
    check_transport,
    choose_mechanism,
    classify_refusal,
    describe_provider_error,
    imap_mechanisms,
    mask,
    pop3_mechanisms,
)

__all__ = ["MAX_CHALLENGES", "TokenSource", "imap_authenticate", "pop3_authenticate"]

logger = logging.getLogger("oauthsmtp.mailbox")

MAX_CHALLENGES = 5
"""More server challenges than this in one exchange cancel it (``*``)."""

_MAX_POP3_LINE = 8192


def imap_authenticate(
    imap: imaplib.IMAP4,
    token: TokenSource | str,
    user: str | None = None,
    *,
    mechanism: str | None = None,
    allow_plaintext_loopback: bool = False,
) -> str:
    """Log ``imap`` in with an OAuth2 token (XOAUTH2 or OAUTHBEARER, RFC 7628 §4.1).

    Args:
        imap: an ``imaplib.IMAP4_SSL``, or an ``imaplib.IMAP4`` after ``starttls()``, whose
            TLS context verified the server (``ssl.create_default_context()``), in the
            not-authenticated state.
        token: an :class:`~oauthsmtp.AuthToken` (refreshed once and retried if the server
            refuses it), or an access token string (no refresh).
        user: the mailbox to log in to; default ``token.account``.
        mechanism: ``"XOAUTH2"`` or ``"OAUTHBEARER"`` to insist on one; default: chosen
            from the server's ``AUTH=`` capabilities, OAUTHBEARER first.
        allow_plaintext_loopback: allow a connection without verified TLS when its peer
            address is loopback (a server on this machine), like ``security="none"`` for
            SMTPSession. Never for any other peer.

    Returns:
        The mechanism used. ``imap`` is then in the authenticated state (``select()``...).

    Raises:
        ConfigurationError: no TLS, or TLS that verifies nothing; no user; already logged in;
            a bad ``mechanism``; a user or token with control characters.
        MailboxAuthError: the server refused (``server_message``, ``provider_error``,
            ``retryable``) or offers no token mechanism.
        LoginRequired, TokenError: the token could not be refreshed.
        imaplib.IMAP4.abort, OSError: the connection failed during the exchange.
    """
    if getattr(imap, "state", None) != "NONAUTH":
        raise ConfigurationError(
            f"imap_authenticate needs a connection in the not-authenticated state; this one "
            f"is in state {getattr(imap, 'state', None)!r} (already logged in, or closed)"
        )
    sock = getattr(imap, "sock", None)
    transport = _transport("IMAP", str(imap.host), int(imap.port), sock)
    check_transport(transport, allow_plaintext_loopback=allow_plaintext_loopback)
    mailbox_user = _user(token, user)
    host = _sasl_host(str(imap.host), sock)
    name = choose_mechanism(
        imap_mechanisms(imap.capabilities), forced=mechanism, protocol="IMAP", host=host
    )

    def attempt(access_token: str, retried: bool) -> None:
        raw = _initial(name, mailbox_user, access_token, host, transport.port)
        exchange = _Exchange(name, raw, imaplib.IMAP4.abort)
        logger.debug("IMAP %s: AUTHENTICATE %s [masked]", host, name)
        try:
            imap.authenticate(name, exchange.respond)
        except imaplib.IMAP4.abort:
            raise
        except binascii.Error:  # imaplib decodes challenges itself, and raises mid-command
            raise imaplib.IMAP4.abort(
                f"{host} sent an AUTHENTICATE {name} challenge that is not base64; the "
                "command is unfinished: close this connection"
            ) from None
        except imaplib.IMAP4.error as exc:
            text = mask(str(exc), (access_token, base64.b64encode(raw).decode("ascii")))
            bad = text.startswith("AUTHENTICATE command error: BAD")
            raise _refusal("IMAP", name, host, text, exchange, retried=retried, bad=bad) from None

    return _login("IMAP", name, host, token, attempt)


def pop3_authenticate(
    pop: poplib.POP3,
    token: TokenSource | str,
    user: str | None = None,
    *,
    mechanism: str | None = None,
    allow_plaintext_loopback: bool = False,
) -> str:
    """Log ``pop`` in with an OAuth2 token (POP3 ``AUTH``, RFC 5034; XOAUTH2 or OAUTHBEARER).

    Args:
        pop: a ``poplib.POP3_SSL``, or a ``poplib.POP3`` after ``stls()``, whose TLS context
            verified the server (``ssl.create_default_context()``), before any login.
        token: an :class:`~oauthsmtp.AuthToken` (refreshed once and retried if the server
            refuses it), or an access token string (no refresh).
        user: the mailbox to log in to; default ``token.account``.
        mechanism: ``"XOAUTH2"`` or ``"OAUTHBEARER"`` to insist on one (also the way to
            log in to a server whose ``CAPA`` announces no ``SASL``); default: chosen from
            the ``SASL`` line of the server's ``CAPA`` answer, OAUTHBEARER first.
        allow_plaintext_loopback: as for :func:`imap_authenticate`.

    Returns:
        The mechanism used. ``pop`` is then in the transaction state (``stat()``...).

    Raises:
        ConfigurationError, MailboxAuthError, LoginRequired, TokenError: as for
            :func:`imap_authenticate`.
        poplib.error_proto, OSError: the connection failed or answered out of protocol.
    """
    sock = getattr(pop, "sock", None)
    transport = _transport("POP3", str(pop.host), int(pop.port), sock)
    check_transport(transport, allow_plaintext_loopback=allow_plaintext_loopback)
    mailbox_user = _user(token, user)
    host = _sasl_host(str(pop.host), sock)
    try:
        capa: dict[str, list[str]] = pop.capa()
    except poplib.error_proto:
        capa = {}  # no CAPA (RFC 2449): no SASL either
    name = choose_mechanism(pop3_mechanisms(capa), forced=mechanism, protocol="POP3", host=host)

    def attempt(access_token: str, retried: bool) -> None:
        raw = _initial(name, mailbox_user, access_token, host, transport.port)
        secrets = (access_token, base64.b64encode(raw).decode("ascii"))
        exchange = _Exchange(name, raw, poplib.error_proto)
        # RFC 5034 §4: no initial response, a token makes the line longer than 255 octets.
        _pop3_write(pop, f"AUTH {name}".encode("ascii"), f"AUTH {name}")
        while True:
            line = _pop3_line(pop)
            if line.startswith(b"+OK"):
                return
            if line.startswith(b"-ERR"):
                text = mask(line[4:].strip().decode("utf-8", "replace"), secrets)
                raise _refusal("POP3", name, host, text, exchange, retried=retried)
            if line != b"+" and not line.startswith(b"+ "):
                shown = mask(line[:80].decode("utf-8", "replace"), secrets)
                raise poplib.error_proto(f"unexpected answer to AUTH {name}: {shown!r}")
            challenge = line[2:].strip()
            secret = exchange.initial_pending
            answer: bytes | None = None
            if is_base64(challenge):
                answer = exchange.respond(base64.b64decode(challenge))
            else:
                exchange.cancel("a challenge that is not base64 (RFC 5034 §4)")
            if answer is None:
                _pop3_write(pop, b"*", "*")
                continue
            response = base64.b64encode(answer)
            _pop3_write(pop, response, "[masked]" if secret else response.decode() or "(empty)")

    return _login("POP3", name, host, token, attempt)


# --------------------------------------------------------------------------- shared steps


class _Exchange:
    """The client side of one XOAUTH2/OAUTHBEARER exchange, on decoded challenges.

    ``runaway`` builds the error raised when the server goes on challenging after the
    client cancelled: the protocol's own "this connection is unusable" error.
    """

    def __init__(self, name: str, initial: bytes, runaway: Callable[[str], Exception]) -> None:
        self.name = name
        self._initial: bytes | None = initial
        self._runaway = runaway
        self._failure_sent = False
        self._challenges = 0
        self.provider_error: dict[str, Any] | None = None
        self.cancelled: str | None = None

    @property
    def initial_pending(self) -> bool:
        """True until the initial response (the secret) has been handed out."""
        return self._initial is not None

    def respond(self, challenge: bytes) -> bytes | None:
        """The decoded response to a decoded challenge; None cancels (``*``)."""
        self._challenges += 1
        if self._challenges > MAX_CHALLENGES:
            self.cancel(f"more than {MAX_CHALLENGES} challenges")
            return None
        if self._initial is not None:
            initial, self._initial = self._initial, None
            return initial
        if self._failure_sent:
            self.cancel("a challenge after the failure response")
            return None
        self._failure_sent = True
        self.provider_error = decode_error_challenge(base64.b64encode(challenge))
        logger.debug("AUTH %s error challenge: %s", self.name, self.provider_error)
        if self.name == "XOAUTH2":
            return base64.b64decode(XOAUTH2_FAILURE_RESPONSE)
        return base64.b64decode(OAUTHBEARER_FAILURE_RESPONSE)

    def cancel(self, reason: str) -> None:
        """Record why the exchange is cancelled; the caller sends ``*`` (RFC 4954 §4)."""
        if self.cancelled is not None:
            raise self._runaway(
                f"the server went on challenging after AUTH {self.name} was cancelled "
                f"({self.cancelled}); close this connection"
            )
        self.cancelled = reason


def _login(
    protocol: MailProtocol,
    name: str,
    host: str,
    token: TokenSource | str,
    attempt: Callable[[str, bool], None],
) -> str:
    """Run ``attempt`` with the token; after a refusal a fresh token may cure, once more."""
    if isinstance(token, str):
        attempt(token, False)
        return name
    try:
        attempt(token.access_token, False)
        return name
    except MailboxAuthError as exc:
        if not exc.retryable:
            raise
        logger.info(
            "%s %s refused %s; refreshing the token once and retrying", protocol, host, name
        )
    token.refresh()
    attempt(token.access_token, True)
    return name


def _refusal(
    protocol: MailProtocol,
    name: str,
    host: str,
    text: str,
    exchange: _Exchange,
    *,
    retried: bool,
    bad: bool = False,
) -> MailboxAuthError:
    failure = classify_refusal(protocol, text, exchange.provider_error, host=host, syntax_error=bad)
    command = "AUTHENTICATE" if protocol == "IMAP" else "AUTH"
    if exchange.cancelled is not None:
        message = f"{protocol} {command} {name} with {host} cancelled ({exchange.cancelled}); "
        message += f"the server said: {text}"
    else:
        message = f"{host} refused {protocol} {command} {name}: {text}"
        provider = describe_provider_error(exchange.provider_error)
        if provider:
            message += f" (provider error: {provider})"
        if retried:
            message += " (after refreshing the token once)"
        message += f". {failure.hint[0].upper()}{failure.hint[1:]}"
    return MailboxAuthError(
        message,
        protocol=protocol,
        mechanism=name,
        server_message=text,
        provider_error=exchange.provider_error,
        retryable=failure.retryable and exchange.cancelled is None,
    )


def _initial(name: str, user: str, access_token: str, host: str, port: int) -> bytes:
    """The decoded initial client response (the encoders check every value)."""
    if name == "XOAUTH2":
        return base64.b64decode(xoauth2_initial(user, access_token))
    return base64.b64decode(oauthbearer_initial(user, access_token, host, port))


def _user(token: TokenSource | str, user: str | None) -> str:
    if user is None:
        account = getattr(token, "account", None)
        if not isinstance(account, str) or not account:
            raise ConfigurationError(
                "pass user= (the mailbox address): the token does not say which account "
                "it belongs to"
            )
        return account
    if not isinstance(user, str) or not user:
        raise ConfigurationError("user= must be a non-empty string (the mailbox address)")
    return user


def _transport(protocol: MailProtocol, host: str, port: int, sock: object) -> Transport:
    encrypted = isinstance(sock, ssl.SSLSocket)
    verified = False
    if isinstance(sock, ssl.SSLSocket):
        context = sock.context
        verified = context.verify_mode == ssl.CERT_REQUIRED and context.check_hostname
    peer: object = None
    if isinstance(sock, socket.socket):
        try:
            peer = sock.getpeername()
        except OSError:
            peer = None
    return Transport(
        protocol=protocol,
        host=host or "(no host name)",
        port=port,
        encrypted=encrypted,
        verified=verified,
        peer_is_loopback=peer_is_loopback(peer),
    )


def _sasl_host(host: str, sock: object) -> str:
    """The host for OAUTHBEARER's ``host=`` (RFC 7628 §3.2): the name connected to."""
    if host:
        return host.strip("[]")
    if isinstance(sock, socket.socket):
        try:
            return str(sock.getpeername()[0])
        except OSError:
            pass
    return "localhost"  # imaplib's and poplib's meaning of an empty host


def _pop3_write(pop: poplib.POP3, line: bytes, shown: str) -> None:
    # Straight to the socket: poplib's _putcmd prints the line at any debug level.
    logger.debug("POP3 > %s", shown)
    pop.sock.sendall(line + b"\r\n")


def _pop3_line(pop: poplib.POP3) -> bytes:
    line = pop.file.readline(_MAX_POP3_LINE + 1)
    if not line:
        raise poplib.error_proto("-ERR EOF: the server closed the connection during AUTH")
    if len(line) > _MAX_POP3_LINE:
        raise poplib.error_proto(f"the server sent a line over {_MAX_POP3_LINE} octets")
    line = line.rstrip(b"\r\n")
    logger.debug("POP3 < %s", line[:200].decode("utf-8", "replace"))
    return line
