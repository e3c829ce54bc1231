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
    "first_resource",
    "resource_groups",
    "scope_resource",
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


# -- resources: Microsoft issues one access token per resource --------------------------------
#
# Entra ID lets one authorization request consent to scopes of several resources (Exchange
# Online's SMTP.Send and Graph's Mail.Send, say), but each access token serves one resource:
# the token endpoint answers for the first resource named, and a token for another one is
# obtained by redeeming the refresh token with ``scope=`` for it (RFC 6749 §6). Google has no
# such split: one token carries every scope granted.

_MICROSOFT_RESOURCE_HOSTS = frozenset(
    {
        "outlook.office.com",
        "outlook.office365.com",
        "graph.microsoft.com",
        "graph.microsoft.us",
        "dod-graph.microsoft.us",
        "microsoftgraph.chinacloudapi.cn",
    }
)

_DEV_RESOURCES = {
    DEV_SCOPE: "https://mail.oauthsmtp.test/smtp",
    DEV_API_SCOPES[1]: "https://mail.oauthsmtp.test/graph",
}
"""The development provider plays Microsoft for these two (its SMTP and its Graph emulation
are two resources); its Gmail API scope combines with anything, as Google's do."""


def scope_resource(scope: str) -> str | None:
    """The resource whose access tokens carry ``scope``, for providers that issue one token
    per resource (Microsoft); None for a scope that goes with any (``offline_access``,
    ``openid``, Google's scopes, a custom provider's)."""
    if scope in _DEV_RESOURCES:
        return _DEV_RESOURCES[scope]
    if not scope.lower().startswith("https://"):
        return None
    host = scope[len("https://") :].split("/", 1)[0].lower()
    if host not in _MICROSOFT_RESOURCE_HOSTS:
        return None
    return scope.rsplit("/", 1)[0]


def resource_groups(scopes: tuple[str, ...]) -> list[tuple[str, ...]]:
    """``scopes`` split by resource, in the order each resource first appears.

    Scopes of no resource (:func:`scope_resource` None) are left out: they go with every
    group. ``("…office.com/SMTP.Send", "offline_access", "…graph…/Mail.Send")`` gives
    ``[("…office.com/SMTP.Send",), ("…graph…/Mail.Send",)]``.
    """
    groups: dict[str, list[str]] = {}
    for scope in scopes:
        resource = scope_resource(scope)
        if resource is not None:
            groups.setdefault(resource, []).append(scope)
    return [tuple(group) for group in groups.values()]


def first_resource(scopes: tuple[str, ...]) -> tuple[str, ...]:
    """The scopes one token request may ask for: those of no resource plus those of the first
    resource named (Entra refuses a token request spanning two, and answers a login for
    several with a token for the first). ``scopes`` itself when it names at most one."""
    groups = resource_groups(scopes)
    if len(groups) <= 1:
        return scopes
    return tuple(s for s in scopes if scope_resource(s) is None or s in groups[0])
