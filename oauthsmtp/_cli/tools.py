"""``oauthsmtp providers``, ``explain``, ``dev-server``, ``demo``: presets, advice, dev provider."""

from __future__ import annotations

import argparse

from .exits import EXIT_FAILURE, EXIT_OK

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["run_demo_command", "run_dev_server", "run_explain", "run_providers"]


def run_providers(args: argparse.Namespace, out: TextIO) -> int:
    """List the presets with their endpoints and SMTP servers."""
    from oauthsmtp.providers import PROVIDERS

    for info in PROVIDERS.values():
        out.write(
            f"{info.name}\n"
            f"  authorize:  {info.auth_url}\n"
            f"  token:      {info.token_url}\n"
            f"  revocation: {info.revocation_url or '(none)'}\n"
            f"  scope:      {info.scope}\n"
            f"  smtp:       {info.smtp_host}:{info.smtp_port} ({info.security})\n"
        )
    out.write(
        "custom\n  any OAuth2 provider: give --auth-url, --token-url, --scope and --smtp-host\n"
    )
    return EXIT_OK


def run_explain(args: argparse.Namespace, out: TextIO) -> int:
    """Print what an error text means and the fix; exit 1 when nothing is known of it."""
    from oauthsmtp._explain import explain

    text = " ".join(args.text)
    answer = explain(text, account=args.account)
    if answer is None:
        out.write(
            "oauthsmtp knows nothing specific about this text. Give the whole reply or "
            "error line (for example: 535 5.7.139 Authentication unsuccessful ...), or see "
            "docs/troubleshooting.md.\n"
        )
        return EXIT_FAILURE
    out.write(answer + "\n")
    return EXIT_OK


def run_dev_server(args: argparse.Namespace, out: TextIO) -> int:
    """Run the local development provider until Ctrl-C."""
    from oauthsmtp.devserver._run import run_dev_server as serve

    return serve(
        smtp_port=args.smtp_port,
        http_port=args.http_port,
        maildir=args.maildir,
        consent=args.consent,
        user=args.user,
        out=out,
        smtp_auth_failure=getattr(args, "smtp_auth_failure", None),
    )


def run_demo_command(args: argparse.Namespace, out: TextIO) -> int:
    """Run the end-to-end demo."""
    from .demo import run_demo

    return run_demo(out=out, transport=getattr(args, "transport", None) or "smtp")
