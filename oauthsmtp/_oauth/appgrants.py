"""App-only grants: a token for an application, with no person, browser or refresh token.

:class:`ClientCredentials` describes the application; :func:`app_grant_form`
builds the token request (pure); :func:`request_app_token` sends it through
the one HTTP client (:func:`oauthsmtp._oauth.httpclient.post_form`) and parses
the answer strictly (:func:`oauthsmtp._oauth.tokenresponse.parse_token_response`).
Two grants:

* ``client_credentials`` (RFC 6749 §4.4): the app authenticates with its client
  secret (``client_secret_post``), or with a private key and certificate as a
  ``private_key_jwt`` client assertion (RFC 7523 §2.2). Microsoft Entra ID's
  app-only SMTP uses this.
* ``jwt_bearer`` (RFC 7523 §2.1): a signed assertion *is* the grant; its
  ``sub`` names the user the app acts for. Google service accounts with
  domain-wide delegation use this.

No refresh token comes back: an app token is renewed by making the same
grant again (:func:`oauthsmtp.app_token` does it through the token store).
"""

from __future__ import annotations

import logging
import os
import stat
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Literal
from urllib.parse import urlsplit

from oauthsmtp._errors import ConfigurationError, TokenError

from .httpclient import REQUEST_TIMEOUT, post_form
from .params import check_endpoint, normalize_scope
from .tokenresponse import TokenState, parse_token_response

if TYPE_CHECKING:
    from .assertions import SigningKey

__all__ = [
    "MAX_KEY_FILE",
    "ClientCredentials",
    "Grant",
    "app_grant_form",
    "read_key_file",
    "request_app_token",
]

log = logging.getLogger("oauthsmtp.token")

Grant = Literal["client_credentials", "jwt_bearer"]

_FORBIDDEN = frozenset("\r\n\x00")

MAX_KEY_FILE = 64 * 1024
"""A key, certificate or service account file is at most this long."""


def read_key_file(path: str | os.PathLike[str], *, what: str, private: bool = True) -> bytes:
    """Read a key, certificate or service account file; warn when others may read a key.

    A private key that group or others can read (any of mode 0o077 on POSIX)
    is read all the same, with a WARNING on the ``oauthsmtp`` logger saying
    whose it is and the ``chmod`` that fixes it: whoever reads the key can
    send mail as every mailbox the app may use.

    Raises:
        ConfigurationError: the file cannot be read or is too large; the message
            names the file, never its content.
    """
    name = os.fspath(path)
    try:
        with open(name, "rb") as fh:
            mode = os.fstat(fh.fileno()).st_mode
            data = fh.read(MAX_KEY_FILE + 1)
    except OSError as exc:
        raise ConfigurationError(f"cannot read the {what} {name}: {exc.strerror}") from None
    if len(data) > MAX_KEY_FILE:
        raise ConfigurationError(f"the {what} {name} is too large to be a key")
    if private and os.name == "posix" and stat.S_IMODE(mode) & 0o077:
        logging.getLogger("oauthsmtp").warning(
            "the %s %s can be read by other users (mode %o): anyone who reads it can get "
            "tokens as this app; run: chmod 600 %s",
            what,
            name,
            stat.S_IMODE(mode),
            name,
        )
    return data


def _text(name: str, value: object, *, optional: bool = False) -> str | None:
    if value is None and optional:
        return None
    if not isinstance(value, str) or not value.strip():
        raise ConfigurationError(f"{name} must be a non-empty string")
    if any(ch in _FORBIDDEN for ch in value) or not value.isprintable():
        raise ConfigurationError(f"{name} must not contain control characters")
    return value


@dataclass(frozen=True)
class ClientCredentials:
    """An application's own credentials for an app-only token (RFC 6749 §4.4, RFC 7523).

    Give ``client_secret``, or ``private_key`` (with its ``certificate`` for
    providers that find the key by its thumbprint, as Microsoft does). The key
    is loaded and checked here, so a key that is not a key, or a certificate
    that is not the key's, fails at construction, not at the first send.
    Secrets and keys never appear in ``repr``.

    Args:
        client_id: the application (client) id.
        token_url: the token endpoint (https, or http on loopback).
        scope: what to ask for (Microsoft: ``https://outlook.office365.com/.default``).
        client_secret: the client secret (``client_credentials`` only).
        private_key: a PEM private key, unencrypted (RSA 2048+ or EC P-256).
        certificate: the PEM certificate of ``private_key``; its SHA-256
            thumbprint is sent as the ``x5t#S256`` header.
        grant: ``"client_credentials"`` (default) or ``"jwt_bearer"``.
        subject: ``jwt_bearer`` only: the ``sub`` claim, the user to act for
            (Google domain-wide delegation).
        issuer: ``jwt_bearer`` only: the ``iss`` claim (default ``client_id``;
            Google: the service account's ``client_email``).
        audience: the assertion's ``aud`` (default ``token_url``).
        algorithm: ``RS256``, ``PS256`` or ``ES256`` (default from the key type).
        key_id: a ``kid`` header (Google's ``private_key_id``).

    Raises:
        ConfigurationError: anything that cannot work, named without quoting a secret.
    """

    client_id: str
    token_url: str
    scope: str | Sequence[str] = ()
    client_secret: str | None = field(default=None, repr=False)
    private_key: str | bytes | None = field(default=None, repr=False)
    certificate: str | bytes | None = field(default=None, repr=False)
    grant: Grant = "client_credentials"
    subject: str | None = None
    issuer: str | None = None
    audience: str | None = None
    algorithm: str | None = None
    key_id: str | None = None
    _key: SigningKey | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        set_ = object.__setattr__
        _text("client_id", self.client_id)
        set_(self, "token_url", check_endpoint("token_url", self.token_url))
        set_(self, "scope", normalize_scope(self.scope))
        for name in ("subject", "issuer", "key_id"):
            _text(name, getattr(self, name), optional=True)
        if self.audience is not None:
            _text("audience", self.audience)
        if self.grant not in ("client_credentials", "jwt_bearer"):
            raise ConfigurationError(
                f"grant must be 'client_credentials' or 'jwt_bearer', not {self.grant!r}"
            )
        if self.client_secret is not None and self.private_key is not None:
            raise ConfigurationError("give client_secret or private_key, not both")
        if self.grant == "jwt_bearer" and self.private_key is None:
            raise ConfigurationError("the jwt_bearer grant needs private_key (it signs the grant)")
        if self.grant == "client_credentials":
            if self.subject is not None or self.issuer is not None:
                raise ConfigurationError("subject and issuer belong to the jwt_bearer grant")
            if self.client_secret is None and self.private_key is None:
                raise ConfigurationError(
                    "ClientCredentials needs client_secret, or private_key and certificate"
                )
        if self.client_secret is not None:
            _text("client_secret", self.client_secret)
            if self.certificate is not None:
                raise ConfigurationError("certificate goes with private_key, not client_secret")
        if self.private_key is not None:
            # Imported here: an app with a client secret never loads cryptography or joserfc.
            from .assertions import load_signing_key

            key = load_signing_key(
                self.private_key,
                certificate=self.certificate,
                algorithm=self.algorithm,
                key_id=self.key_id,
            )
            set_(self, "_key", key)

    @property
    def scopes(self) -> tuple[str, ...]:
        """The scope tokens asked for."""
        return tuple(self.scope)

    @property
    def thumbprint(self) -> str | None:
        """The certificate's ``x5t#S256`` thumbprint, when a certificate was given."""
        return self._key.x5t_s256 if self._key is not None else None

    def __repr__(self) -> str:
        if self.client_secret is not None:
            auth = "client_secret='***'"
        else:
            auth = f"private_key='***', x5t#S256={self.thumbprint!r}"
        subject = f", subject={self.subject!r}" if self.subject is not None else ""
        return (
            f"ClientCredentials(client_id={self.client_id!r}, token_url={self.token_url!r}, "
            f"scope={' '.join(self.scopes)!r}, grant={self.grant!r}, {auth}{subject})"
        )


def app_grant_form(creds: ClientCredentials, *, now: datetime) -> dict[str, str]:
    """The token request's form for ``creds`` at ``now`` (pure but for the fresh ``jti``)."""
    from .assertions import CLIENT_ASSERTION_TYPE, JWT_BEARER_GRANT, build_assertion

    audience = creds.audience or creds.token_url
    scope = " ".join(creds.scopes)
    if creds.grant == "jwt_bearer":
        assert creds._key is not None  # noqa: S101 - checked at construction
        extra = {"scope": scope} if scope else {}
        assertion = build_assertion(
            creds._key,
            issuer=creds.issuer or creds.client_id,
            audience=audience,
            subject=creds.subject,
            now=now,
            extra_claims=extra,
        )
        return {"grant_type": JWT_BEARER_GRANT, "assertion": assertion}
    form = {"grant_type": "client_credentials", "client_id": creds.client_id}
    if scope:
        form["scope"] = scope
    if creds.client_secret is not None:
        form["client_secret"] = creds.client_secret
    else:
        assert creds._key is not None  # noqa: S101 - checked at construction
        form["client_assertion_type"] = CLIENT_ASSERTION_TYPE
        form["client_assertion"] = build_assertion(
            creds._key,
            issuer=creds.client_id,
            audience=audience,
            subject=creds.client_id,
            now=now,
        )
    return form


def _scrubbed(exc: TokenError, secrets: list[str]) -> TokenError:
    message, description = str(exc), exc.error_description
    for secret in secrets:
        message = message.replace(secret, "[secret]")
        if description:
            description = description.replace(secret, "[secret]")
    return TokenError(message, error=exc.error, error_description=description, status=exc.status)


_HINT = {
    "invalid_client": "the provider does not accept the app's credentials (wrong or expired "
    "client secret, or a certificate not uploaded to the app registration)",
    "unauthorized_client": "the app may not use this grant (Google: domain-wide delegation not "
    "set up for this client id and scope; Microsoft: the application permission is missing)",
    "invalid_grant": "the provider refused the signed grant (Google: the subject is not a user "
    "of the domain, or delegation is not allowed for it; a clock more than minutes off)",
    "invalid_scope": "the scope is not granted to the app",
}


def request_app_token(
    creds: ClientCredentials,
    *,
    timeout: float = REQUEST_TIMEOUT,
    now: datetime | None = None,
) -> TokenState:
    """Make the app-only grant once; return the validated token state.

    The answer is parsed as strictly as any token answer (RFC 6749 §5.1);
    a refresh token in it is dropped (RFC 6749 §4.4.3: none should be issued,
    and the grant itself renews the token).

    Raises:
        TokenError: the endpoint refused (``error`` set: ``invalid_client``,
            ``unauthorized_client``, ``invalid_grant``...), answered something
            unusable, or did not answer in time. The message says what to check
            and never quotes the secret or the assertion.
    """
    form = app_grant_form(creds, now=now or datetime.now(timezone.utc))
    secrets = [
        form[name] for name in ("client_secret", "client_assertion", "assertion") if form.get(name)
    ]
    log.debug(
        "token: app-only %s grant for %s at %s",
        creds.grant,
        creds.client_id,
        urlsplit(creds.token_url).netloc,
    )
    try:
        answer = post_form(creds.token_url, form, timeout=timeout)
        state = parse_token_response(
            answer.status,
            answer.content_type,
            answer.body,
            now=datetime.now(timezone.utc),
            requested_scope=creds.scopes,
        )
    except TokenError as exc:
        error = _scrubbed(exc, secrets)
        hint = _HINT.get(error.error or "")
        if hint is None:
            raise error from None
        raise TokenError(
            f"{error} ({hint})",
            error=error.error,
            error_description=error.error_description,
            status=error.status,
        ) from None
    return replace(state, refresh_token=None) if state.refresh_token is not None else state
