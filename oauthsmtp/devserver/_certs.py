"""Throwaway TLS certificates for the development provider and for tests.

This is development and test tooling, not a certificate authority: it makes a short-lived CA and a
server certificate for loopback names so that clients can be tested with full certificate and
host-name verification (docs/security.md, rule 22) instead of with verification turned off.

Needs the ``cryptography`` package (the ``dev`` extra); it is imported lazily.
"""

from __future__ import annotations

import datetime
import ipaddress
import os
import ssl
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from cryptography import x509
    from cryptography.hazmat.primitives.asymmetric import ec

__all__ = ["CertificateSet", "make_certificates"]

DEFAULT_HOSTS: tuple[str, ...] = ("localhost", "127.0.0.1", "::1")
_VALIDITY = datetime.timedelta(days=30)
_BACKDATE = datetime.timedelta(days=1)


@dataclass(frozen=True)
class CertificateSet:
    """PEM files of a throwaway CA and a server certificate it signed.

    Attributes:
        ca_cert: The CA certificate: what a client must trust. For a self-signed set this is the
            same file as ``cert``.
        cert: The server certificate (leaf only; no chain is needed because clients trust the CA).
        key: The server's private key, PKCS#8 PEM, file mode 0600.
    """

    ca_cert: Path
    cert: Path
    key: Path

    def server_context(self) -> ssl.SSLContext:
        """Return a server-side TLS context loaded with the certificate and key."""
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        context.load_cert_chain(self.cert, self.key)
        return context

    def client_context(self) -> ssl.SSLContext:
        """Return a client-side TLS context that trusts only ``ca_cert``.

        It verifies the certificate chain and the host name, like
        ``ssl.create_default_context()`` does for public servers.
        """
        return ssl.create_default_context(cafile=str(self.ca_cert))


def make_certificates(
    directory: Path,
    *,
    hosts: Sequence[str] = DEFAULT_HOSTS,
    self_signed: bool = False,
) -> CertificateSet:
    """Create a CA and a server certificate for ``hosts`` in ``directory``.

    Keys are EC P-256 (fast to make). Certificates are valid from one day ago for 30 days. The
    server certificate carries a SubjectAlternativeName with each host (IP literals as IP
    addresses, everything else as DNS names) and ExtendedKeyUsage serverAuth.

    Args:
        directory: Where to write ``ca.pem``, ``cert.pem`` and ``key.pem`` (created if missing).
        hosts: Names and IP addresses the server certificate is valid for. Pass another name to
            make a certificate that fails host-name verification.
        self_signed: Make a lone self-signed server certificate instead (``ca_cert == cert``),
            for "untrusted certificate" tests.

    Returns:
        The paths of the files written.

    Raises:
        ValueError: If ``hosts`` is empty.
    """
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    if not hosts:
        raise ValueError("make_certificates needs at least one host")
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    now = datetime.datetime.now(datetime.timezone.utc)

    server_key = ec.generate_private_key(ec.SECP256R1())
    if self_signed:
        server_cert = _build_server_cert(server_key, server_key, None, hosts, now)
        ca_pem = None
    else:
        ca_key = ec.generate_private_key(ec.SECP256R1())
        ca_cert = _build_ca_cert(ca_key, now)
        server_cert = _build_server_cert(server_key, ca_key, ca_cert, hosts, now)
        ca_pem = ca_cert.public_bytes(serialization.Encoding.PEM)

    cert_path = directory / "cert.pem"
    key_path = directory / "key.pem"
    cert_path.write_bytes(server_cert.public_bytes(serialization.Encoding.PEM))
    key_pem = server_key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    _write_private(key_path, key_pem)
    if ca_pem is None:
        ca_path = cert_path
    else:
        ca_path = directory / "ca.pem"
        ca_path.write_bytes(ca_pem)
    return CertificateSet(ca_cert=ca_path, cert=cert_path, key=key_path)


def _write_private(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` readable by the owner only, whatever the umask."""
    path.unlink(missing_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_EXCL | getattr(os, "O_NOFOLLOW", 0)
    fd = os.open(path, flags, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(data)


def _name(common_name: str) -> x509.Name:
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "oauthsmtp development"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _build_ca_cert(key: ec.EllipticCurvePrivateKey, now: datetime.datetime) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes

    name = _name("oauthsmtp development CA")
    public_key = key.public_key()
    return (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(_key_usage(key_cert_sign=True), critical=True)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .sign(key, hashes.SHA256())
    )


def _build_server_cert(
    key: ec.EllipticCurvePrivateKey,
    issuer_key: ec.EllipticCurvePrivateKey,
    issuer_cert: x509.Certificate | None,
    hosts: Sequence[str],
    now: datetime.datetime,
) -> x509.Certificate:
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes
    from cryptography.x509.oid import ExtendedKeyUsageOID

    subject = _name(hosts[0])
    issuer = subject if issuer_cert is None else issuer_cert.subject
    public_key = key.public_key()
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(public_key)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - _BACKDATE)
        .not_valid_after(now + _VALIDITY)
        .add_extension(x509.SubjectAlternativeName(_general_names(hosts)), critical=False)
        .add_extension(
            x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]),
            critical=False,
        )
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public_key), critical=False)
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(_key_usage(key_cert_sign=False), critical=True)
    )
    if issuer_cert is not None:
        builder = builder.add_extension(
            x509.AuthorityKeyIdentifier.from_issuer_public_key(issuer_key.public_key()),
            critical=False,
        )
    return builder.sign(issuer_key, hashes.SHA256())


def _key_usage(*, key_cert_sign: bool) -> x509.KeyUsage:
    from cryptography import x509

    return x509.KeyUsage(
        digital_signature=True,
        content_commitment=False,
        key_encipherment=False,
        data_encipherment=False,
        key_agreement=False,
        key_cert_sign=key_cert_sign,
        crl_sign=key_cert_sign,
        encipher_only=False,
        decipher_only=False,
    )


def _general_names(hosts: Sequence[str]) -> list[x509.GeneralName]:
    from cryptography import x509

    names: list[x509.GeneralName] = []
    for host in hosts:
        try:
            names.append(x509.IPAddress(ipaddress.ip_address(host)))
        except ValueError:
            names.append(x509.DNSName(host))
    return names
