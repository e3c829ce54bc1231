"""``oauthsmtp send``: one message through the account's transport (SMTP or an HTTP API).

``--smtp-host``, ``--smtp-port`` and ``--security`` override the recorded server for
this run only (``oauthsmtp account set`` changes it for good). An account recorded with
``--transport api`` sends through the Gmail API or Microsoft Graph instead; with
``--transport auto`` over SMTP, switching to the API only when SMTP AUTH is refused for
configuration (5.7.139, 5.7.30), and the last line says which transport sent it.
"""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK, EXIT_USAGE, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import TextIO

    from oauthsmtp import AuthToken, Email, SendResult
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
    if settings.transport == "auto":
        return _send_auto(settings, token, email, args)
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
    return _report_smtp(host, port, result)


def _report_smtp(host: str, port: int, result: SendResult, *, over: str = "") -> int:
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
    print(f"oauthsmtp: sent{over} ({result.code} {result.message})", file=sys.stderr)
    return EXIT_OK


def _send_api(settings: AccountSettings, token: AuthToken, email: Email) -> int:
    """Send through the account's HTTP API (Gmail API or Microsoft Graph)."""
    from oauthsmtp._accounts import api_session

    session = api_session(settings, token)
    name = session.api_name
    with session:
        result = session.send(email)
    return _report_api(name, result)


def _report_api(name: str, result: SendResult) -> int:
    if result.status == "unknown":
        raise CommandError(
            f"{name} did not confirm the message ({result.message}): it may or may not have "
            "been sent; check the Sent folder before sending it again"
        )
    if not result.ok:
        raise CommandError(f"{name} refused the message: {result.code} {result.message}")
    print(f"oauthsmtp: sent through {name} ({result.code} {result.message})", file=sys.stderr)
    return EXIT_OK


def _send_auto(
    settings: AccountSettings, token: AuthToken, email: Email, args: argparse.Namespace
) -> int:
    """SMTP first; the API only when SMTP is refused for configuration (AutoSession)."""
    import logging

    from oauthsmtp._accounts import auto_session

    host, port, security = context.smtp_target(
        settings, host=args.smtp_host, port=args.smtp_port, security=args.security
    )
    session = auto_session(settings, token, host=host, port=port, security=security)
    # The switch's WARNING, in the command line's own words: one line on stderr.
    logger = logging.getLogger("oauthsmtp.auto")
    handler = logging.StreamHandler(sys.stderr)
    handler.setLevel(logging.WARNING)
    handler.setFormatter(logging.Formatter("oauthsmtp: warning: %(message)s"))
    logger.addHandler(handler)
    propagate, logger.propagate = logger.propagate, False
    try:
        with session:
            result = session.send(email)
    finally:
        logger.removeHandler(handler)
        logger.propagate = propagate
    if result.transport == "api":
        api = session.api
        return _report_api(api.api_name if api is not None else "the API", result)
    return _report_smtp(host, port, result, over=" over SMTP (transport auto)")
