"""Mail transactions on one authenticated connection, and their results.

:func:`transact` sends queued messages and sets each one's :class:`SendResult` from the
server's replies (RFC 5321 §3.3):

* With PIPELINING (RFC 2920 §3.1) a message's MAIL, RCPT... and DATA go out in one write;
  after the ``354``, its body and the *next* message's envelope go out in one write, and
  the replies are read in order. A batch therefore costs about one round trip per
  message. After a failed envelope, ``RSET`` goes out with the next envelope.
* Without PIPELINING, one command and one reply at a time.

Invariants the caller relies on after a :class:`ConnectionLost`: a job leaves ``todo`` as
soon as its result is set; ``body_sent`` is set before the body is written, so a connection
lost before the end-of-data reply makes that job ``"unknown"`` rather than sent twice; and
an end-of-data reply of ``421`` is an explicit refusal, so that job may be sent again.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from ._errors import OAuthSMTPError, SMTPError
from ._message import OutgoingMessage
from ._smtpwire import (
    Connection,
    Reply,
    SMTPConnectionError,
    SMTPTimeoutError,
    encode_data,
    mail_from,
    rcpt_to,
)

__all__ = ["ConnectionLost", "Job", "SendResult", "failed", "transact", "unknown"]


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message.

    Attributes:
        status: ``"sent"`` (the server accepted it), ``"failed"`` (it was refused, or never
            sent), or ``"unknown"`` (the connection was lost after the body was sent and
            before the server's answer: it may or may not have been accepted; it is not
            sent again).
        code: the server's final reply code for this message, or None if none arrived.
        message: the server's reply text, or why the message was not sent.
        refused: ``{recipient: (code, text)}`` for recipients the server refused; a
            message can be ``"sent"`` to the others. Read-only.
    """

    status: Literal["sent", "failed", "unknown"]
    code: int | None = None
    message: str | None = None
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "refused", MappingProxyType(dict(self.refused)))

    @property
    def ok(self) -> bool:
        """True when the server accepted the message (``status == "sent"``)."""
        return self.status == "sent"

    def raise_for_status(self) -> SendResult:
        """Return self when ok; otherwise raise :class:`SMTPError` with the code and text."""
        if self.ok:
            return self
        raise SMTPError(
            f"message {self.status}: {self.code or ''} {self.message or ''}".strip(),
            code=self.code,
            server_message=self.message,
        )


def failed(message: str) -> SendResult:
    """A failed result with no server reply."""
    return SendResult("failed", None, message)


def unknown() -> SendResult:
    """The result of a message whose end-of-data reply never arrived."""
    return SendResult(
        "unknown",
        None,
        "the connection was lost after the message was sent and before the server "
        "answered; it may or may not have been accepted, so it was not sent again",
    )


@dataclass(eq=False)
class Job:
    """One message on its way.

    Attributes:
        outgoing: the prepared message, or None when it was refused before sending.
        result: set once the outcome is final.
        error: why the message was refused before sending.
        body_sent: its body (or part of it) may have reached the server.
        future: the caller's future in asynchronous mode.
    """

    outgoing: OutgoingMessage | None
    result: SendResult | None = None
    error: Exception | None = None
    body_sent: bool = False
    future: Future[SendResult] | None = None


class ConnectionLost(Exception):
    """The connection became unusable in a transaction; ``error`` says how."""

    def __init__(self, error: OAuthSMTPError) -> None:
        super().__init__(str(error))
        self.error = error


def transact(conn: Connection, extensions: Mapping[str, str], todo: deque[Job]) -> None:
    """Send the jobs of ``todo`` in order on ``conn``, popping each once its result is set.

    Args:
        conn: an authenticated connection.
        extensions: its EHLO keywords (after TLS).
        todo: jobs with a prepared message and no result.

    Raises:
        ConnectionLost: a timeout, a drop, a ``421`` or a malformed reply; the connection
            is closed and ``todo[0]`` is the job that was under way.
    """
    for job in list(todo):
        assert job.outgoing is not None  # noqa: S101 - the caller filters
        problem = _unsendable(job.outgoing, extensions)
        if problem:
            job.result = failed(problem)
            todo.remove(job)
    try:
        if "PIPELINING" in extensions:
            _pipelined(conn, extensions, todo)
        else:
            _lockstep(conn, extensions, todo)
    except (SMTPTimeoutError, SMTPConnectionError) as exc:
        raise ConnectionLost(exc) from exc
    except SMTPError as exc:
        conn.close()  # a malformed reply: the server's state is unknown
        raise ConnectionLost(exc) from exc


def _unsendable(out: OutgoingMessage, ext: Mapping[str, str]) -> str | None:
    if out.smtputf8 and "SMTPUTF8" not in ext:
        return "not sent: an address is not ASCII and the server does not offer SMTPUTF8"
    if out.eight_bit and "8BITMIME" not in ext and "SMTPUTF8" not in ext:
        return "not sent: the message has 8-bit data and the server does not offer 8BITMIME"
    limit = ext.get("SIZE", "")
    if limit.isdigit() and int(limit) > 0 and len(out.data) > int(limit):
        return f"not sent: {len(out.data)} bytes exceeds the server's SIZE limit of {limit}"
    return None


def _mail(out: OutgoingMessage, ext: Mapping[str, str]) -> bytes:
    """MAIL FROM with SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531)."""
    params: list[str] = []
    if "SIZE" in ext:
        params.append(f"SIZE={len(out.data)}")
    if out.eight_bit:
        params.append("BODY=8BITMIME")
    if out.smtputf8:
        params.append("SMTPUTF8")
    return mail_from(out.sender, params, utf8=out.smtputf8)


def _envelope(out: OutgoingMessage, ext: Mapping[str, str]) -> tuple[bytes, list[str]]:
    lines = [_mail(out, ext), *(rcpt_to(r, utf8=out.smtputf8) for r in out.recipients)]
    lines.append(b"DATA\r\n")
    return b"".join(lines), [line.decode("utf-8").rstrip() for line in lines]


def _pipelined(conn: Connection, ext: Mapping[str, str], todo: deque[Job]) -> None:
    if not todo:
        return
    job = todo[0]
    assert job.outgoing is not None  # noqa: S101
    conn.write(*_envelope(job.outgoing, ext))
    while True:
        out = job.outgoing
        assert out is not None  # noqa: S101
        mail = _read(conn)
        rcpts = [_read(conn) for _ in out.recipients]
        data_reply = _read(conn)
        nxt = todo[1] if len(todo) > 1 else None
        following, follow_log = (
            _envelope(nxt.outgoing, ext) if nxt is not None and nxt.outgoing else (b"", [])
        )
        if data_reply.code == 354:
            accepted = mail.code < 300 and any(r.code < 300 for r in rcpts)
            body = encode_data(out.data) if accepted else b".\r\n"  # 354 despite no recipient
            job.body_sent = True
            conn.write(body + following, [f"[message, {len(body)} bytes]", *follow_log])
            job.result = _outcome(out, mail, rcpts, data_reply, _read_end(conn, job))
            todo.popleft()
        else:
            job.result = _outcome(out, mail, rcpts, data_reply, None)
            todo.popleft()  # final before RSET: a drop now must not send it again
            conn.write(b"RSET\r\n" + following, ["RSET", *follow_log])
            reset = _read(conn)
            if reset.code != 250:
                raise SMTPError(f"RSET refused: {reset}", code=reset.code)
        if nxt is None:
            return
        job = nxt


def _lockstep(conn: Connection, ext: Mapping[str, str], todo: deque[Job]) -> None:
    while todo:
        job = todo[0]
        out = job.outgoing
        assert out is not None  # noqa: S101
        mail = _call(conn, _mail(out, ext))
        rcpts: list[Reply] = []
        if mail.code < 300:
            rcpts = [_call(conn, rcpt_to(r, utf8=out.smtputf8)) for r in out.recipients]
        data_reply = _call(conn, b"DATA\r\n") if any(r.code < 300 for r in rcpts) else None
        if data_reply is not None and data_reply.code == 354:
            job.body_sent = True
            body = encode_data(out.data)
            conn.write(body, [f"[message, {len(body)} bytes]"])
            job.result = _outcome(out, mail, rcpts, data_reply, _read_end(conn, job))
            todo.popleft()
        else:
            job.result = _outcome(out, mail, rcpts, data_reply, None)
            todo.popleft()  # final before RSET: a drop now must not send it again
            _call(conn, b"RSET\r\n")


def _call(conn: Connection, line: bytes) -> Reply:
    conn.write(line, [line.decode("utf-8").rstrip()])
    return _read(conn)


def _read_end(conn: Connection, job: Job) -> Reply:
    """Read the end-of-data reply; a 421 refused the message, so it may be sent again."""
    reply = conn.read_reply()
    if reply.code == 421:
        job.body_sent = False  # not accepted (RFC 5321 §4.1.1.4): resend on a new connection
    return _closing(conn, reply)


def _read(conn: Connection) -> Reply:
    return _closing(conn, conn.read_reply())


def _closing(conn: Connection, reply: Reply) -> Reply:
    if reply.code == 421:  # RFC 5321 §3.8: the server is closing the channel
        conn.close()
        raise SMTPConnectionError(
            f"the server is closing the connection: {reply}",
            code=reply.code,
            server_message=reply.text,
        )
    return reply


def _outcome(
    out: OutgoingMessage,
    mail: Reply,
    rcpts: Sequence[Reply],
    data: Reply | None,
    end: Reply | None,
) -> SendResult:
    """The result of one transaction from its replies (RFC 5321 §3.3, RFC 2920 §3.1)."""
    if mail.code >= 300:
        return SendResult("failed", mail.code, mail.text)
    refused = {
        r: (rep.code, rep.text)
        for r, rep in zip(out.recipients, rcpts, strict=True)
        if rep.code >= 300
    }
    if len(refused) == len(out.recipients):
        return SendResult("failed", rcpts[-1].code, rcpts[-1].text, refused)
    if end is None:
        reply = data if data is not None else rcpts[-1]
        return SendResult("failed", reply.code, reply.text, refused)
    return SendResult("sent" if end.code < 300 else "failed", end.code, end.text, refused)
