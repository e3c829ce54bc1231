"""Signed JWT assertions for app-only grants (RFC 7523), built without any I/O.

Two uses, one shape (RFC 7523 §3):

* **Client authentication** (``private_key_jwt``, RFC 7523 §2.2, OpenID
  Connect Core §9): ``iss`` = ``sub`` = the client id, ``aud`` = the token
  endpoint, a short ``exp``, a fresh ``jti``; the header names the certificate
  by its SHA-256 thumbprint (``x5t#S256``, RFC 7515 §4.1.8), which is how
  Microsoft Entra ID finds the certificate uploaded to the app registration.
* **Authorization grant** (JWT bearer, RFC 7523 §2.1): ``iss`` = the service
  account, ``sub`` = the user to act as (Google's domain-wide delegation),
  ``aud`` = the token endpoint, ``scope`` as Google expects it.

Keys are loaded and checked with ``cryptography``; the JWS is made by
``joserfc`` (the JOSE library authlib itself now builds on): nothing here
hand-rolls a signature. A key never appears in a message, a repr or a log.
"""

from __future__ import annotations

import base64
import hashlib
import secrets
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa
from joserfc import jwk, jwt

from oauthsmtp._errors import ConfigurationError

__all__ = [
    "ASSERTION_LIFETIME",
    "CLIENT_ASSERTION_TYPE",
    "JWT_BEARER_GRANT",
    "SigningKey",
    "build_assertion",
    "load_signing_key",
    "thumbprint_s256",
]

CLIENT_ASSERTION_TYPE = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"
"""RFC 7523 §2.2: the ``client_assertion_type`` of a JWT client assertion."""

JWT_BEARER_GRANT = "urn:ietf:params:oauth:grant-type:jwt-bearer"
"""RFC 7523 §2.1: the ``grant_type`` of the JWT bearer grant."""

ASSERTION_LIFETIME = timedelta(minutes=5)
"""How long an assertion is valid: long enough for one request, short enough that a
captured one is soon worthless (RFC 7523 §3 item 4 asks for a limited window)."""

_MAX_PEM = 64 * 1024
_RSA_MIN_BITS = 2048
_ALGORITHMS = {"RS256", "PS256", "ES256"}


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _pem_bytes(what: str, value: object) -> bytes:
    if isinstance(value, str):
        value = value.encode("utf-8")
    if not isinstance(value, bytes):
        raise ConfigurationError(
            f"{what} must be PEM text (str or bytes), not {type(value).__name__}"
        )
    if not value.strip():
        raise ConfigurationError(f"{what} is empty")
    if len(value) > _MAX_PEM:
        raise ConfigurationError(f"{what} is too large to be a PEM key or certificate")
    return value


def thumbprint_s256(certificate_der: bytes) -> str:
    """The ``x5t#S256`` value: base64url of the SHA-256 of the DER certificate (RFC 7515 §4.1.8)."""
    return _b64url(hashlib.sha256(certificate_der).digest())


@dataclass(frozen=True)
class SigningKey:
    """A private key ready to sign assertions, with the header fields that name it.

    Attributes:
        algorithm: ``RS256``, ``PS256`` (RSA keys) or ``ES256`` (EC P-256 keys).
        x5t_s256: the SHA-256 thumbprint of the matching certificate, when one was given.
        key_id: a ``kid`` header value (Google's ``private_key_id``), when known.
    """

    algorithm: str
    x5t_s256: str | None = None
    key_id: str | None = None
    _jwk: Any = field(default=None, repr=False, compare=False)

    def __repr__(self) -> str:
        return f"SigningKey(algorithm={self.algorithm!r}, x5t_s256={self.x5t_s256!r}, key=***)"


def load_signing_key(
    private_key: str | bytes,
    *,
    certificate: str | bytes | None = None,
    algorithm: str | None = None,
    key_id: str | None = None,
) -> SigningKey:
    """Load a PEM private key (and its certificate) for signing assertions.

    Args:
        private_key: a PEM private key (PKCS#8 ``BEGIN PRIVATE KEY``, or the
            traditional RSA / EC forms), unencrypted.
        certificate: the PEM certificate of that key, as uploaded to the
            provider; its SHA-256 thumbprint goes into the ``x5t#S256`` header.
        algorithm: ``RS256``, ``PS256`` or ``ES256``; default RS256 for RSA
            keys, ES256 for EC P-256 keys.
        key_id: the ``kid`` header, if the provider wants one.

    Raises:
        ConfigurationError: the key is not a PEM private key (or is encrypted,
            too small or of an unsupported type), the certificate does not
            parse, or the certificate is not the key's own. The messages never
            quote the key.
    """
    data = _pem_bytes("private_key", private_key)
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except TypeError:
        raise ConfigurationError(
            "private_key is encrypted with a passphrase; give an unencrypted PEM key "
            "(openssl pkcs8 -topk8 -nocrypt -in KEY -out KEY.pem), kept readable by its owner only"
        ) from None
    except (ValueError, UnsupportedAlgorithm):
        raise ConfigurationError(
            "private_key is not a PEM private key (expected -----BEGIN PRIVATE KEY----- or "
            "-----BEGIN RSA PRIVATE KEY-----); check that the key file, not the certificate, "
            "was given"
        ) from None
    if isinstance(key, rsa.RSAPrivateKey):
        if key.key_size < _RSA_MIN_BITS:
            raise ConfigurationError(
                f"private_key is a {key.key_size}-bit RSA key; at least {_RSA_MIN_BITS} bits "
                "are needed (RFC 7518 §3.3)"
            )
        default = "RS256"
    elif isinstance(key, ec.EllipticCurvePrivateKey) and isinstance(key.curve, ec.SECP256R1):
        default = "ES256"
    else:
        raise ConfigurationError(
            "private_key must be an RSA key (2048 bits or more) or an EC P-256 key"
        )
    alg = algorithm or default
    if alg not in _ALGORITHMS or (default == "ES256") != (alg == "ES256"):
        raise ConfigurationError(f"algorithm {alg!r} does not fit a key for {default}")
    thumb = None
    if certificate is not None:
        cert_data = _pem_bytes("certificate", certificate)
        try:
            cert = x509.load_pem_x509_certificate(cert_data)
        except ValueError:
            raise ConfigurationError(
                "certificate is not a PEM certificate (expected -----BEGIN CERTIFICATE-----)"
            ) from None
        raw = serialization.PublicFormat.SubjectPublicKeyInfo
        der = serialization.Encoding.DER
        if cert.public_key().public_bytes(der, raw) != key.public_key().public_bytes(der, raw):
            raise ConfigurationError(
                "certificate does not match private_key (its public key is another key's): "
                "give the certificate made from this key, the one uploaded to the app registration"
            )
        thumb = thumbprint_s256(cert.public_bytes(serialization.Encoding.DER))
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    return SigningKey(alg, thumb, key_id, jwk.import_key(pem, "EC" if alg == "ES256" else "RSA"))


def build_assertion(
    key: SigningKey,
    *,
    issuer: str,
    audience: str,
    subject: str | None,
    now: datetime,
    lifetime: timedelta = ASSERTION_LIFETIME,
    jti: str | None = None,
    extra_claims: Mapping[str, Any] | None = None,
) -> str:
    """A signed JWT (compact JWS) for RFC 7523 §2.1 or §2.2.

    Args:
        key: the signing key.
        issuer / subject / audience: the ``iss``, ``sub`` and ``aud`` claims
            (no ``sub`` when ``subject`` is None).
        now: the time the assertion is made (``iat``, ``nbf``; ``exp`` = now + lifetime).
        lifetime: how long it is valid (at most 1 hour: Google's limit).
        jti: the unique id; a fresh 128-bit random one by default.
        extra_claims: more claims (Google's ``scope``).

    Returns:
        The compact serialization (``header.payload.signature``).
    """
    if not timedelta(0) < lifetime <= timedelta(hours=1):
        raise ConfigurationError("an assertion's lifetime must be between 0 and 1 hour")
    issued = int(now.timestamp())
    claims: dict[str, Any] = dict(extra_claims or {})
    claims.update(
        {
            "iss": issuer,
            "aud": audience,
            "iat": issued,
            "nbf": issued,
            "exp": issued + int(lifetime.total_seconds()),
            "jti": jti if jti is not None else secrets.token_urlsafe(16),
        }
    )
    if subject is not None:
        claims["sub"] = subject
    header: dict[str, Any] = {"alg": key.algorithm, "typ": "JWT"}
    if key.x5t_s256 is not None:
        header["x5t#S256"] = key.x5t_s256
    if key.key_id is not None:
        header["kid"] = key.key_id
    return jwt.encode(header, claims, key._jwk, algorithms=[key.algorithm])
