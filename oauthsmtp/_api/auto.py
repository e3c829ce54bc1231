"""AutoSession: SMTP first, an HTTP API only when SMTP is refused for configuration.

Microsoft 365 tenants switch SMTP AUTH off (``535 5.7.139 ... SmtpClientAuthentication is
disabled for the Tenant/Mailbox``, ``550 5.7.30 Basic authentication is not supported``)
while Microsoft Graph keeps working. :class:`AutoSession` is for a program that should keep
sending when that happens: it sends over SMTP, and on exactly those refusals switches to
the API for the refused message and the rest of the session, says so once in a WARNING
naming the permanent fix, and reports in every :class:`~oauthsmtp.SendResult` which
transport it came from (``result.transport``: ``"smtp"`` or ``"api"``).

It never switches on anything else: a refused token (``535 5.7.8``, ``535 5.7.3``), a
network error, a temporary ``4xx`` reply are SMTP's answer and reach the caller as they are.
And it never sends a message twice: only a message SMTP definitely did not take goes to the
API: AUTH was refused before its transaction began, or its own transaction was answered
with ``5.7.139``/``5.7.30``; a message whose outcome is ``"unknown"`` stays so.

:func:`refused_for_configuration` is the pure decision; the session is the I/O around it.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Callable, Iterable
from dataclasses import replace
from email.message import Message
from typing import TYPE_CHECKING

from oauthsmtp._errors import ConfigurationError, OAuthSMTPError, SMTPAuthError
from oauthsmtp._message.prepare import Email
from oauthsmtp._smtp.batch import check_messages
from oauthsmtp._smtp.session import SendResult, SMTPSession

from .session import APISession

if TYPE_CHECKING:
    from types import TracebackType

__all__ = ["CONFIGURATION_CODES", "AutoSession", "refused_for_configuration"]

logger = logging.getLogger("oauthsmtp.auto")

CONFIGURATION_CODES = ("5.7.139", "5.7.30")
"""The enhanced status codes (RFC 3463) that mean "SMTP AUTH is off here", not "bad token"."""

_CONFIGURATION = re.compile(r"(?<![\d.])5\.7\.(?:139|30)(?![\d.])", re.ASCII)

_warned: set[str] = set()
_warned_lock = threading.Lock()


def refused_for_configuration(code: int | None, text: str | None) -> bool:
    """True when an SMTP reply refuses for configuration: a 5xx carrying ``5.7.139`` or
    ``5.7.30`` (SMTP AUTH disabled for the tenant or mailbox, basic authentication off).

    Nothing else is: not ``535 5.7.8`` or ``535 5.7.3`` (the token), not a ``4xx``, not a
    missing reply (a network error).
    """
    if code is None or not 500 <= code <= 599 or not text:
        return False
    return _CONFIGURATION.search(text) is not None


def _reply_of(error: SMTPAuthError) -> str:
    return f"{error.code} {' '.join(str(error.server_message or '').split())}".strip()


class AutoSession:
    """Send over SMTP; switch to an HTTP API only when SMTP is refused for configuration.

    The same contract as :class:`~oauthsmtp.SMTPSession`: :meth:`send`, :meth:`send_many`,
    :meth:`start`, :meth:`close` and ``with``; each :class:`~oauthsmtp.SendResult` says in
    ``transport`` which transport it came from.

    Args:
        smtp: the SMTP session to try first (not started yet, or started).
        api: the API session to switch to (:class:`~oauthsmtp.GraphSession`,
            :class:`~oauthsmtp.GmailAPISession`), or a callable that builds it. A callable
            is called once, at the first switch, so nothing of the API (not even its token,
            which for Microsoft is redeemed for Graph then, see
            :func:`~oauthsmtp.token_for_scope`) is touched while SMTP works.

    The switch happens on ``535 5.7.139`` / ``550 5.7.30`` (at AUTH, or as the reply to a
    message's own transaction) and lasts for the rest of the session; a new session tries
    SMTP again. A WARNING on the ``oauthsmtp.auto`` logger says so, once per SMTP account
    and process, with the permanent fix (enable SMTP AUTH, or record the API transport).

    Thread-safe: calls from several threads are served one at a time (the switch must be
    seen by the next message); for parallel connections give the SMTP session
    ``connections=`` and use :meth:`send_many`. ``submit`` and ``send_stream`` are
    :class:`~oauthsmtp.SMTPSession`'s alone.

    Raises:
        ConfigurationError: ``smtp`` is not an SMTPSession, or ``api`` neither an API
            session nor callable.
    """

    def __init__(self, smtp: SMTPSession, api: APISession | Callable[[], APISession]) -> None:
        if not isinstance(smtp, SMTPSession):
            raise ConfigurationError(f"smtp must be an oauthsmtp.SMTPSession, not {smtp!r:.60}")
        if not isinstance(api, APISession) and not callable(api):
            raise ConfigurationError(
                "api must be a GraphSession or GmailAPISession, or a callable that returns "
                f"one, not {api!r:.60}"
            )
        self._smtp = smtp
        self._api_given = api
        self._api: APISession | None = api if isinstance(api, APISession) else None
        self._switched: str | None = None
        self._lock = threading.RLock()

    # -- state ------------------------------------------------------------------------------
    @property
    def transport(self) -> str:
        """``"smtp"`` until the session switched, ``"api"`` after."""
        return "smtp" if self._switched is None else "api"

    @property
    def switched_because(self) -> str | None:
        """The SMTP reply that made the session switch (``535 5.7.139 ...``), or None."""
        return self._switched

    @property
    def smtp(self) -> SMTPSession:
        """The SMTP session."""
        return self._smtp

    @property
    def api(self) -> APISession | None:
        """The API session, once built (given, or built at the switch); else None."""
        return self._api

    # -- life cycle -------------------------------------------------------------------------
    def start(self) -> AutoSession:
        """Connect and authenticate over SMTP (or, switched, open the API session).

        An AUTH refusal for configuration switches to the API here; anything else raises as
        :meth:`SMTPSession.start` does.
        """
        with self._lock:
            if self._switched is not None:
                self._api_session().start()
                return self
            try:
                self._smtp.start()
            except SMTPAuthError as exc:
                if not refused_for_configuration(exc.code, exc.server_message):
                    raise
                self._switch(_reply_of(exc))
            return self

    def close(self) -> None:
        """Close both sessions (idempotent)."""
        try:
            self._smtp.close()
        finally:
            if self._api is not None:
                self._api.close()

    def __enter__(self) -> AutoSession:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    # -- sending ----------------------------------------------------------------------------
    def send(self, message: Email | Message) -> SendResult:
        """Send one message; its result says which transport took it.

        Raises:
            ConfigurationError: the message is malformed, before anything is sent.
            SMTPError, LoginRequired, TokenError: SMTP could not be used for another reason
                than configuration (nothing is sent through the API then).
            APIError: the session switched and the API refused or could not be reached.
        """
        with self._lock:
            if self._switched is None:
                try:
                    result = self._smtp.send(message)
                except SMTPAuthError as exc:
                    if not refused_for_configuration(exc.code, exc.server_message):
                        raise
                    self._switch(_reply_of(exc))
                else:
                    if not self._refused(result):
                        return replace(result, transport="smtp")
                    self._switch(f"{result.code} {result.message}")
            return replace(self._api_session().send(message), transport="api")

    def send_many(self, messages: Iterable[Email | Message]) -> list[SendResult]:
        """Send a batch (pipelined over SMTP); the messages SMTP refuses for configuration,
        and all that follow once switched, go through the API.

        ``messages`` is read into a list first: a message refused mid-batch is sent again
        through the API.

        Returns:
            One :class:`~oauthsmtp.SendResult` per message, in order, each with its
            ``transport``.

        Raises:
            ConfigurationError: ``messages`` is not an iterable of messages.
            SMTPError, LoginRequired, TokenError, APIError: only when no message of the
                batch got an answer (as :meth:`SMTPSession.send_many`).
        """
        batch = list(check_messages(messages))
        with self._lock:
            if self._switched is not None:
                return self._through_api(batch)
            try:
                results = self._smtp.send_many(batch)
            except SMTPAuthError as exc:
                if not refused_for_configuration(exc.code, exc.server_message):
                    raise
                self._switch(_reply_of(exc))
                return self._through_api(batch)
            tagged = [replace(r, transport="smtp") for r in results]
            again = [i for i, r in enumerate(results) if self._refused(r)]
            if not again:
                return tagged
            first = results[again[0]]
            try:
                self._switch(f"{first.code} {first.message}")
                resent = self._through_api([batch[i] for i in again])
            except OAuthSMTPError as exc:
                if len(again) == len(batch):
                    raise
                for i in again:  # the others got SMTP's answers: keep them, fail these
                    tagged[i] = replace(
                        results[i],
                        message=f"{results[i].message}; the API could not send it either: {exc}",
                    )
                return tagged
            for i, result in zip(again, resent, strict=True):
                tagged[i] = result
            return tagged

    def __repr__(self) -> str:
        return f"AutoSession(transport={self.transport!r}, smtp={self._smtp!r})"

    # -- internals --------------------------------------------------------------------------
    @staticmethod
    def _refused(result: SendResult) -> bool:
        return result.status == "failed" and refused_for_configuration(result.code, result.message)

    def _through_api(self, batch: list[Email | Message]) -> list[SendResult]:
        return [replace(r, transport="api") for r in self._api_session().send_many(batch)]

    def _api_session(self) -> APISession:
        if self._api is None:
            built = self._api_given() if callable(self._api_given) else self._api_given
            if not isinstance(built, APISession):
                raise ConfigurationError(
                    f"the api callable must return a GraphSession or GmailAPISession, not "
                    f"{built!r:.60}"
                )
            self._api = built
        return self._api

    def _switch(self, reply: str) -> None:
        """Switch to the API for the rest of the session; say so (WARNING once per account).

        Raises what building or opening the API session raised (then nothing switched).
        """
        try:
            api = self._api_session()
            api.start()
        except OAuthSMTPError as exc:
            logger.warning(
                "%s refused SMTP for %s for configuration (%s), and the API cannot be used "
                "instead: %s",
                self._smtp.host,
                self._smtp.username or "<mailbox>",
                " ".join(reply.split())[:200],
                exc,
            )
            raise
        self._switched = reply
        try:
            self._smtp.close()
        except OAuthSMTPError as exc:  # the QUIT of a refused session: nothing to lose
            logger.debug("closing the refused SMTP session: %s", exc)
        account = self._smtp.username or "<mailbox>"
        from oauthsmtp._explain import lookup  # the fix is the explain table's, written once

        entry = lookup(reply)
        fix = entry.fix.replace("{account}", account) if entry is not None else ""
        with _warned_lock:
            first = account not in _warned
            _warned.add(account)
        logger.log(
            logging.WARNING if first else logging.INFO,
            "%s refused SMTP for %s for configuration (%s): sending through %s instead for "
            "the rest of this session. Permanent fix: %s",
            self._smtp.host,
            account,
            " ".join(reply.split())[:200],
            api.api_name,
            fix or "enable SMTP AUTH for the mailbox, or send through the API",
        )
