"""The library's own errors carry the explain table's advice: each fix is written once.

Token endpoint errors (TokenError), a refused refresh token (LoginRequired) and AUTH
refusals (SMTPAuthError) say what the table says; whether a refresh is tried stays the
SMTP code's own decision (docs/security.md, retry policy).
"""

from __future__ import annotations

import json

import pytest

from oauthsmtp import LoginRequired, SMTPAuthError, TokenError
from oauthsmtp._cli.hints import message_for
from oauthsmtp._explain import by_key
from oauthsmtp._oauth.tokenresponse import parse_token_response
from oauthsmtp._smtp.sasl import classify_auth_failure
from oauthsmtp._tokens.manager import invalid_grant_error
from oauthsmtp._util.clock import utcnow


def fix(key: str) -> str:
    return by_key(key).fix.replace("{account}", "<mailbox>")


def token_error(body: dict[str, str]) -> TokenError:
    with pytest.raises(TokenError) as caught:
        parse_token_response(400, "application/json", json.dumps(body).encode(), now=utcnow())
    return caught.value


@pytest.mark.parametrize(
    ("error", "description", "key"),
    [
        ("invalid_client", "AADSTS700025: Client is public so neither ...", "aadsts700025"),
        ("invalid_client", "AADSTS7000218: ... 'client_secret'.", "aadsts7000218"),
        ("invalid_grant", "AADSTS50011: The redirect URI ...", "aadsts50011"),
        ("invalid_grant", "Token has been expired or revoked.", "oauth-invalid-grant"),
        ("admin_policy_enforced", "", "google-admin-policy"),
        ("invalid_client", "The OAuth client was not found.", "oauth-invalid-client"),
    ],
)  # fmt: skip
def test_token_errors_carry_the_table_fix(error: str, description: str, key: str) -> None:
    exc = token_error({"error": error, "error_description": description})
    assert f"Hint: {by_key(key).title} {fix(key)}" in str(exc)
    assert exc.error == error


def test_unknown_token_error_has_no_invented_hint() -> None:
    assert "Hint" not in str(token_error({"error": "something_new"}))


def test_refused_refresh_token_says_the_table_cause() -> None:
    exc = invalid_grant_error("me@example.org", TokenError("x", error="invalid_grant"))
    assert isinstance(exc, LoginRequired)
    assert by_key("oauth-invalid-grant").cause in str(exc)
    assert "publish it" in str(exc)
    assert "oauthsmtp login --account me@example.org" in str(exc)


@pytest.mark.parametrize(
    ("code", "text", "key", "retryable"),
    [
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
         "the Tenant.", "smtp-5.7.139-tenant", False),
        (535, "5.7.139 Authentication unsuccessful, SmtpClientAuthentication is disabled for "
         "the Mailbox.", "smtp-5.7.139-mailbox", False),
        (550, "5.7.30 Basic authentication is not supported for Client Submission.",
         "smtp-5.7.30", False),
        (535, "5.7.3 Authentication unsuccessful [SN2PR00CA0018]", "smtp-5.7.3", True),
        (535, "5.7.8 Username and Password not accepted.", "smtp-5.7.8", True),
        (432, "4.3.2 Concurrent connections limit exceeded.", "smtp-4.3.2", False),
    ],
)  # fmt: skip
def test_auth_refusals_carry_the_table_fix(code: int, text: str, key: str, retryable: bool) -> None:
    """The advice is the table's; the retry decision is unchanged (432 and 5.7.139: none)."""
    failure = classify_auth_failure(code, text)
    assert failure.hint == f"{by_key(key).cause} Fix: {fix(key)}"
    assert failure.retryable is retryable


def test_password_refusals_keep_their_own_advice() -> None:
    """A password AUTH refused with 5.7.8 is not told to refresh a token."""
    failure = classify_auth_failure(535, "5.7.8 Username and Password not accepted.", oauth=False)
    assert failure.hint == "check the user name and password."


def test_the_command_line_fills_the_account_in() -> None:
    hint = classify_auth_failure(
        535, "5.7.139 SmtpClientAuthentication is disabled for the Mailbox"
    )
    exc = SMTPAuthError(f"smtp refused AUTH XOAUTH2: 535 5.7.139. {hint.hint}", code=535)
    text = message_for(exc, account="me@contoso.com")
    assert "Set-CASMailbox -Identity me@contoso.com " in text
    assert "<mailbox>" not in text
