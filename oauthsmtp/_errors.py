"""The exception tree of oauthsmtp.

Every error the library raises on purpose derives from :class:`OAuthSMTPError`,
so ``except oauthsmtp.OAuthSMTPError`` catches them all. Where a builtin fits,
it is mixed in so that ordinary ``except`` clauses keep working::

    OAuthSMTPError
    ├── ConfigurationError (ValueError)      bad parameters, refused options
    ├── AuthorizationError                   the browser step did not produce a code
    │   ├── AccessDenied                     the user or provider said no (error=access_denied)
    │   ├── AccountMismatch                  the browser logged in to another account than asked
    │   ├── AuthorizationTimeout (TimeoutError)  no answer before the deadline
    │   ├── CallbackError                    an answer that cannot be trusted (iss mix-up, ...)
    │   └── LoopbackError (OSError)          the loopback port could not be opened
    ├── LoginRequired                        no usable token: run the browser login again
    ├── TokenError                           the token endpoint failed (RFC 6749 §5.2)
    ├── TokenStoreError                      the keyring or token file failed
    ├── MailboxAuthError                     an IMAP or POP3 server refused the token
    ├── APIError                             Gmail API or Graph refused the session (HTTP status)
    └── SMTPError                            the SMTP conversation failed
        ├── SMTPAuthError                    AUTH was refused (code and provider error attached)
        ├── SMTPTimeoutError (TimeoutError)  a socket operation passed its deadline (_smtpwire)
        └── SMTPConnectionError (ConnectionError)  the connection was refused or lost (_smtpwire)

Messages never contain a token, an authorization code, a PKCE verifier, a
client secret or a SASL string.
"""

from __future__ import annotations

TYPE_CHECKING = False  # typing is not imported at run time: `import oauthsmtp` stays cheap
if TYPE_CHECKING:
    from collections.abc import Mapping
    from typing import Any

__all__ = [
    "APIError",
    "AccessDenied",
    "AccountMismatch",
    "AuthorizationError",
    "AuthorizationTimeout",
    "CallbackError",
    "ConfigurationError",
    "LoginRequired",
    "LoopbackError",
    "MailboxAuthError",
    "OAuthSMTPError",
    "SMTPAuthError",
    "SMTPError",
    "TokenError",
    "TokenStoreError",
]


class OAuthSMTPError(Exception):
    """Base class of every error raised by oauthsmtp."""


class ConfigurationError(OAuthSMTPError, ValueError):
    """Parameters or options that cannot work (bad URL, refused flow, ...)."""


class AuthorizationError(OAuthSMTPError):
    """The authorization step (browser + loopback redirect) failed.

    Attributes:
        error: the RFC 6749 §4.1.2.1 ``error`` code when the provider sent one.
        error_description: the provider's ``error_description``, if any.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description


class AccessDenied(AuthorizationError):
    """The resource owner or the provider denied the request (``access_denied``)."""


class AccountMismatch(AuthorizationError):
    """The provider says another account logged in than the one the login was for.

    Raised after an interactive login when the token answer names who logged
    in (an OpenID Connect ``id_token``) and it is not ``account``; nothing is
    saved.

    Attributes:
        expected: the account the login was for.
        actual: the account the provider names.
    """

    def __init__(self, message: str, *, expected: str, actual: str) -> None:
        super().__init__(message, error="account_mismatch")
        self.expected = expected
        self.actual = actual


class AuthorizationTimeout(AuthorizationError, TimeoutError):
    """No authorization response arrived before the flow's deadline."""


class CallbackError(AuthorizationError):
    """An authorization response arrived but cannot be trusted (e.g. ``iss`` mismatch)."""


class LoopbackError(AuthorizationError, OSError):
    """The loopback redirect listener could not be opened (port in use, no IPv6, ...).

    Attributes:
        port: the port that could not be bound.
    """

    def __init__(self, message: str, *, port: int | None = None) -> None:
        AuthorizationError.__init__(self, message)
        self.port = port

    def __str__(self) -> str:
        return str(self.args[0]) if self.args else ""


class LoginRequired(OAuthSMTPError):
    """No usable token: an interactive login is needed.

    Attributes:
        account: the account that needs a login, if known.
    """

    def __init__(self, message: str, *, account: str | None = None) -> None:
        super().__init__(message)
        self.account = account


class TokenError(OAuthSMTPError):
    """The token endpoint failed or answered something that cannot be used.

    Attributes:
        error: the RFC 6749 §5.2 ``error`` code, when the server sent one.
        error_description: the server's ``error_description``, if any.
        status: the HTTP status code, when a response arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        error: str | None = None,
        error_description: str | None = None,
        status: int | None = None,
    ) -> None:
        super().__init__(message)
        self.error = error
        self.error_description = error_description
        self.status = status


class TokenStoreError(OAuthSMTPError):
    """The token store (keyring or file) could not load, save or delete a token."""


class SMTPError(OAuthSMTPError):
    """The SMTP conversation failed.

    Attributes:
        code: the SMTP reply code, when a reply arrived.
        server_message: the server's reply text, when a reply arrived.
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        server_message: str | None = None,
    ) -> None:
        super().__init__(message)
        self.code = code
        self.server_message = server_message


class SMTPAuthError(SMTPError):
    """The SMTP server refused authentication.

    Attributes:
        provider_error: the decoded JSON of an XOAUTH2/OAUTHBEARER error challenge.
        retryable: whether a fresh token may help (False for configuration errors
            such as ``535 5.7.139 ... SmtpClientAuthentication is disabled``).
    """

    def __init__(
        self,
        message: str,
        *,
        code: int | None = None,
        server_message: str | None = None,
        provider_error: Mapping[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message, code=code, server_message=server_message)
        self.provider_error = dict(provider_error) if provider_error else None
        self.retryable = retryable


class MailboxAuthError(OAuthSMTPError):
    """An IMAP or POP3 server refused XOAUTH2/OAUTHBEARER authentication.

    Raised by :func:`~oauthsmtp.imap_authenticate` and :func:`~oauthsmtp.pop3_authenticate`.
    It is not an :class:`SMTPAuthError`: the conversation is IMAP (RFC 9051) or POP3
    (RFC 5034), and the server's answer is a response text, not an SMTP code.

    Attributes:
        protocol: ``"IMAP"`` or ``"POP3"``.
        mechanism: the SASL mechanism that was refused, when one was tried.
        server_message: the server's final response text (``NO``/``BAD``/``-ERR`` line),
            when one arrived.
        provider_error: the decoded JSON of the server's error challenge (RFC 7628 §3.2.2).
        retryable: whether a fresh token may help (False when it was already refreshed
            once, or when the refusal is about something a token does not change).
    """

    def __init__(
        self,
        message: str,
        *,
        protocol: str,
        mechanism: str | None = None,
        server_message: str | None = None,
        provider_error: Mapping[str, Any] | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.protocol = protocol
        self.mechanism = mechanism
        self.server_message = server_message
        self.provider_error = dict(provider_error) if provider_error else None
        self.retryable = retryable


class APIError(OAuthSMTPError):
    """An HTTP sending API (Gmail API, Microsoft Graph) refused the session's requests.

    Raised by :class:`~oauthsmtp.GmailAPISession` and :class:`~oauthsmtp.GraphSession` when
    no message can be sent until something changes: the token is refused even after a
    refresh, the token was issued for another API, or a configuration problem (API not
    enabled, permission missing, mailbox without a licence). One refused message is a
    ``"failed"`` :class:`~oauthsmtp.SendResult`, not this error.

    Attributes:
        status: the HTTP status, when an answer arrived.
        error: the API's own error code (``"ErrorAccessDenied"``, ``"SERVICE_DISABLED"``...).
        retryable: whether trying again later (not changing anything) may succeed.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        error: str | None = None,
        retryable: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.error = error
        self.retryable = retryable
