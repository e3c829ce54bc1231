"""Presets for well-known providers: ready :class:`~oauthsmtp.OAuth2Parameters`.

Each preset encodes the provider's endpoints, the scope that allows SMTP, the
extra authorization parameters needed to get a refresh token, and (in
:data:`PROVIDERS`) the SMTP server to send through. Sources: Google's "OAuth 2.0
for Mobile & Desktop Apps" and Microsoft identity platform documentation (see
docs/login.md for setting up each provider).
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Literal

from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._oauth.scopes import (
    GMAIL_API_SCOPE,
    GMAIL_SCOPE,
    GRAPH_APP_SCOPE,
    GRAPH_MAIL_SEND_SCOPE,
    IDENTITY_SCOPES,
    MAIL_SCOPES,
    MICROSOFT_APP_SCOPE,
    MICROSOFT_SMTP_SCOPE,
)

from ._errors import ConfigurationError
from ._limits.rules import SendLimits

if TYPE_CHECKING:
    from collections.abc import Mapping

    from oauthsmtp._oauth.appgrants import ClientCredentials

__all__ = [
    "GMAIL_API_SCOPE",
    "GMAIL_SCOPE",
    "GRAPH_APP_SCOPE",
    "GRAPH_MAIL_SEND_SCOPE",
    "IDENTITY_SCOPES",
    "GMAIL_API_LIMITS",
    "GMAIL_LIMITS",
    "GOOGLE_WORKSPACE_LIMITS",
    "GRAPH_LIMITS",
    "MAIL_SCOPES",
    "MICROSOFT_365_LIMITS",
    "MICROSOFT_SMTP_SCOPE",
    "OUTLOOK_COM_SMTP_HOST",
    "PROVIDERS",
    "ProviderInfo",
    "custom",
    "MICROSOFT_APP_SCOPE",
    "gmail",
    "google_service_account",
    "microsoft",
    "microsoft_app",
]

MICROSOFT_365_LIMITS = SendLimits(connections=3, per_minute=30, recipients_per_day=10_000)
"""Exchange Online's limits for SMTP AUTH client submission, per mailbox: 3 connections at
once (more: ``432 4.3.2``), 30 messages a minute, 10,000 recipients a rolling day (more:
``554 5.2.0``). Sources: docs/limits.md."""

GOOGLE_WORKSPACE_LIMITS = SendLimits(
    recipients_per_message=100, messages_per_day=2_000, recipients_per_day=10_000
)
"""Google Workspace's Gmail sending limits per user through smtp.gmail.com: 100 recipients per
message, 2,000 messages and 10,000 recipients a rolling day (trial accounts: 500 messages;
3,000 external recipients). Sources: docs/limits.md."""

GMAIL_LIMITS = SendLimits(recipients_per_message=100, messages_per_day=500)
"""Consumer Gmail through smtp.gmail.com: 100 recipients per message, about 500 messages a
rolling day. Sources: docs/limits.md."""

GRAPH_LIMITS = SendLimits(connections=4, per_minute=10_000, window=600.0, recipients_per_day=10_000)
"""Microsoft Graph's Outlook mail service limits for ``GraphSession``, per app and mailbox:
4 requests at once, 10,000 requests per 10 minutes (a ``$batch`` counts each message),
and Exchange Online's 10,000 recipients a rolling day. Sources: docs/limits.md."""

GMAIL_API_LIMITS = SendLimits(per_minute=60, recipients_per_message=100, messages_per_day=500)
"""The Gmail API (``GmailAPISession``) for a consumer Gmail account: ``messages.send`` costs
100 quota units and a user may use 6,000 units a minute (the current quota page; it said
15,000 before), so 60 messages a minute; the daily sending limits of :data:`GMAIL_LIMITS`
still apply (Google Workspace: ``dataclasses.replace(GOOGLE_WORKSPACE_LIMITS,
per_minute=60)``). Sources: docs/limits.md."""

OUTLOOK_COM_SMTP_HOST = "smtp-mail.outlook.com"
"""Outlook.com (consumer) accounts send here; Microsoft 365 uses ``smtp.office365.com``
(both STARTTLS on 587; secondary sources, see docs/login.md)."""


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
    api: bool | Literal["auto"] = False,
    **overrides: Any,
) -> OAuth2Parameters:
    """Parameters for Gmail and Google Workspace.

    ``api=True`` asks for :data:`GMAIL_API_SCOPE` (``gmail.send``, for
    :class:`~oauthsmtp.GmailAPISession`) instead of SMTP's restricted
    ``https://mail.google.com/``, plus the identity scopes (docs/api.md).
    ``api="auto"`` (for :class:`~oauthsmtp.AutoSession`) asks for SMTP's
    ``https://mail.google.com/``, which serves the Gmail API as well: one token for both.

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
        "scope": f"{GMAIL_API_SCOPE} {IDENTITY_SCOPES}" if _api(api) is True else info.scope,
        "redirect_url": redirect_url,
        "extra_auth_params": {"access_type": "offline", "prompt": "consent"},
        "revocation_url": info.revocation_url,
        "issuer": "https://accounts.google.com",
    }
    values.update(overrides)
    return _build(values)


_TENANT_WORDS = {"common", "organizations", "consumers"}


def _api(api: object) -> bool | Literal["auto"]:
    if api is True or api is False or api == "auto":
        return api
    raise ConfigurationError(f"api must be True, False or 'auto', not {api!r:.40}")


def microsoft(
    *,
    client_id: str,
    tenant: str = "common",
    client_secret: str | None = None,
    redirect_url: str = "http://localhost:9000",
    api: bool | Literal["auto"] = False,
    **overrides: Any,
) -> OAuth2Parameters:
    """Parameters for Microsoft 365 (work or school) and Outlook.com.

    ``api=True`` asks for Microsoft Graph's ``Mail.Send offline_access`` (for
    :class:`~oauthsmtp.GraphSession`) instead of ``SMTP.Send``, plus the identity
    scopes (docs/api.md). One token serves one resource: an SMTP token is refused
    by Graph ("Invalid audience") and the other way round. ``api="auto"`` (for
    :class:`~oauthsmtp.AutoSession`) asks for both in one consent, ``SMTP.Send`` first:
    the login's token is for SMTP, and :func:`~oauthsmtp.token_for_scope` redeems one
    for Graph from the same refresh token when it is needed.

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
        "scope": {
            True: f"{GRAPH_MAIL_SEND_SCOPE} offline_access {IDENTITY_SCOPES}",
            False: info.scope,
            "auto": f"{info.scope} {GRAPH_MAIL_SEND_SCOPE}",
        }[_api(api)],
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


def _app_tenant(tenant: object) -> str:
    if not isinstance(tenant, str):
        raise ConfigurationError(f"tenant must be a string, not {type(tenant).__name__}")
    tenant = tenant.strip()
    if tenant.lower() in _TENANT_WORDS:
        raise ConfigurationError(
            f"an app-only token needs your own tenant (its ID or a domain such as "
            f"contoso.onmicrosoft.com), not {tenant!r}: there is no signed-in user to pick one"
        )
    if (
        not tenant
        or len(tenant) > 253
        or not tenant.isascii()
        or not all(ch.isalnum() or ch in "-._" for ch in tenant)
    ):
        raise ConfigurationError(f"tenant must be a tenant ID or a domain, got {tenant!r}")
    return tenant


def _pem_or_file(what: str, value: object) -> str | bytes | None:
    """PEM text as given; an ``os.PathLike`` is read (with the key-file permission check)."""
    if isinstance(value, os.PathLike):
        from oauthsmtp._oauth.appgrants import read_key_file

        return read_key_file(value, what=what, private=what != "certificate")
    if value is None or isinstance(value, (str, bytes)):
        return value
    raise ConfigurationError(
        f"{what} must be PEM text or a pathlib.Path, not {type(value).__name__}"
    )


def microsoft_app(
    *,
    client_id: str,
    tenant: str,
    client_secret: str | None = None,
    private_key: str | bytes | os.PathLike[str] | None = None,
    certificate: str | bytes | os.PathLike[str] | None = None,
    token_url: str | None = None,
    scope: str | None = None,
    api: bool = False,
) -> ClientCredentials:
    """App-only credentials for Microsoft 365 (client credentials, RFC 6749 §4.4).

    The app sends as the mailboxes it was given, with no user signed in: it
    needs the ``SMTP.SendAsApp`` application permission (admin consent), an
    Exchange service principal (``New-ServicePrincipal``) and a mailbox
    permission on each mailbox (``Add-MailboxPermission``); see docs/app-only.md.

    Args:
        client_id: the application (client) id.
        tenant: your tenant's ID or domain (not ``common``/``organizations``).
        client_secret: a client secret of the app registration, or:
        private_key / certificate: a private key and the certificate uploaded
            to the app registration (PEM text, or a :class:`pathlib.Path` to a
            PEM file): the app authenticates with a signed ``private_key_jwt``
            assertion (RFC 7523 §2.2, ``x5t#S256`` header, PS256 for RSA keys),
            which Microsoft recommends over secrets.
        token_url: overrides the tenant's token endpoint (national clouds, the
            development provider).
        scope: default ``https://outlook.office365.com/.default`` (SMTP), or with
            ``api=True`` :data:`GRAPH_APP_SCOPE`.
        api: ask for Microsoft Graph (``https://graph.microsoft.com/.default``: the
            ``Mail.Send`` application permission, admin consent) for
            :class:`~oauthsmtp.GraphSession` with ``user=`` the mailbox (docs/api.md),
            instead of SMTP's ``SMTP.SendAsApp``.

    Raises:
        ConfigurationError: a tenant word, both or neither of secret and key, a
            key without a certificate, a key that is not a key or a certificate
            that is not the key's.
    """
    from oauthsmtp._oauth.appgrants import ClientCredentials

    tenant = _app_tenant(tenant)
    if (client_secret is None) == (private_key is None):
        raise ConfigurationError(
            "microsoft_app needs client_secret, or private_key and certificate (not both)"
        )
    if private_key is not None and certificate is None:
        raise ConfigurationError(
            "microsoft_app needs the certificate with the private key: Microsoft finds the "
            "key by the certificate's thumbprint (upload the certificate to the app registration)"
        )
    key = _pem_or_file("private_key", private_key)
    return ClientCredentials(
        client_id=client_id,
        token_url=token_url or PROVIDERS["microsoft"].token_url.format(tenant=tenant),
        scope=scope or (GRAPH_APP_SCOPE if api else MICROSOFT_APP_SCOPE),
        client_secret=client_secret,
        private_key=key,
        certificate=_pem_or_file("certificate", certificate),
        algorithm="PS256" if key is not None and _is_rsa(key) else None,
    )


def _is_rsa(pem: str | bytes) -> bool:
    """Whether ``pem`` is an RSA private key (Microsoft asks for PS256 with those)."""
    from cryptography.hazmat.primitives.asymmetric import rsa
    from cryptography.hazmat.primitives.serialization import load_pem_private_key

    data = pem.encode("utf-8") if isinstance(pem, str) else pem
    try:
        return isinstance(load_pem_private_key(data, password=None), rsa.RSAPrivateKey)
    except Exception:  # ClientCredentials parses it again and says what is wrong
        return False


def google_service_account(
    info: str | os.PathLike[str] | Mapping[str, Any],
    *,
    subject: str | None = None,
    scope: str = GMAIL_SCOPE,
) -> ClientCredentials:
    """A Google service account's credentials for the JWT bearer grant (RFC 7523 §2.1).

    With ``subject``, the token acts for that Workspace user (domain-wide
    delegation, set up by an administrator for the service account's client
    id and ``https://mail.google.com/``; see docs/google-service-account.md);
    Gmail's SMTP accepts it for that user only.

    Args:
        info: the service account's JSON key: a path to the file Google
            downloads, or the parsed dict.
        subject: the user to act for (the SMTP user name).
        scope: default ``https://mail.google.com/``.

    Raises:
        ConfigurationError: the file cannot be read or is not a service
            account key (the message never quotes the key).
    """
    import json

    from oauthsmtp._oauth.appgrants import ClientCredentials, read_key_file

    if isinstance(info, (str, os.PathLike)):
        raw = read_key_file(info, what="service account key file", private=True)
        try:
            data = json.loads(raw)
        except ValueError:
            raise ConfigurationError(
                f"{os.fspath(info)} is not a service account key (not JSON); download the "
                "JSON key of the service account from the Google Cloud console"
            ) from None
    else:
        data = info
    if not isinstance(data, dict) or data.get("type") != "service_account":
        raise ConfigurationError(
            'not a service account key (expected a JSON object with "type": "service_account")'
        )
    missing = [
        name
        for name in ("client_email", "private_key", "token_uri")
        if not isinstance(data.get(name), str) or not data.get(name)
    ]
    if missing:
        raise ConfigurationError(f"the service account key lacks {', '.join(missing)}")
    key_id = data.get("private_key_id")
    return ClientCredentials(
        client_id=str(data.get("client_id") or data["client_email"]),
        token_url=data["token_uri"],
        scope=scope,
        private_key=data["private_key"],
        grant="jwt_bearer",
        subject=subject,
        issuer=data["client_email"],
        algorithm="RS256",  # Google accepts RS256 only
        key_id=key_id if isinstance(key_id, str) and key_id else None,
    )
