"""A fleet of worker processes sharing one mailbox's SendLimits through a RedisStore.

``fleet_tables()`` (the ``fleet`` section of run.py) starts a redis-server on a free
loopback port (skipped, with a note, when it is not installed), a counting SMTP sink in a
process of its own (``fleet.py sink``: PIPELINING, no TLS, no AUTH, like tests/smtp_sink.py;
it records the most connections open at once and the time of every MAIL FROM), and 4 worker
processes (``fleet.py worker CONFIG``) that each send their share with one
``SMTPSession.send_many`` call.

* **Pace**: the limits bind (2 connections, ``per_minute`` messages per ``window``): the
  achieved rate is the sink's count of MAIL FROMs over the time from the first to the last,
  as a fraction of the allowed rate; the sink's peak connections and its most MAIL FROMs in
  any window are the limits' own checks.
* **Overhead**: the limits do not bind (a rate far above what the sink takes): the
  workers' CPU (``time.process_time`` around ``send_many``) and wall time per message with
  no limits, with the in-process budget, and with the budget in Redis; the difference is
  what taking a message slot (one Lua script for Redis) and a connection slot cost.
"""

from __future__ import annotations

import json
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

from harness import BENCH, PYTHON, Helper, Table, progress, serve_commands

WORKERS = 4


# --------------------------------------------------------------------------- the sink process


class Sink:
    """Counts messages, connections open at once and MAIL FROM times (this process's clock)."""

    def __init__(self) -> None:
        self.listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.listener.bind(("127.0.0.1", 0))
        self.listener.listen(64)
        self.lock = threading.Lock()
        self.open = self.peak = self.messages = 0
        self.starts: list[float] = []

    def serve_forever(self) -> None:
        while True:
            sock, _ = self.listener.accept()
            threading.Thread(target=self.serve, args=(sock,), daemon=True).start()

    def serve(self, sock: socket.socket) -> None:
        with self.lock:
            self.open += 1
            self.peak = max(self.peak, self.open)
        ended = False
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        reader = sock.makefile("rb")
        try:
            sock.sendall(b"220 sink ESMTP\r\n")
            while line := reader.readline(4096):
                verb = line[:4].upper()
                if verb in (b"EHLO", b"HELO"):
                    sock.sendall(b"250-sink\r\n250-PIPELINING\r\n250 8BITMIME\r\n")
                elif verb == b"MAIL":
                    with self.lock:
                        self.starts.append(time.monotonic())
                    sock.sendall(b"250 OK\r\n")
                elif verb == b"DATA":
                    sock.sendall(b"354 go ahead\r\n")
                    while reader.readline(1 << 16) not in (b".\r\n", b""):
                        pass
                    with self.lock:
                        self.messages += 1
                    sock.sendall(b"250 2.0.0 queued\r\n")
                elif verb == b"QUIT":
                    with self.lock:
                        self.open -= 1
                    ended = True
                    sock.sendall(b"221 bye\r\n")
                    return
                else:
                    sock.sendall(b"250 OK\r\n")
        except OSError:
            return
        finally:
            reader.close()
            sock.close()
            if not ended:
                with self.lock:
                    self.open -= 1

    def stats(self) -> dict[str, Any]:
        with self.lock:
            answer = {
                "messages": self.messages,
                "peak": self.peak,
                "starts": list(self.starts),
            }
            self.peak, self.messages, self.starts = self.open, 0, []
        return answer


def run_sink() -> None:
    sink = Sink()
    threading.Thread(target=sink.serve_forever, daemon=True).start()
    serve_commands({"port": sink.listener.getsockname()[1]}, {"stats": sink.stats})


# --------------------------------------------------------------------------- the worker process


def run_worker(config: dict[str, Any]) -> None:
    import oauthsmtp

    limits = None if config["limits"] is None else oauthsmtp.SendLimits(**config["limits"])
    store = oauthsmtp.RedisStore(config["redis"]) if config["shared"] else None
    messages = [
        oauthsmtp.Email(
            sender="fleet@example.test",
            to=["rcpt@example.test"],
            subject=f"worker {config['worker']} message {n}",
            text="hello from the fleet\n" * 20,
        )
        for n in range(config["count"])
    ]
    session = oauthsmtp.SMTPSession(
        "127.0.0.1",
        config["port"],
        security="none",
        connections=config["connections"],
        limits=limits,
        limits_store=store,
    )
    go = Path(config["go"])
    while not go.exists():  # every worker has imported and built its messages
        time.sleep(0.005)
    wall, cpu = time.perf_counter(), time.process_time()
    with session:
        results = session.send_many(messages)
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    statuses: dict[str, int] = {}
    for result in results:
        statuses[result.status] = statuses.get(result.status, 0) + 1
    print(json.dumps({"wall": wall, "cpu": cpu, "statuses": statuses}), flush=True)


# --------------------------------------------------------------------------- the benchmark


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """A throwaway redis-server on loopback (no persistence)."""

    def __init__(self, program: str, folder: Path) -> None:
        self.port = _free_port()
        self.process = subprocess.Popen(  # noqa: S603 - a fixed command
            [program, "--port", str(self.port), "--bind", "127.0.0.1", "--save", "",
             "--appendonly", "no", "--dir", str(folder), "--loglevel", "warning"],
            stdout=subprocess.DEVNULL,
        )  # fmt: skip
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                    sock.sendall(b"PING\r\n")
                    if sock.recv(16).startswith(b"+PONG"):
                        return
            except OSError:
                time.sleep(0.02)
        self.close()
        raise RuntimeError("redis-server did not start")

    @property
    def url(self) -> str:
        return f"redis://127.0.0.1:{self.port}/0"

    def close(self) -> None:
        self.process.terminate()
        try:
            self.process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()


def run_fleet(
    sink: Helper, redis: RedisServer, folder: Path, *, count: int, connections: int,
    limits: dict[str, Any] | None, shared: bool,
) -> dict[str, Any]:  # fmt: skip
    """Run the workers at once; their reports and the sink's counts."""
    go = folder / f"go-{time.monotonic_ns()}"
    procs = []
    for worker in range(WORKERS):
        config = {
            "redis": redis.url, "port": sink.info["port"], "worker": worker, "count": count,
            "connections": connections, "limits": limits, "shared": shared, "go": str(go),
        }  # fmt: skip
        procs.append(
            subprocess.Popen(  # noqa: S603 - our own script
                [PYTHON, str(BENCH / "fleet.py"), "worker", json.dumps(config)],
                stdout=subprocess.PIPE,
                text=True,
            )
        )
    time.sleep(1.0)  # the workers import oauthsmtp and build their messages meanwhile
    go.touch()
    reports = []
    for proc in procs:
        out, _ = proc.communicate(timeout=600)
        if proc.returncode != 0:
            raise RuntimeError(f"a fleet worker failed ({proc.returncode})")
        reports.append(json.loads(out.strip().splitlines()[-1]))
    stats = sink.ask("stats")
    sent = sum(r["statuses"].get("sent", 0) for r in reports)
    if sent != WORKERS * count or stats["messages"] != sent:
        raise RuntimeError(f"the fleet sent {sent}, the sink counted {stats['messages']}")
    return {"reports": reports, **stats}


def most_in_window(starts: list[float], window: float) -> int:
    starts = sorted(starts)
    most, first = 0, 0
    for last, when in enumerate(starts):
        while when - starts[first] >= window:
            first += 1
        most = max(most, last - first + 1)
    return most


def fleet_tables(*, quick: bool) -> list[Table]:
    """The pace table and the overhead table (or one table saying why they were skipped)."""
    program = shutil.which("redis-server")
    if program is None:
        table = Table("Fleet: shared SendLimits", ["skipped"])
        table.add("redis-server is not installed (Debian: apt-get install redis-server)")
        return [table]
    with tempfile.TemporaryDirectory(prefix="oauthsmtp-fleet-") as tmp:
        folder = Path(tmp)
        redis = RedisServer(program, folder)
        try:
            with Helper("fleet.py", "sink") as sink:
                return [
                    pace_table(sink, redis, folder, quick=quick),
                    overhead_table(sink, redis, folder, quick=quick),
                ]
        finally:
            redis.close()


def pace_table(sink: Helper, redis: RedisServer, folder: Path, *, quick: bool) -> Table:
    per_window, window = 20, 0.5  # 40 messages a second for the mailbox
    count = 25 if quick else 100
    limits = {"connections": 2, "per_minute": per_window, "window": window, "max_wait": 120}
    table = Table(
        f"Fleet pace: {WORKERS} processes, one mailbox, shared SendLimits in Redis",
        ["limits", "messages", "allowed / s", "achieved / s", "of allowed", "peak connections",
         "most MAIL FROM in a window", "result"],
        intro=(
            f"{WORKERS} worker processes, each one `SMTPSession(connections=2, limits=..., "
            "limits_store=RedisStore(...))` and one `send_many` of its share, against a "
            "counting SMTP sink on loopback (its own process). The achieved rate is the "
            "sink's MAIL FROMs over the time from the first to the last."
        ),
    )  # fmt: skip
    progress(f"fleet pace: {WORKERS} x {count} messages")
    run = run_fleet(sink, redis, folder, count=count, connections=2, limits=limits, shared=True)
    starts = sorted(run["starts"])
    allowed = per_window / window
    achieved = (len(starts) - 1) / (starts[-1] - starts[0])
    worst = most_in_window(starts, window)
    ok = run["peak"] <= 2 and worst <= per_window
    table.add(
        f"2 connections, {per_window} per {window:g} s", len(starts), f"{allowed:.0f}",
        f"{achieved:.1f}", f"{achieved / allowed:.0%}", run["peak"], worst,
        "pass" if ok else "FAIL",
    )  # fmt: skip
    table.note(
        f"Message slots are {window / per_window * 1000:.0f} ms apart here. The window count "
        "is the sink's own (its clock, every half-open window of the full length): the "
        "budget caps messages whose MAIL FROM is unanswered or was answered within the "
        "window, so late arrivals cannot bunch. That costs a round trip per window: at "
        "most per_minute per (window + round trip)."
    )
    table.check(
        "fleet: never more connections or messages per window than the limits",
        f"<= 2 connections, <= {per_window} per window",
        f"{run['peak']} connections, {worst} per window",
        "pass" if ok else "FAIL",
    )
    table.check(
        "fleet: achieved rate",
        "close to the allowed rate",
        f"{achieved / allowed:.0%} of {allowed:.0f}/s",
        "pass" if achieved / allowed >= 0.9 else "FAIL",
    )
    return table


def overhead_table(sink: Helper, redis: RedisServer, folder: Path, *, quick: bool) -> Table:
    count = 100 if quick else 500
    free = {"connections": WORKERS, "per_minute": 1_000_000, "window": 1.0, "max_wait": 120}
    table = Table(
        f"Fleet overhead: {WORKERS} processes x {count} messages, limits not binding",
        ["budget", "CPU ms / message (median worker)", "wall ms / message (median worker)",
         "CPU overhead vs no limits"],
        intro=(
            "The same fleet with limits far above what the sink takes (1,000,000 messages a "
            "second, a connection slot each), so every message still takes a message slot "
            "and each session a connection slot, but nobody waits: what the budget costs "
            "per message. Each worker uses one connection."
        ),
    )  # fmt: skip
    rows = []
    for name, limits, shared in (
        ("no limits", None, False),
        ("SendLimits, in-process budget", free, False),
        ("SendLimits, shared in Redis", free, True),
    ):
        progress(f"fleet overhead: {name}")
        run = run_fleet(
            sink, redis, folder, count=count, connections=1, limits=limits, shared=shared
        )
        cpu = sorted(r["cpu"] / count for r in run["reports"])[WORKERS // 2]
        wall = sorted(r["wall"] / count for r in run["reports"])[WORKERS // 2]
        rows.append((name, cpu, wall))
    base = rows[0][1]
    for name, cpu, wall in rows:
        extra = "" if name == "no limits" else f"+{(cpu - base) * 1000:.3f} ms"
        table.add(name, f"{cpu * 1000:.3f}", f"{wall * 1000:.3f}", extra)
    table.note(
        "The Redis budget costs one round trip to Redis (a Lua script) per message, made "
        "before the message's MAIL FROM (the previous message's answer rides along), and a "
        "connection slot per connection, renewed every third of the store's lease by a "
        "background thread."
    )
    return table


if __name__ == "__main__":
    if sys.argv[1:2] == ["sink"]:
        run_sink()
    elif sys.argv[1:2] == ["worker"]:
        run_worker(json.loads(sys.argv[2]))
    else:
        for fleet_table in fleet_tables(quick="--quick" in sys.argv):
            fleet_table.show()
