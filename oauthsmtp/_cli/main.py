"""The ``oauthsmtp`` command line (also ``python -m oauthsmtp``): parse, dispatch, report.

:func:`main` parses the arguments (:mod:`oauthsmtp._cli.parser`), runs the command's
function from its module, and turns an error into one line on stderr
(``oauthsmtp: error: ...``, worded for the command line by
:mod:`oauthsmtp._cli.hints`) and an exit code (:mod:`oauthsmtp._cli.exits`): 0
success, 1 failure, 2 bad usage, 3 login required. ``--debug`` adds protocol
detail and tracebacks. The command modules import the library's heavy modules
only inside the commands that need them, so ``oauthsmtp token`` starts quickly.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn, TextIO

from oauthsmtp._errors import OAuthSMTPError

from . import account, context, login, send, status, token, tools
from .exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, PROG, CommandError
from .hints import exit_code, message_for
from .parser import build_parser

__all__ = ["COMMANDS", "CommandError", "main", "run"]

Command = Callable[[argparse.Namespace, TextIO], int]

COMMANDS: dict[str, Command] = {
    "login": login.run_login,
    "token": token.run_token,
    "send": send.run_send,
    "status": status.run_status,
    "logout": status.run_logout,
    "account": account.run_account,
    "providers": tools.run_providers,
    "dev-server": tools.run_dev_server,
    "demo": tools.run_demo_command,
}
"""Each command's function: takes the parsed arguments and stdout, returns the exit code."""

_TALKS_TLS = frozenset({"login", "token", "send", "logout"})


def _debug_logging() -> None:
    import logging

    logging.basicConfig(level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s")
    logging.getLogger("oauthsmtp").setLevel(logging.DEBUG)


def _report(text: str) -> None:
    print(f"{PROG}: error: {text}", file=sys.stderr)


def main(argv: Sequence[str] | None = None, *, out: TextIO | None = None) -> int:
    """Run the command line with ``argv`` (default: ``sys.argv[1:]``); returns the exit code.

    Results go to ``out`` (default: stdout), messages to stderr. Never calls
    :func:`sys.exit` and never lets an exception out, except with ``--debug`` for
    errors that are not oauthsmtp's (a bug: the traceback is the report).
    """
    out = out if out is not None else sys.stdout
    try:
        args = build_parser().parse_args(argv)
    except SystemExit as exc:  # --help, --version, or a usage error already printed
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    debug = bool(getattr(args, "debug", False))
    if debug:
        _debug_logging()
    try:
        if args.command in _TALKS_TLS:
            context.check_ssl_cert_file()
        return COMMANDS[args.command](args, out)
    except KeyboardInterrupt:
        print(f"{PROG}: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (OAuthSMTPError, OSError) as exc:
        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        _report(message_for(exc, account=getattr(args, "account", None)))
        return exit_code(exc)
    except ModuleNotFoundError as exc:
        if debug:
            raise
        _report(
            f"the module {exc.name!r} is missing; the development provider needs the "
            "optional extra: pip install 'oauthsmtp[dev]'"
        )
        return EXIT_FAILURE
    except Exception as exc:
        if debug:
            raise
        _report(
            f"unexpected {type(exc).__name__}; run again with --debug for details and report it"
        )
        return EXIT_FAILURE


def run() -> NoReturn:
    """Console-script entry point (``oauthsmtp`` and ``python -m oauthsmtp``)."""
    sys.exit(main())
