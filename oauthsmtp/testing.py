"""pytest fixtures for testing code that sends mail with oauthsmtp (a pytest plugin).

The fixtures run oauthsmtp's development provider (an OAuth2 authorization server and an
SMTP server that accepts XOAUTH2 and OAUTHBEARER, both on 127.0.0.1) so that a test can
log in through the real authorization-code flow, send through a real SMTP dialogue over
TLS, and look at what arrived, with no network, browser or mailbox.

The plugin is off until a project turns it on, in one of three ways:

* ``pytest_plugins = ["oauthsmtp.testing"]`` in the top-level ``conftest.py``;
* ``-p oauthsmtp.testing`` on the command line (or in ``addopts``);
* ``oauthsmtp_dev_provider = true`` in the pytest configuration (this needs the
  ``oauthsmtp`` entry point, i.e. plugin autoloading left on).

Fixtures (see ``docs/testing.md``):

``oauthsmtp_provider``
    a running :class:`~oauthsmtp.devserver.DevProvider`, new for each test; options come
    from the ``@pytest.mark.oauthsmtp_provider(...)`` marker (``mode=``, ``user=``,
    ``access_token_lifetime=``, ``maildir=``, ...).
``oauthsmtp_shared_provider``
    one provider for the whole test session (faster when there are many tests; received
    messages accumulate, so call ``clear()``).
``oauthsmtp_params``
    :class:`~oauthsmtp.OAuth2Parameters` for the provider's client (redirect to any free
    loopback port).
``oauthsmtp_token``
    an :class:`~oauthsmtp.AuthToken` for ``provider.user``, from the real
    authorization-code flow (driven headless), kept in a memory store.
``oauthsmtp_session``
    a factory: ``oauthsmtp_session(**options)`` returns an :class:`~oauthsmtp.SMTPSession`
    for the provider's SMTP server (TLS context trusting its CA, authenticated with
    ``oauthsmtp_token`` unless ``auth_token=`` or ``password=`` is given). Sessions are
    closed at the end of the test.
``oauthsmtp_messages``
    a :class:`Mailbox`: a live, read-only sequence of the messages the provider received,
    with :meth:`Mailbox.wait`.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any, overload

import pytest

try:
    from .devserver import CertificateSet, DevProvider, ReceivedMessage, make_certificates
except ImportError as exc:  # pragma: no cover - depends on the installed extras
    raise ImportError(
        f"oauthsmtp.testing needs the development provider's dependencies ({exc.name} is "
        "missing): pip install 'oauthsmtp[dev]'"
    ) from exc

if TYPE_CHECKING:
    from oauthsmtp._oauth.params import OAuth2Parameters
    from oauthsmtp._smtp.session import SMTPSession
    from oauthsmtp._tokens.token import AuthToken

__all__ = ["Mailbox", "SessionFactory"]

MARKER = "oauthsmtp_provider"

_UNSET: Any = object()


def pytest_configure(config: pytest.Config) -> None:
    """Register the ``oauthsmtp_provider`` marker."""
    config.addinivalue_line(
        "markers",
        f"{MARKER}(**options): options for the oauthsmtp_provider fixture's DevProvider "
        "(mode=, user=, access_token_lifetime=, rotate_refresh_tokens=, maildir=, ...)",
    )


class Mailbox(Sequence[ReceivedMessage]):
    """The messages a development provider received: a live, read-only sequence.

    Indexing and ``len()`` read the provider's current list each time (oldest first).
    Each item is a :class:`~oauthsmtp.devserver.ReceivedMessage` (``mail_from``,
    ``rcpt_tos``, ``data``, ``user``, ``subject``, ``message``, ``path``).
    """

    def __init__(self, provider: DevProvider) -> None:
        self._provider = provider

    @overload
    def __getitem__(self, index: int) -> ReceivedMessage: ...

    @overload
    def __getitem__(self, index: slice) -> list[ReceivedMessage]: ...

    def __getitem__(self, index: int | slice) -> ReceivedMessage | list[ReceivedMessage]:
        return self._provider.messages[index]

    def __len__(self) -> int:
        return len(self._provider.messages)

    def __repr__(self) -> str:
        return f"<Mailbox: {len(self)} message(s)>"

    def wait(self, count: int = 1, timeout: float = 10.0) -> list[ReceivedMessage]:
        """Block until at least ``count`` messages arrived in all, and return them all.

        Raises:
            TimeoutError: fewer arrived within ``timeout`` seconds.
        """
        return self._provider.wait_for_messages(count, timeout)

    @property
    def last(self) -> ReceivedMessage:
        """The newest message.

        Raises:
            IndexError: nothing arrived yet.
        """
        messages = self._provider.messages
        if not messages:
            raise IndexError("no message has arrived")
        return messages[-1]

    def clear(self) -> None:
        """Forget the messages received so far (``.eml`` files stay)."""
        self._provider.clear()


SessionFactory = Callable[..., "SMTPSession"]
"""``oauthsmtp_session(*, security="starttls", auth_token=..., **options) -> SMTPSession``."""


@pytest.fixture(scope="session")
def _oauthsmtp_certificates(tmp_path_factory: pytest.TempPathFactory) -> CertificateSet:
    """One throwaway CA and server certificate for every provider of the session."""
    return make_certificates(tmp_path_factory.mktemp("oauthsmtp-certs"))


@pytest.fixture
def oauthsmtp_provider(
    request: pytest.FixtureRequest, _oauthsmtp_certificates: CertificateSet
) -> Iterator[DevProvider]:
    """A running development provider for this test (stopped afterwards).

    Configure it with ``@pytest.mark.oauthsmtp_provider(mode="consent", user="a@b.test")``;
    the marker's keywords are :class:`~oauthsmtp.devserver.DevProvider` options.
    """
    options: dict[str, Any] = {"certificates": _oauthsmtp_certificates}
    marker = request.node.get_closest_marker(MARKER)
    if marker is not None:
        if marker.args:
            raise pytest.UsageError(f"@pytest.mark.{MARKER} takes keyword arguments only")
        options.update(marker.kwargs)
    if isinstance(options.get("maildir"), str):
        options["maildir"] = Path(options["maildir"])
    with DevProvider(**options) as provider:
        yield provider


@pytest.fixture(scope="session")
def oauthsmtp_shared_provider(
    _oauthsmtp_certificates: CertificateSet,
) -> Iterator[DevProvider]:
    """One running development provider for the whole test session.

    Messages accumulate across tests: call ``provider.clear()`` where it matters. To make
    every fixture here use it, override ``oauthsmtp_provider`` in your ``conftest.py``::

        @pytest.fixture
        def oauthsmtp_provider(oauthsmtp_shared_provider):
            oauthsmtp_shared_provider.clear()
            return oauthsmtp_shared_provider
    """
    with DevProvider(certificates=_oauthsmtp_certificates) as provider:
        yield provider


@pytest.fixture
def oauthsmtp_params(oauthsmtp_provider: DevProvider) -> OAuth2Parameters:
    """``OAuth2Parameters`` for the provider's client (redirect to any free loopback port)."""
    return oauthsmtp_provider.parameters()


@pytest.fixture
def _oauthsmtp_login(oauthsmtp_provider: DevProvider) -> Callable[[], AuthToken]:
    """Log in on first use only; the token is shared by this test's fixtures."""
    tokens: list[AuthToken] = []

    def login() -> AuthToken:
        if not tokens:
            tokens.append(oauthsmtp_provider.login())
        return tokens[0]

    return login


@pytest.fixture
def oauthsmtp_token(_oauthsmtp_login: Callable[[], AuthToken]) -> AuthToken:
    """An ``AuthToken`` for ``oauthsmtp_provider.user`` from the real authorization-code flow.

    The flow is ``oauthsmtp``'s own browser login (loopback listener, PKCE, state, code
    exchange) with a headless HTTP client in place of the browser. The token is kept in a
    :class:`~oauthsmtp.MemoryStore` and refreshes itself against the provider.
    """
    return _oauthsmtp_login()


@pytest.fixture
def oauthsmtp_session(
    oauthsmtp_provider: DevProvider, _oauthsmtp_login: Callable[[], AuthToken]
) -> Iterator[SessionFactory]:
    """A factory of ``SMTPSession`` objects for the provider's SMTP server.

    ``oauthsmtp_session(security="starttls", auth_token=..., username=..., **options)``
    returns a session that is not yet connected (use it with ``with``, or call
    ``send``): host 127.0.0.1, the STARTTLS port (``security="ssl"``: the implicit-TLS
    port), a TLS context trusting the provider's CA, and ``oauthsmtp_token`` unless
    ``auth_token=`` or ``password=`` is given (``auth_token=None``: no AUTH at all). Other
    keywords go to :class:`~oauthsmtp.SMTPSession`. Every session is closed after the test.
    """
    sessions: list[SMTPSession] = []

    def factory(
        *,
        security: Any = "starttls",
        auth_token: Any = _UNSET,
        username: str | None = None,
        **options: Any,
    ) -> SMTPSession:
        if auth_token is _UNSET:
            auth_token = None if "password" in options else _oauthsmtp_login()
        session = oauthsmtp_provider.session(
            security=security, auth_token=auth_token, username=username, **options
        )
        sessions.append(session)
        return session

    yield factory
    for session in sessions:
        session.close()


@pytest.fixture
def oauthsmtp_messages(oauthsmtp_provider: DevProvider) -> Mailbox:
    """The messages ``oauthsmtp_provider`` received (a live :class:`Mailbox`)."""
    return Mailbox(oauthsmtp_provider)
