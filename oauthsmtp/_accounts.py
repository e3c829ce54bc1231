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
from typing import TYPE_CHECKING, Any

from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._oauth.scopes import resource_groups
from oauthsmtp._tokens.stores.base import TokenKey
from oauthsmtp._tokens.stores.choose import REDIS_SCHEMES, redis_store_for
from oauthsmtp._tokens.stores.redisstore import redact_url
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

if TYPE_CHECKING:
    from oauthsmtp._api.auto import AutoSession
    from oauthsmtp._api.session import APISession
    from oauthsmtp._oauth.appgrants import ClientCredentials
    from oauthsmtp._smtp.session import SMTPSession
    from oauthsmtp._tokens.stores.base import TokenStore
    from oauthsmtp._tokens.token import AuthToken

__all__ = [
    "APP_PROVIDERS",
    "CERTIFICATE_FILE",
    "DEFAULT_PORTS",
    "KEY_FILE",
    "PRIVATE_KEY_FILE",
    "SUBJECT",
    "AccountRegistry",
    "TRANSPORTS",
    "AccountSettings",
    "api_session",
    "api_token",
    "app_credentials",
    "auto_session",
    "grants_api",
    "open_session",
    "recorded_settings",
    "saved_login",
    "secret_key",
    "smtp_target",
    "store_named",
]

log = logging.getLogger("oauthsmtp.accounts")

_FORMAT = 1
_SECURITY = ("starttls", "ssl", "none")
_CONTROL_OR_SPACE = re.compile(r"[\x00-\x20\x7f]")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")
_LOCK_TIMEOUT = 60.0


TRANSPORTS = ("smtp", "api", "auto")
"""What ``--transport`` may record: SMTP, an HTTP API, or SMTP then the API (AutoSession)."""


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
            ``custom``: the Gmail API when ``api_url`` has a ``/gmail/`` segment, else Graph);
            or ``"auto"``: SMTP, switching to that API only when SMTP is refused for
            configuration (:class:`~oauthsmtp.AutoSession`).
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
        if self.transport not in TRANSPORTS:
            raise ConfigurationError(
                f"the transport {self.transport!r:.20} is not smtp, api or auto (give --transport)"
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
    def api_scopes(self) -> tuple[str, ...] | None:
        """The scopes of the API's own token when the login's token is for another resource.

        A Microsoft login that consented to ``SMTP.Send`` and Graph's ``Mail.Send``
        (``--transport auto``) holds a token for SMTP; Graph needs one redeemed for its own
        scopes (:func:`~oauthsmtp.token_for_scope`). None when one token serves both (Google's
        ``https://mail.google.com/``) or the login asked for one resource only.
        """
        groups = resource_groups(self.scope)
        if len(groups) < 2:
            return None
        mail_send = [g for g in groups if any(s.endswith("/Mail.Send") for s in g)]
        group = mail_send[0] if mail_send else groups[1]
        return group + tuple(s for s in self.scope if s == "offline_access")

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


# -- from a recorded account to a session (shared by the command line and the integrations) --

DEFAULT_PORTS = {"starttls": 587, "ssl": 465, "none": 25}
"""The SMTP port each security setting uses unless told otherwise."""

STORE_NAMES = ("keyring", "file", "memory")


def store_named(name: str | None = None, *, home: Path | None = None) -> TokenStore:
    """The token store called ``name`` (``keyring``, ``file``, ``memory`` or a Redis URL).

    ``None`` (or an empty name) means what ``$OAUTHSMTP_STORE`` says, as
    :func:`oauthsmtp.default_store`. The file store lives in ``home / "tokens"`` when a
    ``home`` is given (else under ``$OAUTHSMTP_HOME``); the keyring keeps its small
    lock files under ``$OAUTHSMTP_HOME`` either way.

    Raises:
        ConfigurationError: any other name (the message names the valid ones).
    """
    if name is None or not str(name).strip():
        name = os.environ.get("OAUTHSMTP_STORE", "")
    choice = str(name).strip().lower() or "keyring"
    if choice.startswith(REDIS_SCHEMES):
        return redis_store_for(str(name).strip())
    if choice == "keyring":
        from oauthsmtp._tokens.stores.keyringstore import KeyringStore

        return KeyringStore()
    if choice == "file":
        from oauthsmtp._tokens.stores.filestore import FileStore

        return FileStore(None if home is None else home / "tokens")
    if choice == "memory":
        from oauthsmtp._tokens.stores.memory import MemoryStore

        return MemoryStore()
    shown = redact_url(str(name)) if "://" in str(name) else str(name)
    raise ConfigurationError(
        f"the token store {shown[:40]!r} is unknown; use one of {', '.join(STORE_NAMES)} "
        "or a redis:// URL"
    )


def recorded_settings(account: str, *, home: Path | None = None) -> AccountSettings:
    """The settings ``oauthsmtp login`` recorded for ``account`` under ``home``.

    ``home`` defaults to ``$OAUTHSMTP_HOME`` (or the platform's config folder).

    Raises:
        ConfigurationError: the account was never logged in there; the message names
            the accounts that are recorded and the login command.
    """
    from oauthsmtp._util.home import oauthsmtp_home

    folder = oauthsmtp_home() if home is None else home
    accounts = AccountRegistry(folder).load_all()
    settings = accounts.get(account)
    if settings is None:
        known = ", ".join(sorted(accounts)) if accounts else "none"
        raise ConfigurationError(
            f"no account {account!r} is recorded in {folder} (recorded: {known}); log in "
            f"first: oauthsmtp login --account {account} --provider gmail|microsoft|custom ..."
        )
    return settings


APP_PROVIDERS = ("microsoft-app", "google-service-account")
"""The providers whose accounts get app-only tokens (no person, no refresh token)."""

# Where an app-only account's key files are recorded: their absolute paths, in the
# account's extra_auth_params (which no authorization request uses for such an account).
PRIVATE_KEY_FILE = "private_key_file"
CERTIFICATE_FILE = "certificate_file"
KEY_FILE = "key_file"
SUBJECT = "subject"


def app_credentials(settings: AccountSettings, token_store: TokenStore) -> ClientCredentials:
    """The app's credentials for a recorded app-only account.

    A client secret comes from the token store; a private key, certificate or
    service-account key is read again from its recorded file, so a rotated key file is
    picked up.

    Raises:
        ConfigurationError: a recorded key file is gone, unreadable or not a key
            (the message names the file and the login command that records a new one).
    """
    from oauthsmtp import providers

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


def saved_login(settings: AccountSettings, store: TokenStore) -> tuple[OAuth2Parameters, AuthToken]:
    """(parameters, token) of a recorded account from ``store``, never opening a browser.

    An app-only account (:data:`APP_PROVIDERS`) gets the stored app token while it is
    valid, else a new one by its grant (saved).

    Raises:
        LoginRequired: no usable token is saved (log in again).
        TokenError, TokenStoreError: the refresh or the store failed.
        ConfigurationError: an app-only account's key file is gone or unreadable.
    """
    from oauthsmtp._tokens.identify import auth_identify

    if settings.provider in APP_PROVIDERS:
        from oauthsmtp._tokens.apponly import app_token

        creds = app_credentials(settings, store)
        return settings.parameters(), app_token(creds, account=settings.account, store=store)
    secret = store.load(secret_key(settings)) if settings.has_client_secret else None
    params = settings.parameters(secret)
    token = auth_identify(params, account=settings.account, store=store, interactive=False)
    return params, token


def smtp_target(
    settings: AccountSettings,
    *,
    host: str | None = None,
    port: int | None = None,
    security: str | None = None,
) -> tuple[str, int, str]:
    """(host, port, security) with the given overrides over the account's recorded ones.

    A new ``security`` without a ``port`` moves the port along when the recorded port is
    the old security's default (587 -> 465 for ``ssl``); a port chosen on purpose stays.

    Raises:
        ConfigurationError: the security is not starttls, ssl or none.
    """
    new_security = security or settings.security
    if new_security not in _SECURITY:
        raise ConfigurationError(
            f"the SMTP security of {settings.account} is {new_security!r:.20}; use one of "
            f"{', '.join(_SECURITY)} (oauthsmtp account set --account {settings.account} "
            "--security starttls|ssl|none)"
        )
    if port is None:
        port = settings.smtp_port
        if new_security != settings.security and port == DEFAULT_PORTS.get(settings.security):
            port = DEFAULT_PORTS[new_security]
    return host or settings.smtp_host, port, new_security


def open_session(
    account: str,
    *,
    home: Path | None = None,
    store: TokenStore | None = None,
    host: str | None = None,
    port: int | None = None,
    security: str | None = None,
    **session_options: Any,
) -> SMTPSession:
    """An :class:`~oauthsmtp.SMTPSession` for a recorded account and its saved token.

    What ``oauthsmtp send`` does before sending, for library code (the Django backend,
    the logging handler): the account's recorded settings (under ``home``, default
    ``$OAUTHSMTP_HOME``), its token from ``store`` (default: ``$OAUTHSMTP_STORE``, with
    ``home``'s file store), never a browser. ``host``, ``port`` and ``security`` override
    the recorded ones; other keywords (``timeout``, ``ssl_context``, ``connections``, ...)
    go to :class:`~oauthsmtp.SMTPSession`. The session is not connected yet.

    An account recorded with ``transport="auto"`` gets its SMTP session (SMTP is what
    ``auto`` tries first; the switch to the API is :func:`auto_session`'s).

    Raises:
        ConfigurationError: the account is not recorded, is recorded for an HTTP API
            (``transport="api"``), or an option is invalid.
        LoginRequired: no usable token is saved (run ``oauthsmtp login`` again).
        TokenError, TokenStoreError: the refresh or the store failed.
    """
    from oauthsmtp._smtp.session import SMTPSession

    settings = recorded_settings(account, home=home)
    if settings.transport == "api":
        raise ConfigurationError(
            f"the account {account} sends through an HTTP API (transport {settings.transport}), "
            "and this sends over SMTP; record it for SMTP with `oauthsmtp account set --account "
            f"{account} --transport smtp` and log in again (its token is for the API's scope)"
        )
    token_store = store_named(None, home=home) if store is None else store
    _, token = saved_login(settings, token_store)
    target_host, target_port, target_security = smtp_target(
        settings, host=host, port=port, security=security
    )
    session_options.setdefault("username", account)
    return SMTPSession(
        target_host,
        port=target_port,
        security=target_security,  # type: ignore[arg-type]  # checked by smtp_target
        auth_token=token,
        **session_options,
    )


# -- the HTTP API and the auto transport for a recorded account ---------------------------------


def grants_api(settings: AccountSettings, scopes: tuple[str, ...]) -> bool:
    """Whether ``scopes`` include one the account's API takes: Graph's ``Mail.Send``; for
    the Gmail API ``gmail.send`` or ``https://mail.google.com/`` (which covers it)."""
    if settings.api == "gmail":
        return any(s == "https://mail.google.com/" or s.endswith("/gmail.send") for s in scopes)
    return any(s.endswith("/Mail.Send") for s in scopes)


def api_token(settings: AccountSettings, token: AuthToken) -> AuthToken:
    """The token the account's HTTP API takes: ``token`` itself, or one redeemed from the
    same login for the API's resource (:attr:`AccountSettings.api_scopes`).

    Raises:
        LoginRequired, TokenError, TokenStoreError: the redemption failed (as
            :func:`~oauthsmtp.token_for_scope`).
    """
    scopes = settings.api_scopes
    if scopes is None:
        return token
    from oauthsmtp._tokens.audience import token_for_scope

    return token_for_scope(token, scopes)


def api_session(settings: AccountSettings, token: AuthToken, **options: Any) -> APISession:
    """The account's API session (Gmail API or Microsoft Graph), not started.

    ``token`` is the login's token; the API's own is obtained from it when the API is
    another resource (:func:`api_token`). An app-only Microsoft account sends through
    ``/users/{account}``. ``options`` go to the session (``timeout=``, ``ssl_context=``).
    """
    from oauthsmtp._api.gmail import GMAIL_API_URL, GmailAPISession
    from oauthsmtp._api.graph import GRAPH_API_URL, GraphSession

    source = api_token(settings, token)
    if settings.api == "gmail":
        return GmailAPISession(
            auth_token=source, base_url=settings.api_url or GMAIL_API_URL, **options
        )
    user = settings.account if settings.provider == "microsoft-app" else None
    return GraphSession(
        auth_token=source, user=user, base_url=settings.api_url or GRAPH_API_URL, **options
    )


def auto_session(
    settings: AccountSettings,
    token: AuthToken,
    *,
    host: str | None = None,
    port: int | None = None,
    security: str | None = None,
    ssl_context: Any = None,
    api_ssl_context: Any = None,
) -> AutoSession:
    """An :class:`~oauthsmtp.AutoSession` for an account: its SMTP session first, its API
    session built (and its API token redeemed) only at the switch. Not started.

    Raises:
        ConfigurationError: an invalid SMTP override.
    """
    from oauthsmtp._api.auto import AutoSession
    from oauthsmtp._smtp.session import SMTPSession

    target_host, target_port, target_security = smtp_target(
        settings, host=host, port=port, security=security
    )
    smtp = SMTPSession(
        target_host,
        port=target_port,
        security=target_security,  # type: ignore[arg-type]  # checked by smtp_target
        username=settings.account,
        auth_token=token,
        ssl_context=ssl_context,
    )
    return AutoSession(smtp, lambda: api_session(settings, token, ssl_context=api_ssl_context))
