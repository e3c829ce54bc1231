"""A local OAuth2 authorization server for development and tests (not for production).

:class:`AuthServer` is a small, in-memory OAuth2 provider that listens on a
loopback address. It lets oauthsmtp (its demo, its tests, and its users' tests)
run the real authorization-code flow without Google or Microsoft:

* ``GET /authorize``: authorization endpoint (RFC 6749 §4.1). Only
  ``response_type=code``, PKCE with ``S256`` is mandatory (RFC 7636; ``plain``
  is refused), ``state`` is mandatory and returned unchanged, and every
  redirect back to the client carries ``iss`` (RFC 9207). Depending on
  :attr:`AuthServer.mode` the request is approved at once, denied at once, or
  shown on a consent page (``POST /authorize`` receives its form).
* ``POST /token``: token endpoint, grants ``authorization_code`` (codes are
  single-use, live 60 s, are bound to the client, the redirect URI and the PKCE
  challenge) and ``refresh_token`` (rotated by default, RFC 6749 §6).
* ``POST /revoke``: RFC 7009 revocation. ``POST /introspect``: RFC 7662
  introspection. ``GET /.well-known/oauth-authorization-server``: RFC 8414
  metadata.

It is built on authlib's framework-independent server classes. This module is
the facade (:class:`AuthServer` and the names other modules import); the parts
live in private modules of one concept each: ``_authmodels`` (clients, codes,
tokens), ``_authgrants`` (authlib's request wrappers, grants and endpoints),
``_authcore`` (authlib's server and the in-memory store behind one lock),
``_authhttp`` (:mod:`http.server`, one thread per connection) and
``_authendpoints`` (routing, the consent page, extra pages).

What it is not: it has no users or passwords (whoever reaches the consent page
can approve as any address), no TLS, no persistence, and it only listens on
loopback. Use it to test clients, never to protect anything.
"""

from __future__ import annotations

import logging
import secrets
import socket
import threading
import time
from collections.abc import Callable, Sequence
from datetime import datetime, timezone
from types import TracebackType
from typing import Any, ClassVar

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._oauth.params import OAuth2Parameters, is_loopback_host

from ._authcore import Core
from ._authendpoints import EndpointRouter, Endpoints, PageHandler, PageResult, PendingConsent
from ._authhttp import DevHTTPServer
from ._authmodels import (
    CLIENT_CREDENTIALS,
    JWT_BEARER,
    ClientRecord,
    DevClient,
    TokenInfo,
    check_token_text,
    is_loopback_redirect,
    valid_email,
)
from ._authmodels import CODE_LIFETIME as CODE_LIFETIME
from ._authmodels import EXTRA_SCOPES as EXTRA_SCOPES
from ._authmodels import SCOPE as SCOPE

__all__ = ["AuthServer", "DevClient", "PageHandler", "PageResult", "TokenInfo"]

_LOG = logging.getLogger("oauthsmtp.devserver")

MODES = ("auto", "deny", "consent")
_STOP_DEADLINE = 10.0


# --------------------------------------------------------------------------- public server


class AuthServer(Endpoints):
    """A local OAuth2 authorization server for development and tests (see the module docstring).

    Start it with :meth:`start` (or ``with AuthServer() as server:``), register
    a client, and point an OAuth2 client at :attr:`authorization_endpoint` and
    :attr:`token_endpoint`, or take ready-made parameters from :meth:`parameters`.

    Args:
        host: the loopback address to listen on: ``127.0.0.1`` (default), ``::1``
            or ``localhost`` (binds 127.0.0.1; the issuer then says ``localhost``).
            Other addresses are refused.
        port: the TCP port; 0 picks a free one (read it back from :attr:`issuer`).
        mode: how ``GET /authorize`` answers a valid request: ``"auto"`` approves
            at once as ``user`` (302 back to the client with a code), ``"deny"``
            redirects back with ``error=access_denied``, ``"consent"`` shows an
            HTML page with an ``#email`` field and ``#approve`` / ``#deny`` buttons.
            Can be changed while running.
        user: the mailbox identity auto mode approves as, and the consent page's
            default. Can be changed while running.
        access_token_lifetime: seconds an access token lives (``expires_in``).
        rotate_refresh_tokens: when True, each refresh returns a new refresh token
            and revokes the one used; when False, refresh responses carry no
            refresh token and the old one stays valid.
        refresh_token_lifetime: when set, answers that carry a refresh token say it
            lapses after this many seconds (``refresh_token_expires_in``, as Google
            sends for apps in Testing status: 604799); announced only, not enforced.
        clock: the time in seconds since the epoch (default :func:`time.time`).
            Every time the server reads goes through it (codes, consent pages,
            token lifetimes), so a test can move the whole server's clock.

    Raises:
        ConfigurationError: for a non-loopback host or an invalid option.

    Every method is thread-safe. The server keeps everything in memory and
    forgets it when the object goes away.
    """

    SCOPE: ClassVar[str] = SCOPE
    """The mail-sending scope (also :attr:`scope`)."""

    EXTRA_SCOPES: ClassVar[tuple[str, ...]] = EXTRA_SCOPES
    """Other scopes accepted: ``offline_access``, ``openid``, ``email``."""

    CODE_LIFETIME: ClassVar[int] = CODE_LIFETIME
    """Seconds an authorization code stays redeemable."""

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int = 0,
        *,
        mode: str = "auto",
        user: str = "user@example.test",
        access_token_lifetime: int = 3600,
        rotate_refresh_tokens: bool = True,
        clock: Callable[[], float] = time.time,
        refresh_token_lifetime: int | None = None,
    ) -> None:
        if not isinstance(host, str) or not is_loopback_host(host):
            raise ConfigurationError(
                f"the development server only listens on loopback (127.0.0.1, ::1 or "
                f"localhost), not {host!r}"
            )
        if isinstance(port, bool) or not isinstance(port, int) or not 0 <= port <= 65535:
            raise ConfigurationError(f"port must be an integer from 0 to 65535, not {port!r}")
        if (
            isinstance(access_token_lifetime, bool)
            or not isinstance(access_token_lifetime, int)
            or access_token_lifetime <= 0
        ):
            raise ConfigurationError("access_token_lifetime must be a positive number of seconds")
        if refresh_token_lifetime is not None and (
            isinstance(refresh_token_lifetime, bool)
            or not isinstance(refresh_token_lifetime, int)
            or refresh_token_lifetime <= 0
        ):
            raise ConfigurationError(
                "refresh_token_lifetime must be None or a positive number of seconds"
            )
        self._host = host.strip("[]")
        self._port = port
        self._mode = self._check_mode(mode)
        self._user = self._check_user(user)
        self._rotate = bool(rotate_refresh_tokens)
        self._core = Core(
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=self._rotate,
            clock=clock,
            refresh_token_lifetime=refresh_token_lifetime,
        )
        self._lock = self._core.lock
        self._pending: dict[str, PendingConsent] = {}
        self._token_requests = 0
        self._requests_log: list[tuple[str, str]] = []
        self._state_lock = threading.Lock()
        self._httpd: DevHTTPServer | None = None
        self._thread: threading.Thread | None = None
        self._started = False
        self._issuer: str | None = None
        self._pages: dict[str, PageHandler] = {}
        self._device_forms: dict[str, float] = {}

    def __repr__(self) -> str:
        where = self._issuer or "not started"
        return f"<AuthServer {where} mode={self._mode!r}>"

    # -- lifecycle

    def start(self) -> AuthServer:
        """Bind the port and serve in a daemon thread. Returns self.

        Raises:
            RuntimeError: when called a second time (a server runs once).
            OSError: when the port cannot be bound.
        """
        with self._state_lock:
            if self._started:
                raise RuntimeError("this AuthServer was already started; create a new one")
            bind_host = "127.0.0.1" if self._host.lower() == "localhost" else self._host
            family = socket.AF_INET6 if ":" in bind_host else socket.AF_INET
            httpd = DevHTTPServer((bind_host, self._port), EndpointRouter(self), family)
            port = int(httpd.server_address[1])
            url_host = f"[{self._host}]" if ":" in self._host else self._host.lower()
            self._issuer = f"http://{url_host}:{port}"
            self._core.issuer = self._issuer
            thread = threading.Thread(
                target=httpd.serve_forever,
                kwargs={"poll_interval": 0.05},
                name=f"oauthsmtp-authserver-{port}",
                daemon=True,
            )
            self._httpd, self._thread, self._started = httpd, thread, True
            thread.start()
        _LOG.debug("authorization server listening on %s", self._issuer)
        return self

    def stop(self) -> None:
        """Stop serving, close open connections and the socket, join the threads.

        Safe to call more than once, and before :meth:`start`.
        """
        with self._state_lock:
            httpd, thread = self._httpd, self._thread
            self._httpd = self._thread = None
        if httpd is None:
            return
        httpd.shutdown()
        httpd.cut_connections()
        httpd.server_close()
        if thread is not None:
            thread.join(_STOP_DEADLINE)  # serve_forever has returned: only the exit is left
        _LOG.debug("authorization server on %s stopped", self._issuer)

    def __enter__(self) -> AuthServer:
        """Start the server (unless :meth:`start` was already called) and return it."""
        with self._state_lock:
            running = self._httpd is not None
        return self if running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    # -- addresses

    @property
    def issuer(self) -> str:
        """``http://HOST:PORT`` (no trailing slash); the ``iss`` of every authorization response.

        Raises:
            RuntimeError: before :meth:`start` when the port is 0 (not yet known).
        """
        if self._issuer is not None:
            return self._issuer
        if self._port == 0:
            raise RuntimeError("the port is chosen by start(): start the server first")
        url_host = f"[{self._host}]" if ":" in self._host else self._host.lower()
        return f"http://{url_host}:{self._port}"

    @property
    def scope(self) -> str:
        """The mail-sending scope, ``https://mail.oauthsmtp.test/smtp``."""
        return SCOPE

    # -- settings

    @staticmethod
    def _check_mode(mode: object) -> str:
        if mode not in MODES:
            raise ConfigurationError(f"mode must be one of {', '.join(MODES)}, not {mode!r}")
        return str(mode)

    @staticmethod
    def _check_user(user: object) -> str:
        if not isinstance(user, str) or not valid_email(user):
            raise ConfigurationError(f"user must be an email address, not {user!r}")
        return user

    @property
    def mode(self) -> str:
        """``"auto"``, ``"deny"`` or ``"consent"``; settable while running."""
        return self._mode

    @mode.setter
    def mode(self, value: str) -> None:
        self._mode = self._check_mode(value)

    @property
    def user(self) -> str:
        """The identity auto mode approves as (and the consent page's default); settable."""
        return self._user

    @user.setter
    def user(self, value: str) -> None:
        self._user = self._check_user(value)

    @property
    def device_interval(self) -> float:
        """Seconds a device login's client must wait between polls (RFC 8628 ``interval``).

        5 by default; settable while running (tests shrink it; a client polling
        sooner than this gets ``slow_down``, and its interval grows by 5 s).
        """
        return float(self._core.device_interval)

    @device_interval.setter
    def device_interval(self, value: float) -> None:
        if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 < value <= 60:
            raise ConfigurationError("device_interval must be a number of seconds in (0, 60]")
        self._core.device_interval = float(value)

    @property
    def device_code_lifetime(self) -> int:
        """Seconds a device code lives (``expires_in``, 900 by default); settable."""
        return int(self._core.device_code_lifetime)

    @device_code_lifetime.setter
    def device_code_lifetime(self, value: int) -> None:
        if isinstance(value, bool) or not isinstance(value, int) or not 0 < value <= 86400:
            raise ConfigurationError("device_code_lifetime must be whole seconds in (0, 86400]")
        self._core.device_code_lifetime = value

    def device_codes(self) -> list[str]:
        """The user codes of the device logins waiting for a decision, oldest first."""
        with self._lock:
            return [
                d.user_code
                for d in self._core.devices.values()
                if d.decision is None and not d.used and not d.is_expired()
            ]

    @property
    def rotate_refresh_tokens(self) -> bool:
        """Whether refresh tokens are rotated (fixed at construction)."""
        return self._rotate

    # -- clients

    def register_client(
        self,
        client_id: str | None = None,
        client_secret: str | None = None,
        public: bool = False,
        redirect_uris: Sequence[str] | None = None,
    ) -> DevClient:
        """Register a client and return it.

        Args:
            client_id: the identifier; a random ``dev-...`` one when None.
            client_secret: the secret of a confidential client; a random one when
                None. Must be None for a public client.
            public: a public client has no secret and authenticates with
                ``token_endpoint_auth_method=none`` (its ``client_id`` in the body);
                a confidential one uses ``client_secret_post`` or ``client_secret_basic``.
            redirect_uris: when given, the only redirect URIs accepted (compared
                exactly); each must be a loopback ``http`` URI. When None, any
                ``http`` URI on localhost, 127.0.0.1 or [::1] is accepted, any
                port and path (RFC 8252 §7.3).

        Raises:
            ConfigurationError: for an invalid or already registered client id,
                a secret given for a public client, or a non-loopback redirect URI.
        """
        if public and client_secret is not None:
            raise ConfigurationError("a public client has no client_secret")
        client_id = check_token_text(
            "client_id", client_id if client_id is not None else "dev-" + secrets.token_urlsafe(12)
        )
        secret: str | None = None
        if not public:
            secret = check_token_text(
                "client_secret",
                client_secret if client_secret is not None else secrets.token_urlsafe(32),
            )
        uris: tuple[str, ...] = ()
        if redirect_uris is not None:
            if isinstance(redirect_uris, str):
                raise ConfigurationError("redirect_uris must be a list of URIs, not one string")
            uris = tuple(redirect_uris)
            if not uris:
                raise ConfigurationError("redirect_uris is empty; pass None to accept any loopback")
            for uri in uris:
                if not is_loopback_redirect(uri):
                    raise ConfigurationError(
                        f"redirect URI {uri!r} is not an http URI on localhost, 127.0.0.1 or "
                        "[::1] (without a fragment)"
                    )
        dev = DevClient(client_id=client_id, client_secret=secret, redirect_uris=uris)
        with self._lock:
            if client_id in self._core.clients:
                raise ConfigurationError(f"client_id {client_id!r} is already registered")
            self._core.clients[client_id] = ClientRecord(dev)
        return dev

    def register_app(
        self,
        client_id: str | None = None,
        *,
        client_secret: str | None = None,
        certificate: str | bytes | None = None,
        mailboxes: Sequence[str] = (),
    ) -> DevClient:
        """Register an app for app-only tokens (client credentials, RFC 6749 §4.4).

        Like an Entra ID app registration with the ``SMTP.SendAsApp`` permission:
        it authenticates with its secret, or (with ``certificate``) with a
        ``private_key_jwt`` assertion (RFC 7523 §2.2) whose ``x5t#S256`` header
        names that certificate; its tokens are accepted by the SMTP server for
        the ``mailboxes`` given here (``Add-MailboxPermission``), and only those.

        Args:
            client_id: default a random ``app-...`` id.
            client_secret: the secret; a random one when neither it nor a
                certificate is given.
            certificate: a PEM certificate; the app then has no secret.
            mailboxes: the addresses the app may send as.

        Raises:
            ConfigurationError: both a secret and a certificate, a certificate
                that does not parse, or a mailbox that is not an address.
        """
        from ._authapps import describe_certificate

        if client_secret is not None and certificate is not None:
            raise ConfigurationError("an app has a client_secret or a certificate, not both")
        boxes = tuple(self._check_user(m) for m in mailboxes)
        client_id = check_token_text(
            "client_id", client_id if client_id is not None else "app-" + secrets.token_urlsafe(9)
        )
        public_key = thumbprint = None
        secret: str | None = None
        if certificate is not None:
            public_key, thumbprint = describe_certificate(certificate)
        else:
            secret = check_token_text(
                "client_secret",
                client_secret if client_secret is not None else secrets.token_urlsafe(32),
            )
        dev = DevClient(
            client_id=client_id,
            client_secret=secret,
            grant_types=(CLIENT_CREDENTIALS,),
            public_key=public_key,
            thumbprint=thumbprint,
            mailboxes=boxes,
        )
        return self._add_client(dev)

    def register_service_account(
        self, email: str | None = None, *, delegated: Sequence[str] = ()
    ) -> dict[str, str]:
        """Register a service account and return its JSON key, shaped as Google's.

        The key (``type``, ``client_email``, ``client_id``, ``private_key_id``,
        ``private_key``, ``token_uri`` = this server's token endpoint) is what
        :func:`oauthsmtp.providers.google_service_account` reads. The account
        may get tokens by the JWT bearer grant (RFC 7523 §2.1) for itself and,
        with ``sub``, for the ``delegated`` users (domain-wide delegation).

        Raises:
            ConfigurationError: an address that is not one.
        """
        from ._authapps import new_service_account_key

        users = tuple(self._check_user(m) for m in delegated)
        number = str(secrets.randbelow(10**20)).rjust(21, "1")
        email = self._check_user(email or f"sa-{number[-6:]}@dev-project.iam.oauthsmtp.test")
        private_pem, public_pem, key_id = new_service_account_key()
        dev = DevClient(
            client_id=number,
            grant_types=(JWT_BEARER,),
            public_key=public_pem,
            email=email,
            mailboxes=users,
        )
        self._add_client(dev)
        return {
            "type": "service_account",
            "project_id": "dev-project",
            "private_key_id": key_id,
            "private_key": private_pem,
            "client_email": email,
            "client_id": number,
            "token_uri": self.token_endpoint,
        }

    def _add_client(self, dev: DevClient) -> DevClient:
        with self._lock:
            if dev.client_id in self._core.clients:
                raise ConfigurationError(f"client_id {dev.client_id!r} is already registered")
            self._core.clients[dev.client_id] = ClientRecord(dev)
        return dev

    def parameters(
        self,
        client: DevClient,
        redirect_url: str = "http://localhost:9000",
        **overrides: Any,
    ) -> OAuth2Parameters:
        """Return :class:`~oauthsmtp.OAuth2Parameters` for ``client`` against this server.

        Sets ``client_id``, ``client_secret``, ``auth_url``, ``token_url``,
        ``scope`` (:attr:`scope`), ``redirect_url``, ``revocation_url`` and
        ``issuer``; any keyword in ``overrides`` replaces the value given here.
        The server must be started (or have a fixed port).
        """
        values: dict[str, Any] = {
            "client_id": client.client_id,
            "client_secret": client.client_secret,
            "auth_url": self.authorization_endpoint,
            "token_url": self.token_endpoint,
            "scope": SCOPE,
            "redirect_url": redirect_url,
            "revocation_url": self.revocation_endpoint,
            "issuer": self.issuer,
            "device_authorization_url": self.device_authorization_endpoint,
        }
        values.update(overrides)
        return OAuth2Parameters(**values)

    # -- tokens

    def validate_access_token(self, token: str) -> TokenInfo | None:
        """Return what is known about a live access token, or None.

        None when the token was never issued here, has expired or was revoked.
        Thread-safe: an SMTP server may call it from any thread.
        """
        if not isinstance(token, str) or not token:
            return None
        with self._lock:
            record = self._core.access_tokens.get(token)
            if record is None or record.revoked or record.is_expired():
                return None
            expires_at = record.expires_at
            info = (record.user, record.client_id, tuple(record.scope.split()))
            mailboxes = record.mailboxes
        assert expires_at is not None  # noqa: S101 - access tokens always expire
        return TokenInfo(
            user=info[0],
            client_id=info[1],
            scope=info[2],
            expires_at=datetime.fromtimestamp(expires_at, tz=timezone.utc),
            mailboxes=mailboxes,
        )

    def expire_access_tokens(self) -> None:
        """Make every access token issued so far expired (refresh tokens are untouched)."""
        now = self._core.clock()
        with self._lock:
            for record in self._core.access_tokens.values():
                if record.expires_at is None or record.expires_at > now - 1:
                    record.expires_at = now - 1

    def revoke_all_refresh_tokens(self) -> None:
        """Revoke every refresh token issued so far: refreshing gives ``invalid_grant``."""
        with self._lock:
            for record in self._core.refresh_tokens.values():
                record.revoked = True
