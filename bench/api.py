"""HTTP APIs beside SMTP: requests and wall time per message through the delay proxy.

The same batch of messages goes out three ways, each through its own delay proxy (10 ms
each way) in front of the server process: ``SMTPSession.send_many`` (pipelined SMTP),
``GraphSession.send_many`` (JSON batching: up to 20 messages per request; and with
``batch=False``, one request per message) and ``GmailAPISession.send_many`` (one request per
message), each over one kept-alive connection to the development provider's emulation.
For each: HTTP requests per message (counted by the session and by the server), wall time
per message after the set-up, and that time in round trips of the proxy.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import clients
import refresh
from clients import Run, Stopwatch, Target
from harness import Helper, Table, ms, progress
from messages import Kind

import oauthsmtp
from oauthsmtp.devserver import headless_login

GMAIL_SCOPE = "https://mail.oauthsmtp.test/gmail.send"
GRAPH_SCOPE = "https://mail.oauthsmtp.test/Mail.Send"


def api_token(info: dict[str, Any]) -> oauthsmtp.AuthToken:
    """A token for both emulated APIs (their scopes are their audiences)."""
    params = replace(refresh.parameters(info), scope=(GMAIL_SCOPE, GRAPH_SCOPE))
    return headless_login(params, account=info["account"])


def _api_run(
    name: str, session: oauthsmtp.GmailAPISession | oauthsmtp.GraphSession, kind: Kind, count: int
) -> tuple[Run, int]:
    messages = [kind.email(i) for i in range(count)]
    with Stopwatch() as setup:
        session.start()
        warm = session.send(kind.email(-1))  # opens the connection, as SMTP's set-up does
    if not warm.ok:
        raise RuntimeError(f"{name}: warm-up not sent: {warm.message}")
    before = session.requests_sent
    with Stopwatch() as batch:
        results = session.send_many(messages)
    requests = session.requests_sent - before
    session.close()
    if not all(r.ok for r in results):
        raise RuntimeError(f"{name}: {sum(not r.ok for r in results)} messages not sent")
    return Run(name, count, setup.wall, batch.wall, [batch.cpu / count], extra=1), requests


def api_table(
    servers: Helper, smtp_target: Target, api_port: int, kind: Kind, count: int, rtt: float
) -> Table:
    """SMTP pipelining, Graph and the Gmail API, side by side through the delay proxy."""
    table = Table(
        f"HTTP APIs beside SMTP: {kind.name}, {count} messages, through the delay proxy "
        f"({ms(rtt, 1)} ms measured round trip)",
        [
            "client",
            "requests per message",
            "set-up (ms)",
            "wall per message (ms)",
            "round trips per message",
        ],
        intro="One batch per client after a warm-up message; the proxy delays every chunk "
        f"10 ms each way (nominal round trip 20 ms; {ms(rtt, 1)} ms measured, the median of "
        "NOOPs through it, is what the round trips below are divided by). SMTP counts SMTP "
        "commands pipelined together as one round trip; the APIs keep one connection alive; "
        "Graph batches up to 20 messages per request.",
    )
    token = api_token(servers.info)
    base = f"http://127.0.0.1:{api_port}"
    servers.ask("clear")
    progress("  oauthsmtp SMTPSession.send_many")
    smtp_run = clients.oauthsmtp_batch(smtp_target, kind, count)
    stats = servers.ask("stats")
    if stats["messages"] != count:
        raise RuntimeError(f"SMTP: {stats['messages']} of {count} messages arrived")
    rows: list[tuple[Run, str]] = [(smtp_run, "- (SMTP)")]
    for name, session in (
        (
            "oauthsmtp GraphSession.send_many ($batch)",
            oauthsmtp.GraphSession(auth_token=token, base_url=base + "/graph/v1.0"),
        ),
        (
            "oauthsmtp GraphSession.send_many, batch=False",
            oauthsmtp.GraphSession(auth_token=token, base_url=base + "/graph/v1.0", batch=False),
        ),
        (
            "oauthsmtp GmailAPISession.send_many",
            oauthsmtp.GmailAPISession(auth_token=token, base_url=base + "/gmail/v1"),
        ),
    ):
        servers.ask("clear")
        progress(f"  {name}")
        run, requests = _api_run(name, session, kind, count)
        stats = servers.ask("stats")
        if stats["messages"] != count + 1:
            raise RuntimeError(f"{name}: the server saw {stats}, expected {count + 1} messages")
        rows.append((run, f"{requests / count:.2f}"))
    for run, requests_cell in rows:
        table.add(
            run.client,
            requests_cell,
            ms(run.setup or 0.0),
            ms(run.per_message, 2),
            f"{run.per_message / rtt:.2f}",
        )
    table.note(
        "GraphSession batches up to 20 messages per request (JSON $batch); batch=False sends "
        "one request per message. The Gmail API has no batch for sending here: one request "
        "per message."
    )
    return table
