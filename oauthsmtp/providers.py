"""Presets for well-known providers: ready :class:`~oauthsmtp.OAuth2Parameters`.

Each preset encodes the provider's endpoints, the scope that allows SMTP, the
extra authorization parameters needed to get a refresh token, and (in
:data:`PROVIDERS`) the SMTP server to send through. Sources: Google's "OAuth 2.0
for Mobile & Desktop Apps" and Microsoft identity platform documentation (see
docs/login.md for setting up each provider).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from oauthsmtp._oauth.params import OAuth2Parameters

from ._errors import ConfigurationError

__all__ = [
    "GMAIL_SCOPE",
    "IDENTITY_SCOPES",
    "MAIL_SCOPES",
    "MICROSOFT_SMTP_SCOPE",
    "OUTLOOK_COM_SMTP_HOST",
    "PROVIDERS",
    "ProviderInfo",
    "custom",
    "gmail",
    "microsoft",
]

GMAIL_SCOPE = "https://mail.google.com/"
MICROSOFT_SMTP_SCOPE = "https://outlook.office.com/SMTP.Send"
DEV_SCOPE = "https://mail.oauthsmtp.test/smtp"

OUTLOOK_COM_SMTP_HOST = "smtp-mail.outlook.com"
"""Outlook.com (consumer) accounts send here; Microsoft 365 uses ``smtp.office365.com``
(both STARTTLS on 587; secondary sources, see docs/login.md)."""

IDENTITY_SCOPES = "openid email"
"""OpenID Connect scopes the presets add, so that the token answer's ``id_token`` names
the account that logged in (checked against ``account=``)."""

MAIL_SCOPES = frozenset(
    {GMAIL_SCOPE, MICROSOFT_SMTP_SCOPE, "https://outlook.office365.com/.default", DEV_SCOPE}
)
"""Scopes that grant SMTP sending; a login that asked for one must be granted it
(docs/security.md rule 17)."""


@dataclass(frozen=True)
class ProviderInfo:
    """What oauthsmtp knows about a provider (for the CLI and the docs).

    Attributes:
        name: the preset's name.
        auth_url / token_url / revocation_url: the OAuth2 endpoints
            (``{tenant}`` stands for the Microsoft tenant).
        scope: the scopes requested.
        smtp_host / smtp_port / security: where to send mail.
        device_authorization_url: the RFC 8628 endpoint, where the provider allows
            the device login for mail (Microsoft; not Google).
    """

    name: str
    auth_url: str
    token_url: str
    revocation_url: str | None
    scope: str
    smtp_host: str
    smtp_port: int
    security: str
    device_authorization_url: str | None = None


PROVIDERS: dict[str, ProviderInfo] = {
    "gmail": ProviderInfo(
        name="gmail",
        auth_url="https://accounts.google.com/o/oauth2/v2/auth",
        token_url="https://oauth2.googleapis.com/token",  # noqa: S106 - an endpoint, not a secret
        revocation_url="https://oauth2.googleapis.com/revoke",
        scope=f"{GMAIL_SCOPE} {IDENTITY_SCOPES}",
        smtp_host="smtp.gmail.com",
        smtp_port=587,
        security="starttls",
    ),
    "microsoft": ProviderInfo(
        name="microsoft",
        auth_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/authorize",
        token_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/token",  # noqa: S106
        revocation_url=None,
        scope=f"{MICROSOFT_SMTP_SCOPE} offline_access {IDENTITY_SCOPES}",
        smtp_host="smtp.office365.com",
        smtp_port=587,
        security="starttls",
        device_authorization_url="https://login.microsoftonline.com/{tenant}/oauth2/v2.0/devicecode",
    ),
}
"""The presets, by name."""


def gmail(
    *,
    client_id: str,
    client_secret: str,
    redirect_url: str = "http://localhost:9000",
    **overrides: Any,
) -> OAuth2Parameters:
    """Parameters for Gmail and Google Workspace.

    Use a "Desktop app" OAuth client: Google accepts any loopback port for it
    and issues a client secret that it expects on code exchange and refresh
    (it is not confidential for desktop apps). ``access_type=offline`` and
    ``prompt=consent`` make Google return a refresh token every time;
    ``openid email`` makes it say which account logged in (see ``AccountMismatch``).
    No device login: Google refuses the mail scope in its device flow, so
    ``auth_identify(..., flow="device")`` raises ConfigurationError naming the
    alternatives (``flow="paste"``, an SSH port forward, :func:`~oauthsmtp.import_token`).
    """
    if not client_secret:
        raise ConfigurationError(
            "Gmail needs the OAuth client's secret as well as its id: Google issues one to "
            "desktop apps and expects it when the code is exchanged (copy it from the Google "
            "Cloud console, Credentials page)"
        )
    info = PROVIDERS["gmail"]
    values: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "auth_url": info.auth_url,
        "token_url": info.token_url,
        "scope": info.scope,
        "redirect_url": redirect_url,
        "extra_auth_params": {"access_type": "offline", "prompt": "consent"},
        "revocation_url": info.revocation_url,
        "issuer": "https://accounts.google.com",
    }
    values.update(overrides)
    return _build(values)


_TENANT_WORDS = {"common", "organizations", "consumers"}


def microsoft(
    *,
    client_id: str,
    tenant: str = "common",
    client_secret: str | None = None,
    redirect_url: str = "http://localhost:9000",
    **overrides: Any,
) -> OAuth2Parameters:
    """Parameters for Microsoft 365 (work or school) and Outlook.com.

    Register a public client ("Mobile and desktop applications" with redirect
    ``http://localhost``) and pass no secret: Entra refuses a secret from a
    public client (AADSTS700025). ``tenant`` is ``common``, ``organizations``,
    ``consumers`` (Outlook.com) or your tenant ID / domain (required for
    single-tenant apps). ``offline_access`` is requested to get a refresh token,
    ``openid email`` to learn which account logged in (see ``AccountMismatch``).
    """
    if not isinstance(tenant, str):
        raise ConfigurationError(f"tenant must be a string, not {type(tenant).__name__}")
    tenant = tenant.strip()
    if (
        not tenant
        or len(tenant) > 253
        or not tenant.isascii()
        or not all(ch.isalnum() or ch in "-._" for ch in tenant)
    ):
        raise ConfigurationError(
            "tenant must be 'common', 'organizations', 'consumers', a tenant ID or a domain, "
            f"got {tenant!r}"
        )
    info = PROVIDERS["microsoft"]
    values: dict[str, Any] = {
        "client_id": client_id,
        "client_secret": client_secret,
        "auth_url": info.auth_url.format(tenant=tenant),
        "token_url": info.token_url.format(tenant=tenant),
        "scope": info.scope,
        "redirect_url": redirect_url,
        "revocation_url": None,
        # RFC 9207 issuer; Entra sends no ``iss`` today, so this is only a guard.
        "issuer": f"https://login.microsoftonline.com/{tenant}/v2.0",
        # RFC 8628 device login (auth_identify(..., flow="device")).
        "device_authorization_url": info.device_authorization_url.format(tenant=tenant)
        if info.device_authorization_url
        else None,
    }
    values.update(overrides)
    return _build(values)


def custom(**values: Any) -> OAuth2Parameters:
    """Parameters for any other provider: the keywords of :class:`OAuth2Parameters`."""
    return _build(values)


def _build(values: dict[str, Any]) -> OAuth2Parameters:
    """OAuth2Parameters from keywords; an unknown or missing keyword is a ConfigurationError."""
    import dataclasses

    known = {f.name for f in dataclasses.fields(OAuth2Parameters)}
    unknown = sorted(set(values) - known)
    if unknown:
        raise ConfigurationError(
            f"unknown parameter(s) {', '.join(unknown)}; "
            f"the parameters are {', '.join(sorted(known))}"
        )
    if "client_id" not in values:
        raise ConfigurationError("client_id is required")
    return OAuth2Parameters(**values)
