"""The OAuth2 scopes oauthsmtp knows: which grant sending, and which name the user.

Constants only (pure). :mod:`oauthsmtp.providers` re-exports them for users; the
granted-scope check of a login reads :data:`MAIL_SCOPES` from here, so that
``_oauth`` never imports the presets built on top of it.
"""

from __future__ import annotations

__all__ = [
    "DEV_API_SCOPES",
    "DEV_SCOPE",
    "GMAIL_API_SCOPE",
    "GMAIL_SCOPE",
    "GRAPH_APP_SCOPE",
    "GRAPH_MAIL_SEND_SCOPE",
    "IDENTITY_SCOPES",
    "MAIL_SCOPES",
    "MICROSOFT_APP_SCOPE",
    "MICROSOFT_SMTP_SCOPE",
]

GMAIL_SCOPE = "https://mail.google.com/"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
MICROSOFT_APP_SCOPE = "https://outlook.office365.com/.default"
"""App-only (client credentials) scope for Exchange Online: the app's granted
application permissions, among them ``SMTP.SendAsApp``."""
DEV_SCOPE = "https://mail.oauthsmtp.test/smtp"

GMAIL_API_SCOPE = "https://www.googleapis.com/auth/gmail.send"
"""Sending through the Gmail API only (a "sensitive" scope; SMTP's is "restricted")."""

GRAPH_MAIL_SEND_SCOPE = "https://graph.microsoft.com/Mail.Send"
"""Sending through Microsoft Graph (``sendMail``) as the signed-in user."""

GRAPH_APP_SCOPE = "https://graph.microsoft.com/.default"
"""App-only Microsoft Graph: the application permissions granted to the app (``Mail.Send``)."""

DEV_API_SCOPES = (
    "https://mail.oauthsmtp.test/gmail.send",
    "https://mail.oauthsmtp.test/Mail.Send",
)

IDENTITY_SCOPES = "openid email"
"""OpenID Connect scopes the presets add, so that the token answer's ``id_token`` names
the account that logged in (checked against ``account=``)."""

MAIL_SCOPES = frozenset(
    {
        GMAIL_SCOPE,
        MICROSOFT_SMTP_SCOPE,
        MICROSOFT_APP_SCOPE,
        DEV_SCOPE,
        GMAIL_API_SCOPE,
        GRAPH_MAIL_SEND_SCOPE,
        *DEV_API_SCOPES,
    }
)
"""Scopes that grant sending (SMTP or an HTTP API); a login that asked for one must be
granted it (docs/security.md rule 17)."""
