"""Turning messages into jobs and a batch's errors into results (pure), for both sessions.

:func:`prepare_job` checks and serializes one message (a message that cannot be sent
becomes a failed job, never a raise); :func:`check_messages` refuses what is not an
iterable of messages; :func:`settle` applies ``send_many``'s rule to a batch that an error
stopped: raise when no message of the batch got an answer (nothing was sent), otherwise
keep the results and mark the rest ``"unknown"`` (body sent, answer lost) or ``"failed"``.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from email.message import Message

from oauthsmtp._errors import ConfigurationError, OAuthSMTPError
from oauthsmtp._message.prepare import Email, OutgoingMessage, prepare_message

from .transact import Job, envelope_problem, failed, unknown

__all__ = ["check_messages", "prepare_job", "settle"]


def prepare_job(message: Email | Message | OutgoingMessage) -> Job:
    """Validate and serialize a message; a refused one becomes a failed job, not a raise.

    Any exception while preparing one message fails that message only (a defect in the
    email package, e.g. ``IndexError`` on ``To: <``, included).
    """
    try:
        outgoing = message if isinstance(message, OutgoingMessage) else prepare_message(message)
        problem = envelope_problem(outgoing)
    except Exception as exc:  # one message's problem, whatever raised it
        error = exc if isinstance(exc, OAuthSMTPError) else None
        if error is None:
            error = ConfigurationError(f"the message cannot be sent: {type(exc).__name__}: {exc}")
            error.__cause__ = exc
        return Job(None, failed(f"refused before sending: {error}"), error)
    if problem is not None:
        error = ConfigurationError(f"the message cannot be sent: {problem}")
        return Job(None, failed(f"refused before sending: {error}"), error)
    return Job(outgoing)


def check_messages(messages: object) -> Iterable[Email | Message]:
    """``messages`` if it is an iterable of messages (not one message, not text).

    Raises:
        ConfigurationError: one message, a string, bytes, or not iterable.
    """
    if isinstance(messages, (Email, Message, str, bytes)) or not isinstance(messages, Iterable):
        raise ConfigurationError(
            "send_many() takes an iterable of messages (a list of oauthsmtp.Email or "
            f"EmailMessage), not {type(messages).__name__}; use send() for one message"
        )
    return messages


def settle(jobs: Sequence[Job], error: OAuthSMTPError) -> None:
    """Apply send_many's rule: raise ``error`` unless some message already got an answer."""
    if not any(job.result is not None and job.outgoing is not None for job in jobs):
        raise error
    for job in jobs:
        if job.result is None:
            job.result = unknown() if job.body_sent else failed(f"not sent: {error}")
