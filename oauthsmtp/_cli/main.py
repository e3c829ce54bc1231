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

from oauthsmtp._errors import OAuthSMTPError

from . import context
from .exits import EXIT_FAILURE, EXIT_INTERRUPTED, EXIT_USAGE, PROG, CommandError
from .hints import exit_code, message_for
from .parser import build_parser

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from collections.abc import Callable, Sequence
    from typing import NoReturn, TextIO

    Command = Callable[[argparse.Namespace, TextIO], int]

__all__ = ["COMMANDS", "CommandError", "command", "main", "run"]

COMMANDS = (
    "login",
    "token",
    "send",
    "status",
    "logout",
    "account",
    "sendmail",
    "relay",
    "doctor",
    "providers",
    "explain",
    "dev-server",
    "demo",
)
"""The commands, in the order of ``oauthsmtp --help``."""


def command(name: str) -> Command:
    """The function that runs command ``name`` (its module is imported only now).

    It takes the parsed arguments and the stream for results, and returns the exit code.
    """
    if name == "login":
        from .login import run_login

        return run_login
    if name == "token":
        from .token import run_token

        return run_token
    if name == "send":
        from .send import run_send

        return run_send
    if name in ("status", "logout"):
        from .status import run_logout, run_status

        return run_status if name == "status" else run_logout
    if name == "doctor":
        from .doctor import run_doctor

        return run_doctor
    if name == "account":
        from .account import run_account

        return run_account
    if name == "sendmail":
        from .sendmail import run_sendmail

        return run_sendmail
    if name == "relay":
        from .relay import run_relay

        return run_relay
    from .tools import run_demo_command, run_dev_server, run_explain, run_providers

    tools = {
        "providers": run_providers,
        "explain": run_explain,
        "dev-server": run_dev_server,
        "demo": run_demo_command,
    }
    return tools[name]  # KeyError: not a command (the parser lets none through)


_TALKS_TLS = frozenset({"login", "token", "send", "logout", "relay", "doctor"})


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
        return command(args.command)(args, out)
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
