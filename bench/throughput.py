"""Sending: every client, on loopback and through the delay proxy, small and 1 MB messages.

On loopback the tables give wall time and client CPU per message. Through the delay proxy
(20 ms nominal round trip) they give **round trips per message**: the sending time after the
session is set up, divided by the proxy's round-trip time **as measured** (the median of
many SMTP NOOPs through it, :func:`measure_rtt`) and by the number of messages (the set-up
is reported on its own). These tables compare one connection with one connection; the pool
row is there for its round-trip target, and compared at equal widths in :mod:`widths`.
Every client sends to the same server in the same run; after each client the server's
count of received messages is checked and then cleared.
"""

from __future__ import annotations

import functools
import smtplib
import time
from collections.abc import Callable
from dataclasses import dataclass

import clients
from clients import Run, Target
from harness import Helper, Table, median, ms, progress, ratio, verdict
from messages import LARGE, Kind

REFERENCE = "smtplib, one connection"
ROUND_TRIP_TARGETS = {"oauthsmtp send_many": 1.2, "oauthsmtp send_many, connections=4": 0.35}
CPU_TARGETS = {False: 0.0005, True: 0.010}  # seconds per message: small, 1 MB
CPU_TARGET_CLIENT = "oauthsmtp send() loop"


@dataclass(frozen=True)
class Contender:
    """One client in a scenario.

    Attributes:
        name: as shown in the tables.
        run: ``run(target, kind, count) -> Run``.
        share: the fraction of the scenario's message count it sends through the delay
            proxy (slow clients send fewer there; their per-message figures are unaffected).
        missing: why it cannot run here, or None.
        loopback_only: shown on loopback only (a CPU comparison, not a round-trip one).
    """

    name: str
    run: Callable[[Target, Kind, int], Run]
    share: float = 1.0
    missing: str | None = None
    loopback_only: bool = False


def contenders() -> list[Contender]:
    """Every client, in table order (the reference, smtplib on one connection, first)."""
    pool = (
        None if clients.pool_supported() else "not available yet (SMTPSession has no connections=)"
    )
    return [
        Contender(REFERENCE, clients.smtplib_one_connection, share=0.4),
        Contender("smtplib, connection per message", clients.smtplib_per_message, share=0.1),
        Contender("oauthsmtp send_many", clients.oauthsmtp_batch),
        Contender(
            "oauthsmtp send_many, connections=4",
            functools.partial(clients.oauthsmtp_batch, connections=4),
            missing=pool,
        ),
        Contender("oauthsmtp send() loop", clients.oauthsmtp_loop, share=0.4),
        Contender(
            "oauthsmtp send(EmailMessage) loop",
            functools.partial(clients.oauthsmtp_loop, stdlib=True),
            loopback_only=True,
        ),
        Contender(
            "aiosmtplib, one connection",
            clients.aiosmtplib_one_connection,
            share=0.2,
            missing=clients.aiosmtplib_missing(),
        ),
        Contender(
            "nodemailer, one connection",
            clients.nodemailer_one_connection,
            share=0.2,
            missing=clients.nodemailer_missing(),
        ),
    ]


def measure_rtt(host: str, port: int, samples: int = 50) -> float:
    """The median time of an SMTP NOOP on an open connection (one round trip, as measured)."""
    with smtplib.SMTP(host, port, local_hostname=clients.LOCAL_NAME, timeout=30) as smtp:
        smtp.noop()  # the first one also pays for whatever is still starting up
        times = []
        for _ in range(samples):
            start = time.perf_counter()
            smtp.noop()
            times.append(time.perf_counter() - start)
    return median(times)


def _run_all(
    servers: Helper, target: Target, kind: Kind, count: int, *, delayed: bool
) -> dict[str, Run | str]:
    """Run every contender; the value is its Run, or why it did not run."""
    runs: dict[str, Run | str] = {}
    for contender in contenders():
        if contender.loopback_only and delayed:
            continue
        if contender.missing:
            runs[contender.name] = contender.missing
            progress(f"{contender.name}: skipped, {contender.missing}")
            continue
        n = max(5, round(count * (contender.share if delayed else 1.0)))
        servers.ask("clear")
        started = time.perf_counter()
        run = contender.run(target, kind, n)
        received = servers.ask("stats")["messages"]
        expected = n + run.extra  # warm-up messages count at the server too
        if received != expected:
            raise RuntimeError(f"{contender.name}: the server got {received}, not {expected}")
        servers.ask("clear")
        runs[contender.name] = run
        progress(f"{run.client}: {n} messages, {time.perf_counter() - started:.1f} s")
    return runs


def _cpu_cell(run: Run) -> str:
    if len(run.cpu) == 1 and run.count > 1:
        return f"{ms(run.cpu[0], 2)} (batch mean)"
    return ms(median(run.cpu), 2)


def loopback_table(servers: Helper, target: Target, kind: Kind, count: int) -> Table:
    """Wall time and client CPU per message, straight to the server on 127.0.0.1."""
    runs = _run_all(servers, target, kind, count, delayed=False)
    cpu_limit = CPU_TARGETS[kind.large]
    table = Table(
        f"Loopback, {kind.name}: {count} messages per client, STARTTLS + XOAUTH2",
        [
            "client",
            "messages",
            "set-up (ms)",
            "ms / message",
            "messages / s",
            "time vs smtplib (1 conn)",
            "client CPU ms / message",
            "CPU target",
            "result",
        ],
        intro=(
            "Client CPU is `time.process_time()` of the client process around each send "
            "(median), or the batch's CPU divided by its messages for `send_many`; the "
            f"target applies to `{CPU_TARGET_CLIENT}` (the issue's measurement)."
        ),
    )
    reference = runs.get(REFERENCE)
    for name, run in runs.items():
        if isinstance(run, str):
            table.add(name, "-", "-", "-", "-", "-", "-", "", run)
            continue
        cpu_target, cpu_result = "", ""
        if name == CPU_TARGET_CLIENT:
            cpu_target = f"<= {ms(cpu_limit, 1)} ms"
            cpu_result = verdict(median(run.cpu), cpu_limit)
            table.check(
                f"client CPU per message, {kind.name}",
                cpu_target,
                f"{ms(median(run.cpu), 2)} ms",
                cpu_result,
            )
        table.add(
            run.client,
            run.count,
            "per message" if run.setup is None else ms(run.setup),
            ms(run.per_message, 2),
            f"{1 / run.per_message:.0f}",
            "(4 connections: see equal widths)"
            if "connections=" in name
            else ratio(run.per_message, reference.per_message)
            if isinstance(reference, Run)
            else "-",
            _cpu_cell(run),
            cpu_target,
            cpu_result,
        )
    return table


def delay_table(
    servers: Helper, target: Target, kind: Kind, count: int, rtt: float, nominal: float
) -> Table:
    """Round trips per message through the delay proxy (``rtt``: the measured round trip)."""
    runs = _run_all(servers, target, kind, count, delayed=True)
    table = Table(
        f"Through the delay proxy ({ms(nominal, 0)} ms nominal, {ms(rtt, 1)} ms measured "
        f"round trip), {kind.name}: up to {count} messages per client",
        [
            "client",
            "messages",
            "set-up (ms)",
            "set-up (round trips)",
            "ms / message",
            "round trips / message",
            "time vs smtplib (1 conn)",
            "target",
            "result",
        ],
        intro=(
            f"Round trips per message = sending time after set-up / {ms(rtt, 1)} ms / "
            f"messages: {ms(rtt, 1)} ms is the proxy's round trip as measured (the median of "
            f"50 SMTP NOOPs on an open connection through it; nominal {ms(nominal, 0)} ms, "
            "10 ms each way). Slower clients send fewer messages here (see the messages "
            "column); their per-message figures do not depend on the count. Every row is one "
            "connection except the pool's, which is compared with 4 smtplib and 4 aiosmtplib "
            "connections in the equal-width tables."
        ),
    )
    reference = runs.get(REFERENCE)
    for name, run in runs.items():
        limit = ROUND_TRIP_TARGETS.get(name) if not kind.large else None
        target_cell = f"<= {limit}" if limit is not None else ""
        if isinstance(run, str):
            table.add(name, "-", "-", "-", "-", "-", "-", target_cell, run)
            if limit is not None:
                table.check(f"round trips / message, {name}", target_cell, "-", run)
            continue
        trips = run.per_message / rtt
        if limit is not None:
            table.check(
                f"round trips / message, {name}", target_cell, f"{trips:.2f}", verdict(trips, limit)
            )
        versus = (
            ratio(run.per_message, reference.per_message) if isinstance(reference, Run) else "-"
        )
        table.add(
            run.client,
            run.count,
            "per message" if run.setup is None else ms(run.setup),
            "-" if run.setup is None else f"{run.setup / rtt:.1f}",
            ms(run.per_message),
            f"{trips:.2f}",
            "(4 connections: see equal widths)" if "connections=" in name else versus,
            target_cell,
            verdict(trips, limit) if limit is not None else "",
        )
    if kind is LARGE:
        table.note(
            "With a 1 MB message the round-trip count also holds the time to move 1.4 MB "
            "through the proxy and for the server to take it in; no target applies."
        )
    return table
