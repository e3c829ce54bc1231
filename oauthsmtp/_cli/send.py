"""``oauthsmtp send``: one message through the account's transport (SMTP or an HTTP API).

``--smtp-host``, ``--smtp-port`` and ``--security`` override the recorded server for
this run only (``oauthsmtp account set`` changes it for good). An account recorded with
``--transport api`` sends through the Gmail API or Microsoft Graph instead.
"""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

    from oauthsmtp import AuthToken, Email
    from oauthsmtp._accounts import AccountSettings

__all__ = ["run_send"]


def _read_text(flag: str, path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            return fh.read()
    except OSError as exc:
        raise CommandError(f"{flag}: cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(f"{flag}: {path!r} is not UTF-8 text", code=EXIT_USAGE) from None


def _read_stdin() -> str:
    if sys.stdin is None:
        raise CommandError("no body: give --body-file FILE or pipe the body in", code=EXIT_USAGE)
    if sys.stdin.isatty():
        print(
            "oauthsmtp: reading the body from standard input (end with Ctrl-D)...",
            file=sys.stderr,
        )
    buffer = getattr(sys.stdin, "buffer", None)
    try:
        if buffer is None:  # a text stream without bytes underneath (tests, embedding)
            return sys.stdin.read()
        # Bytes, decoded strictly: a C locale would otherwise smuggle undecodable bytes in
        # as surrogates. Newlines as text mode would give them.
        text: str = buffer.read().decode("utf-8")
        return text.replace("\r\n", "\n").replace("\r", "\n")
    except UnicodeDecodeError:
        raise CommandError(
            "the body on standard input is not UTF-8 text; send binary content with --attach",
            code=EXIT_USAGE,
        ) from None


def run_send(args: argparse.Namespace, out: TextIO) -> int:
    """Send one message; returns the exit code."""
    from oauthsmtp import Email, SMTPSession

    for path in args.attach:
        try:
            with open(path, "rb"):
                pass
        except OSError as exc:
            raise CommandError(f"--attach: cannot read {path!r}: {exc.strerror}") from None
    html = _read_text("--html-file", args.html_file) if args.html_file else None
    body = _read_text("--body-file", args.body_file) if args.body_file else _read_stdin()
    settings, _, token = context.saved_login(args.account)
    email = Email(
        sender=args.sender or args.account,
        to=args.to,
        cc=args.cc,
        bcc=args.bcc,
        subject=args.subject,
        text=body,
        html=html,
        attachments=args.attach,
    )
    if settings.transport == "api":
        if args.smtp_host or args.smtp_port or args.security:
            raise CommandError(
                f"{args.account} sends through the API, so --smtp-host, --smtp-port and "
                "--security do not apply; `oauthsmtp account set --transport smtp` to use SMTP",
                code=EXIT_USAGE,
            )
        return _send_api(settings, token, email)
    host, port, security = context.smtp_target(
        settings, host=args.smtp_host, port=args.smtp_port, security=args.security
    )
    with SMTPSession(
        host, port=port, security=security, username=args.account, auth_token=token
    ) as session:
        result = session.send(email)
    if result.status == "unknown":
        raise CommandError(
            "the connection was lost before the server confirmed the message: it may or may "
            "not have been delivered; check the recipient's mailbox before sending it again"
        )
    if not result.ok:
        if result.code is None:
            raise CommandError(f"the message was not sent: {result.message}")
        raise CommandError(
            f"the server {host}:{port} refused the message: {result.code} {result.message}"
        )
    for rcpt, (code, text) in result.refused.items():
        print(f"oauthsmtp: warning: {rcpt} refused: {code} {text}", file=sys.stderr)
    print(f"oauthsmtp: sent ({result.code} {result.message})", file=sys.stderr)
    return EXIT_OK


def _send_api(settings: AccountSettings, token: AuthToken, email: Email) -> int:
    """Send through the account's HTTP API (Gmail API or Microsoft Graph)."""
    from oauthsmtp import GmailAPISession, GraphSession
    from oauthsmtp._api.gmail import GMAIL_API_URL
    from oauthsmtp._api.graph import GRAPH_API_URL

    session: GmailAPISession | GraphSession
    if settings.api == "gmail":
        name = "the Gmail API"
        session = GmailAPISession(auth_token=token, base_url=settings.api_url or GMAIL_API_URL)
    else:
        name = "Microsoft Graph"
        # An app-only token has no "me": it sends as the recorded mailbox.
        user = settings.account if settings.provider == "microsoft-app" else None
        session = GraphSession(
            auth_token=token, user=user, base_url=settings.api_url or GRAPH_API_URL
        )
    with session:
        result = session.send(email)
    if result.status == "unknown":
        raise CommandError(
            f"{name} did not confirm the message ({result.message}): it may or may not have "
            "been sent; check the Sent folder before sending it again"
        )
    if not result.ok:
        raise CommandError(f"{name} refused the message: {result.code} {result.message}")
    print(f"oauthsmtp: sent through {name} ({result.code} {result.message})", file=sys.stderr)
    return EXIT_OK
