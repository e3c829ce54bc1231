"""What the commands share: the recorded accounts, the token store, a saved login.

Imports of the library's heavier modules happen inside these functions, so a
command pays only for what it uses (``oauthsmtp token`` runs as a password
command, often).
"""

from __future__ import annotations

import os

from .exits import EXIT_LOGIN_REQUIRED, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import Literal

    from oauthsmtp import AuthToken, OAuth2Parameters, TokenStore
    from oauthsmtp._accounts import AccountRegistry, AccountSettings

    SecurityName = Literal["starttls", "ssl", "none"]

__all__ = [
    "DEFAULT_PORTS",
    "check_ssl_cert_file",
    "client_secret",
    "registry",
    "require_settings",
    "saved_login",
    "smtp_target",
    "store",
]


def registry() -> AccountRegistry:
    """The accounts recorded under ``OAUTHSMTP_HOME``."""
    from oauthsmtp._accounts import AccountRegistry
    from oauthsmtp._tokens.stores.choose import oauthsmtp_home

    return AccountRegistry(oauthsmtp_home())


def store() -> TokenStore:
    """The token store ``OAUTHSMTP_STORE`` chooses."""
    from oauthsmtp import default_store

    return default_store()


def require_settings(account: str) -> AccountSettings:
    """The recorded settings of ``account``.

    Raises:
        CommandError: (exit 3) the account was never logged in; the message names the
            accounts that are recorded and the login command.
    """
    accounts = registry().load_all()
    settings = accounts.get(account)
    if settings is None:
        known = ", ".join(sorted(accounts)) if accounts else "none"
        raise CommandError(
            f"no account {account!r} is recorded (recorded: {known}); log in first: "
            f"oauthsmtp login --account {account} --provider gmail|microsoft|custom ... "
            "(see: oauthsmtp login --help)",
            code=EXIT_LOGIN_REQUIRED,
        )
    return settings


def client_secret(token_store: TokenStore, settings: AccountSettings) -> str | None:
    """The client secret kept for the account in the token store, if it has one."""
    if not settings.has_client_secret:
        return None
    from oauthsmtp._accounts import secret_key

    return token_store.load(secret_key(settings))


def saved_login(account: str) -> tuple[AccountSettings, OAuth2Parameters, AuthToken]:
    """(settings, parameters, token) of a recorded account, never opening a browser.

    Raises:
        CommandError: the account is not recorded (exit 3).
        LoginRequired: no usable token is saved (exit 3).
    """
    from oauthsmtp import auth_identify

    from .appcreds import APP_PROVIDERS, saved_app_token

    settings = require_settings(account)
    token_store = store()
    if settings.provider in APP_PROVIDERS:  # renewed by the app-only grant, no refresh token
        return settings, settings.parameters(), saved_app_token(settings, token_store)
    params = settings.parameters(client_secret(token_store, settings))
    token = auth_identify(params, account=account, store=token_store, interactive=False)
    return settings, params, token


def check_ssl_cert_file() -> None:
    """Refuse an ``SSL_CERT_FILE`` that names no readable file, before anything connects.

    Raises:
        CommandError: (exit 2) saying which file is missing and what the variable is for.
    """
    path = os.environ.get("SSL_CERT_FILE")
    if not path:
        return
    if not os.path.isfile(path) or not os.access(path, os.R_OK):
        why = "is not a readable file" if os.path.exists(path) else "does not exist"
        raise CommandError(
            f"SSL_CERT_FILE names {path!r}, which {why}; set it to a PEM file of CA "
            "certificates to trust in addition to the system's, or unset it",
            code=EXIT_USAGE,
        )


DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
"""The SMTP port each security setting uses unless told otherwise."""


def smtp_target(
    settings: AccountSettings, *, host: str | None, port: int | None, security: str | None
) -> tuple[str, int, SecurityName]:
    """(host, port, security) with the given flags over the account's recorded ones.

    A new ``security`` without a ``port`` moves the port along when the recorded port is
    the old security's default (587 -> 465 for ``ssl``); a port chosen on purpose stays.
    """
    new_security = security or settings.security
    if new_security not in ("starttls", "ssl", "none"):
        raise CommandError(
            f"the recorded security of {settings.account} is {new_security!r}; fix it: "
            f"oauthsmtp account set --account {settings.account} --security starttls|ssl|none",
            code=EXIT_USAGE,
        )
    if port is None:
        port = settings.smtp_port
        if new_security != settings.security and port == DEFAULT_PORTS.get(settings.security):
            port = DEFAULT_PORTS[new_security]
    from typing import cast

    return host or settings.smtp_host, port, cast("SecurityName", new_security)
