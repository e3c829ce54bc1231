"""The SASL side of the development SMTP server: parsing XOAUTH2 and OAUTHBEARER.

Pure functions on decoded client responses, no I/O: ``parse_xoauth2``
(Google's ``user=U^Aauth=Bearer T^A^A``), ``parse_oauthbearer`` (RFC 7628
§3.1, giving :class:`OAuthBearerFields` and the token), and
``failure_challenge``, the ``334`` error challenge sent after a bad token
(Gmail's form for XOAUTH2, RFC 7628 §3.2.2 for OAUTHBEARER). A malformed
response gives None, never an exception.
"""

from __future__ import annotations

import base64
import json
import re
from collections.abc import Mapping
from dataclasses import dataclass, field

_B64TOKEN = re.compile(r"[A-Za-z0-9\-._~+/]+=*")
_SASLNAME_ESCAPE = re.compile(r"=(?!2C|3D)")
_CONTROL = re.compile(r"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class OAuthBearerFields:
    """What an OAUTHBEARER client sent besides its token (RFC 7628 §3.1).

    Attributes:
        authzid: The ``a=`` user of the GS2 header, unescaped, or None when absent.
        host: The ``host`` key/value pair, or None.
        port: The ``port`` key/value pair as sent (a string), or None.
        extra: Any other key/value pairs, except ``auth``.
    """

    authzid: str | None
    host: str | None
    port: str | None
    extra: Mapping[str, str] = field(default_factory=dict)


def failure_challenge(mechanism: str, scope: str) -> str:
    """The ``334`` challenge that answers a bad token, naming ``scope``."""
    if mechanism == "XOAUTH2":  # Gmail's live form (docs/security.md#vector-error-challenges)
        body = {"status": "400", "schemes": "Bearer", "scope": scope}
    else:  # RFC 7628 §3.2.2
        body = {"status": "invalid_token", "scope": scope, "schemes": "bearer"}
    text = json.dumps(body, separators=(",", ":"))
    return "334 " + base64.b64encode(text.encode()).decode("ascii")


def parse_xoauth2(blob: bytes) -> tuple[str, str] | None:
    """``(user, token)`` from a decoded XOAUTH2 response, or None if malformed."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    if not text.endswith("\x01\x01"):
        return None
    pairs = _kvpairs(text[:-2].split("\x01"))
    if pairs is None or set(pairs) != {"user", "auth"}:
        return None
    user, token = pairs["user"], _bearer(pairs["auth"])
    if not user or _CONTROL.search(user) or token is None:
        return None
    return user, token


def parse_oauthbearer(blob: bytes) -> tuple[OAuthBearerFields, str] | None:
    """The fields and token of a decoded OAUTHBEARER response (RFC 7628 §3.1), or None."""
    try:
        text = blob.decode("utf-8")
    except UnicodeDecodeError:
        return None
    parts = text.split(",", 2)
    if len(parts) != 3 or parts[0] not in ("n", "y"):  # "p=": channel binding is not supported
        return None
    _, gs2_authzid, rest = parts
    authzid = None
    if gs2_authzid:
        if not gs2_authzid.startswith("a=") or _SASLNAME_ESCAPE.search(gs2_authzid[2:]):
            return None
        authzid = gs2_authzid[2:].replace("=2C", ",").replace("=3D", "=")
        if not authzid or _CONTROL.search(authzid):
            return None
    if not rest.startswith("\x01") or not rest.endswith("\x01\x01"):
        return None
    inner = rest[1:-2]
    pairs = _kvpairs(inner.split("\x01") if inner else [])
    if pairs is None or "auth" not in pairs:
        return None
    auth = pairs.pop("auth")
    token = _bearer(auth) if auth else ""
    if token is None:
        return None
    host, port = pairs.pop("host", None), pairs.pop("port", None)
    return OAuthBearerFields(authzid=authzid, host=host, port=port, extra=pairs), token


def _kvpairs(items: list[str]) -> dict[str, str] | None:
    pairs: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.isascii() or not key.isalpha() or key in pairs:
            return None
        pairs[key] = value
    return pairs


def _bearer(value: str) -> str | None:
    """The token of an ``auth=Bearer <token>`` value (scheme case-insensitive), or None."""
    scheme, _, token = value.partition(" ")
    if scheme.lower() != "bearer" or not _B64TOKEN.fullmatch(token):
        return None
    return token
