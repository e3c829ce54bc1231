"""Real components the tests drive (gnome-keyring, chromium, msmtp, ...): present, or else.

One rule for every test that needs a program or package from outside the project: when it is
missing, the test is skipped with the command that installs it, except on CI (``CI`` set to
anything but ``0``/``false``), where the same test fails, so that a CI run without the
component can never pass by skipping. ``.ci/run`` installs all of them.
"""

from __future__ import annotations

import os
import queue
import re
import shutil
import subprocess
import threading
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import IO, Any

import pytest

__all__ = ["Lines", "on_ci", "require", "require_program", "spawned"]


def on_ci() -> bool:
    """True when the tests run on CI (the ``CI`` environment variable, as CI services set it)."""
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def require(available: bool, what: str, install: str) -> None:
    """Skip (locally) or fail (on CI) the calling test unless ``available``.

    Args:
        available: whether the component is there.
        what: what is missing, for the message (``"msmtp"``).
        install: how to get it (``"apt-get install msmtp"``).
    """
    if available:
        return
    message = f"{what} is needed for this test: {install}"
    if on_ci():
        pytest.fail(f"{message} (CI must install it: .ci/run)", pytrace=False)
    pytest.skip(message)


def require_program(program: str, package: str) -> str:
    """The path of ``program``, or skip/fail as :func:`require` does (Debian ``package``)."""
    path = shutil.which(program)
    require(path is not None, program, f"apt-get install {package}")
    assert path is not None
    return path


@contextmanager
def spawned(
    command: Sequence[str], *, stop_within: float = 20.0, **kwargs: Any
) -> Iterator[subprocess.Popen[str]]:
    """Run ``command`` (text mode) for the block; afterwards it is gone, within a bound.

    ``subprocess.Popen``'s own ``with`` waits for the child without a timeout, so a child
    that ignores its stop signal would hang the test run. Here a child still running at the
    end of the block gets SIGKILL, and every wait is bounded by ``stop_within`` seconds.
    """
    kwargs.setdefault("text", True)
    kwargs.setdefault("encoding", "utf-8")
    proc: subprocess.Popen[str] = subprocess.Popen(command, **kwargs)
    try:
        yield proc
    finally:
        deadline = time.monotonic() + stop_within
        if proc.poll() is None:
            proc.kill()
        try:
            proc.wait(timeout=max(deadline - time.monotonic(), 0.1))
        finally:
            for pipe in (proc.stdin, proc.stdout, proc.stderr):
                if pipe is not None:
                    pipe.close()


class Lines:
    """Reads a pipe in a thread so that the test can wait for lines with a timeout."""

    def __init__(self, pipe: IO[str]) -> None:
        self.seen: list[str] = []
        self._queue: queue.Queue[str | None] = queue.Queue()
        self._thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self._thread.start()

    def _read(self, pipe: IO[str]) -> None:
        for line in pipe:
            self._queue.put(line)
        self._queue.put(None)

    def until(self, pattern: str, timeout: float = 20) -> re.Match[str]:
        end = time.monotonic() + timeout
        for line in self.seen:
            if match := re.search(pattern, line):
                return match
        while (left := end - time.monotonic()) > 0:
            try:
                item = self._queue.get(timeout=left)
            except queue.Empty:
                break
            if item is None:
                break
            self.seen.append(item)
            if match := re.search(pattern, item):
                return match
        raise AssertionError(f"no line matching {pattern!r} in:\n{''.join(self.seen)}")

    def rest(self) -> str:
        """Everything read, once the pipe has closed."""
        self._thread.join(10)
        while not self._queue.empty():
            item = self._queue.get_nowait()
            if item is not None:
                self.seen.append(item)
        return "".join(self.seen)
