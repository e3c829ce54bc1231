"""Clients that send pre-rendered wire bytes over N connections (the equal-width rows).

Every client here is given the same messages, :func:`messages.wire` 0 .. count-1, as bytes
with the same envelope, and shares them between ``width`` connections:

* **oauthsmtp SMTPSession, pool of N**: one ``SMTPSession(connections=N)``, one
  ``send_many`` of prepared messages (the envelope and these bytes, sent as they are: what
  ``oauthsmtp sendmail``, ``oauthsmtp relay`` and the Django backend hand it).
* **oauthsmtp AsyncSMTPSession, N connections**: ``AsyncSMTPSession(connections=N)``, one
  ``await send_many``.
* **smtplib, N connections**: N threads, each with its own ``smtplib.SMTP`` (STARTTLS with a
  verifying context, EHLO again, XOAUTH2), each calling ``sendmail`` for its share (message
  i goes to connection i mod N).
* **aiosmtplib, N connections**: N ``aiosmtplib.SMTP`` clients, each awaiting ``sendmail``
  for its share, all run together with ``asyncio.gather``.

The set-up (connect, STARTTLS, AUTH on every connection, and for oauthsmtp a warm-up
message per connection, because its pool opens connections when a batch needs them) is
timed apart. Between the set-up and the batch, ``between()`` runs (the benchmark clears the
sink's counts there), so the sink sees exactly the timed messages.
"""

from __future__ import annotations

import asyncio
import smtplib
import threading
from collections.abc import Callable
from typing import Any

from clients import LOCAL_NAME, Run, Stopwatch, Target, aiosmtplib_module, require, smtplib_connect
from messages import RECIPIENT, SENDER, wire

import oauthsmtp
from oauthsmtp._message.prepare import OutgoingMessage  # a message given as wire bytes

Between = Callable[[], object]


def prepared(index: int) -> OutgoingMessage:
    """Message ``index`` as oauthsmtp's prepared message: the envelope and :func:`wire` bytes."""
    return OutgoingMessage(SENDER, (RECIPIENT,), wire(index))


def _shares(count: int, width: int) -> list[list[bytes]]:
    return [[wire(i) for i in range(k, count, width)] for k in range(width)]


def _session_options(target: Target, width: int) -> dict[str, Any]:
    """What both oauthsmtp sessions are given: STARTTLS, the run's token, ``width``."""
    return {
        "security": "starttls",
        "username": target.account,
        "auth_token": target.token,
        "ssl_context": target.context,
        "local_hostname": LOCAL_NAME,
        "connections": width,
    }


def oauthsmtp_pool(target: Target, count: int, width: int, between: Between) -> Run:
    """``SMTPSession(connections=width).send_many`` of prepared messages."""
    batch = [prepared(i) for i in range(count)]
    warm_up = [prepared(-1 - i) for i in range(width)]
    session = oauthsmtp.SMTPSession(target.host, target.port, **_session_options(target, width))
    with Stopwatch() as setup:
        session.start()
        require(all(r.ok for r in session.send_many(warm_up)), "warm-up not sent")  # type: ignore[arg-type]
    between()
    with Stopwatch() as sending:
        results = session.send_many(batch)  # type: ignore[arg-type]
    session.close()
    require(all(r.ok for r in results), f"{sum(not r.ok for r in results)} messages not sent")
    return Run("oauthsmtp SMTPSession", count, setup.wall, sending.wall, [sending.cpu / count])


def oauthsmtp_async(target: Target, count: int, width: int, between: Between) -> Run:
    """``AsyncSMTPSession(connections=width).send_many`` of prepared messages."""
    return asyncio.run(_oauthsmtp_async(target, count, width, between))


async def _oauthsmtp_async(target: Target, count: int, width: int, between: Between) -> Run:
    batch = [prepared(i) for i in range(count)]
    warm_up = [prepared(-1 - i) for i in range(width)]
    session = oauthsmtp.AsyncSMTPSession(
        target.host, target.port, **_session_options(target, width)
    )
    with Stopwatch() as setup:
        await session.start()
        sent = await session.send_many(warm_up)  # type: ignore[arg-type]
        require(all(r.ok for r in sent), "warm-up not sent")
    between()
    with Stopwatch() as sending:
        results = await session.send_many(batch)  # type: ignore[arg-type]
    await session.close()
    require(all(r.ok for r in results), f"{sum(not r.ok for r in results)} messages not sent")
    return Run("oauthsmtp AsyncSMTPSession", count, setup.wall, sending.wall, [sending.cpu / count])


def _in_threads(work: list[Callable[[], Any]]) -> list[Any]:
    """Run each function in its own thread, released together; their results, or raise."""
    results: list[Any] = [None] * len(work)
    errors: list[BaseException] = []
    start = threading.Barrier(len(work))

    def run(k: int) -> None:
        start.wait(timeout=60)
        try:
            results[k] = work[k]()
        except BaseException as exc:  # re-raised below, in the caller's thread
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(k,)) for k in range(len(work))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=600)
    if errors:
        raise errors[0]
    return results


def smtplib_threads(target: Target, count: int, width: int, between: Between) -> Run:
    """``width`` threads, each with its own ``smtplib.SMTP``, ``sendmail`` per message."""
    shares = _shares(count, width)
    with Stopwatch() as setup:
        connections: list[smtplib.SMTP] = _in_threads(
            [lambda: smtplib_connect(target) for _ in range(width)]
        )
    between()

    def send(smtp: smtplib.SMTP, share: list[bytes]) -> None:
        for data in share:
            refused = smtp.sendmail(SENDER, [RECIPIENT], data)
            require(not refused, f"refused: {refused}")

    with Stopwatch() as sending:
        _in_threads(
            [lambda k=k: send(connections[k], shares[k]) for k in range(width)]  # type: ignore[misc]
        )
    for smtp in connections:
        smtp.quit()
    return Run("smtplib", count, setup.wall, sending.wall, [sending.cpu / count])


def aiosmtplib_gather(target: Target, count: int, width: int, between: Between) -> Run:
    """``width`` aiosmtplib clients, ``sendmail`` per message, run with ``asyncio.gather``."""
    return asyncio.run(_aiosmtplib_gather(aiosmtplib_module(), target, count, width, between))


async def aiosmtplib_connect(module: Any, target: Target) -> Any:
    """An aiosmtplib client after STARTTLS (verifying) and XOAUTH2."""
    smtp = module.SMTP(
        hostname=target.host,
        port=target.port,
        start_tls=True,
        tls_context=target.context,
        local_hostname=LOCAL_NAME,
        timeout=120,
    )
    await smtp.connect()
    await smtp.auth_xoauth2(target.account, target.token.access_token)
    return smtp


async def _aiosmtplib_gather(
    module: Any, target: Target, count: int, width: int, between: Between
) -> Run:
    shares = _shares(count, width)
    with Stopwatch() as setup:
        clients = await asyncio.gather(*(aiosmtplib_connect(module, target) for _ in range(width)))
    between()

    async def send(smtp: Any, share: list[bytes]) -> None:
        for data in share:
            refused, _ = await smtp.sendmail(SENDER, [RECIPIENT], data)
            require(not refused, f"refused: {refused}")

    with Stopwatch() as sending:
        await asyncio.gather(*(send(clients[k], shares[k]) for k in range(width)))
    for smtp in clients:
        await smtp.quit()
    return Run(
        f"aiosmtplib {module.__version__}", count, setup.wall, sending.wall, [sending.cpu / count]
    )
