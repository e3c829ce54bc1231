"""SASL encoders and error-challenge decoding, against published vectors.

Google's XOAUTH2 page, Microsoft's XOAUTH2 sample, RFC 7628 §4 (OAUTHBEARER) and the error
challenge live Gmail sends (MailKit#27).
"""

from __future__ import annotations

import base64

import pytest

from oauthsmtp import ConfigurationError
from oauthsmtp._smtp.sasl import (
    OAUTHBEARER_FAILURE_RESPONSE,
    XOAUTH2_FAILURE_RESPONSE,
    classify_auth_failure,
    decode_error_challenge,
    gs2_escape,
    is_base64,
    login_responses,
    oauthbearer_initial,
    plain_initial,
    xoauth2_initial,
)

GOOGLE_BLOB = (
    b"dXNlcj1zb21ldXNlckBleGFtcGxlLmNvbQFhdXRoPUJlYXJlciB5YTI5LnZGOWRmdDRxbVRjMk52YjNSbGNrQmhkSFJo"
    b"ZG1semRHRXVZMjl0Q2cBAQ=="
)
MICROSOFT_BLOB = (
    b"dXNlcj10ZXN0QGNvbnRvc28ub25taWNyb3NvZnQuY29tAWF1dGg9QmVhcmVyIEV3QkFBbDNCQUFVRkZwVUFvN0oz"
    b"VmUwYmpMQldaV0NjbFJDM0VvQUEBAQ=="
)
RFC7628_IMAP = (
    b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9MTQzAWF1dGg9QmVhcmVyIHZG"
    b"OWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_SMTP = (
    b"bixhPXVzZXJAZXhhbXBsZS5jb20sAWhvc3Q9c2VydmVyLmV4YW1wbGUuY29tAXBvcnQ9NTg3AWF1dGg9QmVhcmVyIHZG"
    b"OWRmdDRxbVRjMk52YjNSbGNrQmhiSFJoZG1semRHRXVZMjl0Q2c9PQEB"
)
RFC7628_TOKEN = "vF9dft4qmTc2Nvb3RlckBhbHRhdmlzdGEuY29tCg=="


def test_xoauth2_google_vector() -> None:
    """Google's documented XOAUTH2 example encodes byte for byte."""
    token = "ya29.vF9dft4qmTc2Nvb3RlckBhdHRhdmlzdGEuY29tCg"
    assert xoauth2_initial("someuser@example.com", token) == GOOGLE_BLOB


def test_xoauth2_microsoft_vector() -> None:
    """Microsoft's documented XOAUTH2 example encodes byte for byte."""
    blob = xoauth2_initial(
        "test@contoso.onmicrosoft.com", "EwBAAl3BAAUFFpUAo7J3Ve0bjLBWZWCclRC3EoAA"
    )
    assert blob == MICROSOFT_BLOB


@pytest.mark.parametrize(("port", "expected"), [(143, RFC7628_IMAP), (587, RFC7628_SMTP)])
def test_oauthbearer_rfc7628_vectors(port: int, expected: bytes) -> None:
    """RFC 7628 §4.1 examples (IMAP 143 and SMTP 587) encode byte for byte."""
    blob = oauthbearer_initial("user@example.com", RFC7628_TOKEN, "server.example.com", port)
    assert blob == expected


def test_oauthbearer_gs2_escapes_user() -> None:
    """`,` and `=` in the authzid are escaped as =2C and =3D (RFC 5801 §4)."""
    blob = oauthbearer_initial("a,b=c@example.org", "tok", "smtp.example.org", 465)
    decoded = base64.b64decode(blob)
    assert decoded.startswith(b"n,a=a=2Cb=3Dc@example.org,\x01host=smtp.example.org\x01port=465")
    assert gs2_escape("=,") == "=3D=2C"


def test_internationalized_user_is_utf8() -> None:
    """An EAI user is sent as UTF-8 rather than failing like smtplib's ASCII encoding."""
    decoded = base64.b64decode(xoauth2_initial("ñoño@example.org", "tok"))
    assert decoded == "user=ñoño@example.org\x01auth=Bearer tok\x01\x01".encode()


@pytest.mark.parametrize("bad", ["a\x01b", "a\rb", "a\nb", "a\x00b", ""], ids=repr)
def test_control_characters_refused_in_user_and_token(bad: str) -> None:
    """^A, CR, LF and NUL (and emptiness) are refused in user and token."""
    with pytest.raises(ConfigurationError):
        xoauth2_initial(bad, "token")
    with pytest.raises(ConfigurationError):
        xoauth2_initial("user@example.org", bad)
    with pytest.raises(ConfigurationError):
        oauthbearer_initial(bad, "token", "host", 587)
    with pytest.raises(ConfigurationError):
        oauthbearer_initial("user@example.org", bad, "host", 587)


@pytest.mark.parametrize("bad", ["has space", "tøken", "tab\there"], ids=repr)
def test_token_must_be_b64token(bad: str) -> None:
    """A bearer token is printable ASCII without spaces (RFC 6750 §2.1)."""
    with pytest.raises(ConfigurationError):
        xoauth2_initial("user@example.org", bad)


def test_oauthbearer_port_range() -> None:
    """Ports outside 1-65535 are refused."""
    with pytest.raises(ConfigurationError):
        oauthbearer_initial("u@example.org", "t", "h", 0)


def test_password_mechanisms() -> None:
    """PLAIN is \\0user\\0password (RFC 4616); LOGIN sends user then password."""
    assert base64.b64decode(plain_initial("u@example.org", "pw")) == b"\x00u@example.org\x00pw"
    user, password = login_responses("u@example.org", "pw")
    assert base64.b64decode(user) == b"u@example.org"
    assert base64.b64decode(password) == b"pw"
    with pytest.raises(ConfigurationError):
        plain_initial("u@example.org", "p\x00w")


def test_failure_responses() -> None:
    """XOAUTH2 answers an error challenge with an empty line, OAUTHBEARER with %x01."""
    assert XOAUTH2_FAILURE_RESPONSE == b""
    assert OAUTHBEARER_FAILURE_RESPONSE == b"AQ=="


@pytest.mark.parametrize(
    ("challenge", "expected"),
    [
        (
            b"eyJzdGF0dXMiOiI0MDEiLCJzY2hlbWVzIjoiYmVhcmVyIG1hYyIsInNjb3BlIjoiaHR0cHM6Ly9tYWlsLmdvb2ds"
            b"ZS5jb20vIn0K",
            {"status": "401", "schemes": "bearer mac", "scope": "https://mail.google.com/"},
        ),
        (
            b"eyJzdGF0dXMiOiI0MDAiLCJzY2hlbWVzIjoiQmVhcmVyIiwic2NvcGUiOiJodHRwczovL21haWwuZ29vZ2xlLmNv"
            b"bS8ifQ==",
            {"status": "400", "schemes": "Bearer", "scope": "https://mail.google.com/"},
        ),
        (
            b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NvcGUiOiJleGFtcGxlX3Njb3BlIiwib3BlbmlkLWNvbmZpZ3Vy"
            b"YXRpb24iOiJodHRwczovL2V4YW1wbGUuY29tLy53ZWxsLWtub3duL29wZW5pZC1jb25maWcifQ==",
            {
                "status": "invalid_token",
                "scope": "example_scope",
                "openid-configuration": "https://example.com/.well-known/openid-config",
            },
        ),
        (
            b"eyJzdGF0dXMiOiJpbnZhbGlkX3Rva2VuIiwic2NoZW1lcyI6ImJlYXJlciBtYWMiLCJzY29wZSI6Imh0dHBzOi8v"
            b"bWFpbC5leGFtcGxlLmNvbS8ifQ==",
            {
                "status": "invalid_token",
                "schemes": "bearer mac",
                "scope": "https://mail.example.com/",
            },
        ),
    ],
    ids=["google-doc", "gmail-live", "rfc7628-4.3", "rfc7628-4.4"],
)
def test_decode_error_challenge_vectors(challenge: bytes, expected: dict[str, str]) -> None:
    """Google's documented and live error challenges decode to their JSON."""
    assert decode_error_challenge(challenge) == expected


@pytest.mark.parametrize(
    "challenge",
    [
        b"not base64!",
        base64.b64encode(b"[1, 2]"),
        base64.b64encode(b'{"a": NaN}'),
        base64.b64encode(b"\xff\xfe"),
        b"",
        # RFC 7628 §4.4's client response ("n,user=..."): base64, but not JSON.
        b"bix1c2VyPXNvbWV1c2VyQGV4YW1wbGUuY29tLAFhdXRoPUJlYXJlciB2RjlkZnQ0cW1UYzJOdmIzUmxja0JoZEhS"
        b"aGRtbHpkR0V1WTI5dENnPT0BAQ==",
        b"A" * 200_000,
    ],
    ids=["not-base64", "array", "nan", "not-utf8", "empty", "not-json", "huge"],
)
def test_decode_error_challenge_rejects(challenge: bytes) -> None:
    """Anything but strict base64 of a JSON object decodes to None."""
    assert decode_error_challenge(challenge) is None


def test_is_base64() -> None:
    """Strict base64 check for challenges (RFC 4954 §4: otherwise cancel with *)."""
    assert is_base64(b"")
    assert is_base64(b"AQ==")
    assert not is_base64(b"not base64!")


@pytest.mark.parametrize(
    ("code", "text", "retryable", "hint_part"),
    [
        (
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
            "Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
            False,
            "aka.ms/smtp_auth_disabled",
        ),
        (
            535,
            "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for the "
            "Mailbox.",
            False,
            "Set-CASMailbox",
        ),
        (
            550,
            "5.7.30 Basic authentication is not supported for Client Submission.",
            False,
            "OAuth2",
        ),
        (
            535,
            "5.7.3 Authentication unsuccessful [SN2PR00CA0018.namprd00.prod.outlook.com]",
            True,
            "SMTP.Send",
        ),
        (
            535,
            "5.7.8 Username and Password not accepted. https://support.google.com/mail",
            True,
            "https://mail.google.com/",
        ),
        (454, "4.7.0 Temporary authentication failure", False, "try again later"),
        (504, "5.5.4 Unrecognized authentication type", False, "mechanism"),
    ],
    ids=["ms-tenant", "ms-mailbox", "ms-basic", "ms-token", "google-token", "temporary", "mech"],
)
def test_classify_auth_failure(code: int, text: str, retryable: bool, hint_part: str) -> None:
    """Configuration errors are never retryable; token refusals are, with a hint to fix."""
    failure = classify_auth_failure(code, text)
    assert failure.retryable is retryable
    assert hint_part in failure.hint


def test_classify_password_failure_not_retryable() -> None:
    """A refused password is not retried: no refresh can help."""
    assert not classify_auth_failure(535, "5.7.8 Bad credentials", oauth=False).retryable
