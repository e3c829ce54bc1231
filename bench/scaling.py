"""Scaling rows (1k / 10k / 100k messages) and the 10 MB attachment memory row.

Each row runs in a fresh process (:mod:`scale_worker`), so its peak resident size is its
own, against the fast sink (:mod:`sink`, which counts, hashes and drops every message), on
loopback, STARTTLS + XOAUTH2, one connection per client.

* **Scaling**: messages 0 .. count-1 of :func:`messages.wire`, made one at a time by a
  generator, the same bytes for every client; throughput and memory (resident size after
  the set-up, peak resident size of the process, and the growth between them). The sink's
  count and digest are checked after every row.
* **10 MB attachment**: one message with a 10 MiB attachment, built before the
  measurement; the transient memory of the send alone, as the growth of the peak resident
  size over the resident size before the send, and as the ``tracemalloc`` peak of the
  send, each in a fresh process, each as a ratio to the attachment's size.
"""

from __future__ import annotations

import functools
import json
import os
import subprocess
import time
from typing import Any

import widths
from clients import Target, aiosmtplib_missing
from harness import BENCH, PYTHON, Helper, Table, progress, verdict
from scale_worker import WARM_UP

STREAM_CLIENTS = {
    "oauthsmtp-stream": "oauthsmtp send_stream (generator in, results to a function)",
    "oauthsmtp-many": "oauthsmtp send_many (generator in, list of results out)",
    "smtplib": "smtplib, sendmail in a loop",
    "aiosmtplib": "aiosmtplib, await sendmail in a loop",
}
ATTACH_CLIENTS = {
    "oauthsmtp": "oauthsmtp send(Email)",
    "oauthsmtp-emailmessage": "oauthsmtp send(EmailMessage)",
    "smtplib": "smtplib send_message(EmailMessage)",
    "aiosmtplib": "aiosmtplib send_message(EmailMessage)",
}
STREAM_MEMORY_TARGET = 1.2  # issue 17: 100k messages within 1.2x of a 1k batch
ATTACH_TARGET = 2.0  # issue 17: at most 2x the attachment's size
MIB = 1024 * 1024


def run_worker(mode: str, client: str, what: str, target: Target) -> dict[str, Any]:
    env = {**os.environ, "OAUTHSMTP_BENCH_TOKEN": target.token.access_token}
    done = subprocess.run(  # noqa: S603 - our own script, fixed arguments
        [
            PYTHON,
            str(BENCH / "scale_worker.py"),
            mode,
            client,
            what,
            target.host,
            str(target.port),
            target.ca_file,
            target.account,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=900,
        check=False,
    )
    if done.returncode != 0:
        raise RuntimeError(f"scale_worker {mode} {client} {what} failed:\n{done.stderr[-3000:]}")
    answer: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return answer


@functools.cache
def _expected(count: int) -> str:
    """The sink's digest for a worker's row: the warm-up messages, then 0 .. count-1."""
    return widths.expected_digest(count, start=-WARM_UP)


def scaling_table(sink: Helper, target: Target, counts: tuple[int, ...]) -> Table:
    """Throughput and peak memory for each client at each count, each in a fresh process."""
    table = Table(
        "Scaling: " + " / ".join(f"{c:,}" for c in counts) + " messages from a generator, "
        "one connection, fast sink",
        [
            "client",
            "messages",
            "messages / s",
            "RSS after set-up (MiB)",
            "peak RSS (MiB)",
            "growth while sending (MiB)",
            f"peak vs {counts[0]:,}",
            "target",
            "result",
        ],
        intro=(
            "Every client is given the same pre-rendered 1 KB messages (Date, Message-ID, "
            "MIME), made one at a time by a generator, over one connection (STARTTLS + "
            "XOAUTH2) to the fast sink, which keeps nothing; 20 untimed messages go first "
            "on the same connection. Each row is a fresh process: "
            "peak RSS is its VmHWM (imports and TLS included), growth is the peak minus the "
            "resident size after the set-up. The sink's count and digest are checked after "
            "every row. A 1,000-message row lasts a fraction of a second, so its throughput "
            "is the noisiest figure here; it is there as the memory baseline."
        ),
    )
    missing = aiosmtplib_missing()
    for client, label in STREAM_CLIENTS.items():
        if client == "aiosmtplib" and missing:
            table.add(label, "-", "-", "-", "-", "-", "-", "", missing)
            continue
        first_peak = 0.0
        for count in counts:
            sink.ask("clear")
            started = time.perf_counter()
            row = run_worker("stream", client, str(count), target)
            stats = sink.ask("stats")
            arrived = stats["messages"] - WARM_UP
            if row["failed"] or arrived != count or stats["digest"] != _expected(count):
                same = "matches" if stats["digest"] == _expected(count) else "differs"
                raise RuntimeError(
                    f"{label}, {count} messages: {row['failed']} failed, the sink got "
                    f"{arrived} (digest {same})"
                )
            progress(f"{label}, {count:,}: {time.perf_counter() - started:.1f} s")
            peak = row["peak_rss_kib"] / 1024
            first_peak = first_peak or peak
            growth = (row["peak_rss_kib"] - row["setup_rss_kib"]) / 1024
            target_cell = result = ""
            if client == "oauthsmtp-stream" and count == counts[-1] and len(counts) > 1:
                target_cell = f"<= {STREAM_MEMORY_TARGET}x the {counts[0]:,} row"
                result = verdict(peak / first_peak, STREAM_MEMORY_TARGET)
                table.check(
                    f"peak RSS, send_stream of {count:,} vs {counts[0]:,} messages",
                    f"<= {STREAM_MEMORY_TARGET}x",
                    f"{peak / first_peak:.2f}x ({peak:.1f} vs {first_peak:.1f} MiB)",
                    result,
                )
            table.add(
                label,
                f"{count:,}",
                f"{count / row['elapsed']:.0f}",
                f"{row['setup_rss_kib'] / 1024:.1f}",
                f"{peak:.1f}",
                f"{growth:.1f}",
                f"{peak / first_peak:.2f}x",
                target_cell,
                result,
            )
    return table


def attachment_table(sink: Helper, target: Target) -> Table:
    """Transient memory of sending one 10 MiB attachment, as a ratio to its size."""
    table = Table(
        "Memory: one message with a 10 MiB attachment",
        [
            "client",
            "peak RSS growth (MiB)",
            "x attachment",
            "tracemalloc peak (MiB)",
            "x attachment",
            "send time (ms)",
            "target",
            "result",
        ],
        intro=(
            "One message with 10 MiB of random bytes, built before the measurement (for the "
            "standard-library EmailMessage that includes its base64 text: add_attachment "
            "encodes at once; an oauthsmtp.Email holds the raw bytes and encodes when sent), "
            "sent over an open connection to the fast sink. Each figure is a fresh process: "
            "peak RSS growth = VmHWM during the send (reset through /proc/self/clear_refs "
            "just before it) minus VmRSS before it; tracemalloc peak = the peak of Python "
            "allocations traced from just before the send. The target applies to the larger "
            "of the two."
        ),
    )
    missing = aiosmtplib_missing()
    for client, label in ATTACH_CLIENTS.items():
        if client == "aiosmtplib" and missing:
            table.add(label, "-", "-", "-", "-", "-", "", missing)
            continue
        rows = {}
        for method in ("rss", "traced"):
            sink.ask("clear")
            rows[method] = run_worker("attach", client, method, target)
            if not rows[method]["ok"] or sink.ask("stats")["messages"] != 1:
                raise RuntimeError(f"{label}: the 10 MiB message was not delivered")
        size = rows["rss"]["attachment"]
        rss = rows["rss"]["transient"]
        traced = rows["traced"]["transient"]
        worst = max(rss or 0, traced) / size
        target_cell = result = ""
        if client == "oauthsmtp":
            target_cell = f"<= {ATTACH_TARGET}x"
            result = verdict(worst, ATTACH_TARGET)
            table.check(
                "transient memory, 10 MiB attachment, oauthsmtp send(Email)",
                target_cell,
                f"{worst:.2f}x",
                result,
            )
        progress(f"{label}: {worst:.2f}x")
        table.add(
            label,
            "-" if rss is None else f"{rss / MIB:.1f}",
            "-" if rss is None else f"{rss / size:.2f}x",
            f"{traced / MIB:.1f}",
            f"{traced / size:.2f}x",
            f"{rows['rss']['elapsed'] * 1000:.0f}",
            target_cell,
            result,
        )
    return table
