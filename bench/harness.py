"""Shared pieces of the benchmark: helper processes, statistics, tables, machine facts.

Nothing here knows about SMTP or OAuth2; the scenario modules do.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import statistics
import subprocess
import sys
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
PYTHON = sys.executable
BIN = Path(PYTHON).parent  # the virtual environment's bin folder (the `oauthsmtp` script)

PEERS = Path(
    os.environ.get("OAUTHSMTP_BENCH_PEERS", Path.home() / ".cache" / "oauthsmtp-bench")
).expanduser()
"""Where optional peers live, outside the repository: ``python/`` (aiosmtplib installed with
``pip install --target``) and ``node/`` (nodemailer installed with ``npm install --prefix``)."""


# --------------------------------------------------------------------------- helper processes


class Helper:
    """A Python helper process: it prints one JSON line when ready, then answers commands.

    Each command is one line on its stdin; each answer one JSON line on its stdout. Closing
    stdin tells it to stop. Its stderr is the benchmark's stderr, so failures are visible.
    """

    def __init__(self, script: str, *args: str, env: dict[str, str] | None = None) -> None:
        self.process = subprocess.Popen(  # noqa: S603 - our own script, fixed arguments
            [PYTHON, str(BENCH / script), *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
            env=env,
        )
        self.info: dict[str, Any] = self._read()

    def _read(self) -> dict[str, Any]:
        assert self.process.stdout is not None  # noqa: S101 - set by Popen(stdout=PIPE)
        line = self.process.stdout.readline()
        if not line:
            raise RuntimeError(f"helper {self.process.args[1]} exited without answering")
        answer: dict[str, Any] = json.loads(line)
        return answer

    def ask(self, command: str) -> dict[str, Any]:
        """Send one command and return the helper's answer."""
        assert self.process.stdin is not None  # noqa: S101 - set by Popen(stdin=PIPE)
        self.process.stdin.write(command + "\n")
        self.process.stdin.flush()
        return self._read()

    def close(self) -> None:
        """Ask the helper to stop (close its stdin) and wait for it."""
        if self.process.stdin is not None and not self.process.stdin.closed:
            self.process.stdin.close()
        try:
            self.process.wait(timeout=15)
        except subprocess.TimeoutExpired:
            self.process.kill()
            self.process.wait()
        if self.process.stdout is not None:
            self.process.stdout.close()

    def __enter__(self) -> Helper:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()


def serve_commands(info: dict[str, Any], handlers: dict[str, Any]) -> None:
    """The helper side of :class:`Helper`: announce ``info``, then answer until stdin closes.

    ``handlers`` maps a command to a function of no arguments returning a JSON-able dict.
    """
    print(json.dumps(info), flush=True)
    for line in sys.stdin:
        command = line.strip()
        handler = handlers.get(command)
        answer = handler() if handler else {"error": f"unknown command {command!r}"}
        print(json.dumps(answer), flush=True)


def child_env(pycache: Path, **extra: str) -> dict[str, str]:
    """The environment for a timed child process: bytecode caches on, kept in ``pycache``.

    An installed package has compiled bytecode; a source checkout run with
    ``PYTHONDONTWRITEBYTECODE=1`` (as on some CI machines) compiles every module of the
    checkout at every start, which would be measured as start-up time. Timed children
    therefore read and write bytecode under ``pycache`` (``PYTHONPYCACHEPREFIX``: nothing is
    written into the source tree) and each command runs once, untimed, first.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONDONTWRITEBYTECODE"}
    env["PYTHONPYCACHEPREFIX"] = str(pycache)
    env.update(extra)
    return env


@contextlib.contextmanager
def patched_environ(**values: str) -> Iterator[None]:
    """Set environment variables for the duration of a ``with`` block."""
    saved = {name: os.environ.get(name) for name in values}
    os.environ.update(values)
    try:
        yield
    finally:
        for name, value in saved.items():
            if value is None:
                os.environ.pop(name, None)
            else:
                os.environ[name] = value


# --------------------------------------------------------------------------- statistics


def median(values: Sequence[float]) -> float:
    """The median (0.0 for no values)."""
    return statistics.median(values) if values else 0.0


def ms(seconds: float, digits: int = 1) -> str:
    """Seconds as milliseconds, e.g. ``12.3``."""
    return f"{seconds * 1000:.{digits}f}"


def ratio(value: float, reference: float) -> str:
    """``value / reference`` as ``1.23x`` (``-`` when the reference is 0)."""
    return f"{value / reference:.2f}x" if reference else "-"


def verdict(value: float, limit: float) -> str:
    """``pass`` when ``value <= limit``, else ``FAIL``."""
    return "pass" if value <= limit else "FAIL"


# --------------------------------------------------------------------------- tables


@dataclass
class Table:
    """A markdown table with a title, an introduction and notes."""

    title: str
    columns: Sequence[str]
    intro: str = ""
    rows: list[list[str]] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    checks: list[tuple[str, str, str, str]] = field(default_factory=list)

    @staticmethod
    def _line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(cells) + " |"

    def add(self, *cells: object) -> None:
        """Add a row (missing trailing cells are left empty)."""
        row = [str(cell) for cell in cells]
        row += [""] * (len(self.columns) - len(row))
        self.rows.append(row)

    def check(self, row: str, target: str, measured: str, result: str) -> None:
        """Record a target for the summary: the row, the target, the value and the verdict."""
        self.checks.append((row, target, measured, result))

    def note(self, text: str) -> None:
        """Add a paragraph shown under the table."""
        self.notes.append(text)

    def markdown(self) -> str:
        """The whole table as markdown, with its title, intro and notes."""
        parts = [f"### {self.title}", ""]
        if self.intro:
            parts += [self.intro, ""]
        parts += [self._line(self.columns), self._line(["---"] * len(self.columns))]
        parts += [self._line(row) for row in self.rows]
        for text in self.notes:
            parts += ["", text]
        return "\n".join(parts)

    def show(self) -> None:
        """Print the table (the console shows the same markdown as RESULTS.md)."""
        print("\n" + self.markdown() + "\n", flush=True)


def progress(text: str) -> None:
    """One line of progress on the console (not in RESULTS.md)."""
    print(f"  .. {text}", flush=True)


# --------------------------------------------------------------------------- machine facts


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown"


def _os_name() -> str:
    try:
        for line in Path("/etc/os-release").read_text().splitlines():
            if line.startswith("PRETTY_NAME="):
                return f"{line.split('=', 1)[1].strip(chr(34))}, kernel {platform.release()}"
    except OSError:
        pass
    return platform.platform()


def _version(distribution: str) -> str:
    from importlib import metadata

    try:
        return metadata.version(distribution)
    except metadata.PackageNotFoundError:
        return "not installed"


def _node_version() -> str:
    import shutil

    node = shutil.which("node")
    if node is None:
        return "not installed"
    done = subprocess.run([node, "--version"], capture_output=True, text=True, check=False)  # noqa: S603
    return done.stdout.strip() or "unknown"


def _git(*args: str) -> str:
    """The output of a read-only git command in the repository."""
    command = ["git", "-C", str(ROOT), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=True)  # noqa: S603 - fixed, read-only git
    return done.stdout.strip()


def _source_revision() -> str:
    """The git commit of the library measured, and whether its files had local changes."""
    try:
        head = _git("rev-parse", "--short", "HEAD")
        dirty = _git("status", "--porcelain", "--", "oauthsmtp")
    except (OSError, subprocess.CalledProcessError):
        return "unknown (not a git checkout)"
    return f"{head} + uncommitted changes in oauthsmtp/" if dirty else head


def _load() -> str:
    try:
        return ", ".join(f"{value:.2f}" for value in os.getloadavg())
    except OSError:
        return "unknown"


def _aiosmtplib_version() -> str:
    version = _version("aiosmtplib")
    if version == "not installed" and (PEERS / "python" / "aiosmtplib").is_dir():
        return f"in {PEERS / 'python'}"
    return version


LOAD_AT_START = _load()


def machine() -> dict[str, str]:
    """What the numbers were measured on."""
    return {
        "CPU": _cpu_model(),
        "cores": str(os.cpu_count()),
        "OS": _os_name(),
        "load average (1, 5, 15 min) at the start": LOAD_AT_START,
        "Python": f"{platform.python_version()} ({platform.python_implementation()})",
        "oauthsmtp": f"{_version('oauthsmtp')}, git commit {_source_revision()}",
        "authlib": _version("authlib"),
        "keyring": _version("keyring"),
        "aiosmtpd (server)": _version("aiosmtpd"),
        "aiosmtplib (peer)": _aiosmtplib_version(),
        "node (for nodemailer)": _node_version(),
    }
