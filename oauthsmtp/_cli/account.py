"""``oauthsmtp account set``: change an account's recorded SMTP server without logging in again."""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["run_account"]


def run_account(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``account ACTION``; returns the exit code."""
    if args.action != "set":  # pragma: no cover - the parser knows only "set"
        raise CommandError(f"unknown action {args.action!r}", code=EXIT_USAGE)
    if args.smtp_host is None and args.smtp_port is None and args.security is None:
        raise CommandError(
            "nothing to change: give --smtp-host, --smtp-port and/or --security "
            "(see: oauthsmtp account set --help)",
            code=EXIT_USAGE,
        )
    import dataclasses

    accounts = context.registry()
    settings = context.require_settings(args.account)
    host, port, security = context.smtp_target(
        settings, host=args.smtp_host, port=args.smtp_port, security=args.security
    )
    before = f"{settings.smtp_host}:{settings.smtp_port} ({settings.security})"
    after = f"{host}:{port} ({security})"
    accounts.put(dataclasses.replace(settings, smtp_host=host, smtp_port=port, security=security))
    change = f"{before} -> {after}" if before != after else f"{after} (unchanged)"
    print(f"oauthsmtp: {args.account} now sends through {change}.", file=sys.stderr)
    return EXIT_OK
