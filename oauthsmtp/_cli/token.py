"""``oauthsmtp token``: print a valid access token (a password command for msmtp, mutt, git).

Only the token goes to stdout; everything else to stderr. Kept cheap to start:
the SASL encoders are imported only for the formats that need them.
"""

from __future__ import annotations

import argparse

from . import context
from .exits import EXIT_OK

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

__all__ = ["run_token"]


def run_token(args: argparse.Namespace, out: TextIO) -> int:
    """Print the account's access token in ``--format``; returns the exit code."""
    settings, _, token = context.saved_login(args.account)
    access = token.access_token
    fmt = args.format
    if fmt == "raw":
        out.write(access + "\n")
    elif fmt in ("xoauth2", "oauthbearer"):
        from oauthsmtp._smtp import sasl

        if fmt == "xoauth2":
            blob = sasl.xoauth2_initial(args.account, access)
        else:
            blob = sasl.oauthbearer_initial(
                args.account, access, settings.smtp_host, settings.smtp_port
            )
        out.write(blob.decode("ascii") + "\n")
    else:
        import json

        data = {
            "account": args.account,
            "access_token": access,
            "token_type": token.token_type,
            "expires_at": token.expires_at.isoformat() if token.expires_at else None,
            "scope": list(token.scope),
            "has_refresh_token": token.refresh_token is not None,
        }
        out.write(json.dumps(data, indent=2) + "\n")
    out.flush()
    return EXIT_OK
