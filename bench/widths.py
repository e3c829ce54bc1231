"""Equal widths: oauthsmtp with N connections against smtplib and aiosmtplib with N each.

For N in :data:`WIDTHS`, every client of :mod:`wire` sends the same ``count`` pre-rendered
messages over N connections to the fast sink (:mod:`sink`), straight on loopback and
through the delay proxy. After each client the sink's count and digest are compared with
:func:`expected_digest` of the messages given: a client that changed one octet, lost or
duplicated a message fails the run.

Through the proxy, round trips per message = wall time per message / the proxy's round
trip **as measured** (the median of many NOOPs through it), not the nominal delay.
"""

from __future__ import annotations

import hashlib
import time
from collections.abc import Callable
from dataclasses import dataclass

import wire
from clients import Run, Target, aiosmtplib_missing
from harness import Helper, Table, ms, progress, ratio
from messages import RECIPIENT, SENDER
from messages import wire as wire_bytes

WIDTHS = (1, 4)
MODULUS = 1 << 256


@dataclass(frozen=True)
class WireClient:
    """One client of the equal-width rows."""

    name: str
    run: Callable[[Target, int, int, wire.Between], Run]
    missing: Callable[[], str | None] = lambda: None


def wire_clients() -> list[WireClient]:
    """In table order; smtplib (the reference at each width) first."""
    return [
        WireClient("smtplib, {n} connection(s), a thread each", wire.smtplib_threads),
        WireClient(
            "aiosmtplib, {n} connection(s), asyncio.gather",
            wire.aiosmtplib_gather,
            aiosmtplib_missing,
        ),
        WireClient("oauthsmtp SMTPSession(connections={n}).send_many", wire.oauthsmtp_pool),
        WireClient("oauthsmtp AsyncSMTPSession(connections={n}).send_many", wire.oauthsmtp_async),
    ]


def message_digest(data: bytes) -> int:
    """What the sink adds to its digest for one message of :mod:`messages` wire bytes."""
    envelope = f"<{SENDER}>\0<{RECIPIENT}>\0\0".encode()
    return int.from_bytes(hashlib.sha256(envelope + data).digest())


def expected_digest(count: int, start: int = 0) -> str:
    """The sink's digest after it received messages ``start`` .. count-1, in any order."""
    total = sum(message_digest(wire_bytes(i)) for i in range(start, count)) % MODULUS
    return f"{total:064x}"


def run_checked(sink: Helper, client: WireClient, target: Target, count: int, width: int) -> Run:
    """Run one client and check the sink got exactly the messages it was given."""
    run = client.run(target, count, width, lambda: sink.ask("clear"))
    stats = sink.ask("stats")
    if stats["messages"] != count or stats["digest"] != expected_digest(count):
        raise RuntimeError(
            f"{client.name} (N={width}): the sink got {stats['messages']} of {count} messages"
            f" with digest {stats['digest'][:12]}, not {expected_digest(count)[:12]}: the"
            " bytes differ from those the client was given"
        )
    return run


def widths_table(
    sink: Helper, target: Target, count: int, *, rtt: float | None, nominal: float | None = None
) -> Table:
    """One table: every client at every width; with ``rtt``, through the delay proxy."""
    delayed = rtt is not None
    where = "through the delay proxy" if delayed else "loopback"
    columns = ["N", "client", "messages", "set-up (ms)", "ms / message", "messages / s"]
    if delayed:
        columns += ["round trips / message", "round trips / message / connection"]
    columns += ["time vs smtplib (same N)", "sink: count and bytes"]
    intro = (
        f"Each client sends the same {count} pre-rendered 1 KB messages (Date, Message-ID, "
        "MIME; identical bytes and envelope for every client) over N connections to the fast "
        "sink, STARTTLS + XOAUTH2 on every connection. Set-up (connect, STARTTLS, AUTH on all "
        "N connections; oauthsmtp: plus one warm-up message per connection) is not in the "
        "per-message time. The last column checks the sink's count and its SHA-256 digest of "
        "envelope + data against the messages given."
    )
    if delayed:
        intro += (
            f" Round trips per message = wall time per message / {ms(rtt, 1)} ms, the proxy's "
            f"round trip as measured (median of NOOPs through it; nominal {ms(nominal or 0, 0)}"
            " ms)."
        )
    table = Table(f"Equal widths, {where}: {count} messages, N connections each", columns, intro)
    for width in WIDTHS:
        reference: Run | None = None
        for client in wire_clients():
            missing = client.missing()
            name = client.name.format(n=width)
            if missing:
                table.add(
                    width, name, "-", "-", "-", "-", *(["-", "-"] if delayed else []), "-", missing
                )
                continue
            started = time.perf_counter()
            run = run_checked(sink, client, target, count, width)
            progress(f"{where}, N={width}, {name}: {time.perf_counter() - started:.1f} s")
            if reference is None:
                reference = run
            cells: list[object] = [
                width,
                name,
                run.count,
                ms(run.setup or 0.0),
                ms(run.per_message, 3 if not delayed else 2),
                f"{1 / run.per_message:.0f}",
            ]
            if delayed and rtt:
                trips = run.per_message / rtt
                cells += [f"{trips:.2f}", f"{trips * width:.2f}"]
            cells += [ratio(run.per_message, reference.per_message), "identical"]
            table.add(*cells)
    table.check(
        f"byte-identical messages at the sink, every client ({where})",
        "same digest",
        "same digest",
        "pass",
    )
    return table
