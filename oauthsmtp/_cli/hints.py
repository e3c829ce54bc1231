"""Library errors worded for the command line (pure).

The library's messages address a Python caller (``redirect_url``,
``KeyringStore(allow_insecure=True)``, ``auth_identify(params, ...)``). On the
command line the same advice names the flag or the command instead. The
translation happens here, at the boundary, from the error's class and fields
(``LoginRequired.account``, ``LoopbackError.port``) and a small table of Python
phrases and their command-line equivalents; the library's messages stay as they are.
"""

from __future__ import annotations

import re

from oauthsmtp._errors import (
    ConfigurationError,
    LoginRequired,
    LoopbackError,
    OAuthSMTPError,
    TokenError,
    TokenStoreError,
)

from .exits import EXIT_FAILURE, EXIT_LOGIN_REQUIRED, EXIT_USAGE, CommandError

__all__ = ["PYTHON_TO_CLI", "exit_code", "message_for"]

PYTHON_TO_CLI: tuple[tuple[str, str], ...] = (
    # LoginRequired: the command is already in the message; drop the Python call.
    (r"\s*\(from Python: oauthsmtp\.auth_identify\(.*?\)\)", ""),
    (
        r"oauthsmtp\.auth_identify\(params\) again \(or `oauthsmtp login --account \.\.\.`\)",
        "oauthsmtp login --account {account}",
    ),
    # TokenStoreError: the keyring is unusable.
    (r"\s*or pass store=oauthsmtp\.FileStore\(\);?", ""),
    (r";?\s*or pass KeyringStore\(allow_insecure=True\) to use this backend anyway", ""),
    # LoopbackError and parameter checks.
    (r"another port in redirect_url \(e\.g\. (\S+?)\)", r"another port: --redirect-url \1"),
    (r"\ba redirect_url with", "--redirect-url with"),
    (r"\bredirect_url\b", "--redirect-url"),
    (r"\bauth_url\b", "--auth-url"),
    (r"\btoken_url\b", "--token-url"),
    (r"\brevocation_url\b", "--revocation-url"),
    (r"remove client_secret / --client-secret", "log in again with --client-secret ''"),
    (
        r"expects a client secret \(a Web platform\): pass the secret",
        "expects a client secret (a Web platform): give it with --client-secret-file FILE",
    ),
    # Fixes from the explain table name the account as <mailbox> when the library knew none.
    (r"(-Identity|--account) <mailbox>", r"\1 {account}"),
    # SMTP.
    (r"security='(\w+)'", r"--security \1"),
    (r"pass ssl_context= or set SSL_CERT_FILE", "set SSL_CERT_FILE to a PEM file of its CA"),
)


def _translate(text: str, *, account: str) -> str:
    for pattern, replacement in PYTHON_TO_CLI:
        text = re.sub(pattern, replacement.replace("{account}", account), text)
    return text


def message_for(exc: BaseException, *, account: str | None = None) -> str:
    """The one-line message for ``exc`` on the command line, with the next step.

    Args:
        exc: the error a command raised.
        account: the ``--account`` of the command, when it has one.
    """
    who = getattr(exc, "account", None) or account or "EMAIL"
    text = _translate(str(exc), account=who)
    if isinstance(exc, CommandError):
        return text
    if isinstance(exc, OSError) and not isinstance(exc, OAuthSMTPError) and exc.filename:
        return f"{exc.filename!r}: {exc.strerror or exc}"
    if isinstance(exc, LoginRequired):
        if "oauthsmtp login" not in text:
            text += f"; log in again: oauthsmtp login --account {who}"
        return text
    if isinstance(exc, LoopbackError) and exc.port and "--redirect-url" not in text:
        text += f" (or log in with --redirect-url http://localhost:{exc.port + 1})"
    if isinstance(exc, TokenStoreError) and "OAUTHSMTP_STORE" not in text:
        text += " (hint: set OAUTHSMTP_STORE=file to keep tokens in 0600 files instead)"
    elif isinstance(exc, TokenStoreError):
        text += (
            "; use the same OAUTHSMTP_STORE for the login and every later command, "
            f"e.g. OAUTHSMTP_STORE=file oauthsmtp login --account {who}"
        )
    if isinstance(exc, TokenError) and exc.error == "invalid_client":
        text += " (check --client-id and the client secret: oauthsmtp login --help)"
    return text


def exit_code(exc: BaseException) -> int:
    """The exit code for an error: 3 login required, 2 bad usage, else 1 (or the command's)."""
    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, LoginRequired):
        return EXIT_LOGIN_REQUIRED
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE
    return EXIT_FAILURE
