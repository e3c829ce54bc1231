"""Account settings for the command line: the non-secret half of a login.

``oauthsmtp login`` records, per account, which provider and client were used
and where to send mail, so that every other command needs only ``--account``.
The file is ``OAUTHSMTP_HOME/accounts.json`` (mode 0600 in a 0700 folder,
written atomically). It never holds a token or a client secret: the secret,
when there is one, goes to the token store under :func:`secret_key`.
"""

from __future__ import annotations

import json
import logging
import os
import re
from collections.abc import Mapping
from contextlib import AbstractContextManager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any

from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._tokens.stores.base import TokenKey
from oauthsmtp._util.files import (
    MAX_FILE_BYTES,
    atomic_write,
    ensure_private_dir,
    interprocess_lock,
    os_detail,
    sweep_temp_files,
)
from oauthsmtp._util.jsonobject import load_json_object

from ._errors import ConfigurationError, TokenStoreError

__all__ = ["AccountRegistry", "AccountSettings", "secret_key"]

log = logging.getLogger("oauthsmtp.accounts")

_FORMAT = 1
_SECURITY = ("starttls", "ssl", "none")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOCK_TIMEOUT = 60.0


@dataclass(frozen=True)
class AccountSettings:
    """Everything about an account except its secrets.

    Attributes:
        account: the mailbox address (also the SMTP user name).
        provider: ``gmail``, ``microsoft`` or ``custom``.
        client_id / auth_url / token_url / scope / redirect_url /
        revocation_url / issuer / extra_auth_params: the OAuth2 client.
        has_client_secret: whether a client secret is kept in the token store.
        tenant: the Microsoft tenant, when the provider is ``microsoft``.
        device_authorization_url: the RFC 8628 endpoint, when known (``--flow device``).
        smtp_host / smtp_port / security: where mail is sent over SMTP.
        transport: ``"smtp"`` (the default) or ``"api"``: ``oauthsmtp send`` then sends
            through the Gmail API (``gmail``, ``google-service-account``) or Microsoft Graph
            (``microsoft``; ``microsoft-app`` through ``/users/{account}``;
            ``custom``: the Gmail API when ``api_url`` has a ``/gmail/`` segment, else Graph).
        api_url: the API's base URL when not the public one (national clouds, the
            development provider); None for the default.
    """

    account: str
    provider: str
    client_id: str
    auth_url: str
    token_url: str
    scope: tuple[str, ...]
    redirect_url: str
    smtp_host: str
    smtp_port: int
    security: str
    revocation_url: str | None = None
    issuer: str | None = None
    extra_auth_params: Mapping[str, str] = field(default_factory=dict)
    has_client_secret: bool = False
    tenant: str | None = None
    transport: str = "smtp"
    api_url: str | None = None
    device_authorization_url: str | None = None

    def __post_init__(self) -> None:
        """Refuse values no command could use (they would be recorded and fail later).

        Raises:
            ConfigurationError: a field has the wrong type, the account or SMTP
                host is empty or holds white space or control characters, the
                port is not 1-65535, the security is not starttls/ssl/none, or the
                transport is not smtp/api.
        """
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in ("smtp_port", "has_client_secret", "scope", "extra_auth_params"):
                continue
            optional = f.name in (
                "revocation_url",
                "issuer",
                "tenant",
                "api_url",
                "device_authorization_url",
            )
            if not isinstance(value, str) and not (optional and value is None):
                raise ConfigurationError(f"account setting {f.name} must be a string")
            if isinstance(value, str) and _CONTROL.search(value):
                raise ConfigurationError(
                    f"account setting {f.name} must not contain control characters"
                )
        if not self.account.strip():
            raise ConfigurationError("the account name must not be empty (give --account EMAIL)")
        if not self.smtp_host or _CONTROL_OR_SPACE.search(self.smtp_host):
            raise ConfigurationError(
                f"the SMTP host {self.smtp_host!r:.80} is not a host name (give --smtp-host HOST)"
            )
        port = self.smtp_port
        if isinstance(port, bool) or not isinstance(port, int) or not 1 <= port <= 65535:
            raise ConfigurationError(
                f"the SMTP port {port!r:.20} is not a port number 1-65535 (give --smtp-port)"
            )
        if self.security not in _SECURITY:
            raise ConfigurationError(
                f"the SMTP security {self.security!r:.20} is not one of {', '.join(_SECURITY)}"
            )
        if self.transport not in ("smtp", "api"):
            raise ConfigurationError(
                f"the transport {self.transport!r:.20} is not smtp or api (give --transport)"
            )
        if not isinstance(self.has_client_secret, bool):
            raise ConfigurationError("account setting has_client_secret must be true or false")
        if not isinstance(self.scope, tuple) or not all(isinstance(s, str) for s in self.scope):
            raise ConfigurationError("account setting scope must be a list of strings")
        params = self.extra_auth_params
        if not isinstance(params, Mapping) or not all(
            isinstance(k, str) and isinstance(v, str) for k, v in params.items()
        ):
            raise ConfigurationError("account setting extra_auth_params must map str to str")

    def parameters(self, client_secret: str | None = None) -> OAuth2Parameters:
        """The OAuth2 parameters for this account (with the secret, when given)."""
        return OAuth2Parameters(
            client_id=self.client_id,
            client_secret=client_secret,
            auth_url=self.auth_url,
            token_url=self.token_url,
            scope=self.scope,
            redirect_url=self.redirect_url,
            extra_auth_params=dict(self.extra_auth_params),
            revocation_url=self.revocation_url,
            issuer=self.issuer,
            device_authorization_url=self.device_authorization_url,
        )

    @property
    def api(self) -> str:
        """Which HTTP API ``transport="api"`` means: ``"gmail"`` or ``"graph"``."""
        if self.provider in ("gmail", "google-service-account"):
            return "gmail"
        if self.provider == "custom" and self.api_url and "/gmail/" in self.api_url + "/":
            return "gmail"
        return "graph"

    @property
    def token_key(self) -> TokenKey:
        """Where this account's token lives in the store."""
        return TokenKey.for_account(self.token_url, self.client_id, self.account)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scope"] = list(self.scope)
        data["extra_auth_params"] = dict(self.extra_auth_params)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccountSettings:
        """Rebuild settings from :meth:`to_dict` output (untrusted: read from a file).

        Raises:
            ConfigurationError: a field is missing or malformed.
        """
        if not isinstance(data, Mapping):
            raise ConfigurationError("account settings must be a JSON object")
        values = dict(data)
        scope = values.get("scope", ())
        if not isinstance(scope, (list, tuple)):
            raise ConfigurationError("account setting scope must be a list of strings")
        values["scope"] = tuple(scope)
        values["extra_auth_params"] = values.get("extra_auth_params") or {}
        known = {f.name for f in fields(cls)}
        try:
            return cls(**{k: v for k, v in values.items() if k in known})
        except TypeError:
            raise ConfigurationError("account settings miss a required field") from None


def secret_key(settings: AccountSettings) -> TokenKey:
    """The token-store key under which the account's client secret is kept."""
    return TokenKey.for_account(
        settings.token_url, settings.client_id, f"{settings.account}#client-secret"
    )


class AccountRegistry:
    """The accounts recorded under one ``OAUTHSMTP_HOME``.

    Changes are read-modify-write under a cross-process lock
    (``locks/accounts.lock``), so two logins at once both end up recorded, and
    written with the same atomic private-file writer as the file token store.
    """

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "accounts.json"

    def load_all(self) -> dict[str, AccountSettings]:
        """Every recorded account, by address.

        An entry that is not valid settings is skipped with a WARNING (its
        name is logged, nothing else), so one bad entry does not lock out the
        others.

        Raises:
            ConfigurationError: the file exists but cannot be read or is not a
                settings file at all.
        """
        try:
            with open(self.path, "rb") as fh:
                data = fh.read(MAX_FILE_BYTES + 1)
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.path}: {os_detail(exc)}") from None
        record = load_json_object(data) if len(data) <= MAX_FILE_BYTES else None
        accounts = record.get("accounts") if record is not None else None
        if not isinstance(accounts, dict):
            raise ConfigurationError(f"{self.path} is damaged; move it away and log in again")
        found: dict[str, AccountSettings] = {}
        for name, value in accounts.items():
            try:
                settings = AccountSettings.from_dict(value)
            except ConfigurationError as exc:
                log.warning("ignoring the account %.80r in %s: %s", name, self.path, exc)
                continue
            if settings.account != name:
                log.warning("ignoring the account %.80r in %s: misfiled", name, self.path)
                continue
            found[name] = settings
        return found

    def get(self, account: str) -> AccountSettings | None:
        """The settings recorded for ``account``, or None."""
        return self.load_all().get(account)

    def put(self, settings: AccountSettings) -> None:
        """Record (or replace) ``settings``.

        Raises:
            ConfigurationError: the folder or file cannot be written.
        """
        with self._locked():
            accounts = self.load_all()
            accounts[settings.account] = settings
            self._write(accounts)

    def remove(self, account: str) -> bool:
        """Forget ``account``; True when it was recorded.

        Raises:
            ConfigurationError: the folder or file cannot be written.
        """
        with self._locked():
            accounts = self.load_all()
            if accounts.pop(account, None) is None:
                return False
            self._write(accounts)
            return True

    def _locked(self) -> AbstractContextManager[None]:
        try:
            ensure_private_dir(self.home / "locks")
        except TokenStoreError as exc:
            raise ConfigurationError(str(exc)) from None
        return interprocess_lock(self.home / "locks" / "accounts.lock").hold(
            _LOCK_TIMEOUT, "the account settings"
        )

    def _write(self, accounts: Mapping[str, AccountSettings]) -> None:
        payload = {
            "format": _FORMAT,
            "accounts": {name: s.to_dict() for name, s in sorted(accounts.items())},
        }
        data = (json.dumps(payload, indent=2, sort_keys=True) + "\n").encode("utf-8")
        try:
            # Not ensure_private_dir: OAUTHSMTP_HOME may be a folder the user shares
            # for other things; the file itself is 0600 and holds no secret.
            os.makedirs(self.home, mode=0o700, exist_ok=True)
            sweep_temp_files(self.path)
            atomic_write(self.path, data)
        except TokenStoreError as exc:
            raise ConfigurationError(str(exc)) from None
        except OSError as exc:
            raise ConfigurationError(f"cannot write {self.path}: {os_detail(exc)}") from None
