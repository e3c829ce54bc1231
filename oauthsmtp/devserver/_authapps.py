"""App-only grants of the development authorization server, on authlib's server classes.

* ``client_credentials`` (RFC 6749 §4.4) for an app registered with
  :meth:`AuthServer.register_app`: the app authenticates with its secret
  (``client_secret_post`` / ``client_secret_basic``) or with a
  ``private_key_jwt`` client assertion (RFC 7523 §2.2) signed by the key of the
  certificate it registered. As Microsoft Entra ID does, the assertion's
  ``x5t#S256`` header must name that certificate, ``iss`` = ``sub`` = the client
  id, ``aud`` the token endpoint, and its ``jti`` is accepted once.
* The JWT bearer grant (RFC 7523 §2.1) for a service account registered with
  :meth:`AuthServer.register_service_account`: ``iss`` is the account's email,
  and a ``sub`` must be one of the users the account may act for (Google's
  domain-wide delegation).

The tokens carry no refresh token. An app token may be used for the mailboxes
the app was given (``Add-MailboxPermission``); a delegated token for its
subject only.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable
from typing import Any, ClassVar

from authlib.oauth2.rfc6749 import ClientCredentialsGrant, InvalidClientError, InvalidGrantError
from authlib.oauth2.rfc7523 import JWTBearerClientAssertion, JWTBearerGrant
from joserfc import jwk, jws, jwt
from joserfc.errors import JoseError

from ._authmodels import AUTH_METHODS, valid_email

ALGORITHMS = ["RS256", "PS256", "ES256"]
"""Signature algorithms accepted on assertions (Microsoft: PS256; Google: RS256)."""

PRIVATE_KEY_JWT = "private_key_jwt"
APP_AUTH_METHODS = [*AUTH_METHODS, PRIVATE_KEY_JWT]


def _b64url_sha256(data: bytes) -> str:
    import base64

    return base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode("ascii")


def public_key_of(client: Any) -> jwk.Key:
    """The client's registered public key as a JOSE key."""
    pem: str = client.dev.public_key
    return jwk.import_key(pem, "EC" if "BEGIN EC" in pem or _is_ec(pem) else "RSA")


def _is_ec(pem: str) -> bool:
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.hazmat.primitives.serialization import load_pem_public_key

    return isinstance(load_pem_public_key(pem.encode("ascii")), ec.EllipticCurvePublicKey)


def _decode(assertion: str, key: jwk.Key, error: Callable[..., Exception]) -> jwt.Token:
    try:
        return jwt.decode(assertion, key, algorithms=ALGORITHMS)
    except (JoseError, ValueError) as exc:
        raise error(description=f"The assertion's signature does not verify ({exc}).") from None


class DevPrivateKeyJWT(JWTBearerClientAssertion):  # type: ignore[misc]
    """``private_key_jwt`` client authentication (RFC 7523 §2.2), as Entra ID checks it."""

    CLIENT_AUTH_METHOD = PRIVATE_KEY_JWT

    def __init__(self, server: Any) -> None:
        super().__init__(validate_jti=True, leeway=60)
        self.server = server
        self._thumbprint: str | None = None

    def get_audiences(self) -> list[str]:
        return [self.server.issuer + "/token"]

    def resolve_client_public_key(self, client: Any) -> jwk.Key:
        if not client.dev.public_key or not client.dev.thumbprint:
            raise InvalidClientError(description="The client registered no certificate.")
        # The server's lock is held around the whole token request: one client at a time.
        self._thumbprint = client.dev.thumbprint
        return public_key_of(client)

    def process_assertion_claims(self, assertion: str, resolve_key: Any) -> Any:
        try:
            headers = jws.extract_compact(assertion.encode("ascii")).headers()
        except (JoseError, ValueError):
            raise InvalidClientError(description="Invalid JWT assertion.") from None
        if headers.get("x5t#S256") != self._thumbprint:
            raise InvalidClientError(
                description="The assertion's x5t#S256 header names no certificate of this app."
            )
        token = _decode(assertion, resolve_key, InvalidClientError)
        exp, iat = token.claims.get("exp"), token.claims.get("iat")
        if isinstance(exp, int) and isinstance(iat, int) and exp - iat > 3600:
            raise InvalidClientError(description="The assertion is valid for more than 1 hour.")
        self.verify_claims(token.claims)
        return token.claims

    def validate_jti(self, claims: Any, jti: str) -> bool:
        result: bool = self.server.dev_use_jti(claims["sub"], jti, claims["exp"])
        return result


class DevClientCredentialsGrant(ClientCredentialsGrant):  # type: ignore[misc]
    """client_credentials (RFC 6749 §4.4): secret or private_key_jwt; no refresh token."""

    TOKEN_ENDPOINT_AUTH_METHODS: ClassVar[list[str]] = APP_AUTH_METHODS


class DevJWTBearerGrant(JWTBearerGrant):  # type: ignore[misc]
    """The JWT bearer grant (RFC 7523 §2.1) for service accounts, with delegation by ``sub``."""

    def get_audiences(self) -> list[str]:
        return [self.server.issuer + "/token"]

    def resolve_issuer_client(self, issuer: str) -> Any:
        return self.server.dev_find_service_account(issuer)

    def resolve_client_public_key(self, client: Any) -> jwk.Key:
        return public_key_of(client)

    def process_assertion_claims(self, assertion: str) -> Any:
        _, claims = self.extract_assertion(assertion)
        issuer = claims.get("iss")
        client = self.resolve_issuer_client(issuer) if isinstance(issuer, str) else None
        if client is None:
            raise InvalidGrantError(description="The assertion's issuer is no service account.")
        token = _decode(assertion, public_key_of(client), InvalidGrantError)
        self.verify_claims(token.claims)
        return token.claims

    def authenticate_user(self, subject: str) -> str | None:
        return subject if isinstance(subject, str) and valid_email(subject) else None

    def has_granted_permission(self, client: Any, user: str) -> bool:
        return user.casefold() in {m.casefold() for m in client.dev.mailboxes}


def certificate_thumbprint(der: bytes) -> str:
    """``x5t#S256`` of a DER certificate."""
    return _b64url_sha256(der)


def describe_certificate(certificate: str | bytes) -> tuple[str, str]:
    """(public key PEM, ``x5t#S256``) of a PEM certificate.

    Raises:
        ConfigurationError: the text is not a PEM certificate.
    """
    from cryptography import x509
    from cryptography.hazmat.primitives import serialization

    from oauthsmtp._errors import ConfigurationError

    data = certificate.encode("ascii") if isinstance(certificate, str) else certificate
    try:
        cert = x509.load_pem_x509_certificate(data)
    except ValueError:
        raise ConfigurationError("certificate is not a PEM certificate") from None
    public = cert.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return public.decode("ascii"), certificate_thumbprint(
        cert.public_bytes(serialization.Encoding.DER)
    )


def new_service_account_key() -> tuple[str, str, str]:
    """A new RSA key for a service account: (private PKCS#8 PEM, public PEM, key id)."""
    import secrets

    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    private = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    ).decode("ascii")
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode("ascii")
    )
    return private, public, secrets.token_hex(20)
