"""What the Gmail examples share (not an example itself: run the other files).

Each example makes its own oauthsmtp calls (``auth_identify``, ``SMTPSession``, ``Email``,
``send``, ``send_many``); what they have in common is written once, here:

* the command line: ``--dev`` and ``--to`` (:func:`example_parser`);
* where they log in and send (:func:`mailbox`): Gmail, with the OAuth client and the account
  from the environment, or with ``--dev`` oauthsmtp's development provider on this machine
  (an OAuth2 server that approves at once and an SMTP server that keeps what it receives)
  and a stand-in for the browser, so that the same code runs with no account and no network;
* the checks a ``--dev`` run makes on what the development SMTP server received;
* turning a failure into one line on stderr and an exit code (:func:`run`):
  0 success, 1 failure, 2 missing settings, 3 login required.

Nothing here prints a token.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import sys
import threading
import urllib.error
import urllib.request
import webbrowser
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import parse_qs, urlencode, urlsplit

import oauthsmtp

if TYPE_CHECKING:
    from oauthsmtp.devserver import DevProvider, ReceivedMessage

GMAIL_SMTP_HOST = "smtp.gmail.com"
GMAIL_SMTP_PORT = 587  # STARTTLS (Gmail also takes implicit TLS on 465 with security="ssl")
GMAIL_SETTINGS = ("GMAIL_CLIENT_ID", "GMAIL_CLIENT_SECRET", "GMAIL_ACCOUNT")

DEV_RECIPIENT = "friend@example.test"
DEV_BROWSER = "oauthsmtp-dev"

EXIT_FAILED = 1
EXIT_USAGE = 2
EXIT_LOGIN_REQUIRED = 3


class ExampleFailed(Exception):
    """A setting is missing, a message was not sent or a ``--dev`` check failed."""

    def __init__(self, message: str, exit_code: int = EXIT_FAILED) -> None:
        super().__init__(message)
        self.exit_code = exit_code


# --------------------------------------------------------------------------- command line


def example_parser(doc: str | None, *, recipients: bool = True) -> argparse.ArgumentParser:
    """The options every example takes: ``--dev``, and ``--to`` for those that send."""
    summary, _, details = (doc or "").partition("\n")
    parser = argparse.ArgumentParser(
        description=summary,
        epilog=details.strip() or None,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--dev",
        action="store_true",
        help="run against oauthsmtp's local development provider instead of Gmail "
        "(no account, no network; checks what arrived)",
    )
    if recipients:
        parser.add_argument(
            "--to",
            action="append",
            metavar="ADDR",
            help=f"a recipient (repeatable); default: your own GMAIL_ACCOUNT, or "
            f"{DEV_RECIPIENT} with --dev",
        )
    return parser


def positive(text: str) -> int:
    """An argparse type: a whole number, at least 1."""
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return value


def run(prog: str, args: argparse.Namespace, example: Callable[[Mailbox], None]) -> int:
    """Run ``example`` against Gmail or (``--dev``) the development provider; the exit code."""
    try:
        with mailbox(args) as box:
            example(box)
    except ExampleFailed as exc:
        print(f"{prog}: {exc}", file=sys.stderr)
        return exc.exit_code
    except oauthsmtp.LoginRequired as exc:
        # The message names the account and the command that logs in again.
        print(f"{prog}: login required: {exc}", file=sys.stderr)
        return EXIT_LOGIN_REQUIRED
    except oauthsmtp.OAuthSMTPError as exc:
        # oauthsmtp's messages never contain a token, a code or a secret.
        print(f"{prog}: {type(exc).__name__}: {exc}", file=sys.stderr)
        return EXIT_FAILED
    return 0


# --------------------------------------------------------------------------- where to send


@dataclass(frozen=True)
class Mailbox:
    """Where an example logs in and sends: Gmail, or (``--dev``) the development provider.

    Attributes:
        params: the OAuth2 client (``oauthsmtp.providers.gmail(...)`` for Gmail).
        account: the mailbox that logs in and sends.
        store: where tokens are kept; None is the default store (the OS keyring, or files
            under OAUTHSMTP_HOME with ``OAUTHSMTP_STORE=file``). ``--dev`` uses a
            MemoryStore: its tokens are for a server that stops with the example.
        to: the recipients from ``--to``.
        provider: the running development provider with ``--dev``, else None.
    """

    params: oauthsmtp.OAuth2Parameters
    account: str
    store: oauthsmtp.TokenStore | None
    to: tuple[str, ...]
    provider: DevProvider | None = None

    def session(self, token: oauthsmtp.AuthToken, **options: Any) -> oauthsmtp.SMTPSession:
        """An SMTPSession (not started yet) that authenticates as :attr:`account` with ``token``.

        ``options`` are other SMTPSession keywords (``asynchronous=True``, ``timeout=``...).
        """
        if self.provider is not None:
            # 127.0.0.1, the provider's STARTTLS port, and a TLS context that trusts the
            # provider's throwaway CA: the same checks as with Gmail.
            return self.provider.session(auth_token=token, username=self.account, **options)
        return oauthsmtp.SMTPSession(
            GMAIL_SMTP_HOST,
            GMAIL_SMTP_PORT,
            security="starttls",
            username=self.account,
            auth_token=token,
            **options,
        )

    def received(self, count: int) -> list[ReceivedMessage]:
        """``--dev``: the messages the development SMTP server received; exactly ``count``."""
        if self.provider is None:
            raise RuntimeError("only a --dev run can see what arrived")
        try:
            messages = self.provider.wait_for_messages(count, timeout=10)
        except TimeoutError as exc:
            raise ExampleFailed(f"check failed: {exc}") from None
        check(len(messages) == count, f"{count} message(s) arrived, not {len(messages)}")
        return messages


@contextmanager
def mailbox(args: argparse.Namespace) -> Iterator[Mailbox]:
    """Set up Gmail from the environment, or (``--dev``) start the development provider."""
    to = tuple(getattr(args, "to", None) or ())
    if args.dev:
        try:
            from oauthsmtp.devserver import DevProvider
        except ImportError:
            raise ExampleFailed(
                "--dev needs the development provider: pip install 'oauthsmtp[dev]'",
                EXIT_USAGE,
            ) from None
        use_dev_browser()
        # mode="auto": the provider approves every login at once, as its user@example.test.
        with DevProvider(mode="auto") as provider:
            yield Mailbox(
                params=provider.parameters(),  # its client; redirect to any free loopback port
                account=provider.user,
                store=oauthsmtp.MemoryStore(),
                to=to or (DEV_RECIPIENT,),
                provider=provider,
            )
        return
    missing = [name for name in GMAIL_SETTINGS if not os.environ.get(name)]
    if missing:
        raise ExampleFailed(
            f"set {', '.join(missing)} (see examples/gmail/README.md), "
            "or add --dev to run against the local development provider",
            EXIT_USAGE,
        )
    account = os.environ["GMAIL_ACCOUNT"]
    yield Mailbox(
        params=oauthsmtp.providers.gmail(
            client_id=os.environ["GMAIL_CLIENT_ID"],
            client_secret=os.environ["GMAIL_CLIENT_SECRET"],
        ),
        account=account,
        store=None,
        to=to or (account,),
    )


# --------------------------------------------------------------------------- output and checks


def describe(result: oauthsmtp.SendResult) -> str:
    """One line for a SendResult: status, the server's code and text, refused recipients."""
    line = f"{result.status} {result.code or '-'} {result.message or ''}".rstrip()
    if result.refused:
        refused = ", ".join(
            f"{rcpt} ({code} {text})" for rcpt, (code, text) in result.refused.items()
        )
        line += f"; refused: {refused}"
    return line


def arrival(message: ReceivedMessage) -> str:
    """One line for a message the development SMTP server received."""
    return f"arrived: {message.mail_from} -> {', '.join(message.rcpt_tos)}: {message.subject!r}"


def check(condition: bool, what: str) -> None:
    """Raise :class:`ExampleFailed` (exit 1) unless ``condition``: ``what`` was expected."""
    if not condition:
        raise ExampleFailed(f"check failed: expected {what}")


# --------------------------------------------------------------------------- the stand-in browser


class DevBrowser(webbrowser.BaseBrowser):
    """A stand-in browser for ``--dev``: fetches the login URL in a background thread.

    It does what a browser does when the user clicks "Allow": GET the URL and follow the
    redirects, the last of which goes to oauthsmtp's loopback listener and completes the
    login. ``open`` returns at once, as a real browser launcher does: oauthsmtp waits for
    the redirect on the thread that asked for the browser.
    """

    visits = 0  # how many logins went through the browser (a --dev check)

    def open(self, url: str, new: int = 0, autoraise: bool = True) -> bool:
        parts = urlsplit(url)
        if parts.scheme != "http" or parts.hostname not in ("127.0.0.1", "localhost", "::1"):
            return False  # only ever visit the local development provider
        DevBrowser.visits += 1
        threading.Thread(target=_follow, args=(url,), daemon=True).start()
        return True


def use_dev_browser() -> None:
    """Make Python's webbrowser module open URLs with :class:`DevBrowser`.

    oauthsmtp opens a browser only when one can start; on Linux without a display it
    checks the BROWSER variable. Naming our browser there passes that check, and
    registering it as preferred makes webbrowser use it first.
    """
    os.environ["BROWSER"] = DEV_BROWSER
    webbrowser.register(DEV_BROWSER, None, DevBrowser(DEV_BROWSER), preferred=True)


def _follow(url: str) -> None:
    # No proxy: both servers are on this machine, and one from http_proxy would not reach them.
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))
    redirect_uri = (parse_qs(urlsplit(url).query).get("redirect_uri") or [""])[0]
    try:
        with opener.open(url, timeout=30) as response:
            response.read()
    except urllib.error.HTTPError as exc:
        print(f"dev browser: the server answered HTTP {exc.code}", file=sys.stderr)
        exc.close()
        if not exc.geturl().startswith(redirect_uri):
            _give_up(opener, url, redirect_uri)
    except OSError as exc:
        # Only the reason: the URL of a redirect may carry the authorization code.
        print(f"dev browser: {type(exc).__name__}", file=sys.stderr)
        _give_up(opener, url, redirect_uri)


def _give_up(opener: urllib.request.OpenerDirector, url: str, redirect_uri: str) -> None:
    """Send the loopback listener an error response, so the login fails now, not at its timeout."""
    state = (parse_qs(urlsplit(url).query).get("state") or [""])[0]
    if not redirect_uri or not state:
        return
    query = urlencode(
        {
            "error": "temporarily_unavailable",
            "error_description": "the --dev stand-in browser could not follow the login URL",
            "state": state,
        }
    )
    with contextlib.suppress(OSError):  # if it fails, the login times out instead
        separator = "&" if "?" in redirect_uri else "?"
        opener.open(f"{redirect_uri}{separator}{query}", timeout=5).close()
