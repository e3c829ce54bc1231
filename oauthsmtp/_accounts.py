"""Account settings for the command line: the non-secret half of a login.

``oauthsmtp login`` records, per account, which provider and client were used
and where to send mail, so that every other command needs only ``--account``.
The file is ``OAUTHSMTP_HOME/accounts.json`` (mode 0600 in a 0700 folder,
written atomically). It never holds a token or a client secret: the secret,
when there is one, goes to the token store under :func:`secret_key`.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._tokens.stores.choose import TokenKey

from ._errors import ConfigurationError

__all__ = ["AccountSettings", "AccountRegistry", "secret_key"]

_FORMAT = 1


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
        smtp_host / smtp_port / security: where mail is sent.
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
    device_authorization_url: str | None = None

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
    def token_key(self) -> TokenKey:
        """Where this account's token lives in the store."""
        return TokenKey(self.token_url, self.client_id, self.account)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["scope"] = list(self.scope)
        data["extra_auth_params"] = dict(self.extra_auth_params)
        return data

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> AccountSettings:
        values = dict(data)
        values["scope"] = tuple(values.get("scope", ()))
        values["extra_auth_params"] = dict(values.get("extra_auth_params") or {})
        known = set(cls.__dataclass_fields__)
        return cls(**{k: v for k, v in values.items() if k in known})


def secret_key(settings: AccountSettings) -> TokenKey:
    """The token-store key under which the account's client secret is kept."""
    return TokenKey(settings.token_url, settings.client_id, f"{settings.account}#client-secret")


class AccountRegistry:
    """The accounts recorded under one ``OAUTHSMTP_HOME``."""

    def __init__(self, home: Path) -> None:
        self.home = home
        self.path = home / "accounts.json"

    def load_all(self) -> dict[str, AccountSettings]:
        """Every recorded account, by address.

        Raises:
            ConfigurationError: the file exists but cannot be read or parsed.
        """
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return {}
        except OSError as exc:
            raise ConfigurationError(f"cannot read {self.path}: {exc.strerror}") from None
        try:
            data = json.loads(text)
            accounts = data["accounts"]
            return {name: AccountSettings.from_dict(v) for name, v in accounts.items()}
        except (ValueError, KeyError, TypeError, AttributeError):
            raise ConfigurationError(
                f"{self.path} is damaged; move it away and log in again"
            ) from None

    def get(self, account: str) -> AccountSettings | None:
        return self.load_all().get(account)

    def put(self, settings: AccountSettings) -> None:
        accounts = self.load_all()
        accounts[settings.account] = settings
        self._write(accounts)

    def remove(self, account: str) -> bool:
        accounts = self.load_all()
        if accounts.pop(account, None) is None:
            return False
        self._write(accounts)
        return True

    def _write(self, accounts: Mapping[str, AccountSettings]) -> None:
        self.home.mkdir(mode=0o700, parents=True, exist_ok=True)
        payload = {
            "format": _FORMAT,
            "accounts": {name: s.to_dict() for name, s in sorted(accounts.items())},
        }
        fd, tmp = tempfile.mkstemp(prefix=".accounts-", suffix=".tmp", dir=self.home)
        try:
            with os.fdopen(fd, "w", encoding="utf-8") as fh:
                json.dump(payload, fh, indent=2, sort_keys=True)
                fh.write("\n")
                fh.flush()
                os.fsync(fh.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
