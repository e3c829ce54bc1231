"""The checked settings of a session (pure), shared by SMTPSession and AsyncSMTPSession.

:func:`check_settings` takes a session's constructor arguments and returns them checked
and normalized as :class:`SessionSettings`, or raises :class:`~oauthsmtp.ConfigurationError`
before any connection is made; both sessions call it, so they accept and refuse the same
values with the same messages.
"""

from __future__ import annotations

import ssl
from dataclasses import dataclass, field

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._oauth.params import is_loopback_host

from .auth import TokenSource, check_mechanism, is_token_source
from .connect import Security
from .options import (
    DEFAULT_PORTS,
    check_host,
    check_password,
    check_port,
    check_text,
    check_timeout,
)

__all__ = ["SessionSettings", "check_settings"]


@dataclass(frozen=True)
class SessionSettings:
    """A session's connection settings, checked.

    Attributes:
        host: the host as given (for messages, TLS host name checks and OAUTHBEARER).
        address: the host to connect to, in ASCII (an IDN as its A-label).
        port: the port (defaulted from ``security``).
        security: ``"starttls"``, ``"ssl"`` or ``"none"``.
        timeout: seconds for connecting, each write and each reply.
        username: the SASL user, or None without credentials.
        token: the OAuth token, or None.
        password: the password, or None (never in the repr).
        mechanism: a forced SASL mechanism, upper case, or None.
        local_hostname: the EHLO name, or None for the local address literal.
        ssl_context: the TLS context, or None for the default.
    """

    host: str
    address: str
    port: int
    security: Security
    timeout: float
    username: str | None
    token: TokenSource | None = field(repr=False)
    password: str | None = field(repr=False)
    mechanism: str | None
    local_hostname: str | None
    ssl_context: ssl.SSLContext | None = field(repr=False)


def check_settings(
    host: object,
    port: object,
    *,
    security: object,
    username: object,
    auth_token: object,
    password: object,
    mechanism: object,
    timeout: object,
    ssl_context: object,
    local_hostname: object,
) -> SessionSettings:
    """Check a session's connection arguments (see :class:`~oauthsmtp.SMTPSession`).

    Raises:
        ConfigurationError: a malformed or inconsistent value (a password is never echoed).
    """
    if not isinstance(security, str) or security not in DEFAULT_PORTS:
        raise ConfigurationError(f"security must be 'starttls', 'ssl' or 'none', not {security!r}")
    address = check_host(host)
    assert isinstance(host, str)  # noqa: S101 - check_host accepted it
    port = check_port(DEFAULT_PORTS[security] if port is None else port)
    timeout = check_timeout(timeout)
    if auth_token is not None and password is not None:
        raise ConfigurationError("pass auth_token= or password=, not both")
    if auth_token is not None and not is_token_source(auth_token):
        raise ConfigurationError(
            "auth_token must be an oauthsmtp.AuthToken (or have an access_token property "
            f"and a refresh() method), not {type(auth_token).__name__}"
        )
    token: TokenSource | None = auth_token  # type: ignore[assignment]
    checked_password = check_password(password)
    if username is None and token is not None:
        username = getattr(token, "account", None)
    if (token is not None or checked_password is not None) and username is None:
        raise ConfigurationError("username= is required with auth_token= or password=")
    user = None if username is None else check_text("username", username)
    if mechanism is not None and not isinstance(mechanism, str):
        raise ConfigurationError(f"mechanism must be a string or None, not {mechanism!r}")
    forced = check_mechanism(mechanism, token=token is not None, password=checked_password)
    if ssl_context is not None:
        if not isinstance(ssl_context, ssl.SSLContext):
            raise ConfigurationError(
                f"ssl_context must be an ssl.SSLContext, not {type(ssl_context).__name__}"
            )
        if security == "none":
            raise ConfigurationError("ssl_context= has no effect with security='none'")
    credentials = token is not None or checked_password is not None
    if security == "none" and credentials and not is_loopback_host(host):
        raise ConfigurationError(
            "credentials are never sent without TLS: use security='starttls' or 'ssl' "
            "(security='none' with credentials is only for loopback test servers)"
        )
    name = None if local_hostname is None else check_text("local_hostname", local_hostname)
    return SessionSettings(
        host=host,
        address=address,
        port=port,
        security=security,  # type: ignore[arg-type]
        timeout=timeout,
        username=user,
        token=token,
        password=checked_password,
        mechanism=forced,
        local_hostname=name,
        ssl_context=ssl_context,
    )
