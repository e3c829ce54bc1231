"""The development provider: the authorization server and the SMTP server, wired together.

:class:`DevProvider` is what ``oauthsmtp dev-server``, the demo and the pytest fixtures run:
an :class:`~oauthsmtp.devserver.AuthServer` on a loopback HTTP port, an
:class:`~oauthsmtp.devserver.SMTPServer` (STARTTLS and implicit TLS) that accepts the access
tokens that server issues, one confidential client registered for convenience, and a page
listing the received messages at :attr:`DevProvider.web_url`::

    from oauthsmtp import Email
    from oauthsmtp.devserver import DevProvider

    with DevProvider() as provider:
        token = provider.login()                      # the real authorization-code flow
        with provider.session(auth_token=token) as session:
            session.send(Email(sender=provider.user, to=["bob@example.test"],
                               subject="Hello", text="Hi Bob."))
        [message] = provider.wait_for_messages(1)

:func:`headless_login` (in :mod:`oauthsmtp.devserver._headless`, re-exported here) logs in
through the real authorization-code flow with a stand-in for the user's browser;
:meth:`DevProvider.login` uses it.

For development and tests only: nothing here protects anything.
"""

from __future__ import annotations

import os
import shlex
import ssl
import threading
from collections.abc import Sequence
from pathlib import Path
from types import TracebackType
from typing import TYPE_CHECKING, Any

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._oauth.params import OAuth2Parameters
from oauthsmtp._tokens.token import AuthToken

from ._apiserver import GMAIL_API_SCOPE, GRAPH_API_SCOPE, APIServer
from ._authserver import AuthServer, DevClient
from ._certs import CertificateSet
from ._headless import headless_login
from ._mailpages import PATH as MESSAGES_PATH
from ._mailpages import MessagesPage
from ._smtpserver import ReceivedMessage, SMTPServer

if TYPE_CHECKING:
    from oauthsmtp._api.gmail import GmailAPISession
    from oauthsmtp._api.graph import GraphSession
    from oauthsmtp._smtp.session import Security, SMTPSession
    from oauthsmtp._tokens.stores.base import TokenStore

__all__ = ["DevProvider", "headless_login"]

HOST = "127.0.0.1"
"""The loopback address both servers listen on."""

DEFAULT_REDIRECT_URL = "http://127.0.0.1:0/callback"
"""The redirect URL of :meth:`DevProvider.parameters`: loopback, any free port."""

CLI_REDIRECT_URL = "http://localhost:9000"
"""The redirect URL in :meth:`DevProvider.login_command` (the command line's default)."""


def _bind_error(server: str, ports: Sequence[int | None], exc: OSError) -> OSError:
    """An OSError that says which server and ports could not be opened (same errno)."""
    fixed = [str(port) for port in ports if port]
    where = f"port {' or '.join(fixed)}" if fixed else "a free port"
    error = OSError(f"{server} cannot listen on {HOST} {where}: {exc.strerror or exc}")
    error.errno = exc.errno
    return error


class DevProvider:
    """An OAuth2 authorization server and an SMTP server on loopback, for development and tests.

    Both servers listen on 127.0.0.1. The SMTP server accepts XOAUTH2 and OAUTHBEARER with
    the access tokens the authorization server issued (and nothing else), on a STARTTLS
    port and an implicit-TLS port, with a certificate from a throwaway CA
    (:attr:`ca_path`). One confidential client (:attr:`client`) is registered on
    construction; register more with ``provider.auth.register_client()``.

    Args:
        http_port: the authorization server's port; 0 picks a free one.
        smtp_port: the SMTP submission (STARTTLS) port; 0 picks a free one.
        smtps_port: the implicit-TLS SMTP port; 0 picks a free one, None opens none.
        maildir: when set, each received message is also written there as an ``.eml`` file.
        mode: ``"auto"`` approves every valid authorization request as :attr:`user`,
            ``"deny"`` refuses, ``"consent"`` shows a consent page (settable: :attr:`mode`).
        user: the mailbox identity auto mode approves as (settable: :attr:`user`).
        access_token_lifetime: seconds an access token lives.
        rotate_refresh_tokens: issue a new refresh token on each refresh (and revoke the old).
        certificates: the SMTP server's certificate set; a fresh CA and certificate in a
            temporary folder when None.

    Raises:
        ConfigurationError: an invalid option (port, mode, user, ...).

    A provider runs once: :meth:`start` it (or use ``with``), then :meth:`stop` it.
    """

    def __init__(
        self,
        *,
        http_port: int = 0,
        smtp_port: int = 0,
        smtps_port: int | None = 0,
        maildir: str | os.PathLike[str] | None = None,
        mode: str = "auto",
        user: str = "user@example.test",
        access_token_lifetime: int = 3600,
        rotate_refresh_tokens: bool = True,
        certificates: CertificateSet | None = None,
    ) -> None:
        for name, value in (("smtp_port", smtp_port), ("smtps_port", smtps_port)):
            if value is None and name == "smtps_port":
                continue
            if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= 65535:
                raise ConfigurationError(f"{name} must be an integer from 0 to 65535")
        self.auth = AuthServer(
            HOST,
            http_port,
            mode=mode,
            user=user,
            access_token_lifetime=access_token_lifetime,
            rotate_refresh_tokens=rotate_refresh_tokens,
        )
        self.smtp = SMTPServer(
            self.auth.validate_access_token,
            host=HOST,
            port=smtp_port,
            tls_port=smtps_port,
            maildir=None if maildir is None else Path(maildir),
            certificates=certificates,
        )
        self.api = APIServer(self.auth.validate_access_token, self.smtp.record, host=HOST)
        self._http_port = http_port
        self._smtp_ports = (smtp_port, smtps_port)
        self.client: DevClient = self.auth.register_client()
        self.auth.add_page(MESSAGES_PATH, MessagesPage(lambda: self.smtp.messages))
        self._lock = threading.Lock()
        self._running = False

    def __repr__(self) -> str:
        if not self._running:
            return "<DevProvider not running>"
        return (
            f"<DevProvider {self.auth.issuer} smtp={HOST}:{self.smtp.port}"
            f" smtps={self.smtp.tls_port} mode={self.mode!r}>"
        )

    # -- lifecycle

    def start(self) -> DevProvider:
        """Start both servers; returns self.

        Raises:
            RuntimeError: the provider was already started.
            OSError: a port cannot be bound (nothing is left running).
        """
        with self._lock:
            try:
                self.auth.start()
            except OSError as exc:
                raise _bind_error("the authorization server", [self._http_port], exc) from exc
            try:
                self.smtp.start()
            except BaseException as exc:
                self.auth.stop()
                if isinstance(exc, OSError):
                    raise _bind_error("the SMTP server", self._smtp_ports, exc) from exc
                raise
            try:
                self.api.start()
            except BaseException as exc:
                self.smtp.stop()
                self.auth.stop()
                if isinstance(exc, OSError):
                    raise _bind_error("the API emulation", [None], exc) from exc
                raise
            self._running = True
        return self

    def stop(self) -> None:
        """Stop both servers and close their connections (idempotent)."""
        with self._lock:
            self._running = False
            try:
                self.api.stop()
                self.smtp.stop()
            finally:
                self.auth.stop()

    def __enter__(self) -> DevProvider:
        """Start the provider (unless it is running) and return it."""
        return self if self._running else self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.stop()

    @property
    def running(self) -> bool:
        """True between :meth:`start` and :meth:`stop`."""
        return self._running

    # -- settings

    @property
    def user(self) -> str:
        """The identity auto mode approves as (and the consent page's default); settable."""
        return self.auth.user

    @user.setter
    def user(self, value: str) -> None:
        self.auth.user = value

    @property
    def mode(self) -> str:
        """``"auto"``, ``"deny"`` or ``"consent"``; settable while running."""
        return self.auth.mode

    @mode.setter
    def mode(self, value: str) -> None:
        self.auth.mode = value

    # -- addresses

    @property
    def host(self) -> str:
        """The address both servers listen on, ``127.0.0.1``."""
        return HOST

    @property
    def issuer(self) -> str:
        """The authorization server's issuer, ``http://127.0.0.1:PORT``."""
        return self.auth.issuer

    @property
    def smtp_port(self) -> int:
        """The SMTP submission port (STARTTLS)."""
        return self.smtp.port

    @property
    def smtps_port(self) -> int | None:
        """The implicit-TLS SMTP port, or None when it was not opened."""
        return self.smtp.tls_port

    @property
    def ca_path(self) -> Path:
        """The PEM file of the CA that signed the SMTP server's certificate (trust this)."""
        return self.smtp.ca_path

    @property
    def web_url(self) -> str:
        """The URL of the received-messages page."""
        return self.auth.issuer + MESSAGES_PATH

    def ssl_context(self) -> ssl.SSLContext:
        """Return a client TLS context that trusts the development CA (and nothing else)."""
        return self.smtp.certificates.client_context()

    # -- clients and tokens

    def parameters(
        self, redirect_url: str = DEFAULT_REDIRECT_URL, **overrides: Any
    ) -> OAuth2Parameters:
        """Return :class:`~oauthsmtp.OAuth2Parameters` for :attr:`client` against this provider.

        Args:
            redirect_url: the loopback redirect URL; by default ``http://127.0.0.1:0/callback``
                (any free port, so tests never collide on 9000).
            overrides: any other ``OAuth2Parameters`` field, replacing the value given here.
        """
        return self.auth.parameters(self.client, redirect_url, **overrides)

    def login(
        self,
        account: str | None = None,
        *,
        store: TokenStore | None = None,
        timeout: float = 30.0,
        **overrides: Any,
    ) -> AuthToken:
        """Log in as ``account`` through the real authorization-code flow, headless.

        See :func:`headless_login`. In ``"auto"`` mode the provider approves as :attr:`user`,
        so ``account`` must be :attr:`user` (the default); in ``"consent"`` mode the consent
        page is approved as ``account``; in ``"deny"`` mode :class:`~oauthsmtp.AccessDenied`
        is raised.

        Args:
            account: the mailbox; default :attr:`user`.
            store: where the token is saved and refreshed through (default: a new MemoryStore).
            timeout: seconds allowed for the login.
            overrides: passed to :meth:`parameters` (e.g. ``redirect_url=``, ``scope=``).

        Raises:
            ConfigurationError: ``account`` differs from :attr:`user` in auto mode.
        """
        account = account or self.user
        if self.mode == "auto" and account.casefold() != self.user.casefold():
            raise ConfigurationError(
                f"in auto mode the provider approves as {self.user!r}: set provider.user = "
                f"{account!r} first, or use consent mode"
            )
        return headless_login(
            self.parameters(**overrides), account=account, store=store, timeout=timeout
        )

    def session(
        self,
        *,
        security: Security = "starttls",
        auth_token: Any = None,
        username: str | None = None,
        **kwargs: Any,
    ) -> SMTPSession:
        """Return an :class:`~oauthsmtp.SMTPSession` for this provider's SMTP server (not started).

        The host is 127.0.0.1, the port the one for ``security`` (``"starttls"``: the
        submission port, ``"ssl"``: the implicit-TLS port), and the TLS context trusts the
        development CA.

        Args:
            security: ``"starttls"``, ``"ssl"`` or ``"none"``.
            auth_token: the token to authenticate with (e.g. from :meth:`login`).
            username: the SASL user; default the token's account, else :attr:`user`.
            kwargs: other :class:`~oauthsmtp.SMTPSession` options (``password=``,
                ``mechanism=``, ``timeout=``, ``asynchronous=``, ``port=``, ``ssl_context=``).
        """
        from oauthsmtp._smtp.session import SMTPSession

        port = kwargs.pop("port", None)
        if port is None:
            port = self.smtp.tls_port if security == "ssl" else self.smtp.port
            if port is None:
                raise ConfigurationError("this provider has no implicit-TLS port (smtps_port=None)")
        if security != "none":
            kwargs.setdefault("ssl_context", self.ssl_context())
        if username is None:
            username = getattr(auth_token, "account", None) or self.user
        return SMTPSession(
            HOST, port, security=security, auth_token=auth_token, username=username, **kwargs
        )

    # -- the HTTP sending APIs

    GMAIL_API_SCOPE = GMAIL_API_SCOPE
    """The scope the emulated Gmail API wants (log in with ``scope=`` this)."""

    GRAPH_API_SCOPE = GRAPH_API_SCOPE
    """The scope the emulated Microsoft Graph wants (log in with ``scope=`` this)."""

    @property
    def gmail_api_url(self) -> str:
        """The emulated Gmail API's base URL (``GmailAPISession(base_url=...)``)."""
        return self.api.gmail_url

    @property
    def graph_api_url(self) -> str:
        """The emulated Microsoft Graph's base URL (``GraphSession(base_url=...)``)."""
        return self.api.graph_url

    def gmail_api_session(self, *, auth_token: Any, **kwargs: Any) -> GmailAPISession:
        """Return a :class:`~oauthsmtp.GmailAPISession` for the emulated Gmail API.

        The token must carry :attr:`GMAIL_API_SCOPE`: ``provider.login(scope=
        provider.GMAIL_API_SCOPE)``. ``kwargs`` go to the session (``timeout=``, ...).
        """
        from oauthsmtp._api.gmail import GmailAPISession

        return GmailAPISession(auth_token=auth_token, base_url=self.gmail_api_url, **kwargs)

    def graph_session(
        self, *, auth_token: Any, user: str | None = None, **kwargs: Any
    ) -> GraphSession:
        """Return a :class:`~oauthsmtp.GraphSession` for the emulated Microsoft Graph.

        The token must carry :attr:`GRAPH_API_SCOPE`: ``provider.login(scope=
        provider.GRAPH_API_SCOPE)``. ``kwargs`` go to the session (``timeout=``, ...).
        """
        from oauthsmtp._api.graph import GraphSession

        return GraphSession(auth_token=auth_token, user=user, base_url=self.graph_api_url, **kwargs)

    # -- received mail

    @property
    def messages(self) -> list[ReceivedMessage]:
        """The messages received so far, oldest first (a copy)."""
        return self.smtp.messages

    def wait_for_messages(self, count: int, timeout: float = 10) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived, and return them all.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        return self.smtp.wait_for_messages(count, timeout)

    def clear(self) -> None:
        """Forget the received messages, the SMTP AUTH log and the API requests (files stay)."""
        self.smtp.clear()
        self.api.clear()

    # -- the command line

    def login_command(self, account: str | None = None, *, flow: str | None = None) -> str:
        """Return a ready-to-paste ``oauthsmtp login`` line (POSIX shell) for this provider.

        The line starts with ``SSL_CERT_FILE=<ca path>`` so that the command line trusts
        the development CA; later ``oauthsmtp send`` commands need the same variable.
        The redirect URL is the command line's default, ``http://localhost:9000``.
        With ``flow`` (``"device"`` or ``"paste"``) the line names only the issuer (the
        endpoints are discovered) and asks for that flow.
        """
        secret = self.client.client_secret
        if flow is not None:
            words = [
                "oauthsmtp",
                "login",
                "--account",
                account or self.user,
                "--issuer",
                self.auth.issuer,
                f"--client-id={self.client.client_id}",
                *([f"--client-secret={secret}"] if secret else []),
                "--scope",
                f"{self.auth.scope} openid email",
                "--smtp-host",
                HOST,
                "--smtp-port",
                str(self.smtp.port),
                "--flow",
                flow,
            ]
            return f"SSL_CERT_FILE={shlex.quote(str(self.ca_path))} {shlex.join(words)}"
        words = [
            "oauthsmtp",
            "login",
            "--account",
            account or self.user,
            "--provider",
            "custom",
            # The = form: a generated secret may start with "-".
            f"--client-id={self.client.client_id}",
            *([f"--client-secret={secret}"] if secret else []),
            "--auth-url",
            self.auth.authorization_endpoint,
            "--token-url",
            self.auth.token_endpoint,
            "--scope",
            self.auth.scope,
            "--revocation-url",
            self.auth.revocation_endpoint,
            "--issuer",
            self.auth.issuer,
            "--redirect-url",
            CLI_REDIRECT_URL,
            "--smtp-host",
            HOST,
            "--smtp-port",
            str(self.smtp.port),
            "--security",
            "starttls",
        ]
        return f"SSL_CERT_FILE={shlex.quote(str(self.ca_path))} {shlex.join(words)}"
