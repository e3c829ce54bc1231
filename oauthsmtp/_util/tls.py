"""Verified TLS contexts: the system's trust store plus ``SSL_CERT_FILE``, the same everywhere.

OpenSSL alone lets ``SSL_CERT_FILE`` *replace* the default bundle (or add to
it, where the system store is a hashed folder): :func:`tls_context` makes it
always *add* trust anchors, for the token endpoint and SMTP alike
(docs/security.md, rules 13 and 22).
"""

from __future__ import annotations

import os
import ssl

from oauthsmtp._errors import ConfigurationError

__all__ = ["tls_context"]


def _certifi_bundle() -> str | None:
    try:
        import certifi
    except ImportError:  # pragma: no cover - certifi comes with requests
        return None
    return str(certifi.where())


def _hashed_certificates(folder: str | None) -> bool:
    """True when ``folder`` is an OpenSSL hashed certificate directory (``c_rehash`` names)."""
    if not folder or not os.path.isdir(folder):
        return False
    try:
        with os.scandir(folder) as entries:
            for entry in entries:
                name = entry.name
                if len(name) >= 10 and name[8] == "." and name[9:].isdigit():
                    return True
    except OSError:
        return False
    return False


def tls_context() -> ssl.SSLContext:
    """Verified TLS: the system trust store, plus ``SSL_CERT_FILE`` and ``REQUESTS_CA_BUNDLE``.

    Both variables *add* trust anchors (a private CA for a company's proxy or a
    development server); a variable naming a file that cannot be read is an
    error that says so. Where Python finds no system trust store at all
    (python.org builds on macOS), certifi's bundle is loaded instead.

    Where the system store is an OpenSSL hashed directory (Debian, Ubuntu,
    Alpine), it is used as such: certificates are read when a chain needs
    them, instead of parsing the whole bundle (~40 ms) in every short-lived
    ``oauthsmtp token`` process; a variable that merely names the system
    bundle adds nothing and is not parsed again.

    Used for every connection oauthsmtp makes (the token endpoint and SMTP),
    so ``SSL_CERT_FILE`` means the same thing everywhere.

    Raises:
        ConfigurationError: a variable names a file that cannot be read.
    """
    paths = ssl.get_default_verify_paths()
    system_bundle = None
    if _hashed_certificates(paths.openssl_capath):
        context = ssl.create_default_context(capath=paths.openssl_capath)
        if paths.openssl_cafile and os.path.isfile(paths.openssl_cafile):
            system_bundle = os.path.realpath(paths.openssl_cafile)
        if paths.capath and os.path.realpath(paths.capath) != os.path.realpath(
            paths.openssl_capath
        ):  # SSL_CERT_DIR names another folder
            context.load_verify_locations(capath=paths.capath)
    else:
        context = ssl.create_default_context()
        # OpenSSL lets SSL_CERT_FILE *replace* the default bundle: load the default too.
        default = paths.openssl_cafile
        if default and os.path.isfile(default) and default != paths.cafile:
            context.load_verify_locations(cafile=default)
            system_bundle = os.path.realpath(default)
        elif paths.cafile == default:
            system_bundle = os.path.realpath(default) if default else None
    loaded = {system_bundle}
    for name in ("SSL_CERT_FILE", "REQUESTS_CA_BUNDLE"):
        extra = os.environ.get(name)
        if not extra:
            continue
        real = os.path.realpath(extra)
        if real in loaded:
            continue
        try:
            context.load_verify_locations(cafile=extra)
        except (OSError, ssl.SSLError) as exc:
            raise ConfigurationError(
                f"{name} names {extra!r}, which cannot be read as PEM certificates "
                f"({getattr(exc, 'strerror', None) or type(exc).__name__}); fix or unset it"
            ) from None
        loaded.add(real)
    if not (paths.cafile or paths.capath or system_bundle):
        bundle = _certifi_bundle()
        if bundle:
            context.load_verify_locations(cafile=bundle)
    return context
