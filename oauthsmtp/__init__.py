"""oauthsmtp: send email through OAuth2-protected SMTP servers without storing a password.

The public API is what ``__all__`` lists. Only the exception classes are
imported eagerly; every other name is imported on first use, so that
``import oauthsmtp`` stays cheap for short-lived commands such as
``oauthsmtp token`` used as a password command.

The private packages follow the data path, each importing only those before it
(docs/architecture.md)::

    _oauth/     parameters -> authorization request -> callback -> token endpoint
    _tokens/    AuthToken, single-flight refresh, auth_identify; stores/ keep tokens
    _message/   Email and EmailMessage -> checked, rendered wire bytes
    _limits/    SendLimits and the budget sessions share (in a process, or through Redis)
    _smtp/      SASL, the wire, AUTH, transactions, the pool -> SMTPSession
    _api/       the same messages and results over HTTP: GmailAPISession, GraphSession;
                AutoSession (SMTP first, the API when SMTP AUTH is switched off)
    _mailbox/   the same token for reading mail: IMAP and POP3 logins (imaplib, poplib)
    _cli/       the ``oauthsmtp`` command, on top of all of the above
    devserver/  the local development provider (authorization + SMTP server)
"""

import importlib as _importlib

from ._errors import (
    AccessDenied,
    AccountMismatch,
    APIError,
    AuthorizationError,
    AuthorizationTimeout,
    CallbackError,
    ConfigurationError,
    LoginRequired,
    LoopbackError,
    MailboxAuthError,
    OAuthSMTPError,
    SMTPAuthError,
    SMTPError,
    TokenError,
    TokenStoreError,
)
from ._version import __version__

TYPE_CHECKING = False  # typing itself is not imported at run time
if TYPE_CHECKING:
    from typing import Any

    from . import providers
    from ._api.auto import AutoSession
    from ._api.gmail import GmailAPISession
    from ._api.graph import GraphSession
    from ._explain import explain
    from ._limits.rules import SendLimits
    from ._mailbox.login import imap_authenticate, pop3_authenticate
    from ._message.prepare import Email
    from ._oauth.appgrants import ClientCredentials
    from ._oauth.params import OAuth2Parameters
    from ._smtp.asyncsession import AsyncSMTPSession
    from ._smtp.session import SendResult, SMTPSession, VerifyResult
    from ._smtp.wire import SMTPConnectionError, SMTPTimeoutError
    from ._tokens.apponly import app_token
    from ._tokens.audience import token_for_scope
    from ._tokens.identify import auth_identify, import_token, refresh_token, revoke_token
    from ._tokens.stores.base import TokenKey, TokenStore
    from ._tokens.stores.choose import default_store
    from ._tokens.stores.filestore import FileStore
    from ._tokens.stores.keyringstore import KeyringStore
    from ._tokens.stores.memory import MemoryStore
    from ._tokens.stores.redisstore import RedisStore
    from ._tokens.token import AuthToken
del TYPE_CHECKING

__all__ = [
    "APIError",
    "AccessDenied",
    "AccountMismatch",
    "AsyncSMTPSession",
    "AuthToken",
    "AuthorizationError",
    "AuthorizationTimeout",
    "AutoSession",
    "CallbackError",
    "ClientCredentials",
    "ConfigurationError",
    "Email",
    "FileStore",
    "GmailAPISession",
    "GraphSession",
    "KeyringStore",
    "LoginRequired",
    "LoopbackError",
    "MailboxAuthError",
    "MemoryStore",
    "OAuth2Parameters",
    "OAuthSMTPError",
    "RedisStore",
    "SMTPAuthError",
    "SMTPConnectionError",
    "SMTPError",
    "SMTPSession",
    "SMTPTimeoutError",
    "SendLimits",
    "SendResult",
    "TokenError",
    "TokenKey",
    "TokenStore",
    "TokenStoreError",
    "VerifyResult",
    "__version__",
    "app_token",
    "auth_identify",
    "default_store",
    "explain",
    "imap_authenticate",
    "import_token",
    "pop3_authenticate",
    "providers",
    "refresh_token",
    "revoke_token",
    "token_for_scope",
]

_LAZY = {
    "OAuth2Parameters": "._oauth.params",
    "AuthToken": "._tokens.token",
    "ClientCredentials": "._oauth.appgrants",
    "app_token": "._tokens.apponly",
    "auth_identify": "._tokens.identify",
    "import_token": "._tokens.identify",
    "refresh_token": "._tokens.identify",
    "revoke_token": "._tokens.identify",
    "FileStore": "._tokens.stores.filestore",
    "KeyringStore": "._tokens.stores.keyringstore",
    "MemoryStore": "._tokens.stores.memory",
    "RedisStore": "._tokens.stores.redisstore",
    "TokenKey": "._tokens.stores.base",
    "TokenStore": "._tokens.stores.base",
    "default_store": "._tokens.stores.choose",
    "providers": ".providers",
    "explain": "._explain",
    "imap_authenticate": "._mailbox.login",
    "pop3_authenticate": "._mailbox.login",
    "Email": "._message.prepare",
    "SMTPSession": "._smtp.session",
    "AsyncSMTPSession": "._smtp.asyncsession",
    "SendResult": "._smtp.session",
    "SendLimits": "._limits.rules",
    "VerifyResult": "._smtp.session",
    "SMTPConnectionError": "._smtp.wire",
    "SMTPTimeoutError": "._smtp.wire",
    "GmailAPISession": "._api.gmail",
    "GraphSession": "._api.graph",
    "AutoSession": "._api.auto",
    "token_for_scope": "._tokens.audience",
}


def __getattr__(name: str) -> "Any":  # a string: typing is not imported at run time
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'oauthsmtp' has no attribute {name!r}")
    module = _importlib.import_module(module_name, __name__)
    value = module if name == "providers" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
