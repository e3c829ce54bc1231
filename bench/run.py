"""Run oauthsmtp's benchmark suite and write ``bench/RESULTS.md``.

Usage::

    .venv/bin/python bench/run.py             # everything (what `make bench` runs)
    .venv/bin/python bench/run.py --quick     # a fifth of the messages and fewer runs
    .venv/bin/python bench/run.py --only send,refresh --output /tmp/results.md

Sections (see bench/README.md for what each measures):

``send``     every client on loopback and through the 20 ms delay proxy, small and 1 MB
``widths``   equal widths: oauthsmtp with N connections vs N smtplib and N aiosmtplib ones
``scale``    1k / 10k / 100k messages from a generator (throughput, peak RSS); 10 MB memory
``refresh``  token requests for 8 threads and 4 processes on an expired cached token
``startup``  ``import oauthsmtp``, ``oauthsmtp token``, a cold "refresh + send one message"
``api``      SMTP pipelining beside the Gmail API and Graph sessions, through the delay proxy
``fleet``    4 processes sharing SendLimits through Redis: pace against the limits, overhead

The servers (oauthsmtp's development provider) and the delay proxy run in their own
processes; the clients run in this one, so its CPU time is the client's alone.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shlex
import sys
import time
from collections.abc import Iterator
from datetime import datetime, timezone
from pathlib import Path

import api
import coldstart
import fleet
import refresh
import scaling
import throughput
import widths
from clients import Target
from harness import BENCH, ROOT, Helper, Table, machine
from messages import LARGE, SMALL
from sink import TOKEN_VARIABLE

from oauthsmtp.devserver import headless_login

SECTIONS = ("send", "widths", "scale", "refresh", "startup", "api", "fleet")
ONE_WAY_DELAY_MS = 10.0
NOMINAL_RTT = 2 * ONE_WAY_DELAY_MS / 1000
MEASURED: dict[str, float] = {}  # the proxies' round trips as measured, for RESULTS.md


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description="Run oauthsmtp's benchmarks.")
    parser.add_argument(
        "--quick", action="store_true", help="a fifth of the messages, fewer start-up runs"
    )
    parser.add_argument(
        "--only",
        default=",".join(SECTIONS),
        help=f"comma-separated sections to run (default: all of {', '.join(SECTIONS)})",
    )
    parser.add_argument(
        "--output",
        type=Path,
        default=BENCH / "RESULTS.md",
        help="where to write the markdown results (default: bench/RESULTS.md)",
    )
    args = parser.parse_args(argv)
    args.sections = [s.strip() for s in args.only.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        parser.error(f"unknown section(s): {', '.join(sorted(unknown))}")
    return args


@contextlib.contextmanager
def running_servers() -> Iterator[tuple[Helper, Helper]]:
    """The server process, and the delay proxy in front of its SMTP port."""
    with Helper("servers.py") as servers:
        target = f"{servers.info['smtp_host']}:{servers.info['smtp_port']}"
        with Helper("proxy.py", "--target", target, "--delay-ms", str(ONE_WAY_DELAY_MS)) as proxy:
            yield servers, proxy


def send_tables(servers: Helper, proxy: Helper, *, quick: bool) -> list[Table]:
    """Loopback and delay-proxy tables, small messages first."""
    info = servers.info
    token = headless_login(refresh.parameters(info), account=info["account"])
    common = {"ca_file": info["ca_file"], "account": info["account"], "token": token}
    direct = Target("loopback", info["smtp_host"], info["smtp_port"], **common)
    delayed = Target("delay proxy", "127.0.0.1", proxy.info["port"], **common)
    rtt = proxy_rtt("delay proxy to the development server", delayed)
    tables = []
    for kind, count in ((SMALL, 100 if quick else 500), (LARGE, 10 if quick else 50)):
        print(f"\n== sending, {kind.name}: loopback", flush=True)
        tables.append(throughput.loopback_table(servers, direct, kind, count))
        tables[-1].show()
        print(f"\n== sending, {kind.name}: through the delay proxy", flush=True)
        tables.append(throughput.delay_table(servers, delayed, kind, count, rtt, NOMINAL_RTT))
        tables[-1].show()
    return tables


def proxy_rtt(name: str, target: Target) -> float:
    """The proxy's round trip as measured (median of 50 NOOPs), remembered for RESULTS.md."""
    if name not in MEASURED:
        MEASURED[name] = throughput.measure_rtt(target.host, target.port)
    return MEASURED[name]


@contextlib.contextmanager
def running_sink(servers: Helper) -> Iterator[tuple[Helper, Target, Target]]:
    """The fast sink (with a token from a real login), a delay proxy before it, and targets."""
    info = servers.info
    token = headless_login(refresh.parameters(info), account=info["account"])
    env = {**os.environ, TOKEN_VARIABLE: token.access_token}
    with Helper("sink.py", env=env) as sink:
        common = {"ca_file": sink.info["ca_file"], "account": info["account"], "token": token}
        direct = Target("sink", sink.info["host"], sink.info["port"], **common)
        address = f"{sink.info['host']}:{sink.info['port']}"
        with Helper("proxy.py", "--target", address, "--delay-ms", str(ONE_WAY_DELAY_MS)) as proxy:
            yield (
                sink,
                direct,
                Target("delay proxy to the sink", "127.0.0.1", proxy.info["port"], **common),
            )


def sink_tables(servers: Helper, sections: list[str], *, quick: bool) -> list[Table]:
    """Equal widths (loopback and delay proxy), scaling and the 10 MB memory row."""
    tables = []
    with running_sink(servers) as (sink, direct, delayed):
        if "widths" in sections:
            print("\n== equal widths: loopback", flush=True)
            tables.append(widths.widths_table(sink, direct, 600 if quick else 3000, rtt=None))
            tables[-1].show()
            print("\n== equal widths: through the delay proxy", flush=True)
            rtt = proxy_rtt("delay proxy to the fast sink", delayed)
            tables.append(
                widths.widths_table(
                    sink, delayed, 40 if quick else 100, rtt=rtt, nominal=NOMINAL_RTT
                )
            )
            tables[-1].show()
        if "scale" in sections:
            print("\n== scaling and memory", flush=True)
            counts = (1_000, 10_000) if quick else (1_000, 10_000, 100_000)
            tables.append(scaling.scaling_table(sink, direct, counts))
            tables[-1].show()
            tables.append(scaling.attachment_table(sink, direct))
            tables[-1].show()
    return tables


def api_tables(servers: Helper, proxy: Helper, *, quick: bool) -> list[Table]:
    """SMTP pipelining and the two HTTP APIs, each through a delay proxy."""
    info = servers.info
    token = headless_login(refresh.parameters(info), account=info["account"])
    common = {"ca_file": info["ca_file"], "account": info["account"], "token": token}
    delayed = Target("delay proxy", "127.0.0.1", proxy.info["port"], **common)
    rtt = proxy_rtt("delay proxy to the development server", delayed)
    target = f"127.0.0.1:{info['api_port']}"
    tables = []
    with Helper("proxy.py", "--target", target, "--delay-ms", str(ONE_WAY_DELAY_MS)) as api_proxy:
        for kind, count in ((SMALL, 20 if quick else 100), (LARGE, 5 if quick else 20)):
            print(f"\n== HTTP APIs beside SMTP, {kind.name}", flush=True)
            tables.append(api.api_table(servers, delayed, api_proxy.info["port"], kind, count, rtt))
            tables[-1].show()
    return tables


def other_tables(section: str, servers: Helper, *, quick: bool) -> list[Table]:
    """The refresh and start-up sections."""
    print(f"\n== {section}", flush=True)
    runs = 20 if quick else 30
    if section == "refresh":
        tables = [refresh.refresh_table(servers)]
    else:
        tables = [
            coldstart.import_table(runs),
            coldstart.token_table(servers, runs),
            coldstart.oneshot_table(servers, 10 if quick else 20),
        ]
    for table in tables:
        table.show()
    return tables


def targets_summary(tables: list[Table]) -> Table:
    """Every target of every table, with the measured value and the verdict."""
    summary = Table("Targets at a glance", ["what", "target", "measured", "result", "table"])
    for table in tables:
        for row, target, measured, result in table.checks:
            summary.add(row, target, measured, result, table.title.split(":")[0])
    return summary


def write_results(path: Path, args: argparse.Namespace, tables: list[Table], took: float) -> None:
    """RESULTS.md: the machine, the date, the command, the summary and every table."""
    command = ".venv/bin/python bench/run.py" + "".join(f" {shlex.quote(a)}" for a in sys.argv[1:])
    facts = machine()
    mode = "quick (a fifth of the messages)" if args.quick else "full"
    lines = [
        "# oauthsmtp benchmark results",
        "",
        f"Generated by `{command}` (`make bench` runs it without options) on "
        f"{datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC; the whole run took "
        f"{took / 60:.1f} minutes. Mode: {mode}. "
        "See bench/README.md for what each scenario does and docs/performance.md for what "
        "the numbers mean.",
        "",
        "| machine | |",
        "| --- | --- |",
        *(f"| {name} | {value} |" for name, value in facts.items()),
        *(
            f"| round trip, {name} | {NOMINAL_RTT * 1000:.0f} ms nominal, "
            f"{rtt * 1000:.1f} ms measured (median of 50 NOOPs) |"
            for name, rtt in MEASURED.items()
        ),
        "",
        "The machine is shared (other work ran beside the benchmark, see the load average "
        "above): figures move by several percent from run to run, more for start-up times; "
        "compare the ratios within one run.",
        "",
        targets_summary(tables).markdown(),
        "",
        "## Tables",
        "",
    ]
    lines += [table.markdown() + "\n" for table in tables]
    path.write_text("\n".join(lines).rstrip() + "\n")
    try:
        shown = path.relative_to(ROOT)
    except ValueError:
        shown = path
    print(f"\nwrote {shown}", flush=True)


def main(argv: list[str]) -> int:
    """Run the chosen sections, print the tables, write the results file."""
    args = parse_args(argv)
    started = time.perf_counter()
    tables: list[Table] = []
    with running_servers() as (servers, proxy):
        if "send" in args.sections:
            tables += send_tables(servers, proxy, quick=args.quick)
        if {"widths", "scale"} & set(args.sections):
            tables += sink_tables(servers, args.sections, quick=args.quick)
        for section in ("refresh", "startup"):
            if section in args.sections:
                tables += other_tables(section, servers, quick=args.quick)
        if "api" in args.sections:
            tables += api_tables(servers, proxy, quick=args.quick)
    if "fleet" in args.sections:
        print("\n== fleet", flush=True)
        tables += fleet.fleet_tables(quick=args.quick)
        for table in tables[-2:]:
            table.show()
    took = time.perf_counter() - started
    print(f"\nthe benchmark took {took:.0f} s", flush=True)
    write_results(args.output, args, tables, took)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
