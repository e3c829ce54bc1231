"""The pytest plugin for users (oauthsmtp.testing), run in child pytest processes (pytester).

The plugin is off by default: the ``pytest11`` entry point (``oauthsmtp._pytest_entry``)
only declares the ``oauthsmtp_dev_provider`` ini option. The fixtures come with
``pytest_plugins = ["oauthsmtp.testing"]``, ``-p oauthsmtp.testing`` or that ini option.
The entry point is simulated with a ``.dist-info`` folder on PYTHONPATH, so these tests do
not depend on how oauthsmtp was installed.
"""

from __future__ import annotations

import importlib.metadata
from pathlib import Path

import pytest
from components import require

pytest_plugins = ["pytester"]

# What a user of the library writes: the code under test, and a test that uses the fixtures.
APP = '''
from oauthsmtp import Email


def send_welcome(session, sender, address):
    """The application code under test: sends a welcome message."""
    message = Email(sender=sender, to=[address], subject="Welcome!", text=f"Hello {address}.")
    return session.send(message)
'''

EXAMPLE_TEST = """
import pytest

from oauthsmtp import AuthToken, OAuth2Parameters
from app import send_welcome


def test_welcome_message_arrives(oauthsmtp_provider, oauthsmtp_session, oauthsmtp_messages):
    with oauthsmtp_session() as session:
        result = send_welcome(session, oauthsmtp_provider.user, "new.user@example.test")

    assert result.ok
    [message] = oauthsmtp_messages
    assert message.subject == "Welcome!"
    assert message.rcpt_tos == ("new.user@example.test",)
    assert message.user == oauthsmtp_provider.user        # authenticated with the token
    assert "Hello new.user@example.test." in message.message.get_content()


def test_token_comes_from_the_real_flow(oauthsmtp_provider, oauthsmtp_params, oauthsmtp_token):
    assert isinstance(oauthsmtp_params, OAuth2Parameters)
    assert oauthsmtp_params.token_url == oauthsmtp_provider.auth.token_endpoint
    assert isinstance(oauthsmtp_token, AuthToken)
    assert oauthsmtp_token.valid
    assert oauthsmtp_token.account == oauthsmtp_provider.user
    log = oauthsmtp_provider.auth.requests_log
    assert ("GET", "/authorize") in log
    assert ("POST", "/token") in log
    info = oauthsmtp_provider.auth.validate_access_token(oauthsmtp_token.access_token)
    assert info is not None and info.user == oauthsmtp_provider.user
    oauthsmtp_token.refresh()                              # refreshes against the provider
    assert oauthsmtp_token.valid
"""


def write_project(pytester: pytest.Pytester, *, conftest: str = "", ini: str = "") -> None:
    pytester.makepyfile(app=APP, test_example=EXAMPLE_TEST)
    if conftest:
        pytester.makeconftest(conftest)
    pytester.makeini(
        "[pytest]\n"
        "addopts = -p no:cacheprovider --strict-markers --strict-config\n"
        "filterwarnings = error\n" + ini
    )


@pytest.fixture
def entry_point(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Make the child processes see the pytest11 entry point that pyproject.toml declares."""
    site = pytester.path / "site"
    info = site / "oauthsmtp_entry_point-1.0.dist-info"
    info.mkdir(parents=True)
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: oauthsmtp-entry-point\nVersion: 1.0\n", encoding="utf-8"
    )
    (info / "entry_points.txt").write_text(
        "[pytest11]\noauthsmtp = oauthsmtp._pytest_entry\n", encoding="utf-8"
    )
    monkeypatch.setenv("PYTHONPATH", str(site))
    monkeypatch.delenv("PYTEST_DISABLE_PLUGIN_AUTOLOAD", raising=False)
    return site


def test_off_by_default(pytester: pytest.Pytester, entry_point: Path) -> None:
    """Installed but not enabled: the entry point loads, and no fixture exists."""
    write_project(pytester)
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(errors=2)
    result.stdout.fnmatch_lines(["*fixture 'oauthsmtp_provider' not found*"])
    plugins = pytester.runpytest_subprocess("--co", "-q", "--trace-config")
    plugins.stdout.fnmatch_lines(["*oauthsmtp*_pytest_entry*"])
    assert "oauthsmtp/testing.py" not in plugins.stdout.str()


def test_enabled_with_pytest_plugins(pytester: pytest.Pytester) -> None:
    write_project(pytester, conftest='pytest_plugins = ["oauthsmtp.testing"]\n')
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_enabled_with_dash_p(pytester: pytest.Pytester) -> None:
    write_project(pytester)
    pytester.runpytest_subprocess("-p", "oauthsmtp.testing").assert_outcomes(passed=2)


def test_enabled_with_the_ini_option(pytester: pytest.Pytester, entry_point: Path) -> None:
    write_project(pytester, ini="oauthsmtp_dev_provider = true\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_entry_point_and_explicit_enabling_together(
    pytester: pytest.Pytester, entry_point: Path
) -> None:
    """No "plugin already registered" clash when every way of enabling is used at once."""
    write_project(
        pytester,
        conftest='pytest_plugins = ["oauthsmtp.testing"]\n',
        ini="oauthsmtp_dev_provider = true\n",
    )
    pytester.runpytest_subprocess("-p", "oauthsmtp.testing").assert_outcomes(passed=2)


def test_fixtures_in_detail(pytester: pytest.Pytester) -> None:
    """The marker, the session factory's options, the mailbox, the shared provider."""
    pytester.makepyfile(
        test_detail="""
        import ssl

        import pytest

        from oauthsmtp import AccessDenied, Email
        from oauthsmtp.devserver import DevProvider
        from oauthsmtp.testing import Mailbox


        def mail(sender, subject):
            return Email(sender=sender, to=["x@example.test"], subject=subject, text=".")


        @pytest.mark.oauthsmtp_provider(user="carol@example.test", smtps_port=0)
        def test_marker_sets_the_user(oauthsmtp_provider, oauthsmtp_token, oauthsmtp_session):
            assert oauthsmtp_token.account == "carol@example.test"
            session = oauthsmtp_session(security="ssl", mechanism="OAUTHBEARER")
            assert session.port == oauthsmtp_provider.smtps_port
            assert session.send(mail("carol@example.test", "over TLS")).ok
            # not closed here: the fixture closes it after the test


        @pytest.mark.oauthsmtp_provider(mode="deny")
        def test_marker_sets_the_mode(oauthsmtp_provider):
            with pytest.raises(AccessDenied):
                oauthsmtp_provider.login()


        def test_no_login_without_auth(oauthsmtp_provider, oauthsmtp_session):
            with oauthsmtp_session(auth_token=None) as session:
                result = session.send(mail(oauthsmtp_provider.user, "refused"))
            assert not result.ok
            assert result.code == 530
            assert ("GET", "/authorize") not in oauthsmtp_provider.auth.requests_log


        def test_mailbox(oauthsmtp_provider, oauthsmtp_session, oauthsmtp_messages):
            assert isinstance(oauthsmtp_messages, Mailbox)
            assert len(oauthsmtp_messages) == 0
            with pytest.raises(IndexError):
                oauthsmtp_messages.last
            with oauthsmtp_session() as session:
                session.send_many([mail(oauthsmtp_provider.user, s) for s in ("a", "b", "c")])
            assert [m.subject for m in oauthsmtp_messages.wait(3)] == ["a", "b", "c"]
            assert oauthsmtp_messages.last.subject == "c"
            assert [m.subject for m in oauthsmtp_messages[1:]] == ["b", "c"]
            assert "3 message(s)" in repr(oauthsmtp_messages)
            oauthsmtp_messages.clear()
            assert list(oauthsmtp_messages) == []
            with pytest.raises(TimeoutError):
                oauthsmtp_messages.wait(1, timeout=0.1)


        def test_provider_helpers(oauthsmtp_provider):
            assert isinstance(oauthsmtp_provider, DevProvider)
            assert oauthsmtp_provider.running
            assert oauthsmtp_provider.ssl_context().verify_mode == ssl.CERT_REQUIRED
            assert oauthsmtp_provider.web_url.endswith("/messages")


        def test_shared_provider_a(oauthsmtp_shared_provider):
            oauthsmtp_shared_provider.user = "shared@example.test"


        def test_shared_provider_b(oauthsmtp_shared_provider):
            assert oauthsmtp_shared_provider.user == "shared@example.test"
        """
    )
    pytester.makeconftest('pytest_plugins = ["oauthsmtp.testing"]\n')
    pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider --strict-markers\nfilterwarnings = error\n"
    )
    result = pytester.runpytest_subprocess("-v")
    result.assert_outcomes(passed=7)


def test_shared_provider_override(pytester: pytest.Pytester) -> None:
    """The documented conftest override makes every fixture use the session's provider."""
    pytester.makeconftest(
        """
        import pytest

        pytest_plugins = ["oauthsmtp.testing"]


        @pytest.fixture
        def oauthsmtp_provider(oauthsmtp_shared_provider):
            oauthsmtp_shared_provider.clear()
            return oauthsmtp_shared_provider
        """
    )
    pytester.makepyfile(
        test_shared="""
        from oauthsmtp import Email

        ISSUERS = set()


        def test_one(oauthsmtp_provider, oauthsmtp_session, oauthsmtp_messages):
            ISSUERS.add(oauthsmtp_provider.issuer)
            with oauthsmtp_session() as session:
                message = Email(sender=oauthsmtp_provider.user, to=["a@b.test"], subject="1")
                session.send(message)
            assert len(oauthsmtp_messages) == 1


        def test_two(oauthsmtp_provider, oauthsmtp_messages):
            ISSUERS.add(oauthsmtp_provider.issuer)
            assert len(oauthsmtp_messages) == 0
            assert len(ISSUERS) == 1
        """
    )
    pytester.makeini("[pytest]\naddopts = -p no:cacheprovider\nfilterwarnings = error\n")
    pytester.runpytest_subprocess().assert_outcomes(passed=2)


def test_installed_entry_point_names_the_small_module() -> None:
    """When the installed oauthsmtp declares its pytest11 entry point, it is the right one."""
    points = [
        ep for ep in importlib.metadata.entry_points(group="pytest11") if ep.name == "oauthsmtp"
    ]
    require(
        bool(points),
        "an oauthsmtp install that declares its pytest11 entry point",
        "pip install -e '.[test]' (pyproject.toml declares it)",
    )
    assert {ep.value for ep in points} == {"oauthsmtp._pytest_entry"}


def test_teardown_after_a_tls_quit_is_clean(pytester: pytest.Pytester) -> None:
    """A user's test leaves a TLS connection open after QUIT: the provider's teardown is clean.

    On CPython 3.11.2 (Debian 12's python3) stopping the SMTP server then raised in its
    thread, which pytest turned into an error at the user's teardown.
    """
    pytester.makepyfile(
        test_quit="""
        import smtplib

        KEPT = []  # sockets left open until the provider has stopped


        def test_quit_then_keep_the_socket(oauthsmtp_provider):
            client = smtplib.SMTP(oauthsmtp_provider.host, oauthsmtp_provider.smtp_port, timeout=5)
            client.starttls(context=oauthsmtp_provider.ssl_context())
            client.ehlo()
            KEPT.append(client.sock)
            assert client.docmd("QUIT")[0] == 221
        """
    )
    pytester.makeconftest('pytest_plugins = ["oauthsmtp.testing"]\n')
    pytester.makeini(
        "[pytest]\naddopts = -p no:cacheprovider --strict-markers\nfilterwarnings = error\n"
    )
    result = pytester.runpytest_subprocess()
    result.assert_outcomes(passed=1)
