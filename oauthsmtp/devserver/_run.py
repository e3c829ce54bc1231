"""``oauthsmtp dev-server``: run the development provider in the foreground.

It starts a :class:`~oauthsmtp.devserver.DevProvider` on loopback, prints what a client
needs (endpoints, client id and secret, SMTP ports, the CA certificate, the messages page,
a ready-to-paste ``oauthsmtp login`` line), then prints one line per event until Ctrl-C or
SIGTERM, and stops cleanly. The events are each login and refresh at the authorization
server, each AUTH at the SMTP server (accepted or refused) and each received message: who,
which client, which mechanism, never a token, code or SASL string.

The client secret and the endpoints are printed on purpose: this is a throwaway provider on
the developer's own machine, and the developer needs them to configure a client.
"""

from __future__ import annotations

import contextlib
import logging
import os
import shutil
import signal
import sys
import tempfile
import threading
from collections.abc import Iterator
from pathlib import Path
from types import FrameType
from typing import TextIO

from ._mailpages import printable, summarize
from ._provider import DevProvider
from ._smtpserver import ReceivedMessage
from ._smtpsession import AUTH_FAILURES

__all__ = ["Terminated", "run_dev_server", "sigterm_stops"]

READY_LINE = "Waiting for messages; press Ctrl-C to stop."
"""The last line of the information block (scripts may wait for it)."""

_POLL = 1.0  # seconds between checks for new messages (Ctrl-C interrupts the wait at once)


class Terminated(KeyboardInterrupt):
    """Raised in the main thread by :func:`sigterm_stops`'s handler (handled like Ctrl-C)."""


@contextlib.contextmanager
def sigterm_stops() -> Iterator[None]:
    """Make SIGTERM raise :class:`Terminated` (a KeyboardInterrupt) in the main thread.

    Python's default for SIGTERM ends the process at once, skipping ``finally`` blocks and
    ``with`` exits: servers are not stopped and temporary folders (with a private key) stay
    behind. Inside this block SIGTERM unwinds like Ctrl-C instead. Only in the main thread
    (elsewhere it does nothing); the previous handler is restored afterwards.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def handler(signum: int, frame: FrameType | None) -> None:
        raise Terminated

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


class _ConsoleFormatter(logging.Formatter):
    """``HH:MM:SS  message``, with control characters shown (user names come from clients)."""

    def format(self, record: logging.LogRecord) -> str:
        when = self.formatTime(record, "%H:%M:%S")
        return f"{when}  {printable(record.getMessage())}"


@contextlib.contextmanager
def _events_to(out: TextIO) -> Iterator[None]:
    """Write the dev server's INFO events (logins, refreshes, AUTH) to ``out`` meanwhile."""
    logger = logging.getLogger("oauthsmtp.devserver")
    handler = logging.StreamHandler(out)
    handler.setLevel(logging.INFO)
    handler.setFormatter(_ConsoleFormatter())
    previous = logger.level
    if logger.getEffectiveLevel() > logging.INFO:
        logger.setLevel(logging.INFO)
    logger.addHandler(handler)
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(previous)


def _refusal(provider: DevProvider) -> str:
    failure = provider.smtp.auth_failure
    if failure is None:
        return ""
    return f"  refuses AUTH:    {AUTH_FAILURES[failure]} (--smtp-auth-failure {failure})\n"


def _info_block(provider: DevProvider, maildir: Path, *, consent: bool) -> str:
    auth = provider.auth
    ca = provider.ca_path
    approves = (
        "on a consent page in the browser (the page asks which address to sign in as)"
        if consent
        else f"{provider.user}, automatically (no page is shown)"
    )
    account = provider.user
    send = (
        f'echo "Hello from oauthsmtp" | SSL_CERT_FILE={ca} oauthsmtp send '
        f'--account {account} --to someone@example.test --subject "Hello"'
    )
    return f"""\
oauthsmtp development provider: for development and tests only (nothing here is secret).

Authorization server
  issuer:          {auth.issuer}
  authorize:       {auth.authorization_endpoint}
  token:           {auth.token_endpoint}
  revocation:      {auth.revocation_endpoint}
  metadata:        {auth.metadata_url}
  device login:    {auth.device_authorization_endpoint} (codes entered at {auth.verification_uri})
  scope:           {auth.scope}
  client id:       {provider.client.client_id}
  client secret:   {provider.client.client_secret}
  approves as:     {approves}

SMTP server (XOAUTH2 and OAUTHBEARER with the tokens issued above)
  host:            {provider.host}
  STARTTLS port:   {provider.smtp_port}
  implicit TLS:    {provider.smtps_port}
  CA certificate:  {ca}
                   (clients must trust it: SSL_CERT_FILE={ca}, or ssl_context= in Python)
{_refusal(provider)}
Received messages
  folder:          {maildir} (one .eml file per message)
  web page:        {provider.web_url}

Log in from another terminal (port 9000; no desktop keyring: prefix both with OAUTHSMTP_STORE=file):
  {provider.login_command()}
Or without a browser on this machine (the device login: open the printed page anywhere):
  {provider.login_command(flow="device")}
Then send a message:
  {send}

{READY_LINE}
"""


def _arrival_line(message: ReceivedMessage) -> str:
    summary = summarize(message)
    when = message.received_at.astimezone().strftime("%H:%M:%S")
    subject = printable(summary.subject) if summary.subject else "(no subject)"
    cc = f"  cc {printable(summary.cc)}" if summary.cc else ""
    line = (
        f"{when}  from {printable(summary.sender)}  to {printable(summary.recipients)}{cc}  "
        f"subject: {subject}"
    )
    if message.path is not None:
        line += f"  [{message.path.name}]"
    return line


def run_dev_server(
    *,
    smtp_port: int = 0,
    http_port: int = 0,
    maildir: str | os.PathLike[str] | None = None,
    consent: bool = False,
    user: str = "user@example.test",
    out: TextIO | None = None,
    smtp_auth_failure: str | None = None,
) -> int:
    """Run the development provider until Ctrl-C or SIGTERM (``oauthsmtp dev-server``).

    Args:
        smtp_port: the SMTP submission (STARTTLS) port; 0 picks a free one. The
            implicit-TLS port is always a free one.
        http_port: the authorization server's port (also serves the messages page);
            0 picks a free one.
        maildir: the folder for received messages (created if needed); a new temporary
            folder when None. Either way it is kept when the server stops.
        consent: show a consent page in the browser instead of approving automatically.
        user: who approves (automatically, or as the pages' default); the id_token names them.
        out: where the information block and the arrival lines go (default stdout).
        smtp_auth_failure: make the SMTP server refuse every AUTH as Microsoft 365 does
            (``tenant``/``mailbox``: ``535 5.7.139``, ``basic-auth``: ``550 5.7.30``, ...;
            see :class:`~oauthsmtp.devserver.SMTPServer`), e.g. to try ``--transport auto``.

    Returns:
        0 once stopped by Ctrl-C or SIGTERM.

    Raises:
        OSError: a port cannot be bound (nothing is left running).
        ConfigurationError: an invalid port.
    """
    out = out if out is not None else sys.stdout
    temporary = maildir is None
    if maildir is None:
        folder = Path(tempfile.mkdtemp(prefix="oauthsmtp-dev-mail-"))
    else:
        folder = Path(maildir).expanduser().resolve()
        folder.mkdir(parents=True, exist_ok=True)
    try:
        provider = DevProvider(
            http_port=http_port,
            smtp_port=smtp_port,
            maildir=folder,
            mode="consent" if consent else "auto",
            user=user,
        )
        provider.smtp.auth_failure = smtp_auth_failure
        provider.start()
    except BaseException:
        if temporary:
            shutil.rmtree(folder, ignore_errors=True)
        raise
    seen = 0
    with provider, sigterm_stops():
        out.write(_info_block(provider, folder, consent=consent))
        out.flush()
        with _events_to(out):
            try:
                while True:
                    try:
                        messages = provider.wait_for_messages(seen + 1, timeout=_POLL)
                    except TimeoutError:
                        continue
                    for message in messages[seen:]:
                        out.write(_arrival_line(message) + "\n")
                    seen = len(messages)
                    out.flush()
            except KeyboardInterrupt:  # Ctrl-C, or SIGTERM (Terminated)
                pass
    plural = "" if seen == 1 else "s"
    out.write(f"\nStopped. {seen} message{plural} received; the .eml files are in {folder}\n")
    out.flush()
    return 0
