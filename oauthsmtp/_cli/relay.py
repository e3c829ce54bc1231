"""``oauthsmtp relay``: an SMTP relay on loopback for programs that only speak plain SMTP.

Scanners, printers, monitoring tools and old applications can send mail to an SMTP server
without TLS or OAuth2. The relay accepts their mail on a loopback address and sends it on
with the account's token through :class:`~oauthsmtp.SMTPSession` (its ``submit`` queue:
pipelining, reconnects, the connection pool). The SMTP side is aiosmtpd
(:mod:`oauthsmtp._cli.relayserver`), from the optional extra ``oauthsmtp[relay]``.

Safety rules:

* loopback only, unless ``--allow-remote`` (then a warning: anyone who reaches the port may
  send as the account unless ``--user`` is set);
* ``--user``/``--password-file``: AUTH PLAIN/LOGIN is required; it is offered only after
  STARTTLS (with ``--tls-cert``/``--tls-key``, or a self-signed certificate made at start),
  except on a loopback address, where nothing crosses a network;
* a client's end of data is answered after the upstream server answered (never ``250``
  before), messages are bounded by ``--max-size`` (announced with SIZE, RFC 1870);
* SIGTERM or SIGINT: stop accepting connections, let the messages in progress get their
  answer (bounded), send what was queued, QUIT upstream, exit 0.
"""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK, EXIT_USAGE, PROG, CommandError

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    import ssl
    from typing import TextIO

__all__ = ["SHUTDOWN_GRACE", "is_loopback", "run_relay"]

SHUTDOWN_GRACE = 60.0
"""Seconds a shutdown waits for messages in progress to get the upstream server's answer."""


def is_loopback(host: str) -> bool:
    """True for an IP literal in 127.0.0.0/8 or ``::1``."""
    import ipaddress

    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _say(text: str) -> None:
    print(f"{PROG}: relay: {text}", file=sys.stderr, flush=True)


def _read_password(path: str) -> str:
    try:
        with open(path, encoding="utf-8") as fh:
            password = fh.readline().rstrip("\r\n")
    except OSError as exc:
        raise CommandError(f"--password-file: cannot read {path!r}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise CommandError(
            f"--password-file: {path!r} is not UTF-8 text", code=EXIT_USAGE
        ) from None
    if not password:
        raise CommandError(f"--password-file: {path!r} is empty", code=EXIT_USAGE)
    import os
    import stat

    if os.name == "posix" and os.stat(path).st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        _say(f"warning: --password-file {path!r} can be read by other users; chmod 600 it")
    return password


def _tls_context(args: argparse.Namespace, host: str) -> ssl.SSLContext | None:
    """The STARTTLS context: the given certificate, or with --user a self-signed one."""
    import ssl

    if bool(args.tls_cert) != bool(args.tls_key):
        raise CommandError("give both --tls-cert and --tls-key, or neither", code=EXIT_USAGE)
    if args.tls_cert:
        context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        try:
            context.load_cert_chain(args.tls_cert, args.tls_key)
        except (OSError, ssl.SSLError) as exc:
            raise CommandError(
                f"cannot load --tls-cert {args.tls_cert!r} / --tls-key {args.tls_key!r}: {exc}",
                code=EXIT_USAGE,
            ) from None
        return context
    if not args.user:
        return None
    import tempfile
    from pathlib import Path

    from oauthsmtp.devserver import make_certificates

    with tempfile.TemporaryDirectory(prefix="oauthsmtp-relay-") as folder:
        certificates = make_certificates(Path(folder), hosts=(host, "localhost"), self_signed=True)
        return certificates.server_context()  # loaded: the files can go


def _check_listen(args: argparse.Namespace) -> tuple[str, int]:
    host, port = args.listen
    if not is_loopback(host):
        if not args.allow_remote:
            raise CommandError(
                f"--listen {host} is not a loopback address: other machines could send mail "
                f"as the account through it; add --allow-remote (and --user) if that is meant",
                code=EXIT_USAGE,
            )
        _say(
            f"warning: listening on {host}, which is not loopback: "
            + (
                "clients must log in (--user) after STARTTLS"
                if args.user
                else "ANYONE who can reach this port can send mail as the account; use --user"
            )
        )
    if bool(args.user) != bool(args.password_file):
        raise CommandError("give both --user and --password-file, or neither", code=EXIT_USAGE)
    return host, port


def run_relay(args: argparse.Namespace, out: TextIO) -> int:
    """Serve until SIGTERM/SIGINT; returns the exit code."""
    try:
        import aiosmtpd  # noqa: F401 - only to say which extra is missing
    except ModuleNotFoundError:
        raise CommandError(
            "oauthsmtp relay needs aiosmtpd, from the optional extra: "
            "pip install 'oauthsmtp[relay]'"
        ) from None
    from .sendmail import SendmailError, choose_account

    host, port = _check_listen(args)
    password = _read_password(args.password_file) if args.password_file else None
    try:
        account = choose_account(args.account)
    except SendmailError as exc:  # its code is a sysexits.h one; this command's are not
        raise CommandError(str(exc), code=EXIT_USAGE) from None
    settings, _, token = context.saved_login(account)
    upstream_host, upstream_port, security = context.smtp_target(
        settings, host=None, port=None, security=None
    )
    tls = _tls_context(args, host)
    from oauthsmtp import SMTPSession

    session = SMTPSession(
        upstream_host,
        port=upstream_port,
        security=security,
        username=account,
        auth_token=token,
        connections=3,
    )
    import asyncio

    try:
        asyncio.run(
            _serve(
                session,
                account=account,
                host=host,
                port=port,
                user=args.user,
                password=password,
                tls=tls,
                max_size=args.max_size,
                max_clients=args.max_clients,
                upstream=f"{upstream_host}:{upstream_port}",
                debug=bool(getattr(args, "debug", False)),
            )
        )
    finally:
        session.close()  # waits for what was queued, then QUIT
    _say("stopped")
    return EXIT_OK


async def _serve(
    session: object,
    *,
    account: str,
    host: str,
    port: int,
    user: str | None,
    password: str | None,
    tls: ssl.SSLContext | None,
    max_size: int,
    max_clients: int,
    upstream: str,
    debug: bool,
) -> None:
    import asyncio
    import logging
    import signal
    import warnings
    import weakref

    from aiosmtpd.smtp import SMTP

    from oauthsmtp import SMTPSession

    from .relayserver import Busy, PasswordCheck, RelayHandler

    assert isinstance(session, SMTPSession)  # noqa: S101 - typed loosely for start-up cost
    if not debug:
        logging.getLogger("mail.log").setLevel(logging.CRITICAL)  # aiosmtpd's chatter
    handler = RelayHandler(session.submit, account=account)
    loopback = is_loopback(host)
    clients: weakref.WeakSet[SMTP] = weakref.WeakSet()

    def protocol() -> asyncio.Protocol:
        if sum(1 for c in clients if c.transport is not None) >= max_clients:
            return Busy(max_clients)  # answers 421 and closes: the client retries later
        with warnings.catch_warnings():
            # aiosmtpd warns about AUTH without TLS; it is what --user on loopback means.
            warnings.simplefilter("ignore")
            smtp = _smtp()
        clients.add(smtp)
        return smtp

    def _smtp() -> SMTP:
        return SMTP(
            handler,
            data_size_limit=max_size,
            enable_SMTPUTF8=True,
            decode_data=False,
            hostname="oauthsmtp-relay",
            ident="oauthsmtp relay",
            tls_context=tls,
            require_starttls=False,
            timeout=300,
            auth_required=user is not None,
            # AUTH is offered in plain text only with --user on loopback; without --user,
            # never before TLS (and there is no TLS then): nothing to log in to.
            auth_require_tls=not (loopback and user),
            authenticator=PasswordCheck(user, password or "") if user else None,
        )

    loop = asyncio.get_running_loop()
    stop = asyncio.Event()
    handled: list[signal.Signals] = []
    for signum in (signal.SIGTERM, signal.SIGINT):
        try:
            loop.add_signal_handler(signum, stop.set)
            handled.append(signum)
        except (NotImplementedError, RuntimeError):  # Windows: Ctrl-C is KeyboardInterrupt
            pass
    try:
        server = await loop.create_server(protocol, host=host, port=port, reuse_address=True)
    except OSError as exc:
        raise CommandError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    bound = server.sockets[0].getsockname()
    where = f"[{bound[0]}]:{bound[1]}" if ":" in bound[0] else f"{bound[0]}:{bound[1]}"
    auth = f", AUTH as {user}" if user else ""
    starttls = ", STARTTLS" if tls else ""
    _say(f"listening on {where}{starttls}{auth}; sending as {account} through {upstream}")
    await stop.wait()
    _say("stopping: no new connections; finishing the messages in progress")
    server.close()
    deadline = loop.time() + SHUTDOWN_GRACE
    while handler.in_flight and loop.time() < deadline:
        await asyncio.sleep(0.05)
    for smtp in list(clients):
        transport = getattr(smtp, "transport", None)
        if transport is not None:
            transport.close()
    for signum in handled:
        loop.remove_signal_handler(signum)
