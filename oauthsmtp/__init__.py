"""oauthsmtp: send email through OAuth2-protected SMTP servers without storing a password.

The public API is what ``__all__`` lists. Names from heavier modules (the
login flow, the SMTP session, the token stores) are imported on first use so
that ``import oauthsmtp`` stays cheap for short-lived commands.
"""

import importlib as _importlib
import typing as _typing

from ._errors import (
    AccessDenied,
    AuthorizationError,
    AuthorizationTimeout,
    CallbackError,
    ConfigurationError,
    LoginRequired,
    LoopbackError,
    OAuthSMTPError,
    SMTPAuthError,
    SMTPError,
    TokenError,
    TokenStoreError,
)
from ._params import OAuth2Parameters
from ._token import AuthToken
from ._version import __version__

if _typing.TYPE_CHECKING:
    from . import providers
    from ._flow import auth_identify, refresh_token, revoke_token
    from ._message import Email
    from ._smtp import SendResult, SMTPSession
    from ._smtpwire import SMTPConnectionError, SMTPTimeoutError
    from ._store import FileStore, KeyringStore, MemoryStore, TokenStore, default_store

__all__ = [
    "AccessDenied",
    "AuthToken",
    "AuthorizationError",
    "AuthorizationTimeout",
    "CallbackError",
    "ConfigurationError",
    "Email",
    "FileStore",
    "KeyringStore",
    "LoginRequired",
    "LoopbackError",
    "MemoryStore",
    "OAuth2Parameters",
    "OAuthSMTPError",
    "SMTPAuthError",
    "SMTPConnectionError",
    "SMTPError",
    "SMTPSession",
    "SMTPTimeoutError",
    "SendResult",
    "TokenError",
    "TokenStore",
    "TokenStoreError",
    "__version__",
    "auth_identify",
    "default_store",
    "providers",
    "refresh_token",
    "revoke_token",
]

_LAZY = {
    "auth_identify": "._flow",
    "refresh_token": "._flow",
    "revoke_token": "._flow",
    "FileStore": "._store",
    "KeyringStore": "._store",
    "MemoryStore": "._store",
    "TokenStore": "._store",
    "default_store": "._store",
    "providers": ".providers",
    "Email": "._message",
    "SMTPSession": "._smtp",
    "SendResult": "._smtp",
    "SMTPConnectionError": "._smtpwire",
    "SMTPTimeoutError": "._smtpwire",
}


def __getattr__(name: str) -> _typing.Any:
    module_name = _LAZY.get(name)
    if module_name is None:
        raise AttributeError(f"module 'oauthsmtp' has no attribute {name!r}")
    module = _importlib.import_module(module_name, __name__)
    value = module if name == "providers" else getattr(module, name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
