"""The benchmark's own machinery, in a tiny configuration, so that bench/ does not rot.

`make bench` is never part of the test suite and nothing here asserts a timing. What is
checked: the counting sink (STARTTLS, XOAUTH2, a digest of every envelope and message)
receives exactly the bytes each client was given, for every client of the equal-width rows
at widths 1 and 3; a client that changes one octet is caught; the scaling and memory rows
run in fresh processes and deliver their messages.
"""

from __future__ import annotations

import os
import smtplib
import sys
from collections.abc import Iterator
from dataclasses import replace
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parent.parent / "bench"
sys.path.insert(0, str(BENCH))

import messages  # noqa: E402 - from bench/
import scaling  # noqa: E402
import widths  # noqa: E402
import wire  # noqa: E402
from clients import Target  # noqa: E402
from harness import Helper  # noqa: E402
from sink import TOKEN_VARIABLE  # noqa: E402

ACCOUNT = "user@example.test"


class StaticToken:
    """A bearer token the sink is told to accept (the benchmark uses a real login's)."""

    access_token = "bench-smoke-token"

    def refresh(self) -> None:
        """Nothing to refresh."""


@pytest.fixture(scope="module")
def sink() -> Iterator[Helper]:
    env = {**os.environ, TOKEN_VARIABLE: StaticToken.access_token}
    with Helper("sink.py", env=env) as helper:
        yield helper


@pytest.fixture
def target(sink: Helper) -> Target:
    info = sink.info
    return Target("sink", info["host"], info["port"], info["ca_file"], ACCOUNT, StaticToken())


def test_wire_messages_carry_date_message_id_and_mime() -> None:
    data = messages.wire(41)
    head = data.split(b"\r\n\r\n", 1)[0].split(b"\r\n")
    names = [line.split(b":", 1)[0] for line in head]
    assert names == [
        b"From",
        b"To",
        b"Subject",
        b"Date",
        b"Message-ID",
        b"Content-Type",
        b"Content-Transfer-Encoding",
        b"MIME-Version",
    ]
    assert b"Message-ID: <bench-41@example.test>\r\n" in data
    assert b"\n" not in data.replace(b"\r\n", b"")  # CRLF only
    assert list(messages.wire_stream(2, start=-1)) == [messages.wire(-1), messages.wire(0)]


@pytest.mark.parametrize("width", [1, 3])
def test_every_client_delivers_the_bytes_it_was_given(
    sink: Helper, target: Target, width: int
) -> None:
    clients = widths.wire_clients()
    assert len(clients) == 4
    for client in clients:
        assert client.missing() is None, client.name  # aiosmtplib is in the test extra
        run = widths.run_checked(sink, client, target, 7, width)  # raises on any difference
        assert run.count == 7
        stats = sink.ask("stats")
        assert stats["messages"] == 7
        assert stats["bytes"] == sum(len(messages.wire(i)) for i in range(7))


def test_a_changed_octet_is_caught(sink: Helper, target: Target) -> None:
    def altered(target: Target, count: int, width: int, between: wire.Between) -> object:
        between()
        smtp = wire.smtplib_connect(target)
        for i in range(count):
            data = messages.wire(i)
            smtp.sendmail(messages.SENDER, [messages.RECIPIENT], data.replace(b"Bob", b"Bib"))
        smtp.quit()
        return None

    client = widths.WireClient("altered", altered)  # type: ignore[arg-type]
    with pytest.raises(RuntimeError, match="the bytes differ"):
        widths.run_checked(sink, client, target, 3, 1)


def test_a_wrong_token_is_refused(sink: Helper, target: Target) -> None:
    class Wrong(StaticToken):
        access_token = "not-the-token"

    wrong = replace(target, token=Wrong())
    with smtplib.SMTP(target.host, target.port, local_hostname="[127.0.0.1]", timeout=30) as smtp:
        smtp.starttls(context=target.context)
        smtp.ehlo()
        with pytest.raises(smtplib.SMTPAuthenticationError) as refused:
            smtp.auth("XOAUTH2", lambda challenge=None: wrong.xoauth2())
        assert refused.value.smtp_code == 535
        assert smtp.mail(messages.SENDER)[0] == 530  # nothing is accepted before AUTH


def test_scaling_rows_run_in_fresh_processes(sink: Helper, target: Target) -> None:
    table = scaling.scaling_table(sink, target, (10, 30))
    assert [row[1] for row in table.rows] == ["10", "30"] * len(scaling.STREAM_CLIENTS)
    for row in table.rows:
        assert float(row[4]) > 5  # a peak resident size in MiB was read
    (check,) = table.checks
    assert check[0] == "peak RSS, send_stream of 30 vs 10 messages"


def test_the_attachment_row_measures_a_delivered_send(sink: Helper, target: Target) -> None:
    sink.ask("clear")
    answer = scaling.run_worker("attach", "oauthsmtp", "traced", target)
    assert answer["ok"] is True
    assert sink.ask("stats")["messages"] == 1
    assert answer["attachment"] == 10 * 1024 * 1024
    assert answer["transient"] > answer["attachment"]  # at least the base64 text was made
