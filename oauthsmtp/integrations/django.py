"""``EMAIL_BACKEND = "oauthsmtp.integrations.django.EmailBackend"``: Django mail over OAuth2.

Django's ``send_mail``, ``send_mass_mail``, ``mail_admins``, ``EmailMessage`` and
``EmailMultiAlternatives`` send through this backend as an account that
``oauthsmtp login`` recorded, with its saved token (refreshed when needed, never a
browser). Settings (docs/integrations.md):

``OAUTHSMTP_ACCOUNT`` (required)
    The recorded account to send as (``oauthsmtp login --account ...``).
``OAUTHSMTP_HOME`` / ``OAUTHSMTP_STORE`` (optional)
    Where the account settings live and which token store holds the token
    (``keyring``, ``file`` or ``memory``, or a :class:`~oauthsmtp.TokenStore` object);
    the same meaning as the environment variables, which apply when these are unset.
``OAUTHSMTP_SMTP_HOST`` / ``OAUTHSMTP_SMTP_PORT`` / ``OAUTHSMTP_SMTP_SECURITY`` (optional)
    Override the recorded server (as ``oauthsmtp send --smtp-host ...``).
``OAUTHSMTP_SMTP_TIMEOUT`` (optional)
    Seconds per network operation; default Django's ``EMAIL_TIMEOUT``, else 60.
``OAUTHSMTP_SMTP_OPTIONS`` (optional)
    A dict of further :class:`~oauthsmtp.SMTPSession` keywords (``ssl_context``,
    ``connections``, ``local_hostname``, ...).

The backend behaves as Django's SMTP backend does: :meth:`EmailBackend.open` connects and
returns True (False when already open, None when it failed silently), one
:class:`~oauthsmtp.SMTPSession` serves every message until :meth:`EmailBackend.close`,
``send_messages`` returns how many messages the server accepted, and ``fail_silently``
turns failures into a smaller count. Each message goes out as
``message.message()`` rendered with CRLF line ends, with the envelope Django gives:
the sender is ``from_email``, the recipients are ``message.recipients()`` (To, Cc and
Bcc; Django never writes Bcc into the headers, so Bcc recipients get the message without
the others seeing them). A message the server accepted for some recipients and refused
for others counts as sent, as with Django's SMTP backend.

Failures are oauthsmtp's errors (:class:`~oauthsmtp.OAuthSMTPError` subclasses:
``LoginRequired`` when the token is gone, ``SMTPError`` when the server refused or was
unreachable, ``ConfigurationError`` for a bad setting or address), not
``smtplib.SMTPException``.

Django is imported by this module only; ``import oauthsmtp`` never imports it.
"""

from __future__ import annotations

import io
import threading
from collections.abc import Sequence
from email.generator import BytesGenerator
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from django.conf import settings
from django.core.exceptions import ImproperlyConfigured
from django.core.mail.backends.base import BaseEmailBackend
from django.core.mail.message import sanitize_address

from oauthsmtp._accounts import open_session, store_named
from oauthsmtp._errors import ConfigurationError, OAuthSMTPError
from oauthsmtp._message.prepare import OutgoingMessage

if TYPE_CHECKING:
    from django.core.mail import EmailMessage

    from oauthsmtp._smtp.session import SMTPSession
    from oauthsmtp._tokens.stores.base import TokenStore

__all__ = ["EmailBackend", "outgoing_message"]

_OVERRIDES = {
    "OAUTHSMTP_SMTP_HOST": "host",
    "OAUTHSMTP_SMTP_PORT": "port",
    "OAUTHSMTP_SMTP_SECURITY": "security",
    "OAUTHSMTP_SMTP_TIMEOUT": "timeout",
}


class EmailBackend(BaseEmailBackend):  # type: ignore[misc]  # Django ships no types
    """A Django email backend that sends through :class:`~oauthsmtp.SMTPSession`.

    Args:
        account: the recorded account; default ``settings.OAUTHSMTP_ACCOUNT``.
        home: the folder of recorded accounts; default ``settings.OAUTHSMTP_HOME``, else
            ``$OAUTHSMTP_HOME``.
        store: a token store name or object; default ``settings.OAUTHSMTP_STORE``, else
            ``$OAUTHSMTP_STORE``.
        fail_silently: swallow oauthsmtp's errors (and network errors): a message that
            failed is not counted, nothing is raised.
        **session_options: :class:`~oauthsmtp.SMTPSession` keywords, over the settings.

    Raises:
        ImproperlyConfigured: no account is configured, or a setting has the wrong type.
    """

    def __init__(
        self,
        account: str | None = None,
        *,
        home: str | Path | None = None,
        store: str | TokenStore | None = None,
        fail_silently: bool = False,
        **session_options: Any,
    ) -> None:
        super().__init__(fail_silently=fail_silently)
        account = account or getattr(settings, "OAUTHSMTP_ACCOUNT", None)
        if not isinstance(account, str) or not account.strip():
            raise ImproperlyConfigured(
                "oauthsmtp's EmailBackend needs OAUTHSMTP_ACCOUNT in the Django settings: the "
                "address of an account recorded by `oauthsmtp login --account ADDRESS ...`"
            )
        self.account = account.strip()
        home = home if home is not None else getattr(settings, "OAUTHSMTP_HOME", None)
        if home is not None and not isinstance(home, (str, Path)):
            raise ImproperlyConfigured("OAUTHSMTP_HOME must be a folder path (str or Path)")
        self.home = Path(home).expanduser().absolute() if home else None
        store = store if store is not None else getattr(settings, "OAUTHSMTP_STORE", None)
        try:
            self.store = (
                store_named(store, home=self.home)
                if store is None or isinstance(store, str)
                else store
            )
        except ConfigurationError as exc:
            raise ImproperlyConfigured(f"OAUTHSMTP_STORE: {exc}") from None
        options: dict[str, Any] = {}
        extra = getattr(settings, "OAUTHSMTP_SMTP_OPTIONS", None) or {}
        if not isinstance(extra, dict):
            raise ImproperlyConfigured("OAUTHSMTP_SMTP_OPTIONS must be a dict of keywords")
        options.update(extra)
        timeout = getattr(settings, "EMAIL_TIMEOUT", None)
        if timeout is not None:
            options["timeout"] = timeout
        for name, keyword in _OVERRIDES.items():
            value = getattr(settings, name, None)
            if value is not None:
                options[keyword] = value
        options.update(session_options)
        self.session_options = options
        self.session: SMTPSession | None = None
        self._lock = threading.RLock()

    def open(self) -> bool | None:
        """Connect and authenticate, unless already connected.

        Returns:
            True when a session was opened, False when one was open already, None when
            opening failed and ``fail_silently`` is set.

        Raises:
            OAuthSMTPError: the account, the token or the server failed (not silently).
        """
        if self.session is not None:
            return False
        try:
            session = open_session(
                self.account, home=self.home, store=self.store, **self.session_options
            )
            session.start()
        except (OAuthSMTPError, OSError):
            if not self.fail_silently:
                raise
            return None
        self.session = session
        return True

    def close(self) -> None:
        """Say QUIT and close the session (nothing when none is open)."""
        session, self.session = self.session, None
        if session is None:
            return
        try:
            session.close()
        except (OAuthSMTPError, OSError):
            if not self.fail_silently:
                raise

    def send_messages(self, email_messages: Sequence[EmailMessage]) -> int:
        """Send ``email_messages``; returns how many the server accepted.

        Uses the open session, or opens one for these messages and closes it after.
        """
        if not email_messages:
            return 0
        with self._lock:
            opened = self.open()
            if self.session is None or opened is None:
                return 0
            sent = 0
            try:
                for message in email_messages:
                    if self._send(message):
                        sent += 1
            finally:
                if opened:
                    self.close()
        return sent

    def _send(self, message: EmailMessage) -> bool:
        if not message.recipients():
            return False
        session = self.session
        if session is None:  # pragma: no cover - send_messages opened it
            return False
        try:
            result = session.send(outgoing_message(message))
            result.raise_for_status()
        except (OAuthSMTPError, OSError, ValueError):
            if not self.fail_silently:
                raise
            return False
        return True


def outgoing_message(message: EmailMessage) -> OutgoingMessage:
    """The wire form of a Django message: CRLF bytes and the envelope Django gives.

    The sender is ``message.from_email`` and the recipients ``message.recipients()``
    (To, Cc, Bcc), each reduced to its address (IDNA domains, as Django's SMTP backend
    does); the headers hold no Bcc.

    Raises:
        ConfigurationError: an address does not parse or holds a line break.
    """
    encoding = message.encoding or settings.DEFAULT_CHARSET
    sender = _envelope_address("sender", message.from_email, encoding)
    recipients = tuple(
        dict.fromkeys(_envelope_address("recipient", r, encoding) for r in message.recipients())
    )
    # What Django's own SMTP backend sends, written out with CRLF line ends. A generator
    # rather than as_bytes(linesep=...), which only Django's pre-6.0 message classes take.
    buffer = io.BytesIO()
    BytesGenerator(buffer, mangle_from_=False).flatten(message.message(), linesep="\r\n")
    data = buffer.getvalue()
    return OutgoingMessage(
        sender=sender,
        recipients=recipients,
        data=data,
        smtputf8=not all(address.isascii() for address in (sender, *recipients)),
        eight_bit=not data.isascii(),
    )


def _envelope_address(role: str, value: object, encoding: str) -> str:
    try:
        address = parseaddr(sanitize_address(value, encoding))[1]
    except (ValueError, TypeError, IndexError) as exc:
        raise ConfigurationError(
            f"the {role} address {str(value)[:80]!r} is invalid: {exc}"
        ) from None
    if not address or "@" not in address or any(c in address for c in "\r\n\x00"):
        raise ConfigurationError(f"the {role} address {str(value)[:80]!r} is not an address")
    return address
