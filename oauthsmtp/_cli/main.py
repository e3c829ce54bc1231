"""The ``oauthsmtp`` command line (also ``python -m oauthsmtp``).

Every command but ``login`` needs only ``--account``: ``login`` records the
account's non-secret settings (see :mod:`oauthsmtp._accounts`). ``token``
prints nothing but the token on stdout, so it can serve as a password command
for msmtp, mutt or git. Errors are one line on stderr, ``oauthsmtp: error:
...``, with a hint; exit codes: 0 success, 1 failure, 2 bad usage, 3 login
required. Modules are imported on the paths that need them so that
``oauthsmtp token`` starts quickly.
"""

from __future__ import annotations

import argparse
import logging
import sys
import traceback
from collections.abc import Sequence
from typing import Any, NoReturn, TextIO

from oauthsmtp._errors import ConfigurationError, LoginRequired, OAuthSMTPError
from oauthsmtp._version import __version__

__all__ = ["EXIT_FAILURE", "EXIT_LOGIN_REQUIRED", "EXIT_OK", "EXIT_USAGE", "main"]

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOGIN_REQUIRED = 3

PROG = "oauthsmtp"

_EPILOG = """\
exit codes: 0 success, 1 failure, 2 bad usage, 3 login required
environment: OAUTHSMTP_HOME (settings folder), OAUTHSMTP_STORE (keyring|file),
             BROWSER (browser command), SSL_CERT_FILE (extra trust anchors)
"""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{PROG}: error: {message}\n")


class CommandError(OAuthSMTPError):
    """A user-facing failure with a hint; carries its exit code."""

    def __init__(self, message: str, *, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code


def _add_global(parser: argparse.ArgumentParser, *, top: bool) -> None:
    default: Any = False if top else argparse.SUPPRESS
    parser.add_argument(
        "--debug",
        action="store_true",
        default=default,
        help="protocol detail and tracebacks on stderr (secrets stay masked)",
    )


def _account_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--account", required=True, metavar="EMAIL", help="the mailbox address")


def build_parser() -> argparse.ArgumentParser:
    """The argument parser (exposed for documentation and tests)."""
    parser = _Parser(
        prog=PROG,
        description="Send email through OAuth2 SMTP servers (Gmail, Microsoft 365, ...) "
        "without storing a password.",
        epilog=_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"{PROG} {__version__}")
    _add_global(parser, top=True)
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", parser_class=_Parser)
    sub.required = True

    def command(name: str, help_: str, description: str) -> argparse.ArgumentParser:
        p = sub.add_parser(
            name,
            help=help_,
            description=description,
            epilog=_EPILOG,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        _add_global(p, top=False)
        return p

    login = command(
        "login",
        "log in once through the browser and remember the account",
        "Open the browser to authorize oauthsmtp for an account, save the token in the "
        "token store and record the account's settings (provider, client id, SMTP server) "
        "so that other commands need only --account.\n\n"
        "examples:\n"
        "  oauthsmtp login --account me@gmail.com --provider gmail \\\n"
        "      --client-id ID.apps.googleusercontent.com --client-secret SECRET\n"
        "  oauthsmtp login --account me@contoso.com --provider microsoft \\\n"
        "      --client-id 00000000-0000-0000-0000-000000000000 --tenant organizations\n"
        "  oauthsmtp login --account me@gmail.com      # again, with the recorded settings\n\n"
        "On a machine without a browser, use --no-browser, open the printed URL elsewhere\n"
        "and forward the port first: ssh -L 9000:127.0.0.1:9000 USER@THIS-MACHINE",
    )
    _account_arg(login)
    login.add_argument("--provider", choices=["gmail", "microsoft", "custom"])
    login.add_argument("--client-id", metavar="ID")
    login.add_argument(
        "--client-secret",
        metavar="S",
        help="the client secret (Gmail desktop clients have one; Microsoft public clients none)",
    )
    login.add_argument("--tenant", metavar="T", help="Microsoft tenant (default: common)")
    login.add_argument("--auth-url", metavar="U", help="custom: authorization endpoint")
    login.add_argument("--token-url", metavar="U", help="custom: token endpoint")
    login.add_argument("--scope", metavar="S", help="custom: space-separated scopes")
    login.add_argument("--revocation-url", metavar="U", help="custom: RFC 7009 endpoint")
    login.add_argument("--issuer", metavar="U", help="custom: expected 'iss' (RFC 9207)")
    login.add_argument(
        "--redirect-url", metavar="URL", help="loopback redirect (default http://localhost:9000)"
    )
    login.add_argument("--smtp-host", metavar="H")
    login.add_argument("--smtp-port", metavar="P", type=int)
    login.add_argument("--security", choices=["starttls", "ssl", "none"])
    login.add_argument(
        "--no-browser", action="store_true", help="print the URL instead of opening a browser"
    )
    login.add_argument(
        "--timeout", type=float, default=300.0, metavar="SECONDS", help="default: 300"
    )

    token = command(
        "token",
        "print a valid access token (for msmtp, mutt, git send-email)",
        "Print a valid access token for the account on stdout and nothing else, refreshing "
        "it silently when needed. Exit code 3 means a login is needed.\n\n"
        'msmtp:  passwordeval "oauthsmtp token --account me@gmail.com"',
    )
    _account_arg(token)
    token.add_argument(
        "--format",
        choices=["raw", "xoauth2", "oauthbearer", "json"],
        default="raw",
        help="raw token (default), a base64 SASL string, or JSON with the token's metadata",
    )

    send = command(
        "send",
        "send one message through the account's SMTP server",
        "Send one message. The body comes from --body-file or standard input.\n\n"
        "example:\n"
        "  echo 'Hello' | oauthsmtp send --account me@gmail.com --to you@example.com "
        "--subject Hi",
    )
    _account_arg(send)
    send.add_argument("--to", action="append", required=True, metavar="ADDR")
    send.add_argument("--cc", action="append", default=[], metavar="ADDR")
    send.add_argument("--bcc", action="append", default=[], metavar="ADDR")
    send.add_argument("--subject", required=True, metavar="S")
    send.add_argument("--from", dest="sender", metavar="ADDR", help="default: the account")
    send.add_argument("--body-file", metavar="F", help="plain-text body (default: stdin)")
    send.add_argument("--html-file", metavar="F", help="an HTML alternative")
    send.add_argument("--attach", action="append", default=[], metavar="FILE")

    status = command(
        "status",
        "list accounts and their tokens' state (never a token)",
        "List recorded accounts with provider, scopes, token expiry and whether a refresh "
        "token is held. Never prints a token.",
    )
    status.add_argument("--account", metavar="EMAIL")
    status.add_argument("--json", action="store_true", help="machine-readable output")

    logout = command(
        "logout",
        "forget an account's tokens (and revoke them with --revoke)",
        "Delete the account's tokens from the token store (the recorded settings and client "
        "secret stay, so `oauthsmtp login --account EMAIL` works again; --forget removes them "
        "too). With --revoke, first ask the provider to revoke the refresh token.",
    )
    _account_arg(logout)
    logout.add_argument(
        "--revoke",
        action="store_true",
        help="first ask the provider to revoke the refresh token (RFC 7009; Gmail supports it)",
    )
    logout.add_argument(
        "--forget",
        action="store_true",
        help="also remove the account's recorded settings and client secret",
    )

    command(
        "providers", "list the provider presets", "List presets with endpoints and SMTP servers."
    )

    dev = command(
        "dev-server",
        "run the local development provider (OAuth2 + SMTP)",
        "Start a local OAuth2 authorization server and an SMTP server that accepts "
        "XOAUTH2/OAUTHBEARER, for development and tests. Ctrl-C stops it.",
    )
    dev.add_argument("--smtp-port", type=int, default=0, metavar="P", help="default: free port")
    dev.add_argument("--http-port", type=int, default=0, metavar="P", help="default: free port")
    dev.add_argument("--maildir", metavar="DIR", help="where received messages are written")
    dev.add_argument(
        "--consent",
        action="store_true",
        help="show a consent page in the browser instead of approving automatically",
    )

    command(
        "demo",
        "walk through the whole product against an embedded dev provider",
        "Log in through the browser, send a message over STARTTLS with XOAUTH2, force a "
        "token refresh and send again — all against a local development provider.",
    )
    return parser


def _hint(exc: BaseException) -> str:
    from oauthsmtp._errors import TokenStoreError

    if isinstance(exc, TokenStoreError) and "OAUTHSMTP_STORE" not in str(exc):
        return " (hint: set OAUTHSMTP_STORE=file to keep tokens in 0600 files instead)"
    return ""


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line; returns the exit code (does not call sys.exit)."""
    out = out if out is not None else sys.stdout
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        return int(exc.code or 0) if not isinstance(exc.code, str) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    if debug:
        logging.basicConfig(
            level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s"
        )
        logging.getLogger("oauthsmtp").setLevel(logging.DEBUG)
    from .commands import COMMANDS

    try:
        return COMMANDS[args.command](args, out)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return 130
    except (OAuthSMTPError, OSError) as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(f"{PROG}: error: {exc}{_hint(exc)}", file=sys.stderr)
        return _exit_code(exc)
    except ModuleNotFoundError as exc:
        if debug:
            traceback.print_exc(file=sys.stderr)
        print(
            f"{PROG}: error: the module {exc.name!r} is missing; the development provider needs "
            "the optional extra: pip install 'oauthsmtp[dev]'",
            file=sys.stderr,
        )
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            raise
        print(
            f"{PROG}: error: unexpected {type(exc).__name__}; run again with --debug for "
            "details and report it",
            file=sys.stderr,
        )
        return EXIT_FAILURE


def _exit_code(exc: BaseException) -> int:
    if isinstance(exc, LoginRequired):
        return EXIT_LOGIN_REQUIRED
    if isinstance(exc, CommandError):
        return exc.code
    if isinstance(exc, ConfigurationError):
        return EXIT_USAGE
    return EXIT_FAILURE


def run() -> NoReturn:
    """Console-script entry point."""
    sys.exit(main())
