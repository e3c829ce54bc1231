"""The IMAP/POP3 login rules, as values: mechanisms, TLS, what a refusal means (no sockets)."""

from __future__ import annotations

import pytest

import oauthsmtp
from oauthsmtp._mailbox.rules import (
    Transport,
    check_transport,
    choose_mechanism,
    classify_refusal,
    imap_mechanisms,
    mask,
    pop3_mechanisms,
    response_code,
)
from oauthsmtp._util.net import peer_is_loopback


def transport(**changes: object) -> Transport:
    values: dict[str, object] = {
        "protocol": "IMAP",
        "host": "imap.example.com",
        "port": 993,
        "encrypted": True,
        "verified": True,
        "peer_is_loopback": False,
    }
    values.update(changes)
    return Transport(**values)  # type: ignore[arg-type]


def test_mechanisms_from_capabilities() -> None:
    caps = ("IMAP4REV1", "SASL-IR", "AUTH=XOAUTH2", "auth=oauthbearer", "AUTH=PLAIN")
    assert imap_mechanisms(caps) == ("XOAUTH2", "OAUTHBEARER", "PLAIN")
    assert pop3_mechanisms({"SASL": ["XOAUTH2", "oauthbearer"], "TOP": []}) == (
        "XOAUTH2",
        "OAUTHBEARER",
    )
    assert pop3_mechanisms({"USER": []}) == ()


@pytest.mark.parametrize(
    ("offered", "forced", "chosen"),
    [
        (("XOAUTH2", "OAUTHBEARER"), None, "OAUTHBEARER"),
        (("XOAUTH2",), None, "XOAUTH2"),  # Microsoft 365 offers XOAUTH2 only
        (("XOAUTH2", "OAUTHBEARER"), "xoauth2", "XOAUTH2"),
    ],
)
def test_choose_mechanism(offered: tuple[str, ...], forced: str | None, chosen: str) -> None:
    assert choose_mechanism(offered, forced=forced, protocol="IMAP", host="h") == chosen


def test_no_token_mechanism_is_an_auth_error_never_a_password_fallback() -> None:
    with pytest.raises(oauthsmtp.MailboxAuthError, match="never falls back") as info:
        choose_mechanism(("PLAIN", "LOGIN"), forced=None, protocol="POP3", host="pop.example")
    assert "CAPA SASL PLAIN LOGIN" in str(info.value)
    assert info.value.protocol == "POP3"
    assert not info.value.retryable
    with pytest.raises(oauthsmtp.MailboxAuthError):
        choose_mechanism(("XOAUTH2",), forced="OAUTHBEARER", protocol="IMAP", host="h")


def test_a_server_that_announces_nothing_gets_the_forced_mechanism() -> None:
    """A POP3 CAPA without a SASL line: mechanism= decides; without it, a clear error."""
    assert choose_mechanism((), forced="xoauth2", protocol="POP3", host="h") == "XOAUTH2"
    with pytest.raises(oauthsmtp.MailboxAuthError, match="pass mechanism="):
        choose_mechanism((), forced=None, protocol="POP3", host="h")


def test_a_password_mechanism_cannot_be_forced() -> None:
    with pytest.raises(oauthsmtp.ConfigurationError, match="not a token mechanism"):
        choose_mechanism(("PLAIN",), forced="PLAIN", protocol="IMAP", host="h")


def test_verified_tls_passes() -> None:
    check_transport(transport())


@pytest.mark.parametrize("allow", [False, True])
def test_plaintext_to_a_remote_peer_is_refused_even_when_allowed(allow: bool) -> None:
    """allow_plaintext_loopback never covers a peer that is not loopback."""
    with pytest.raises(oauthsmtp.ConfigurationError, match="not encrypted") as info:
        check_transport(transport(encrypted=False, verified=False), allow_plaintext_loopback=allow)
    assert ("is not one" in str(info.value)) == allow
    assert "nothing was sent" in str(info.value)


def test_unverified_tls_is_refused_with_the_fix() -> None:
    with pytest.raises(oauthsmtp.ConfigurationError, match="certificate") as info:
        check_transport(transport(protocol="POP3", verified=False))
    assert "context=ssl.create_default_context()" in str(info.value)


def test_plaintext_to_loopback_only_with_the_opt_in() -> None:
    plain_local = transport(encrypted=False, verified=False, peer_is_loopback=True)
    with pytest.raises(oauthsmtp.ConfigurationError):
        check_transport(plain_local)
    check_transport(plain_local, allow_plaintext_loopback=True)


@pytest.mark.parametrize(
    ("address", "loopback"),
    [
        (("127.0.0.1", 143), True),
        (("127.8.9.10", 143), True),
        (("::1", 143, 0, 0), True),
        (("192.0.2.1", 143), False),
        (("::ffff:192.0.2.1", 143, 0, 0), False),
        (None, False),
        ("/run/socket", False),
    ],
)
def test_peer_is_loopback(address: object, loopback: bool) -> None:
    assert peer_is_loopback(address) is loopback


@pytest.mark.parametrize(
    ("protocol", "text", "retryable"),
    [
        ("IMAP", "[AUTHENTICATIONFAILED] Authentication failed.", True),  # Dovecot, Gmail
        ("IMAP", "[EXPIRED] Token expired", True),
        ("IMAP", "AUTHENTICATE failed.", True),  # Microsoft 365: no response code
        ("IMAP", "[UNAVAILABLE] Temporary authentication failure.", False),
        ("IMAP", "[AUTHORIZATIONFAILED] Not allowed", False),
        ("IMAP", "[PRIVACYREQUIRED] TLS needed", False),
        ("POP3", "[AUTH] Authentication failed.", True),
        ("POP3", "[SYS/TEMP] Temporary authentication failure.", False),
        ("POP3", "[IN-USE] Mailbox locked", False),
        ("POP3", "[LOGIN-DELAY] Wait", False),
    ],
)
def test_classify_refusal(protocol: str, text: str, retryable: bool) -> None:
    failure = classify_refusal(protocol, text, None, host="mail.example")  # type: ignore[arg-type]
    assert failure.retryable is retryable
    assert failure.hint


def test_imap_bad_is_not_a_token_problem() -> None:
    failure = classify_refusal("IMAP", "Invalid", None, host="h", syntax_error=True)
    assert not failure.retryable
    assert "mechanism=" in failure.hint


def test_provider_hints() -> None:
    google = classify_refusal("IMAP", "[AUTHENTICATIONFAILED] Invalid", None, host="imap.gmail.com")
    assert "https://mail.google.com/" in google.hint
    by_scope = classify_refusal(
        "IMAP", "x", {"status": "400", "scope": "https://mail.google.com/"}, host="10.0.0.1"
    )
    assert by_scope.hint == google.hint
    microsoft = classify_refusal("POP3", "x", None, host="outlook.office365.com")
    assert "POP.AccessAsUser.All" in microsoft.hint


def test_response_code_and_mask() -> None:
    assert response_code("[AUTH] Authentication failed.") == "AUTH"
    assert response_code("[SYS/TEMP] later") == "SYS/TEMP"
    assert response_code("no code [AUTH]") is None
    assert mask("echo tok123 and dG9rMTIz", ["tok123", "dG9rMTIz", ""]) == "echo *** and ***"
