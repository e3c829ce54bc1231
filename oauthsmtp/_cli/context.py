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

    App-only accounts get their token by the app-only grant (no refresh token).

    Raises:
        CommandError: the account is not recorded (exit 3).
        LoginRequired: no usable token is saved (exit 3).
    """
    from oauthsmtp._accounts import saved_login as load_saved_login

    settings = require_settings(account)
    params, token = load_saved_login(settings, store())
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

    Raises:
        CommandError: (exit 2) the security is not starttls, ssl or none.
    """
    from typing import cast

    from oauthsmtp._accounts import smtp_target as account_target
    from oauthsmtp._errors import ConfigurationError

    try:
        target = account_target(settings, host=host, port=port, security=security)
    except ConfigurationError as exc:
        raise CommandError(str(exc), code=EXIT_USAGE) from None
    return target[0], target[1], cast("SecurityName", target[2])
