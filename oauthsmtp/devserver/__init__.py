"""oauthsmtp's local development provider (for development and tests, not for production).

What it holds, bottom up (each module imports only modules listed before it):

- the authorization server: ``_pages`` (the HTML skeleton and its policy), ``_authmodels``
  (records of clients, codes and tokens; value checks), ``_authgrants`` (authlib's grants
  and endpoints adapted to them), ``_authapps`` (the app-only grants: client credentials
  with a secret or ``private_key_jwt``, and the JWT bearer grant), ``_authhttp`` (the HTTP
  layer: limits, parsing, responses, and a ``Router`` protocol it hands requests to),
  ``_authcore`` (authlib's server plus the in-memory store), ``_authendpoints`` (what each
  path answers) and ``_authserver`` (:class:`AuthServer`);
- the SMTP server: ``_certs`` (a throwaway CA), ``_smtpsasl`` (XOAUTH2 and OAUTHBEARER
  parsing, pure), ``_smtpmessages`` (:class:`ReceivedMessage`), ``_smtpsession`` (one
  connection, which calls back into the server only through the ``ServerHooks`` protocol)
  and ``_smtpserver`` (:class:`SMTPServer`);
- the HTTP sending APIs: ``_apibodies`` (routes, each API's error bodies, the forced
  failures; pure) and ``_apiserver`` (:class:`APIServer`: the Gmail API's
  ``users.messages.send`` and Microsoft Graph's ``sendMail`` emulated, with the same token
  check and message store, and error switches);
- on top: ``_mailpages`` (the received-messages pages), ``_headless`` (a login without a
  person), ``_provider`` (:class:`DevProvider`: both servers wired together) and ``_run``
  (``oauthsmtp dev-server``).

Data flows one way: a client logs in at the :class:`AuthServer` (authorization code, PKCE,
tokens); the :class:`SMTPServer` checks each AUTH's access token with the authorization
server's ``validate_access_token`` (the :class:`APIServer` too, with the API's scope as
the audience) and keeps what it accepts as :class:`ReceivedMessage`
values; the messages pages and the console read those values and never change them.

:class:`AuthServer` is an in-memory OAuth2 authorization server on a loopback
port (authorization code + PKCE S256, refresh tokens with rotation, RFC 7009
revocation, RFC 7662 introspection, RFC 8414 metadata, RFC 9207 ``iss``)::

    from oauthsmtp.devserver import AuthServer

    with AuthServer() as server:
        client = server.register_client()
        params = server.parameters(client, redirect_url="http://127.0.0.1:0/callback")
        ...
        info = server.validate_access_token(access_token)  # what an SMTP server checks

This subpackage imports authlib's server-side classes and aiosmtpd; ``import oauthsmtp``
does not import it.
"""

from __future__ import annotations

from ._apiserver import APIServer
from ._authserver import AuthServer, DevClient, TokenInfo
from ._certs import CertificateSet, make_certificates
from ._provider import DevProvider, headless_login
from ._smtpserver import ReceivedMessage, SMTPServer

__all__ = [
    "APIServer",
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
