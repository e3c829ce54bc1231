"""A real redis-server for the tests: loopback, a free port, a temp folder, no persistence.

Use the ``redis_server`` fixture (``pytest_plugins = ["redis_server"]`` in a test
module). Locally without the Debian package the tests skip with the install
hint; under CI=true they fail (tests/components.py).
"""

from __future__ import annotations

import pathlib
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis
from components import require_program


def _free_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process on 127.0.0.1; :meth:`stop` and :meth:`start` for outages."""

    def __init__(
        self,
        program: str,
        folder: pathlib.Path,
        *,
        password: str | None = None,
        persist: bool = False,
    ) -> None:
        """``persist``: an append-only file (fsync always) so that a restart keeps the keys."""
        self.program = program
        self.folder = folder
        self.password = password
        self.persist = persist
        self.port = _free_port()
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def client(self) -> redis.Redis:
        """A plain client, for looking at what the store wrote."""
        return redis.Redis.from_url(self.url, socket_timeout=5, socket_connect_timeout=5)

    def start(self, within: float = 20.0) -> None:
        command = [
            self.program,
            "--port", str(self.port),
            "--bind", "127.0.0.1",
            "--save", "",
            "--appendonly", "yes" if self.persist else "no",
            "--appendfsync", "always",
            "--dir", str(self.folder),
            "--daemonize", "no",
            "--loglevel", "warning",
        ]  # fmt: skip
        if self.password:
            command += ["--requirepass", self.password]
        log = open(self.folder / "redis.log", "ab")  # noqa: SIM115 (closed in stop)
        self.proc = subprocess.Popen(command, stdout=log, stderr=subprocess.STDOUT, cwd=self.folder)
        self._log = log
        client = self.client()
        deadline = time.monotonic() + within
        while True:
            try:
                if client.ping():
                    break
            except redis.RedisError:
                pass
            if self.proc.poll() is not None or time.monotonic() > deadline:
                self.stop()
                log_text = (self.folder / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server did not start on {self.port}: {log_text}")
            time.sleep(0.02)
        client.close()

    def stop(self, within: float = 10.0) -> None:
        proc, self.proc = self.proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.terminate()
            try:
                proc.wait(timeout=within)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=within)
        self._log.close()


@pytest.fixture
def make_redis_server(
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[Callable[..., RedisServer]]:
    """Makes started redis-servers (``password=``, ``persist=``), all stopped at the test's end."""
    program = require_program("redis-server", "redis-server")
    made: list[RedisServer] = []

    def make(**options: Any) -> RedisServer:
        server = RedisServer(program, tmp_path_factory.mktemp("redis"), **options)
        made.append(server)
        server.start()
        return server

    try:
        yield make
    finally:
        for server in made:
            server.stop()


@pytest.fixture
def redis_server(make_redis_server: Callable[..., RedisServer]) -> RedisServer:
    """A fresh redis-server for one test, stopped at its end."""
    return make_redis_server()
