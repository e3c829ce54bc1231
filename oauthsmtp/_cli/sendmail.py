"""``oauthsmtp sendmail``: a sendmail(8) stand-in for git send-email, mutt, cron, PHP, ...

Reads one whole RFC 5322 message on standard input (bytes, at most
:data:`MAX_MESSAGE_BYTES`), and sends it with the account's token through
:class:`~oauthsmtp.SMTPSession`, the same engine as ``oauthsmtp send``; the account comes from
``--account``, ``OAUTHSMTP_ACCOUNT``, or is the only one recorded. The flags are sendmail's
(:mod:`oauthsmtp._cli.sendmailargs`); the message is passed on as it is
(:mod:`oauthsmtp._cli.rawmessage`). The exit code is a sysexits.h code, which is what
programs that call sendmail understand: see :func:`sysexit_for` and docs/sendmail.md.
"""

from __future__ import annotations

import argparse
import os
import sys

from . import context
from .exits import EXIT_LOGIN_REQUIRED, PROG, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from typing import BinaryIO, TextIO

    from oauthsmtp._message.prepare import OutgoingMessage
    from oauthsmtp._smtp.transact import SendResult

    from .sendmailargs import SendmailOptions

__all__ = [
    "EX_CONFIG",
    "EX_DATAERR",
    "EX_NOPERM",
    "EX_NOUSER",
    "EX_SOFTWARE",
    "EX_TEMPFAIL",
    "EX_UNAVAILABLE",
    "EX_USAGE",
    "MAX_MESSAGE_BYTES",
    "read_message",
    "run_sendmail",
    "sysexit_for",
]

# sysexits.h
EX_OK = 0
EX_USAGE = 64
EX_DATAERR = 65
EX_NOUSER = 67
EX_UNAVAILABLE = 69
EX_SOFTWARE = 70
EX_TEMPFAIL = 75
EX_NOPERM = 77
EX_CONFIG = 78

MAX_MESSAGE_BYTES = 64 * 1024 * 1024
"""The largest message read from standard input (Gmail takes 35 MB once encoded)."""


class SendmailError(CommandError):
    """A failure of ``oauthsmtp sendmail`` with its sysexits.h code."""


def run_sendmail(args: argparse.Namespace, out: TextIO) -> int:
    """Send the message on standard input; returns a sysexits.h code."""
    from .sendmailargs import SENDMAIL_HELP, SendmailUsageError, parse_sendmail_args

    try:
        options = parse_sendmail_args(list(args.args))
    except SendmailUsageError as exc:
        _report(f"{exc} (see: {PROG} sendmail --help)")
        return EX_USAGE
    if options.help:
        out.write(SENDMAIL_HELP)
        return EX_OK
    if options.debug and not getattr(args, "debug", False):
        import logging

        logging.basicConfig(
            level=logging.WARNING, stream=sys.stderr, format="%(name)s: %(message)s"
        )
        logging.getLogger("oauthsmtp").setLevel(logging.DEBUG)
    debug = options.debug or bool(getattr(args, "debug", False))
    if debug and options.ignored:
        print(f"{PROG}: sendmail: ignored: {' '.join(options.ignored)}", file=sys.stderr)
    account = None
    try:
        account = choose_account(options.account)
        context.check_ssl_cert_file()
        message = prepare(read_message(_stdin()), options, account=account)
        return _send(account, message)
    except Exception as exc:
        from .hints import message_for

        if debug:
            import traceback

            traceback.print_exc(file=sys.stderr)
        _report(message_for(exc, account=account))
        return sysexit_for(exc)


def _report(text: str) -> None:
    print(f"{PROG}: sendmail: error: {text}", file=sys.stderr)


def _stdin() -> BinaryIO:
    stream = sys.stdin
    if stream is None:
        raise SendmailError("no standard input: pipe the message in", code=EX_USAGE)
    buffer = getattr(stream, "buffer", None)
    if buffer is None:  # a text stream without bytes underneath (embedding, tests)
        import io

        return io.BytesIO(stream.read().encode("utf-8", "surrogateescape"))
    return buffer  # type: ignore[no-any-return]


def read_message(stream: BinaryIO, *, limit: int = MAX_MESSAGE_BYTES) -> bytes:
    """All of ``stream``, or :class:`SendmailError` (EX_DATAERR) past ``limit`` octets."""
    chunks: list[bytes] = []
    size = 0
    while True:
        chunk = stream.read(1 << 20)
        if not chunk:
            break
        size += len(chunk)
        if size > limit:
            raise SendmailError(
                f"the message is larger than {limit // (1024 * 1024)} MiB; nothing was sent",
                code=EX_DATAERR,
            )
        chunks.append(chunk)
    return b"".join(chunks)


def choose_account(given: str | None) -> str:
    """``--account``, else ``OAUTHSMTP_ACCOUNT``, else the only recorded account.

    Raises:
        SendmailError: (EX_CONFIG) no account is recorded, or several and none was chosen.
    """
    if given:
        return given
    from_env = os.environ.get("OAUTHSMTP_ACCOUNT", "").strip()
    if from_env:
        return from_env
    recorded = sorted(context.registry().load_all())
    if len(recorded) == 1:
        return recorded[0]
    if not recorded:
        raise SendmailError(
            "no account is recorded; log in first: oauthsmtp login --account EMAIL ...",
            code=EX_CONFIG,
        )
    raise SendmailError(
        f"several accounts are recorded ({', '.join(recorded)}); choose one with "
        "--account EMAIL or OAUTHSMTP_ACCOUNT=EMAIL",
        code=EX_CONFIG,
    )


def prepare(data: bytes, options: SendmailOptions, *, account: str) -> OutgoingMessage:
    """The message to send: envelope from the flags (and headers with ``-t``), Bcc removed.

    Raises:
        SendmailError: (EX_USAGE) a malformed recipient or ``-f`` argument, or no recipient
            without ``-t``; (EX_DATAERR) a malformed header address, or no recipient at all.
    """
    from email.utils import formataddr, formatdate, make_msgid

    from oauthsmtp._errors import ConfigurationError

    from .rawmessage import (
        addresses_of,
        argument_addresses,
        normalize_line_ends,
        outgoing,
        split_message,
    )

    try:
        recipients = argument_addresses(list(options.recipients))
        sender = _envelope_sender(options.sender, account)
    except ConfigurationError as exc:
        raise SendmailError(str(exc), code=EX_USAGE) from None
    try:
        message = split_message(normalize_line_ends(data))
        if options.read_recipients:
            for name in ("to", "cc", "bcc"):
                recipients.extend(addresses_of(name, message.values(name)))
        if not recipients:
            hint = "" if options.read_recipients else " (or -t to take them from To/Cc/Bcc)"
            code = EX_DATAERR if options.read_recipients else EX_USAGE
            raise SendmailError(f"no recipient: give them as arguments{hint}", code=code)
        present = set(message.names())
        added: list[bytes] = []
        if "from" not in present:
            name = options.full_name or ""
            added.append(f"From: {formataddr((name, sender or account))}\r\n".encode())
        if "date" not in present:
            added.append(f"Date: {formatdate(localtime=True)}\r\n".encode())
        if "message-id" not in present:
            domain = (sender or account).rpartition("@")[2] or None
            added.append(f"Message-ID: {make_msgid(domain=domain)}\r\n".encode())
        wire = message.without("bcc").with_first(*added).to_bytes()
        return outgoing(wire, sender=sender, recipients=recipients)
    except ConfigurationError as exc:
        raise SendmailError(f"bad message: {exc}", code=EX_DATAERR) from None


def _envelope_sender(given: str | None, account: str) -> str:
    if given is None:
        return account
    given = given.strip()
    if given in ("", "<>"):
        return ""  # the null reverse-path (RFC 5321 §4.5.5), as sendmail -f '<>'
    from .rawmessage import envelope_mailbox

    return envelope_mailbox("-f", given.removeprefix("<").removesuffix(">"))


def _send(account: str, message: OutgoingMessage) -> int:
    from oauthsmtp import SMTPSession
    from oauthsmtp._errors import ConfigurationError

    settings, _, token = context.saved_login(account)
    host, port, security = context.smtp_target(settings, host=None, port=None, security=None)
    try:
        session = SMTPSession(
            host, port=port, security=security, username=account, auth_token=token
        )
    except ConfigurationError as exc:
        raise SendmailError(
            f"the recorded settings of {account} are unusable: {exc}", code=EX_CONFIG
        ) from None
    with session:
        result = session.send(message)
    return _outcome(result, host=host, port=port)


def _outcome(result: SendResult, *, host: str, port: int) -> int:
    """Report a result on stderr and return its sysexits.h code."""
    where = f"{host}:{port}"
    if result.status == "unknown":
        # RFC 1047: when in doubt, a duplicate is better than a loss; EX_TEMPFAIL lets a
        # queue try again.
        raise SendmailError(
            f"the connection to {where} was lost before the server confirmed the message: "
            "it may or may not have been delivered",
            code=EX_TEMPFAIL,
        )
    if result.status == "deferred":  # a sending limit held it back: a queue may retry
        raise SendmailError(f"the message was deferred: {result.message}", code=EX_TEMPFAIL)
    refused = ", ".join(f"{r} ({c} {t})" for r, (c, t) in result.refused.items())
    if not result.ok:
        code = result.code
        if code is None:
            raise SendmailError(f"the message was not sent: {result.message}", code=EX_DATAERR)
        if 400 <= code < 500:
            raise SendmailError(
                f"{where} refused the message for now: {code} {result.message}; try again later",
                code=EX_TEMPFAIL,
            )
        if result.refused:
            raise SendmailError(f"{where} refused every recipient: {refused}", code=EX_NOUSER)
        data_problem = code == 552 or (result.message or "").startswith("5.6.")
        raise SendmailError(
            f"{where} refused the message: {code} {result.message}",
            code=EX_DATAERR if data_problem else EX_UNAVAILABLE,
        )
    if result.refused:
        temporary = all(400 <= c < 500 for c, _ in result.refused.values())
        raise SendmailError(
            f"sent ({result.code} {result.message}), but {where} refused some recipients, "
            f"who did not get it: {refused}",
            code=EX_TEMPFAIL if temporary else EX_NOUSER,
        )
    return EX_OK


def sysexit_for(exc: BaseException) -> int:
    """The sysexits.h code for an error of ``oauthsmtp sendmail``.

    EX_TEMPFAIL (75) when trying again later can work: a login is needed (after
    ``oauthsmtp login``), the server or the token endpoint is unreachable or answered
    4xx; EX_CONFIG (78) for settings that must be fixed; EX_NOPERM (77) when the server
    refused authentication for good; EX_UNAVAILABLE (69) for other permanent SMTP failures.
    """
    from oauthsmtp._errors import (
        ConfigurationError,
        LoginRequired,
        SMTPAuthError,
        SMTPError,
        TokenError,
        TokenStoreError,
    )
    from oauthsmtp._smtp.session import SMTPConnectionError, SMTPTimeoutError

    if isinstance(exc, SendmailError):
        return exc.code
    if isinstance(exc, CommandError):  # context: account not recorded, bad SSL_CERT_FILE
        return EX_CONFIG if exc.code in (EXIT_LOGIN_REQUIRED, 2) else EX_SOFTWARE
    if isinstance(exc, LoginRequired):
        return EX_TEMPFAIL
    if isinstance(exc, (SMTPConnectionError, SMTPTimeoutError)):
        return EX_TEMPFAIL
    if isinstance(exc, SMTPError):
        if exc.code is not None and 400 <= exc.code < 500:
            return EX_TEMPFAIL
        if isinstance(exc, SMTPAuthError):
            return EX_NOPERM
        return EX_UNAVAILABLE  # a permanent refusal, or TLS that cannot be established
    if isinstance(exc, TokenError):
        if exc.error in ("invalid_client", "unauthorized_client", "invalid_scope"):
            return EX_CONFIG
        return EX_TEMPFAIL
    if isinstance(exc, (ConfigurationError, TokenStoreError)):
        return EX_CONFIG
    if isinstance(exc, OSError):
        return EX_TEMPFAIL
    return EX_SOFTWARE
