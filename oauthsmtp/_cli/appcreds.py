"""App-only accounts on the command line: their credentials rebuilt from what ``login`` recorded.

An app-only account (``--provider microsoft-app`` or ``google-service-account``)
has no refresh token: its token is renewed by making the grant again, so every
command needs the app's credentials. ``login`` records where they are: a client
secret goes to the token store (as for a browser login); a private key,
certificate or service-account key stays in its file, whose absolute path is
recorded with the account (in its ``extra_auth_params``, which no authorization
request ever uses for an app-only account) and read again at each renewal, so a
rotated key file is picked up and a file others can read is warned about each time.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from oauthsmtp import AuthToken, ClientCredentials, TokenStore
    from oauthsmtp._accounts import AccountSettings

__all__ = [
    "APP_PROVIDERS",
    "CERTIFICATE_FILE",
    "KEY_FILE",
    "PRIVATE_KEY_FILE",
    "SUBJECT",
    "app_credentials",
    "saved_app_token",
]

APP_PROVIDERS = ("microsoft-app", "google-service-account")
"""The providers whose accounts get app-only tokens."""

PRIVATE_KEY_FILE = "private_key_file"
CERTIFICATE_FILE = "certificate_file"
KEY_FILE = "key_file"
SUBJECT = "subject"


def app_credentials(settings: AccountSettings, token_store: TokenStore) -> ClientCredentials:
    """The app's credentials for a recorded app-only account.

    Raises:
        ConfigurationError: a recorded key file is gone, unreadable or not a key
            (the message names the file and the login command that records a new one).
    """
    from pathlib import Path

    from oauthsmtp import providers
    from oauthsmtp._accounts import secret_key

    extra = settings.extra_auth_params
    if settings.provider == "google-service-account":
        return providers.google_service_account(
            Path(extra[KEY_FILE]), subject=extra.get(SUBJECT), scope=" ".join(settings.scope)
        )
    secret = token_store.load(secret_key(settings)) if settings.has_client_secret else None
    key_file = extra.get(PRIVATE_KEY_FILE)
    cert_file = extra.get(CERTIFICATE_FILE)
    return providers.microsoft_app(
        client_id=settings.client_id,
        tenant=settings.tenant or "",
        client_secret=secret,
        private_key=Path(key_file) if key_file else None,
        certificate=Path(cert_file) if cert_file else None,
        token_url=settings.token_url,
        scope=" ".join(settings.scope),
    )


def saved_app_token(settings: AccountSettings, token_store: TokenStore) -> AuthToken:
    """The account's app token: the stored one while valid, else a new grant (saved)."""
    from oauthsmtp import app_token

    return app_token(
        app_credentials(settings, token_store), account=settings.account, store=token_store
    )
