"""``oauthsmtp account set``: change an account's SMTP server or transport without logging in."""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

    from oauthsmtp._accounts import AccountSettings

__all__ = ["run_account"]


def run_account(args: argparse.Namespace, out: TextIO) -> int:
    """Run ``account ACTION``; returns the exit code."""
    if args.action != "set":  # pragma: no cover - the parser knows only "set"
        raise CommandError(f"unknown action {args.action!r}", code=EXIT_USAGE)
    flags = (args.smtp_host, args.smtp_port, args.security, args.transport, args.api_url)
    if all(flag is None for flag in flags):
        raise CommandError(
            "nothing to change: give --smtp-host, --smtp-port, --security, --transport "
            "and/or --api-url (see: oauthsmtp account set --help)",
            code=EXIT_USAGE,
        )
    import dataclasses

    accounts = context.registry()
    settings = context.require_settings(args.account)
    host, port, security = context.smtp_target(
        settings, host=args.smtp_host, port=args.smtp_port, security=args.security
    )
    api_url = settings.api_url
    if args.api_url is not None:
        from oauthsmtp._api.http import check_base_url

        api_url = check_base_url(args.api_url, "--api-url")
    transport = args.transport or settings.transport
    if transport != "smtp" and settings.provider == "custom" and not api_url:
        raise CommandError(
            f"--transport {transport} for a custom provider needs --api-url (the API's base URL)",
            code=EXIT_USAGE,
        )
    if transport == "auto" and settings.provider in ("microsoft-app", "google-service-account"):
        raise CommandError(
            "an app-only account has one token per scope; --transport auto is for a person's "
            "login (use --transport smtp or api)",
            code=EXIT_USAGE,
        )
    updated = dataclasses.replace(
        settings,
        smtp_host=host,
        smtp_port=port,
        security=security,
        transport=transport,
        api_url=api_url,
    )
    before, after = _target(settings), _target(updated)
    accounts.put(updated)
    change = f"{before} -> {after}" if before != after else f"{after} (unchanged)"
    print(f"oauthsmtp: {args.account} now sends through {change}.", file=sys.stderr)
    if transport != settings.transport and not _serves(settings, transport):
        print(
            f"oauthsmtp: the saved login was made for {settings.transport.upper()}; an API "
            "refuses a token for SMTP (and the other way round): log in again with "
            f"`oauthsmtp login --account {args.account} --transport {transport}`",
            file=sys.stderr,
        )
    return EXIT_OK


def _serves(settings: AccountSettings, transport: str) -> bool:
    """Whether the recorded login already serves ``transport``: a login for both resources
    (``--transport auto``, or Gmail's https://mail.google.com/) serves all three."""
    if settings.api_scopes is not None:
        return True
    return settings.api == "gmail" and "https://mail.google.com/" in settings.scope


def _api_name(settings: AccountSettings) -> str:
    name = "the Gmail API" if settings.api == "gmail" else "Microsoft Graph"
    return name + (f" at {settings.api_url}" if settings.api_url else "")


def _target(settings: AccountSettings) -> str:
    if settings.transport == "api":
        return _api_name(settings)
    smtp = f"{settings.smtp_host}:{settings.smtp_port} ({settings.security})"
    if settings.transport == "auto":
        return f"{smtp}, or {_api_name(settings)} when SMTP AUTH is refused as disabled"
    return smtp
