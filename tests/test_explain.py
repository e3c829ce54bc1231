"""explain(): one table that turns provider errors into a cause and a fix."""

from __future__ import annotations

import pytest

import oauthsmtp
from oauthsmtp._explain import TABLE, lookup

# What each entry must recognise: real texts as servers and providers send them.
SAMPLES = {
    "smtp-5.7.139-tenant": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
    "is disabled for the Tenant. Visit https://aka.ms/smtp_auth_disabled for more information.",
    "smtp-5.7.139-mailbox": "535 5.7.139 Authentication unsuccessful, SmtpClientAuthentication "
    "is disabled for the Mailbox. Visit https://aka.ms/smtp_auth_disabled for more information.",
    "smtp-5.7.139": "535 5.7.139 Authentication unsuccessful, the request did not meet the "
    "criteria to be authenticated successfully.",
    "smtp-5.7.30": "550 5.7.30 Basic authentication is not supported for Client Submission.",
    "smtp-5.7.3": "535 5.7.3 Authentication unsuccessful [AM0PR02CA0001.eurprd02.prod.outlook.com]",
    "smtp-5.7.57": "530 5.7.57 Client not authenticated to send mail. [BN8PR15CA0001]",
    "smtp-5.7.60": "550 5.7.60 SMTP; Client does not have permissions to send as this sender.",
    "smtp-4.3.2": "432 4.3.2 Concurrent connections limit exceeded. Visit https://aka.ms/concurrent_sending",
    "smtp-5.2.0-quota": "554 5.2.0 STOREDRV.Submission.Exception:SubmissionQuotaExceededException",
    "smtp-5.7.8": "535-5.7.8 Username and Password not accepted. For more information, go to\n"
    "535 5.7.8  https://support.google.com/mail/?p=BadCredentials a1-20020a05 - gsmtp",
    "smtp-5.7.9": "534-5.7.9 Application-specific password required. - gsmtp",
    "smtp-5.7.14": "534-5.7.14 <https://accounts.google.com/signin/continue> Please log in via "
    "your web browser and then try again.",
    "smtp-5.4.5": "550 5.4.5 Daily user sending limit exceeded. - gsmtp",
    "smtp-4.7.0-rate": "454 4.7.0 Too many login attempts, please try again later. - gsmtp",
    "smtp-5.7.0-starttls": "530 5.7.0 Must issue a STARTTLS command first. - gsmtp",
    "smtp-5.3.4": "552 5.3.4 Message size exceeds fixed limit - gsmtp",
    "aadsts700025": "invalid_client: AADSTS700025: Client is public so neither 'client_assertion' "
    "nor 'client_secret' should be presented.",
    "aadsts7000218": "AADSTS7000218: The request body must contain the following parameter: "
    "'client_assertion' or 'client_secret'.",
    "aadsts7000215": "AADSTS7000215: Invalid client secret provided.",
    "aadsts7000222": "AADSTS7000222: The provided client secret keys for app are expired.",
    "aadsts700027": "AADSTS700027: Client assertion failed signature validation.",
    "aadsts1002012": "AADSTS1002012: The provided value for scope SMTP.Send is not valid. "
    "Client credential flows must have a scope value with /.default suffixed to the "
    "resource identifier.",
    "aadsts50011": "AADSTS50011: The redirect URI 'http://localhost:9000' specified in the "
    "request does not match the redirect URIs configured for the application.",
    "aadsts65001": "AADSTS65001: The user or administrator has not consented to use the app",
    "aadsts50020": "AADSTS50020: User account from identity provider does not exist in tenant",
    "aadsts50194": "AADSTS50194: Application is not configured as a multi-tenant application.",
    "aadsts53003": "AADSTS53003: Access has been blocked by Conditional Access policies.",
    "aadsts50076": "AADSTS50076: you must use multi-factor authentication to access",
    "aadsts90009": "AADSTS90009: Application is requesting a token for itself.",
    "aadsts700016": "AADSTS700016: Application with identifier 'x' was not found in the directory",
    "aadsts70011": "AADSTS70011: The provided value for the input parameter 'scope' is not valid.",
    "aadsts700082": "invalid_grant: AADSTS700082: The refresh token has expired due to inactivity.",
    "aadsts50173": "AADSTS50173: The provided grant has expired due to it being revoked",
    "google-device-scope": "invalid_scope: Invalid device flow scope: https://mail.google.com/",
    "google-admin-policy": "admin_policy_enforced",
    "google-org-internal": "Error 403: org_internal",
    "google-redirect-mismatch": "Error 400: redirect_uri_mismatch",
    "google-disabled-client": "disabled_client: The OAuth client was disabled.",
    "oauth-invalid-grant": "invalid_grant: Token has been expired or revoked.",
    "oauth-invalid-client": "invalid_client: The OAuth client was not found.",
    "oauth-unauthorized-client": "unauthorized_client",
    "oauth-invalid-scope": "invalid_scope: Some requested scopes were invalid.",
    "oauth-access-denied": "access_denied",
    "oauth-expired-token": "expired_token",
    "oauth-unavailable": "temporarily_unavailable",
    "tls-wrong-version": "[SSL: WRONG_VERSION_NUMBER] wrong version number (_ssl.c:1006)",
    "tls-untrusted": "[SSL: CERTIFICATE_VERIFY_FAILED] certificate verify failed: self-signed "
    "certificate (_ssl.c:1006)",
    # What oauthsmtp itself says (its errors and oauthsmtp doctor's lines).
    "account-not-recorded": "no account 'me@example.org' is recorded (recorded: none); log in",
    "token-store-unusable": "the token store cannot be used: no secure keyring backend",
    "token-missing": "no saved login for me@example.org: log in first with oauthsmtp login",
    "token-no-refresh": "the token has expired and no refresh token is held (Google needs ...)",
    "identity-mismatch": "the token is for other@example.org, not me@example.org",
    "scope-graph-for-smtp": "granted https://graph.microsoft.com/Mail.Send: a Microsoft Graph "
    "scope, not SMTP.Send",
    "api-token-missing": "no token for Microsoft Graph from this login: invalid_scope",
    "scope-missing": "the mail scope https://mail.google.com/ was not granted (granted: openid)",
    "token-endpoint-failed": "the token endpoint answered HTTP 502 (text/html, 12 bytes) without "
    "an OAuth error; try again later or check token_url",
    "smtp-starttls-missing": "smtp.example.org:25 does not offer STARTTLS; refusing to go on",
    "smtp-no-oauth-mechanism": "localhost offers AUTH LOGIN after TLS, which has no mechanism for "
    "an OAuth2 token (OAUTHBEARER or XOAUTH2)",
    "smtp-refused-session": "smtp.example.org refused the session: 554 no service for you",
    "smtp-auth-refused": "smtp.example.org refused AUTH XOAUTH2: 535 Authentication failed",
    "tls-failed": "the TLS handshake with smtp.example.org:465 failed: [SSL] alert",
    "dns-unresolved": "cannot connect to nowhere.invalid:587: [Errno -2] Name or service not known",
    "tcp-unreachable": "cannot connect to 127.0.0.1:1: [Errno 111] Connection refused",
}


def test_every_entry_has_a_sample_and_keys_are_unique() -> None:
    keys = [entry.key for entry in TABLE]
    assert len(keys) == len(set(keys))
    assert set(keys) == set(SAMPLES)


@pytest.mark.parametrize("key", list(SAMPLES))
def test_each_sample_finds_its_own_entry(key: str) -> None:
    """Table order is right: no entry is shadowed by a more general one before it."""
    entry = lookup(SAMPLES[key])
    assert entry is not None
    assert entry.key == key
    text = oauthsmtp.explain(SAMPLES[key], account="me@contoso.com")
    assert text is not None
    lines = text.splitlines()
    assert lines[0] == entry.title
    assert lines[1].startswith("Why: ")
    assert lines[2].startswith("Fix: ")
    assert "{account}" not in text


def test_codes_alone_are_enough() -> None:
    for code, key in [
        ("AADSTS700025", "aadsts700025"),
        ("5.7.139", "smtp-5.7.139"),
        ("535 5.7.3", "smtp-5.7.3"),
        ("5.7.30", "smtp-5.7.30"),
        ("invalid_grant", "oauth-invalid-grant"),
    ]:
        entry = lookup(code)
        assert entry is not None, code
        assert entry.key == key


def test_similar_codes_are_not_confused() -> None:
    """5.7.3 is not 5.7.30 nor 5.7.39; AADSTS7000218 is not AADSTS700021."""
    assert lookup("550 5.7.30 Basic authentication is not supported").key == "smtp-5.7.30"  # type: ignore[union-attr]
    assert lookup("535 5.7.39 something") is None
    assert lookup("AADSTS700021: other") is None


def test_the_account_fills_the_fix() -> None:
    text = oauthsmtp.explain(SAMPLES["smtp-5.7.139-mailbox"], account="me@contoso.com")
    assert text is not None
    assert "Set-CASMailbox -Identity me@contoso.com" in text
    assert "<mailbox>" in (oauthsmtp.explain(SAMPLES["smtp-5.7.139-mailbox"]) or "")


def test_unknown_text_is_none_and_unknown_aadsts_points_to_microsoft() -> None:
    assert oauthsmtp.explain("250 OK") is None
    assert oauthsmtp.explain("") is None
    assert oauthsmtp.explain("x" * 1_000_000) is None
    text = oauthsmtp.explain("AADSTS12345678: something new")
    assert text is not None
    assert "https://login.microsoftonline.com/error?code=12345678" in text


def test_retry_says_whether_a_refresh_can_help() -> None:
    assert lookup(SAMPLES["smtp-5.7.139-tenant"]).retry is False  # type: ignore[union-attr]
    assert lookup(SAMPLES["smtp-5.7.3"]).retry is True  # type: ignore[union-attr]
    assert lookup(SAMPLES["smtp-5.7.8"]).retry is True  # type: ignore[union-attr]


def test_wrong_type_is_a_clear_error() -> None:
    with pytest.raises(TypeError, match="takes a str"):
        oauthsmtp.explain(535)  # type: ignore[arg-type]


def test_troubleshooting_page_lists_the_whole_table() -> None:
    """docs/troubleshooting.md holds the table as generated: the two cannot drift."""
    from pathlib import Path

    from oauthsmtp._explain import markdown

    page = (Path(__file__).parent.parent / "docs" / "troubleshooting.md").read_text()
    start = page.index("<!-- explain-table:start")
    start = page.index("-->", start) + len("-->\n")
    end = page.index("<!-- explain-table:end -->")
    assert page[start:end] == markdown(), (
        "docs/troubleshooting.md is out of date: regenerate the block between the "
        "explain-table markers with oauthsmtp._explain.markdown()"
    )


def test_the_explain_command(capsys: pytest.CaptureFixture[str]) -> None:
    from oauthsmtp._cli.main import main

    code = main(["explain", "535", "5.7.139", "disabled", "for", "the", "Tenant"])
    out = capsys.readouterr().out
    assert code == 0
    assert out.startswith("535 5.7.139: SMTP AUTH is disabled for the whole Microsoft 365 tenant.")
    assert "Set-TransportConfig" in out

    code = main(["explain", "AADSTS700025", "--account", "me@contoso.com"])
    assert code == 0
    assert "must not send a secret" in capsys.readouterr().out

    code = main(["explain", "all is well"])
    assert code == 1
    assert "knows nothing specific" in capsys.readouterr().out
