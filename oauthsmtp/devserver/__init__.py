"""oauthsmtp's local development provider (for development and tests, not for production).

:class:`AuthServer` is an in-memory OAuth2 authorization server on a loopback
port (authorization code + PKCE S256, refresh tokens with rotation, RFC 7009
revocation, RFC 7662 introspection, RFC 8414 metadata, RFC 9207 ``iss``)::

    from oauthsmtp.devserver import AuthServer

    with AuthServer() as server:
        client = server.register_client()
        params = server.parameters(client, redirect_url="http://127.0.0.1:0/callback")
        ...
        info = server.validate_access_token(access_token)  # what an SMTP server checks

This subpackage imports authlib's server-side classes; ``import oauthsmtp``
does not import it.
"""

from __future__ import annotations

from ._authserver import AuthServer, DevClient, TokenInfo
from ._certs import CertificateSet, make_certificates
from ._provider import DevProvider, headless_login
from ._smtpserver import ReceivedMessage, SMTPServer

__all__ = [
    "AuthServer",
    "CertificateSet",
    "DevClient",
    "DevProvider",
    "ReceivedMessage",
    "SMTPServer",
    "TokenInfo",
    "headless_login",
    "make_certificates",
]
