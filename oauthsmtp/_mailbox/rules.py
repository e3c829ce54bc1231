"""IMAP and POP3 logins with a token, decided from values (pure: no sockets, no clocks).

* :func:`imap_mechanisms` and :func:`pop3_mechanisms` read the SASL mechanisms a server
  offers (IMAP ``CAPABILITY`` ``AUTH=...``, RFC 9051 §7.2.2; POP3 ``CAPA`` ``SASL``,
  RFC 5034 §3); :func:`choose_mechanism` picks OAUTHBEARER, else XOAUTH2, as SMTP does.
* :func:`check_transport` refuses to send a token over a connection without TLS, or over
  TLS that did not verify the server's certificate (RFC 7628 §3, RFC 6750 §5.3;
  docs/security.md). ``imaplib`` and ``poplib`` verify nothing unless given a context.
* :func:`classify_refusal` says whether a refusal may be cured by a fresh token, from the
  response code in the server's text (RFC 5530 for IMAP, RFC 3206 for POP3) and the
  decoded error challenge, and what to fix.
* :func:`mask` keeps secrets out of any text that goes into an exception.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Any, Literal

from oauthsmtp._errors import ConfigurationError, MailboxAuthError
from oauthsmtp._smtp.sasl import AuthFailure

__all__ = [
    "MECHANISMS",
    "MailProtocol",
    "Transport",
    "check_transport",
    "choose_mechanism",
    "classify_refusal",
    "describe_provider_error",
    "imap_mechanisms",
    "mask",
    "pop3_mechanisms",
    "response_code",
]

MailProtocol = Literal["IMAP", "POP3"]

MECHANISMS = ("OAUTHBEARER", "XOAUTH2")
"""The token mechanisms, in order of preference (OAUTHBEARER is the standard, RFC 7628)."""

_RESPONSE_CODE = re.compile(r"^\s*\[([A-Za-z0-9/_.-]+)(?:[ \]])")

# Response codes that a fresh token cannot cure, with what to do instead.
_NOT_A_TOKEN_PROBLEM: dict[str, str] = {
    # IMAP, RFC 5530 §3
    "UNAVAILABLE": "a temporary failure on the server side; try again later.",
    "AUTHORIZATIONFAILED": (
        "the token is good but may not open this mailbox: check user= (the mailbox the "
        "token's account may access)."
    ),
    "PRIVACYREQUIRED": "the server wants a more private connection (TLS) for this login.",
    "CONTACTADMIN": "the server asks you to contact its administrator.",
    "LIMIT": "the server refused because of a limit (connections, logins); try again later.",
    # POP3, RFC 3206 §4 and RFC 2449 §8.1
    "SYS/TEMP": "a temporary failure on the server side; try again later.",
    "SYS/PERM": "a permanent failure on the server side; contact its administrator.",
    "IN-USE": "another POP3 session holds the mailbox; close it or try again later.",
    "LOGIN-DELAY": "the server limits how often you may log in; try again later.",
}

_HINT_GOOGLE = (
    "Google refused the token: check that it was issued for the scope "
    "https://mail.google.com/ (the same token serves SMTP, IMAP and POP3), that user= is "
    "the Google account that logged in, and that IMAP or POP is allowed for the account "
    "(Workspace administrators can turn them off)."
)
_HINT_MICROSOFT = (
    "Microsoft refused the token: IMAP needs a token for the scope "
    "https://outlook.office.com/IMAP.AccessAsUser.All and POP3 one for "
    "https://outlook.office.com/POP.AccessAsUser.All (a token for SMTP.Send only is refused "
    "here); user= must be the mailbox the token belongs to (or a shared mailbox it may "
    "open), and IMAP/POP must be enabled for that mailbox."
)
_HINT_GENERIC = (
    "the server refused the token: check the token's scope (it must allow IMAP or POP3, "
    "not only SMTP) and that user= is the account the token was issued for."
)


def imap_mechanisms(capabilities: Iterable[str]) -> tuple[str, ...]:
    """The SASL mechanisms in an IMAP ``CAPABILITY`` list (``AUTH=XOAUTH2`` -> ``XOAUTH2``)."""
    return tuple(
        cap[5:].upper()
        for cap in capabilities
        if isinstance(cap, str) and cap[:5].upper() == "AUTH="
    )


def pop3_mechanisms(capa: Mapping[str, Iterable[str]]) -> tuple[str, ...]:
    """The SASL mechanisms in a POP3 ``CAPA`` answer, as ``poplib.POP3.capa()`` returns it."""
    for name, values in capa.items():
        if isinstance(name, str) and name.upper() == "SASL":
            return tuple(v.upper() for v in values if isinstance(v, str))
    return ()


def choose_mechanism(
    offered: Iterable[str], *, forced: str | None, protocol: MailProtocol, host: str
) -> str:
    """Pick the mechanism: ``forced`` if given and offered, else OAUTHBEARER, else XOAUTH2.

    A server that announces no mechanism at all (a POP3 server whose ``CAPA`` has no
    ``SASL`` line, though RFC 5034 §6 says it should) gets ``forced`` when the caller
    insists on one: the server then decides.

    Raises:
        ConfigurationError: ``forced`` is not XOAUTH2 or OAUTHBEARER.
        MailboxAuthError: the server offers no token mechanism (never a password fallback).
    """
    if forced is not None:
        name = forced.upper() if isinstance(forced, str) else ""
        if name not in MECHANISMS:
            raise ConfigurationError(
                f"mechanism={forced!r} is not a token mechanism; choose XOAUTH2 or OAUTHBEARER "
                "(or None: chosen from the server's capabilities)"
            )
        wanted: tuple[str, ...] = (name,)
    else:
        wanted = MECHANISMS
    advertised = [m.upper() for m in offered]
    if forced is not None and not advertised:
        return wanted[0]
    for name in wanted:
        if name in advertised:
            return name
    where = "CAPABILITY AUTH=" if protocol == "IMAP" else "CAPA SASL"
    raise MailboxAuthError(
        f"{host} offers {where} {' '.join(advertised) or '(nothing)'} over this connection, "
        f"which has no {' or '.join(wanted)} for an OAuth2 token; oauthsmtp never falls back "
        "to a password"
        + (
            ""
            if advertised
            else " (if the server takes one without announcing it, pass mechanism=)"
        ),
        protocol=protocol,
    )


@dataclass(frozen=True)
class Transport:
    """What is known about the connection a token would cross.

    Attributes:
        protocol: ``"IMAP"`` or ``"POP3"``.
        host: the host name the client connected to (for messages).
        port: the port it connected to.
        encrypted: the socket is a TLS socket (implicit TLS, or STARTTLS/STLS completed).
        verified: the TLS context required a valid certificate and checked the host name.
        peer_is_loopback: the peer's address is a loopback address (read from the socket).
    """

    protocol: MailProtocol
    host: str
    port: int
    encrypted: bool
    verified: bool
    peer_is_loopback: bool


def check_transport(transport: Transport, *, allow_plaintext_loopback: bool = False) -> None:
    """Refuse a connection that a token must not cross.

    A token goes only over TLS with a verified certificate (RFC 7628 §3: "TLS MUST be
    used"; RFC 6750 §5.3). ``allow_plaintext_loopback=True`` is the one exception, as
    ``security="none"`` is for :class:`~oauthsmtp.SMTPSession`: a server on this machine,
    proven by the socket's peer address, not by the host name.

    Raises:
        ConfigurationError: what is wrong and what to pass instead.
    """
    t = transport
    if allow_plaintext_loopback and t.peer_is_loopback:
        return
    where = f"the {t.protocol} connection to {t.host}:{t.port}"
    if t.protocol == "IMAP":
        use_tls = (
            "use imaplib.IMAP4_SSL(host, 993, ssl_context=ssl.create_default_context()), or "
            "call imap.starttls(ssl.create_default_context()) before authenticating"
        )
        context = "ssl_context=ssl.create_default_context() to IMAP4_SSL or starttls()"
    else:
        use_tls = (
            "use poplib.POP3_SSL(host, 995, context=ssl.create_default_context()), or call "
            "pop.stls(ssl.create_default_context()) before authenticating"
        )
        context = "context=ssl.create_default_context() to POP3_SSL or stls()"
    loopback_note = (
        f" (allow_plaintext_loopback=True applies only to a loopback peer, and {t.host} is not one)"
        if allow_plaintext_loopback
        else ""
    )
    if not t.encrypted:
        raise ConfigurationError(
            f"{where} is not encrypted and a token is never sent in clear (RFC 7628 §3): "
            f"{use_tls}{loopback_note}; nothing was sent"
        )
    if not t.verified:
        raise ConfigurationError(
            f"{where} uses TLS without checking the server's certificate and host name "
            "(imaplib's and poplib's default when no context is given), so the token could "
            f"go to an impostor: pass {context}{loopback_note}; nothing was sent"
        )


def response_code(text: str) -> str | None:
    """The bracketed response code at the start of ``text`` (``[AUTH]`` -> ``AUTH``), if any."""
    match = _RESPONSE_CODE.match(text)
    return match.group(1).upper() if match else None


def classify_refusal(
    protocol: MailProtocol,
    text: str,
    provider_error: Mapping[str, Any] | None,
    *,
    host: str,
    syntax_error: bool = False,
) -> AuthFailure:
    """Say whether a refused login may be cured by a fresh token, and what to fix.

    A fresh token may help when the server said the credentials failed
    (``[AUTHENTICATIONFAILED]`` or ``[EXPIRED]``, RFC 5530; ``[AUTH]``, RFC 3206), or gave
    no response code at all (Microsoft's ``AUTHENTICATE failed.``). Temporary failures,
    authorization failures, a mailbox in use, and protocol errors (IMAP ``BAD``) are not
    token problems: no refresh.

    Args:
        protocol: ``"IMAP"`` or ``"POP3"``.
        text: the server's response text (after ``NO``/``BAD``/``-ERR``).
        provider_error: the decoded JSON of the error challenge, if one came.
        host: the server's host name (to tell Gmail and Microsoft 365 apart).
        syntax_error: the IMAP server answered ``BAD`` (RFC 9051 §7.1.3).
    """
    if syntax_error:
        return AuthFailure(
            False,
            "the server did not accept the command or the mechanism's syntax; "
            "try the other mechanism with mechanism=.",
        )
    code = response_code(text)
    if code in _NOT_A_TOKEN_PROBLEM:
        return AuthFailure(False, _NOT_A_TOKEN_PROBLEM[code])
    lowered_host = host.lower().rstrip(".")
    scope = provider_error.get("scope") if provider_error else None
    if lowered_host.endswith(("gmail.com", "googlemail.com", "google.com")) or (
        isinstance(scope, str) and "mail.google.com" in scope
    ):
        return AuthFailure(True, _HINT_GOOGLE)
    if lowered_host.endswith(("office365.com", "outlook.com", "office.com")):
        return AuthFailure(True, _HINT_MICROSOFT)
    return AuthFailure(True, _HINT_GENERIC)


def describe_provider_error(provider_error: Mapping[str, Any] | None, *, limit: int = 200) -> str:
    """The decoded error challenge as compact JSON for a message ("" when there is none)."""
    if not provider_error:
        return ""
    text = json.dumps(dict(provider_error), separators=(",", ":"), ensure_ascii=True, default=str)
    return text if len(text) <= limit else text[: limit - 3] + "..."


def mask(text: str, secrets: Iterable[str]) -> str:
    """``text`` with every occurrence of each non-empty secret replaced by ``***``."""
    for secret in secrets:
        if secret:
            text = text.replace(secret, "***")
    return text
