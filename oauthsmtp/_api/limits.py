"""SendLimits for the HTTP-API sessions (docs/limits.md, "HTTP-API sessions").

The budget and the decisions are the SMTP sessions' own
(:class:`~oauthsmtp._smtp.limited.Limiter`); only what a slot means differs:

* **Connections**: a *request in flight* to the mailbox holds a connection slot, from just
  before it is sent until its answer is read (a JSON ``$batch`` request holds one). The
  wait for one is at most ``max_wait``; past it the request's messages are ``"deferred"``.
* **Messages**: each message of a request (each sub-request of a ``$batch``) takes its
  own message slot before the request is sent, and its ticket is handed back once the
  request's answer is read: the API then has seen the message, as the SMTP server has
  seen a MAIL FROM once it answered it.
* **Retries**: a request sent again (after 429/503 and ``Retry-After``, or after a 401 and
  a token refresh) is another request the API counts: its messages take message slots
  again, but count against the daily caps only once.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._limits.budget import Hold, LimitReached
from oauthsmtp._smtp.limited import Limiter, budget_for, check_limits
from oauthsmtp._smtp.session import SendResult
from oauthsmtp._smtp.transact import Job as Tracked
from oauthsmtp._smtp.transact import deferred

__all__ = ["BATCH_FILL_WAIT", "RequestLimiter", "Tracked", "check_mailbox", "request_limiter"]


BATCH_FILL_WAIT = 1.0
"""Seconds a ``$batch`` being filled waits for its next message's slot (paced slots are
``window / per_minute`` apart: 0.06 s under Graph's limits); a later slot goes into the
next batch."""


def check_mailbox(mailbox: object) -> str | None:
    """``mailbox=`` for an API session: None (the default name), or a non-empty name.

    Raises:
        ConfigurationError: not a string, empty, or not printable.
    """
    if mailbox is None:
        return None
    if not isinstance(mailbox, str) or not 0 < len(mailbox) <= 320 or not mailbox.isprintable():
        raise ConfigurationError(
            f"mailbox must be the name the sending budget is kept under (the mailbox's "
            f"address), not {mailbox!r:.60}"
        )
    return mailbox


def request_limiter(
    limits: object,
    limits_store: object,
    mailbox: str,
    *,
    timeout: float,
    sleep: Callable[[float], None],
) -> RequestLimiter | None:
    """The :class:`RequestLimiter` for an API session's ``limits=`` and ``limits_store=``
    (checked as the SMTP sessions check them), or None without limits.

    Raises:
        ConfigurationError: ``limits`` is not a SendLimits, or a store without limits.
    """
    checked = check_limits(limits, limits_store)
    if checked is None:
        return None
    budget = budget_for(limits_store, mailbox, checked)
    return RequestLimiter(Limiter(budget, mailbox, timeout=timeout, sleep=sleep))


class RequestLimiter:
    """One API session's share of a mailbox's budget (see the module's docstring)."""

    def __init__(self, limiter: Limiter) -> None:
        self.limiter = limiter

    def admit(self, track: Tracked, busy: bool) -> SendResult | bool:
        """May the message of ``track`` go into the next request? True: its slot has
        come (it holds a ticket until :meth:`answered`); False (only when ``busy``: the
        request being filled already holds messages): send that request first, then ask
        again; a result: it is not sent (``"failed"``: too many recipients;
        ``"deferred"``: a daily cap, or a wait past ``max_wait``)."""
        return self.limiter.admit(track, busy)

    def admit_to_batch(self, track: Tracked, filling: bool) -> SendResult | bool:
        """:meth:`admit` for a ``$batch`` being filled (``filling``: it holds messages
        already): a message whose reserved slot is at most :data:`BATCH_FILL_WAIT`
        seconds away waits for it and joins the batch; False: send the batch first (its
        slot, if reserved, is kept for the next one)."""
        verdict = self.limiter.admit(track, filling)
        soon = track.slot_at is not None and track.slot_at - time.monotonic() <= BATCH_FILL_WAIT
        if verdict is False and soon:
            return self.limiter.admit(track, False)
        return verdict

    def connection(self) -> Hold | SendResult:
        """A connection slot for one request, waiting at most ``max_wait``; or the
        ``"deferred"`` result for the request's messages when none came free."""
        limits = self.limiter.limits
        try:
            return self.limiter.slot_or_none(
                self.limiter.budget.acquire_connection(limits.max_wait), True, what="requests"
            )
        except LimitReached as exc:
            return deferred(str(exc))

    def answered(self, tracks: Iterable[Tracked]) -> None:
        """The request carrying these messages was answered (or never sent): hand their
        tickets back (idempotent)."""
        for track in tracks:
            self.limiter.answered(track)
