"""PKCE (RFC 7636) and ``state`` values. Pure functions.

The S256 challenge is two standard-library calls; it is computed here rather
than through authlib so that ``import oauthsmtp`` stays light.
"""

from __future__ import annotations

import base64
import hashlib
import re
import secrets

__all__ = ["VERIFIER_PATTERN", "make_state", "make_verifier", "s256_challenge"]

VERIFIER_PATTERN = re.compile(r"^[A-Za-z0-9\-._~]{43,128}$")
"""RFC 7636 §4.1: ``code-verifier = 43*128unreserved``."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def make_verifier(octets: bytes | None = None) -> str:
    """Return a PKCE code verifier: base64url of 32 random octets (256 bits, 43 chars).

    Args:
        octets: the random octets to encode (for test vectors); at least 32.
    """
    if octets is None:
        octets = secrets.token_bytes(32)
    if len(octets) < 32:
        raise ValueError("a PKCE verifier needs at least 32 random octets (RFC 7636 §7.1)")
    verifier = _b64url(octets)
    if not VERIFIER_PATTERN.match(verifier):
        raise ValueError("PKCE verifier would be longer than 128 characters")
    return verifier


def s256_challenge(verifier: str) -> str:
    """Return ``BASE64URL(SHA256(ASCII(verifier)))`` (RFC 7636 §4.2, method S256)."""
    if not VERIFIER_PATTERN.match(verifier):
        raise ValueError("not a valid PKCE code verifier (RFC 7636 §4.1)")
    return _b64url(hashlib.sha256(verifier.encode("ascii")).digest())


def make_state() -> str:
    """Return a fresh, unguessable ``state`` value (256 bits, base64url)."""
    return _b64url(secrets.token_bytes(32))
