"""Mail transactions on one authenticated connection, and their results.

:func:`transact` takes messages from a :class:`JobQueue` (shared by every connection of a
batch) and sets each one's :class:`SendResult` from the server's replies (RFC 5321 §3.3):

* With PIPELINING (RFC 2920 §3.1) a message's MAIL, RCPT... and DATA go out in one write;
  after the ``354``, its body and the *next* message's envelope go out in one write, and
  the replies are read in order. A batch therefore costs one round trip per message, plus
  one. After a failed envelope, ``RSET`` goes out with the next envelope. The next
  message is taken from the queue only when its envelope is written, so connections
  sharing a queue balance themselves.
* Without PIPELINING, one command and one reply at a time.

Invariants the caller relies on after a :class:`ConnectionLost` (see :meth:`Lane.recover`):
a job leaves the lane as soon as its result is set; ``body_sent`` is set before the body is
written, so a connection lost before the end-of-data reply makes that job ``"unknown"``
rather than sent twice; and an end-of-data reply of ``421`` or ``432 4.3.2`` is an explicit
refusal, so that job goes back to the queue and is sent again.
"""

from __future__ import annotations

import itertools
import threading
from collections import deque
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Literal

from oauthsmtp._errors import OAuthSMTPError, SMTPError
from oauthsmtp._message.prepare import OutgoingMessage

from .wire import (
    MAX_COMMAND_LINE,
    Blocks,
    Buffer,
    Connection,
    Reply,
    SMTPConnectionError,
    SMTPTimeoutError,
    end_of_data,
    mail_from,
    parse_size,
    rcpt_to,
    stuffed_blocks,
    stuffed_size,
)

__all__ = [
    "ConnectionLost",
    "Job",
    "JobQueue",
    "Lane",
    "SendResult",
    "after_envelope",
    "body_chunks",
    "deferred",
    "envelope",
    "envelope_problem",
    "failed",
    "is_connection_limit",
    "mail_command",
    "outcome",
    "transact",
    "unknown",
]

_LIMIT_WORDS = ("concurrent", "connections", "thread limit", "too many")


@dataclass(frozen=True)
class SendResult:
    """The outcome of one message.

    Attributes:
        status: ``"sent"`` (the server accepted it), ``"failed"`` (it was refused, or never
            sent), ``"unknown"`` (the connection was lost after the body was sent and
            before the server's answer: it may or may not have been accepted; it is not
            sent again), or ``"deferred"`` (not sent because a :class:`~oauthsmtp.SendLimits`
            budget is spent for now: a daily cap reached, or a wait longer than
            ``max_wait``; it may be sent later, ``message`` says which limit).
        code: the server's final reply code for this message, or None if none arrived.
        message: the server's reply text, or why the message was not sent.
        refused: ``{recipient: (code, text)}`` for recipients the server refused; a
            message can be ``"sent"`` to the others. Read-only.
        transport: which transport the result is from, ``"smtp"`` or ``"api"``, as
            reported by :class:`~oauthsmtp.AutoSession` (which may switch from one to the
            other); None from a session of one transport.
    """

    status: Literal["sent", "failed", "unknown", "deferred"]
    code: int | None = None
    message: str | None = None
    refused: Mapping[str, tuple[int, str]] = field(default_factory=dict)
    transport: str | None = None

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


def deferred(message: str) -> SendResult:
    """The result of a message a sending limit held back (not sent; may be sent later)."""
    return SendResult("deferred", None, message)


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
        attempts: retries after a transient refusal so far (sending limits).
        backed_off: seconds of backoff those retries waited in all.
        not_before: monotonic time before which it is not tried again.
        slot_at: monotonic time of the message slot reserved for it, until it is used.
        ticket: its place in the sending budget's cap, from the reservation until the
            server answered its MAIL FROM (see :attr:`Lane.answered`).
        counted: counted against the daily caps already.
    """

    outgoing: OutgoingMessage | None
    result: SendResult | None = None
    error: OAuthSMTPError | None = None
    body_sent: bool = False
    future: Future[SendResult] | None = None
    attempts: int = 0
    backed_off: float = 0.0
    not_before: float = 0.0
    slot_at: float | None = None
    ticket: str | None = None
    counted: bool = False


def envelope_problem(out: OutgoingMessage) -> str | None:
    """Why the envelope of ``out`` cannot be sent, or None (pure).

    Every ``MAIL FROM:<...>`` and ``RCPT TO:<...>`` line must fit the 512 octets of RFC 5321
    §4.5.3.1.4 (CRLF included; the parameters ``SIZE=``, ``BODY=`` and ``SMTPUTF8`` have
    their own allowance, RFC 1870 §3, RFC 6152, RFC 6531 §3.4). A longer line is refused
    before anything is sent: a server would cut it or reject it, and a cut address is
    another address.
    """
    for verb, address in (("MAIL FROM", out.sender), *(("RCPT TO", r) for r in out.recipients)):
        octets = len(address) if address.isascii() else len(address.encode("utf-8"))
        length = len(verb) + octets + 5  # ":<" ">" CRLF
        if length > MAX_COMMAND_LINE:
            return (
                f"the {verb} command for <{address[:40]}...> would be {length} octets, over the "
                f"{MAX_COMMAND_LINE} that SMTP allows (RFC 5321 §4.5.3.1.4); the address is "
                "too long to send"
            )
    return None


def is_connection_limit(code: int | None, text: str | None) -> bool:
    """True for a refusal because of too many concurrent connections.

    Microsoft 365 answers ``432 4.3.2 Concurrent connections limit exceeded`` (or
    ``432 4.3.2 STOREDRV.ClientSubmit; sender thread limit exceeded``) beyond three
    connections per mailbox. Other servers may say so with another 4xx code and the
    enhanced code 4.3.2 (RFC 3463); those count when the text says it is about connections,
    since 4.3.2 also means a server that is shutting down. ``432 4.7.12`` (RFC 4954 §6, a
    password transition) is not one.
    """
    if code is None or not 400 <= code < 500:
        return False
    status = (text or "").split(" ", 1)[0]
    if code == 432:
        return not status.startswith("4.7.")
    lowered = (text or "").lower()
    return status == "4.3.2" and any(word in lowered for word in _LIMIT_WORDS)


class JobQueue:
    """Jobs waiting for a connection, in order; shared by the connections of a batch.

    The jobs come from an iterable that is read lazily: a job is pulled from it only when
    a connection is ready for one (or :meth:`fill` asks for a few), so a generator of
    messages is never consumed ahead of the sending. Jobs that already have a result (a
    message refused before sending) are passed over.

    Thread-safe: each job is taken by one connection at a time, and a connection that is
    lost gives back the jobs it had taken but not sent.
    """

    def __init__(self, jobs: Iterable[Job] = ()) -> None:
        self._jobs: deque[Job] = deque()
        self._source: Iterator[Job] | None = iter(jobs)
        self._lock = threading.Lock()

    def __len__(self) -> int:
        """How many jobs are waiting: those pulled already, plus one if the source has more."""
        with self._lock:
            if not self._jobs:
                self._pull()
            return len(self._jobs)

    def fill(self, count: int) -> int:
        """Pull jobs from the source until ``count`` wait (or it ends); return how many wait."""
        with self._lock:
            while len(self._jobs) < count and self._pull():
                pass
            return len(self._jobs)

    def take(self) -> Job | None:
        """The next job, or None when the queue is empty and the source exhausted."""
        with self._lock:
            if not self._jobs:
                self._pull()
            return self._jobs.popleft() if self._jobs else None

    def put(self, jobs: Iterable[Job]) -> None:
        """Add jobs at the end, in their order."""
        with self._lock:
            self._jobs.extend(jobs)

    def give_back(self, jobs: Sequence[Job]) -> None:
        """Put jobs back at the front, in their order."""
        with self._lock:
            self._jobs.extendleft(reversed(jobs))

    def _pull(self) -> bool:
        """Append the source's next sendable job; False when the source is exhausted."""
        while self._source is not None:
            job = next(self._source, None)
            if job is None:
                self._source = None
            elif job.result is None and job.outgoing is not None:
                self._jobs.append(job)
                return True
        return False


@dataclass(eq=False)
class Lane:
    """The jobs one connection has taken and not finished, and how many it finished.

    Attributes:
        inflight: jobs taken from the queue, oldest first; at most two with PIPELINING
            (the one whose body is on its way and the next, whose envelope went with it).
        finished: how many jobs got their result on this lane.
        on_result: called with each job as soon as this lane sets its result (the asyncio
            session wakes the job's waiter with it).
        admit: asked before a taken job's envelope is written, with whether a job is in
            flight: True sends it, False gives it back for later (the lane takes nothing
            more for now), a result ends it unsent (sending limits, see
            :mod:`oauthsmtp._smtp.limited`).
        retry: asked with a job and its result before the result is set: True puts the
            job back in the queue instead (a transient refusal; it is taken again before the
            messages not yet read, and :attr:`admit` holds it until its backoff is over).
        answered: called with a job as soon as the reply to its MAIL FROM was read (the
            server has seen it): the sending budget counts it from then on.
    """

    inflight: deque[Job] = field(default_factory=deque)
    finished: int = 0
    on_result: Callable[[Job], None] | None = None
    admit: Callable[[Job, bool], SendResult | bool] | None = None
    retry: Callable[[Job, SendResult], bool] | None = None
    answered: Callable[[Job], None] | None = None
    queue: JobQueue | None = None

    def mail_answered(self, job: Job) -> None:
        """The reply to ``job``'s MAIL FROM was read: tell :attr:`answered`."""
        if self.answered is not None:
            self.answered(job)

    def _done(self, job: Job) -> None:
        self.finished += 1
        if self.on_result is not None:
            self.on_result(job)

    def take(self, queue: JobQueue, extensions: Mapping[str, str]) -> Job | None:
        """Take the next job this server can carry; others get a failed result at once."""
        while (job := self.candidate(queue, extensions)) is not None:
            verdict = True if self.admit is None else self.admit(job, bool(self.inflight))
            if self.place(job, verdict, queue):
                return job if verdict is True else None
        return None

    def candidate(self, queue: JobQueue, extensions: Mapping[str, str]) -> Job | None:
        """The next job from ``queue`` this server can carry, not yet admitted (see
        :meth:`place`); jobs it cannot carry get a failed result at once. None: empty."""
        while (job := queue.take()) is not None:
            assert job.outgoing is not None  # noqa: S101 - the queue holds prepared jobs
            problem = _unsendable(job.outgoing, extensions)
            if problem is None:
                return job
            job.result = failed(problem)
            self._done(job)
        return None

    def place(self, job: Job, verdict: SendResult | bool, queue: JobQueue) -> bool:
        """Apply :attr:`admit`'s ``verdict`` on a :meth:`candidate`: True takes it in flight,
        False gives it back to ``queue``, a result ends it. Returns whether taking stops
        here (taken or given back); False: the next candidate may be tried."""
        if verdict is True:
            self.queue = queue
            self.inflight.append(job)
            return True
        if verdict is False:
            queue.give_back([job])
            return True
        job.result = verdict
        self._done(job)
        return False

    def finish(self, job: Job, result: SendResult) -> None:
        """Set the final result of the oldest job in flight (or, when :attr:`retry` says
        so, put it back in the queue)."""
        self.inflight.remove(job)
        if self.retry is not None and self.queue is not None and self.retry(job, result):
            self.queue.put([job])
            return
        job.result = result
        self._done(job)

    def recover(self, queue: JobQueue) -> None:
        """After a lost connection: a job whose body may have arrived is ``"unknown"``;
        the others go back to the queue, to be sent on another connection."""
        back: list[Job] = []
        for job in self.inflight:
            if job.result is not None:
                continue
            if job.body_sent:
                job.result = unknown()
                self._done(job)
            else:
                back.append(job)
        self.inflight.clear()
        queue.give_back(back)


class ConnectionLost(Exception):
    """The connection became unusable in a transaction; ``error`` says how.

    Attributes:
        error: the error (its ``code`` is the server's reply code when a reply caused it).
        limit: the server refused the connection as one too many (``432 4.3.2``).
    """

    def __init__(self, error: OAuthSMTPError) -> None:
        super().__init__(str(error))
        self.error = error
        code, text = getattr(error, "code", None), getattr(error, "server_message", None)
        self.limit = is_connection_limit(code, text)


def transact(conn: Connection, extensions: Mapping[str, str], queue: JobQueue, lane: Lane) -> None:
    """Send jobs from ``queue`` on ``conn`` until the queue is empty.

    Args:
        conn: an authenticated connection.
        extensions: its EHLO keywords (after TLS).
        queue: jobs with a prepared message and no result.
        lane: this connection's jobs in flight; empty on entry.

    Raises:
        ConnectionLost: a timeout, a drop, a ``421``, a ``432 4.3.2`` or a malformed
            reply; the connection is closed and ``lane.inflight`` holds the jobs under way
            (call :meth:`Lane.recover`).
    """
    try:
        if "PIPELINING" in extensions:
            _pipelined(conn, extensions, queue, lane)
        else:
            _lockstep(conn, extensions, queue, lane)
    except (SMTPTimeoutError, SMTPConnectionError) as exc:
        raise ConnectionLost(exc) from exc
    except OAuthSMTPError as exc:
        conn.close()  # a malformed reply: the server's state is unknown
        raise ConnectionLost(exc) from exc
    except Exception as exc:  # a defect: the connection's state is unknown; ours to report
        conn.close()
        error = SMTPError(f"sending failed unexpectedly: {type(exc).__name__}: {exc}")
        raise ConnectionLost(error) from exc


def _unsendable(out: OutgoingMessage, ext: Mapping[str, str]) -> str | None:
    if out.smtputf8 and "SMTPUTF8" not in ext:
        return (
            "an address is not ASCII and the server does not offer SMTPUTF8 (RFC 6531); "
            "oauthsmtp did not send the message"
        )
    if out.eight_bit and "8BITMIME" not in ext and "SMTPUTF8" not in ext:
        return (
            "the message has 8-bit data and the server does not offer 8BITMIME (RFC 6152); "
            "oauthsmtp did not send it"
        )
    limit = parse_size(ext.get("SIZE", ""))
    if limit is not None and len(out.data) > limit:
        return (
            f"the message is {len(out.data):,} octets and the server announces a limit of "
            f"{limit:,} (EHLO SIZE, RFC 1870): oauthsmtp checked this before sending and did "
            "not send it. Make the message smaller (attachments count about 4/3 of their size)"
        )
    return None


def mail_command(out: OutgoingMessage, ext: Mapping[str, str]) -> bytes:
    """MAIL FROM with SIZE (RFC 1870), BODY=8BITMIME (RFC 6152), SMTPUTF8 (RFC 6531)."""
    params: list[str] = []
    if "SIZE" in ext:
        params.append(f"SIZE={len(out.data)}")
    if out.eight_bit:
        params.append("BODY=8BITMIME")
    if out.smtputf8:
        params.append("SMTPUTF8")
    return mail_from(out.sender, params, utf8=out.smtputf8)


def envelope(out: OutgoingMessage, ext: Mapping[str, str]) -> tuple[bytes, list[str]]:
    """MAIL, RCPT... and DATA as one pipelined group (RFC 2920 §3.1), and its log lines."""
    lines = [mail_command(out, ext), *(rcpt_to(r, utf8=out.smtputf8) for r in out.recipients)]
    lines.append(b"DATA\r\n")
    return b"".join(lines), [line.decode("utf-8").rstrip() for line in lines]


def body_chunks(out: OutgoingMessage, following: bytes = b"") -> tuple[Blocks, int]:
    """The message as written after ``354``: dot-stuffed, the end-of-data line, then
    ``following`` (what rides along); and the size of the stuffed message.

    The blocks are made as they are written (:func:`~.wire.stuffed_blocks`): the message
    itself, or one stuffed block of it at a time, never a stuffed copy of the whole.
    """
    size = stuffed_size(out.data)
    tail = end_of_data(out.data) + following
    parts = itertools.chain(stuffed_blocks(out.data), (tail,))
    return Blocks(parts, size + len(tail)), size


def after_envelope(
    out: OutgoingMessage,
    mail: Reply,
    rcpts: Sequence[Reply],
    data_reply: Reply,
    following: bytes,
    follow_log: Sequence[str],
) -> tuple[Iterable[Buffer], list[str], bool]:
    """What a pipelined transaction writes once MAIL, RCPT and DATA were answered.

    Returns the buffers, their log lines and whether they carry the body: after ``354``
    the body (or, with no accepted recipient, an empty one) ends the data; otherwise
    ``RSET``. Either way the next message's envelope (``following``) rides along
    (RFC 2920 §3.1). Pure (the body's blocks are made as they are written): the
    blocking and the asyncio transaction loops share it.
    """
    if data_reply.code != 354:
        return [b"RSET\r\n" + following], ["RSET", *follow_log], False
    if mail.code < 300 and any(r.code < 300 for r in rcpts):
        chunks, size = body_chunks(out, following)
        return chunks, [f"[message, {size} bytes]", *follow_log], True
    # 354 despite no accepted recipient: end the data at once
    return [b".\r\n" + following], ["[message, 0 bytes]", *follow_log], True


def _pipelined(conn: Connection, ext: Mapping[str, str], queue: JobQueue, lane: Lane) -> None:
    job = lane.take(queue, ext)
    if job is None:
        return
    assert job.outgoing is not None  # noqa: S101
    conn.write(*envelope(job.outgoing, ext))
    while True:
        out = job.outgoing
        assert out is not None  # noqa: S101
        mail = _read(conn)
        lane.mail_answered(job)
        rcpts = [_read(conn) for _ in out.recipients]
        data_reply = _read(conn)
        nxt = lane.take(queue, ext)
        following, follow_log = (
            envelope(nxt.outgoing, ext) if nxt is not None and nxt.outgoing else (b"", [])
        )
        buffers, log, body = after_envelope(out, mail, rcpts, data_reply, following, follow_log)
        if body:
            job.body_sent = True
            conn.write(buffers, log)
            lane.finish(job, outcome(out, mail, rcpts, data_reply, _read_end(conn, job)))
        else:
            # Final before RSET: a drop now must not send it again.
            lane.finish(job, outcome(out, mail, rcpts, data_reply, None))
            conn.write(buffers, log)
            reset = _read(conn)
            if reset.code != 250:
                raise SMTPError(f"RSET refused: {reset}", code=reset.code)
        if nxt is None:
            return
        job = nxt


def _lockstep(conn: Connection, ext: Mapping[str, str], queue: JobQueue, lane: Lane) -> None:
    while (job := lane.take(queue, ext)) is not None:
        out = job.outgoing
        assert out is not None  # noqa: S101
        mail = _call(conn, mail_command(out, ext))
        lane.mail_answered(job)
        rcpts: list[Reply] = []
        if mail.code < 300:
            rcpts = [_call(conn, rcpt_to(r, utf8=out.smtputf8)) for r in out.recipients]
        data_reply = _call(conn, b"DATA\r\n") if any(r.code < 300 for r in rcpts) else None
        if data_reply is not None and data_reply.code == 354:
            job.body_sent = True
            chunks, size = body_chunks(out)
            conn.write(chunks, [f"[message, {size} bytes]"])
            lane.finish(job, outcome(out, mail, rcpts, data_reply, _read_end(conn, job)))
        else:
            # Final before RSET: a drop now must not send it again.
            lane.finish(job, outcome(out, mail, rcpts, data_reply, None))
            _call(conn, b"RSET\r\n")


def _call(conn: Connection, line: bytes) -> Reply:
    conn.write(line, [line.decode("utf-8").rstrip()])
    return _read(conn)


def _read_end(conn: Connection, job: Job) -> Reply:
    """Read the end-of-data reply; a 421 or 432 refused the message: it may be sent again."""
    reply = conn.read_reply()
    if reply.code == 421 or is_connection_limit(reply.code, reply.text):
        job.body_sent = False  # not accepted (RFC 5321 §4.1.1.4): resend on a new connection
    return _closing(conn, reply)


def _read(conn: Connection) -> Reply:
    return _closing(conn, conn.read_reply())


def _closing(conn: Connection, reply: Reply) -> Reply:
    if reply.code == 421 or is_connection_limit(reply.code, reply.text):
        # RFC 5321 §3.8: the server is closing the channel; or it refuses this connection
        # as one too many, and would refuse every transaction on it.
        conn.close()
        what = "is closing the connection" if reply.code == 421 else "refuses this connection"
        raise SMTPConnectionError(
            f"the server {what}: {reply}", code=reply.code, server_message=reply.text
        )
    return reply


def outcome(
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
        if reply.code < 400:  # DATA answered without 354 (RFC 5321 §4.1.1.4): not sent
            text = f"the server answered DATA with {reply} instead of 354; the message was not sent"
            return SendResult("failed", reply.code, text, refused)
        return SendResult("failed", reply.code, reply.text, refused)
    return SendResult("sent" if end.code < 300 else "failed", end.code, end.text, refused)
