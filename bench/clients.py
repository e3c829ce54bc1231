"""The clients being compared. Each sends ``count`` messages to one SMTP server over STARTTLS
with XOAUTH2, and returns a :class:`Run`: the session set-up time, the sending time after it,
and the client's CPU time per message.

* **oauthsmtp send_many**: one ``SMTPSession``, one ``send_many`` call (pipelined batch).
* **oauthsmtp send_many, connections=4**: the same with a pool of 4 connections (only when
  ``SMTPSession`` accepts ``connections=``; checked with :func:`inspect.signature`).
* **oauthsmtp send() loop**: one session, ``send()`` per message (one message per call).
* **oauthsmtp send(EmailMessage)**: the same, given the standard-library message that the
  smtplib client sends (so both serialize the same object).
* **smtplib, one connection**, smtplib used well: ``starttls`` with a verifying context,
  ``ehlo`` again, ``auth("XOAUTH2")``, ``local_hostname`` given (no DNS lookup), then
  ``send_message`` per message on the same connection.
* **smtplib, connection per message**: smtplib used naively: connect, STARTTLS, EHLO, AUTH,
  send, QUIT for every message (what many scripts and wrappers such as yagmail's
  one-shot use do).
* **aiosmtplib** and **nodemailer** (optional peers, from :data:`harness.PEERS`): one
  connection, one message after another.

Messages are built before the clock starts; sending includes serializing them. CPU is
``time.process_time()`` of this process (the servers run in another one), measured around
each ``send``/``send_message`` call, or around the whole batch for ``send_many``.
"""

from __future__ import annotations

import asyncio
import functools
import inspect
import json
import os
import shutil
import smtplib
import ssl
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from harness import BENCH, PEERS
from messages import Kind

import oauthsmtp

LOCAL_NAME = "[127.0.0.1]"  # the EHLO name every client uses (smtplib would look up the FQDN)


@dataclass(frozen=True)
class Target:
    """An SMTP server to send to (directly, or through the delay proxy), and the token."""

    label: str
    host: str
    port: int
    ca_file: str
    account: str
    token: Any  # an oauthsmtp.AuthToken, valid for the whole run

    @functools.cached_property
    def context(self) -> ssl.SSLContext:
        """One verifying TLS context trusting the development CA, shared by every client."""
        return ssl.create_default_context(cafile=self.ca_file)

    def xoauth2(self) -> str:
        """The XOAUTH2 initial response (before base64), as Gmail documents it."""
        return f"user={self.account}\x01auth=Bearer {self.token.access_token}\x01\x01"


@dataclass
class Run:
    """What one client did in one scenario.

    Attributes:
        client: the client's name.
        count: messages sent (and verified at the server).
        setup: seconds to connect, secure and authenticate before the first message, or
            None when every message opens its own connection.
        elapsed: seconds spent sending after the set-up.
        cpu: client CPU seconds per message: one value per message, or the batch's mean.
        extra: warm-up messages sent during the set-up (the server receives them too).
    """

    client: str
    count: int
    setup: float | None
    elapsed: float
    cpu: list[float] = field(default_factory=list)
    extra: int = 0

    @property
    def per_message(self) -> float:
        """Wall seconds per message after the set-up."""
        return self.elapsed / self.count


class Stopwatch:
    """Wall time (``perf_counter``) and this process's CPU time (``process_time``)."""

    wall = 0.0
    cpu = 0.0

    def __enter__(self) -> Stopwatch:
        self._wall, self._cpu = time.perf_counter(), time.process_time()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.wall = time.perf_counter() - self._wall
        self.cpu = time.process_time() - self._cpu


def require(ok: bool, what: str) -> None:
    if not ok:
        raise RuntimeError(f"benchmark client failed: {what}")


# --------------------------------------------------------------------------- oauthsmtp


def pool_supported() -> bool:
    """True when ``SMTPSession`` accepts ``connections=`` (the connection pool)."""
    return "connections" in inspect.signature(oauthsmtp.SMTPSession).parameters


def _session(target: Target, **options: Any) -> oauthsmtp.SMTPSession:
    return oauthsmtp.SMTPSession(
        target.host,
        target.port,
        security="starttls",
        username=target.account,
        auth_token=target.token,
        ssl_context=target.context,
        **options,
    )


def oauthsmtp_batch(target: Target, kind: Kind, count: int, connections: int = 1) -> Run:
    """One ``send_many`` of ``count`` messages (with a pool when ``connections`` > 1).

    The pool opens its extra connections when a batch needs them; so that the timed batch
    starts with all of them open, the set-up includes a warm-up ``send_many`` of one
    message per connection.
    """
    options = {"connections": connections} if connections > 1 else {}
    messages = [kind.email(i) for i in range(count)]
    session = _session(target, **options)
    warm_up = [kind.email(-1 - i) for i in range(connections)] if connections > 1 else []
    with Stopwatch() as setup:
        session.start()
        if warm_up:
            require(all(r.ok for r in session.send_many(warm_up)), "warm-up not sent")
    with Stopwatch() as batch:
        results = session.send_many(messages)
    session.close()
    require(all(r.ok for r in results), f"{sum(not r.ok for r in results)} messages not sent")
    name = "oauthsmtp send_many" + (f", connections={connections}" if connections > 1 else "")
    return Run(name, count, setup.wall, batch.wall, [batch.cpu / count], extra=len(warm_up))


def oauthsmtp_loop(target: Target, kind: Kind, count: int, *, stdlib: bool = False) -> Run:
    """``send()`` once per message on one session."""
    build: Callable[[int], Any] = kind.message if stdlib else kind.email
    session = _session(target)
    with Stopwatch() as setup:
        session.start()
    walls, cpus = [], []
    for i in range(count):
        message = build(i)
        with Stopwatch() as one:
            result = session.send(message)
        require(result.ok, f"message {i}: {result.code} {result.message}")
        walls.append(one.wall)
        cpus.append(one.cpu)
    session.close()
    name = "oauthsmtp send(EmailMessage) loop" if stdlib else "oauthsmtp send() loop"
    return Run(name, count, setup.wall, sum(walls), cpus)


# --------------------------------------------------------------------------- smtplib


def smtplib_connect(target: Target) -> smtplib.SMTP:
    """smtplib done right: verified STARTTLS, EHLO again (smtplib does not), XOAUTH2."""
    smtp = smtplib.SMTP(target.host, target.port, local_hostname=LOCAL_NAME, timeout=60)
    smtp.starttls(context=target.context)
    smtp.ehlo()
    initial = target.xoauth2()
    # smtplib calls the object with no argument for the initial response; on Gmail's error
    # challenge it calls it again with the challenge, and the answer must be empty.
    smtp.auth("XOAUTH2", lambda challenge=None: initial if challenge is None else "")
    return smtp


def smtplib_one_connection(target: Target, kind: Kind, count: int) -> Run:
    """smtplib used well: one connection, ``send_message`` per message."""
    with Stopwatch() as setup:
        smtp = smtplib_connect(target)
    walls, cpus = [], []
    for i in range(count):
        message = kind.message(i)
        with Stopwatch() as one:
            refused = smtp.send_message(message)
        require(not refused, f"message {i} refused: {refused}")
        walls.append(one.wall)
        cpus.append(one.cpu)
    smtp.quit()
    return Run("smtplib, one connection", count, setup.wall, sum(walls), cpus)


def smtplib_per_message(target: Target, kind: Kind, count: int) -> Run:
    """smtplib used naively: connect, STARTTLS, EHLO, AUTH, send and QUIT per message."""
    walls, cpus = [], []
    for i in range(count):
        message = kind.message(i)
        with Stopwatch() as one:
            smtp = smtplib_connect(target)
            refused = smtp.send_message(message)
            smtp.quit()
        require(not refused, f"message {i} refused: {refused}")
        walls.append(one.wall)
        cpus.append(one.cpu)
    return Run("smtplib, connection per message", count, None, sum(walls), cpus)


# --------------------------------------------------------------------------- optional peers


def aiosmtplib_module() -> Any:
    """The aiosmtplib module from the peers folder (or the environment), or None."""
    folder = str(PEERS / "python")
    if os.path.isdir(folder) and folder not in sys.path:
        sys.path.append(folder)
    try:
        import aiosmtplib
    except ImportError:
        return None
    return aiosmtplib


def aiosmtplib_missing() -> str | None:
    """Why aiosmtplib cannot run, or None."""
    if aiosmtplib_module() is None:
        return f"not installed (pip install --target {PEERS / 'python'} aiosmtplib)"
    return None


def aiosmtplib_one_connection(target: Target, kind: Kind, count: int) -> Run:
    """aiosmtplib: one connection, ``send_message`` per message (awaited in turn)."""
    return asyncio.run(_aiosmtplib_run(aiosmtplib_module(), target, kind, count))


async def _aiosmtplib_run(module: Any, target: Target, kind: Kind, count: int) -> Run:
    smtp = module.SMTP(
        hostname=target.host,
        port=target.port,
        start_tls=True,
        tls_context=target.context,
        local_hostname=LOCAL_NAME,
        timeout=60,
    )
    with Stopwatch() as setup:
        await smtp.connect()
        await smtp.auth_xoauth2(target.account, target.token.access_token)
    walls, cpus = [], []
    for i in range(count):
        message = kind.message(i)
        with Stopwatch() as one:
            refused, _ = await smtp.send_message(message)
        require(not refused, f"message {i} refused: {refused}")
        walls.append(one.wall)
        cpus.append(one.cpu)
    await smtp.quit()
    name = f"aiosmtplib {module.__version__}, one connection"
    return Run(name, count, setup.wall, sum(walls), cpus)


NODEMAILER_SCRIPT = BENCH / "peers" / "nodemailer_send.js"


def nodemailer_missing() -> str | None:
    """Why nodemailer cannot run, or None."""
    if shutil.which("node") is None:
        return "node is not installed"
    if not (PEERS / "node" / "node_modules" / "nodemailer").is_dir():
        return f"not installed (npm install --prefix {PEERS / 'node'} nodemailer)"
    return None


def nodemailer_one_connection(target: Target, kind: Kind, count: int) -> Run:
    """nodemailer in a node process: a pool of one connection, one message after another.

    It sends one extra message first (not counted) to open the connection; its time is
    reported as the set-up. The CPU is node's own (``process.cpuUsage()``).
    """
    config = {
        "host": target.host,
        "port": target.port,
        "ca_file": target.ca_file,
        "account": target.account,
        "access_token": target.token.access_token,
        "count": count,
        "large": kind.large,
        "name": LOCAL_NAME,
    }
    fd, path = tempfile.mkstemp(prefix="oauthsmtp-bench-", suffix=".json")  # mode 0600
    try:
        with os.fdopen(fd, "w") as file:
            json.dump(config, file)
        node = shutil.which("node") or "node"
        env = {**os.environ, "NODE_PATH": str(PEERS / "node" / "node_modules")}
        output = subprocess.run(  # noqa: S603 - node with our own script
            [node, str(NODEMAILER_SCRIPT), path],
            capture_output=True,
            text=True,
            env=env,
            timeout=600,
            check=True,
        ).stdout
    finally:
        os.unlink(path)
    data = json.loads(output)
    name = f"nodemailer {data['version']}, one connection"
    return Run(name, count, data["setup"], data["elapsed"], data["cpu"], extra=1)
