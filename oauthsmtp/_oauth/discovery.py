"""Discovery: the provider's endpoints from its published metadata (RFC 8414, OIDC Discovery).

:func:`metadata_urls` (pure) says where an issuer publishes its metadata,
:func:`parse_metadata` (pure) judges one document, and :func:`discover` fetches
them in order (RFC 8414 first, then OpenID Connect Discovery 1.0 §4) and
returns the first usable one.

A document is used only when its ``issuer`` is byte-equal to the issuer asked
for (RFC 8414 §3.3: otherwise the data "MUST NOT be used"), and every endpoint
in it is https (plain http only on a loopback host, for a local development
server). Microsoft's multi-tenant issuers (``/common``, ``/organizations``,
``/consumers``) publish ``https://login.microsoftonline.com/{tenantid}/v2.0`` as
their issuer: that exact template is accepted for them, and their endpoints are
pinned to the tenant word that was asked for, rather than the check being
switched off (docs/security.md, "Discovery").
"""

from __future__ import annotations

from dataclasses import dataclass
from urllib.parse import urlsplit

from oauthsmtp._errors import ConfigurationError, TokenError
from oauthsmtp._util.jsonobject import load_json_object

from .hosts import is_loopback_host
from .httpclient import get

__all__ = [
    "MAX_METADATA_BYTES",
    "ProviderMetadata",
    "check_issuer",
    "discover",
    "metadata_urls",
    "parse_metadata",
]

MAX_METADATA_BYTES = 256 * 1024
"""Metadata documents larger than this are refused (real ones are a few KiB)."""

_MICROSOFT = "https://login.microsoftonline.com/"
_MICROSOFT_TENANT_WORDS = ("common", "organizations", "consumers")
_MICROSOFT_TEMPLATE = "https://login.microsoftonline.com/{tenantid}/v2.0"


@dataclass(frozen=True)
class ProviderMetadata:
    """The endpoints of one provider, as its checked metadata names them.

    Attributes:
        issuer: the issuer that was asked for (and matched).
        authorization_endpoint / token_endpoint: required.
        revocation_endpoint / device_authorization_endpoint: None when not published.
        source: the URL the document came from.
    """

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    revocation_endpoint: str | None
    device_authorization_endpoint: str | None
    source: str


def _shown(value: object, limit: int = 200) -> str:
    text = value if isinstance(value, str) else repr(value)
    text = "".join(ch if ch.isprintable() else "?" for ch in text[:limit])
    return text + ("..." if len(str(value)) > limit else "")


def check_issuer(issuer: object) -> str:
    """``issuer`` if it can be an issuer identifier (RFC 8414 §2), else ConfigurationError.

    An https URL (http only for a loopback host) with a host, and no query,
    fragment or credentials.
    """
    if not isinstance(issuer, str) or not issuer or not issuer.isprintable():
        raise ConfigurationError(f"issuer must be an https URL, got {_shown(issuer)}")
    try:
        parts = urlsplit(issuer)
        parts.port  # noqa: B018 - evaluated for its validation
    except ValueError:
        raise ConfigurationError(f"issuer is not a valid URL: {_shown(issuer)}") from None
    scheme = parts.scheme.lower()
    if not parts.hostname or scheme not in ("https", "http") or " " in issuer:
        raise ConfigurationError(
            f"issuer must be an absolute https URL such as https://login.example.com, "
            f"got {_shown(issuer)}"
        )
    if scheme == "http" and not is_loopback_host(parts.hostname):
        raise ConfigurationError(
            f"issuer must use https (plain http only for a loopback development server), "
            f"got {_shown(issuer)}"
        )
    if parts.query or parts.fragment or "?" in issuer or "#" in issuer:
        raise ConfigurationError(
            f"issuer must not have a query or a fragment (RFC 8414 §2), got {_shown(issuer)}"
        )
    if parts.username is not None or parts.password is not None:
        raise ConfigurationError("issuer must not carry credentials")
    return issuer


def metadata_urls(issuer: str) -> tuple[str, str]:
    """(RFC 8414 URL, OpenID Connect Discovery URL) for ``issuer``.

    RFC 8414 §3.1 inserts the well-known segment between the host and the
    issuer's path; OpenID Connect Discovery §4.1 appends it to the issuer.
    """
    parts = urlsplit(issuer)
    path = parts.path.rstrip("/")
    origin = f"{parts.scheme}://{parts.netloc}"
    return (
        f"{origin}/.well-known/oauth-authorization-server{path}",
        f"{issuer.rstrip('/')}/.well-known/openid-configuration",
    )


def _microsoft_tenant_word(issuer: str) -> str | None:
    for word in _MICROSOFT_TENANT_WORDS:
        if issuer == f"{_MICROSOFT}{word}/v2.0":
            return word
    return None


def _endpoint(data: dict[str, object], name: str, *, required: bool, source: str) -> str | None:
    value = data.get(name)
    if value is None and not required:
        return None
    if not isinstance(value, str) or not value:
        raise ConfigurationError(f"the metadata at {source} has no usable {name}")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - evaluated for its validation
    except ValueError:
        raise ConfigurationError(f"the metadata at {source} has a malformed {name}") from None
    host = parts.hostname or ""
    scheme = parts.scheme.lower()
    secure = scheme == "https" or (scheme == "http" and is_loopback_host(host))
    if not host or not secure or parts.fragment or not value.isprintable() or " " in value:
        raise ConfigurationError(
            f"the metadata at {source} names {name} {_shown(value)}: endpoints must be https "
            "URLs (plain http only on a loopback host); this metadata is not used"
        )
    return value


def parse_metadata(issuer: str, body: bytes, *, source: str) -> ProviderMetadata:
    """Judge one metadata document fetched for ``issuer`` from ``source``.

    Raises:
        ConfigurationError: not a JSON object, an ``issuer`` that is not
            byte-equal to the one asked for (RFC 8414 §3.3; Microsoft's pinned
            multi-tenant template excepted), or a missing or insecure endpoint.
    """
    if len(body) > MAX_METADATA_BYTES:
        raise ConfigurationError(f"the metadata at {source} is larger than {MAX_METADATA_BYTES}")
    data = load_json_object(body)
    if data is None:
        raise ConfigurationError(f"the metadata at {source} is not a JSON object")
    published = data.get("issuer")
    word = _microsoft_tenant_word(issuer)
    if word is not None and published == _MICROSOFT_TEMPLATE:
        pinned = f"{_MICROSOFT}{word}/"
        for name in ("authorization_endpoint", "token_endpoint", "device_authorization_endpoint"):
            value = data.get(name)
            if value is not None and not (isinstance(value, str) and value.startswith(pinned)):
                raise ConfigurationError(
                    f"the metadata at {source} names {name} {_shown(value)}, outside {pinned}; "
                    "this metadata is not used"
                )
    elif published != issuer:
        raise ConfigurationError(
            f"the metadata at {source} is for issuer {_shown(published)}, not {issuer!r}; "
            "RFC 8414 §3.3 forbids using it (a typo in the issuer, or a server that is not "
            "the provider's). Give the exact issuer the provider documents"
        )
    auth = _endpoint(data, "authorization_endpoint", required=True, source=source)
    token = _endpoint(data, "token_endpoint", required=True, source=source)
    assert auth is not None  # noqa: S101 - required=True
    assert token is not None  # noqa: S101 - required=True
    return ProviderMetadata(
        issuer=issuer,
        authorization_endpoint=auth,
        token_endpoint=token,
        revocation_endpoint=_endpoint(data, "revocation_endpoint", required=False, source=source),
        device_authorization_endpoint=_endpoint(
            data, "device_authorization_endpoint", required=False, source=source
        ),
        source=source,
    )


def discover(issuer: str, *, timeout: float = 30.0) -> ProviderMetadata:
    """Fetch and check ``issuer``'s metadata: RFC 8414 first, then OpenID Connect Discovery.

    Raises:
        ConfigurationError: neither document is usable; the message says why for each.
    """
    issuer = check_issuer(issuer)
    reasons: list[str] = []
    for url in metadata_urls(issuer):
        try:
            answer = get(url, timeout=timeout, what="metadata server")
        except TokenError as exc:
            reasons.append(str(exc))
            continue
        if answer.status != 200:
            reasons.append(f"{url} answered HTTP {answer.status}")
            continue
        try:
            return parse_metadata(issuer, answer.body, source=url)
        except ConfigurationError as exc:
            reasons.append(str(exc))
    raise ConfigurationError(
        f"could not discover the endpoints of {issuer}: {'; '.join(reasons)}. Check the issuer "
        "URL, or give the endpoints yourself (auth_url=, token_url=)"
    )
