"""One scaling or memory row, in a fresh process (run by :mod:`scaling`).

Usage (the access token comes in ``OAUTHSMTP_BENCH_TOKEN``)::

    python bench/scale_worker.py stream CLIENT COUNT HOST PORT CA_FILE ACCOUNT
    python bench/scale_worker.py attach CLIENT rss|traced HOST PORT CA_FILE ACCOUNT

``stream``: send messages 0 .. COUNT-1 of :func:`messages.wire` (pre-rendered bytes, made
one at a time by a generator, never all in memory) over one connection, after
:data:`WARM_UP` untimed messages (-20 .. -1) on the same connection, and print JSON:
the sending time, and the process's resident memory after the set-up and at its peak
(``VmRSS`` and ``VmHWM`` from ``/proc/self/status``). Clients: ``oauthsmtp-stream``
(``send_stream``, results handed to a function), ``oauthsmtp-many`` (``send_many``, which
returns the list of results), ``smtplib`` (``sendmail`` in a loop), ``aiosmtplib``
(``await sendmail`` in a loop).

``attach``: send one message with a 10 MiB attachment of random bytes, built before the
measurement, and print the transient memory of the send alone: with ``rss``, the peak
resident size during the send (``VmHWM``, reset just before it through
``/proc/self/clear_refs``) minus the resident size before it; with ``traced``, the peak of
``tracemalloc`` started just before the send. Clients: ``oauthsmtp`` (an
``oauthsmtp.Email``), ``oauthsmtp-emailmessage`` (the standard-library message),
``smtplib`` (``send_message``), ``aiosmtplib`` (``send_message``).
"""

from __future__ import annotations

import asyncio
import gc
import json
import os
import smtplib
import ssl
import sys
import time
import tracemalloc
from collections.abc import Callable, Iterator
from email.message import EmailMessage
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

from messages import RECIPIENT, SENDER, TEXT, wire_stream

import oauthsmtp
from oauthsmtp._message.prepare import OutgoingMessage

LOCAL_NAME = "[127.0.0.1]"
ATTACHMENT = 10 * 1024 * 1024
WARM_UP = 20
"""Messages -20 .. -1, sent before the clock starts (first writes, code paths); the sink counts
them too."""


class Token:
    """The access token from the environment, as oauthsmtp's sessions read it."""

    access_token = os.environ.get("OAUTHSMTP_BENCH_TOKEN", "")

    def refresh(self) -> None:
        """Nothing to refresh: the benchmark's token outlives the run."""


def status_kib(field: str) -> int:
    """A ``/proc/self/status`` field in KiB (VmRSS, VmHWM)."""
    for line in Path("/proc/self/status").read_text().splitlines():
        if line.startswith(field + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {field} in /proc/self/status")


def reset_peak() -> bool:
    """Reset VmHWM to the current resident size (Linux 4.0+); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


class Connection:
    """Where to send: host, port, a verifying TLS context, the account."""

    def __init__(self, host: str, port: str, ca_file: str, account: str) -> None:
        self.host, self.port, self.account = host, int(port), account
        self.context = ssl.create_default_context(cafile=ca_file)

    def session(self) -> oauthsmtp.SMTPSession:
        return oauthsmtp.SMTPSession(
            self.host,
            self.port,
            security="starttls",
            username=self.account,
            auth_token=Token(),
            ssl_context=self.context,
            local_hostname=LOCAL_NAME,
        )

    def smtplib(self) -> smtplib.SMTP:
        smtp = smtplib.SMTP(self.host, self.port, local_hostname=LOCAL_NAME, timeout=120)
        smtp.starttls(context=self.context)
        smtp.ehlo()
        initial = f"user={self.account}\x01auth=Bearer {Token.access_token}\x01\x01"
        smtp.auth("XOAUTH2", lambda challenge=None: initial if challenge is None else "")
        return smtp

    async def aiosmtplib(self) -> Any:
        import aiosmtplib

        smtp = aiosmtplib.SMTP(
            hostname=self.host,
            port=self.port,
            start_tls=True,
            tls_context=self.context,
            local_hostname=LOCAL_NAME,
            timeout=120,
        )
        await smtp.connect()
        await smtp.auth_xoauth2(self.account, Token.access_token)
        return smtp


# --------------------------------------------------------------------------- stream


def _outgoing(count: int, start: int = 0) -> Iterator[OutgoingMessage]:
    return (OutgoingMessage(SENDER, (RECIPIENT,), data) for data in wire_stream(count, start))


def stream(client: str, count: int, where: Connection) -> dict[str, Any]:
    """Send ``count`` generated messages; the time and the memory."""
    failed = 0

    def note(result: Any) -> None:
        nonlocal failed
        failed += not result.ok

    if client.startswith("oauthsmtp"):
        session = where.session()
        session.start()
        session.send_stream(_outgoing(WARM_UP, -WARM_UP), note)  # type: ignore[arg-type]
        setup_rss = status_kib("VmRSS")
        started = time.perf_counter()
        if client == "oauthsmtp-stream":
            sent = session.send_stream(_outgoing(count), note)  # type: ignore[arg-type]
        else:
            results = session.send_many(_outgoing(count))  # type: ignore[arg-type]
            sent = len(results)
            failed = sum(not r.ok for r in results)
        elapsed = time.perf_counter() - started
        session.close()
    elif client == "smtplib":
        smtp = where.smtplib()
        for data in wire_stream(WARM_UP, -WARM_UP):
            failed += bool(smtp.sendmail(SENDER, [RECIPIENT], data))
        setup_rss = status_kib("VmRSS")
        started = time.perf_counter()
        sent = 0
        for sent, data in enumerate(wire_stream(count), 1):  # noqa: B007 - the count is used
            failed += bool(smtp.sendmail(SENDER, [RECIPIENT], data))
        elapsed = time.perf_counter() - started
        smtp.quit()
    elif client == "aiosmtplib":
        sent, failed, elapsed, setup_rss = asyncio.run(_aiosmtplib_stream(count, where))
    else:
        raise SystemExit(f"unknown client {client!r}")
    return {
        "sent": sent,
        "failed": failed,
        "elapsed": elapsed,
        "setup_rss_kib": setup_rss,
        # VmHWM can lag the current size by a little (the kernel updates it lazily).
        "peak_rss_kib": max(status_kib("VmHWM"), status_kib("VmRSS"), setup_rss),
    }


async def _aiosmtplib_stream(count: int, where: Connection) -> tuple[int, int, float, int]:
    smtp = await where.aiosmtplib()
    failed = 0
    for data in wire_stream(WARM_UP, -WARM_UP):
        refused, _ = await smtp.sendmail(SENDER, [RECIPIENT], data)
        failed += bool(refused)
    setup_rss = status_kib("VmRSS")
    started = time.perf_counter()
    sent = 0
    for data in wire_stream(count):
        refused, _ = await smtp.sendmail(SENDER, [RECIPIENT], data)
        failed += bool(refused)
        sent += 1
    elapsed = time.perf_counter() - started
    await smtp.quit()
    return sent, failed, elapsed, setup_rss


# --------------------------------------------------------------------------- attach


def _email_message(attachment: bytes) -> EmailMessage:
    message = EmailMessage()
    message["From"] = SENDER
    message["To"] = RECIPIENT
    message["Subject"] = "Benchmark: a 10 MiB attachment"
    message.set_content(TEXT)
    message.add_attachment(
        attachment, maintype="application", subtype="octet-stream", filename="big.bin"
    )
    return message


def _measured(method: str, send: Callable[[], object]) -> dict[str, Any]:
    """Run ``send`` once; its transient memory by ``method`` (``rss`` or ``traced``)."""
    gc.collect()
    if method == "traced":
        tracemalloc.start()
        started = time.perf_counter()
        send()
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        return {"transient": peak, "elapsed": elapsed}
    before = status_kib("VmRSS")
    if not reset_peak():
        return {"transient": None, "elapsed": 0.0, "why": "/proc/self/clear_refs not writable"}
    started = time.perf_counter()
    send()
    elapsed = time.perf_counter() - started
    return {"transient": (status_kib("VmHWM") - before) * 1024, "elapsed": elapsed}


def attach(client: str, method: str, where: Connection) -> dict[str, Any]:
    """Send one message with a 10 MiB attachment; the transient memory of the send."""
    attachment = os.urandom(ATTACHMENT)
    if client.startswith("oauthsmtp"):
        if client == "oauthsmtp":
            message: Any = oauthsmtp.Email(
                sender=SENDER,
                to=[RECIPIENT],
                subject="Benchmark: a 10 MiB attachment",
                text=TEXT,
                attachments=[("big.bin", attachment, "application/octet-stream")],
            )
        else:
            message = _email_message(attachment)
        with where.session() as session:
            outcome: list[Any] = []
            answer = _measured(method, lambda: outcome.append(session.send(message)))
            ok = outcome[0].ok
    elif client == "smtplib":
        message = _email_message(attachment)
        smtp = where.smtplib()
        outcome = []
        answer = _measured(method, lambda: outcome.append(smtp.send_message(message)))
        ok = outcome[0] == {}
        smtp.quit()
    elif client == "aiosmtplib":
        message = _email_message(attachment)
        ok, answer = asyncio.run(_aiosmtplib_attach(message, method, where))
    else:
        raise SystemExit(f"unknown client {client!r}")
    return {**answer, "ok": ok, "attachment": ATTACHMENT}


async def _aiosmtplib_attach(
    message: EmailMessage, method: str, where: Connection
) -> tuple[bool, dict[str, Any]]:
    smtp = await where.aiosmtplib()
    gc.collect()
    if method == "traced":
        tracemalloc.start()
        started = time.perf_counter()
        result = await smtp.send_message(message)
        elapsed = time.perf_counter() - started
        _, peak = tracemalloc.get_traced_memory()
        tracemalloc.stop()
        answer: dict[str, Any] = {"transient": peak, "elapsed": elapsed}
    else:
        before = status_kib("VmRSS")
        reset_peak()
        started = time.perf_counter()
        result = await smtp.send_message(message)
        elapsed = time.perf_counter() - started
        answer = {"transient": (status_kib("VmHWM") - before) * 1024, "elapsed": elapsed}
    await smtp.quit()
    return result[0] == {}, answer


def main(argv: list[str]) -> int:
    """Run one row and print its JSON."""
    mode, client, what, host, port, ca_file, account = argv
    where = Connection(host, port, ca_file, account)
    if mode == "stream":
        answer = stream(client, int(what), where)
    elif mode == "attach":
        answer = attach(client, what, where)
    else:
        raise SystemExit(f"unknown mode {mode!r}")
    print(json.dumps(answer), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
