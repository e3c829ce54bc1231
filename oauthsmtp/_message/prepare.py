"""Preparing a message for sending: its envelope, its checks and its bytes, once.

:func:`prepare_message` takes an :class:`~oauthsmtp.Email` (built in
:mod:`oauthsmtp._message.email`) or any :class:`email.message.Message` and returns an
:class:`OutgoingMessage`: the explicit envelope and the serialized bytes, Bcc removed.
Everything that could inject a command or a header (CR, LF or NUL in an address or a
header), every address header the :mod:`email` package parses with a defect (e.g.
``alice@example.org)<bob@example.org>``) or cannot parse at all, and every message that
cannot be written within RFC 5322's line limits is refused with :class:`ConfigurationError`
before anything reaches a server (the checks are in :mod:`oauthsmtp._message.addresses` and
:mod:`oauthsmtp._message.checks`): the library never guesses which address was meant.

An ``Email`` is rendered by :func:`~oauthsmtp._message.mime.render` (never by the email
package); any other message by the email package with
:func:`~oauthsmtp._message.mime.wire_policy`, then checked line by line.

This module is also where the rest of the package imports the message names from
(``Email``, ``check_header``, ``parse_address``, ...).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from email.headerregistry import Address
from email.message import Message
from typing import cast

from oauthsmtp._errors import ConfigurationError

from .addresses import check_header, envelope_address, header_addresses, parse_address, unfold
from .checks import check_line_lengths
from .email import (
    AttachmentSpec,
    Email,
    attachment_content,
    describe_attachment,
    parsed_addresses,
    read_attachment,
)
from .mime import Attachment, flatten, render, to_crlf, wire_policy

__all__ = [
    "AttachmentSpec",
    "Email",
    "OutgoingMessage",
    "check_header",
    "parse_address",
    "prepare_email",
    "prepare_message",
]

_ADDRESS_HEADERS = ("from", "sender", "reply-to", "to", "cc", "bcc")


@dataclass(frozen=True)
class OutgoingMessage:
    """A message ready for the wire.

    Attributes:
        sender: the envelope sender (``MAIL FROM``).
        recipients: the envelope recipients (``RCPT TO``), de-duplicated, in order.
        data: the RFC 5322 message, CRLF line endings, Bcc removed; not yet dot-stuffed.
        smtputf8: an address is not ASCII, so the server must offer SMTPUTF8 (RFC 6531 §3.4).
        eight_bit: ``data`` has octets above 127 (``BODY=8BITMIME``, RFC 6152).
    """

    sender: str
    recipients: tuple[str, ...]
    data: bytes = field(repr=False)
    smtputf8: bool = False
    eight_bit: bool = False


def prepare_message(message: Email | Message) -> OutgoingMessage:
    """Validate a message, take its envelope from its headers and serialize it once.

    For a :class:`~email.message.Message`, the envelope sender is ``Sender`` or else the
    single ``From`` address; the recipients are every address in To, Cc and Bcc. Headers of
    every MIME part are checked for CR/LF/NUL, address headers for parse defects, and the
    serialized message for lines over 998 octets and NUL octets.

    Contract: whatever the message holds, this raises :class:`ConfigurationError` (a
    ``ValueError``) and nothing else, with a message that names what is wrong; callers such
    as ``send_many`` turn it into a failed result for that message alone.

    Raises:
        ConfigurationError: injection attempts, malformed, unparseable or missing
            addresses, ``Resent-*`` headers (whose envelope rules this library does not
            implement), a message that needs SMTPUTF8 but does not use an
            ``email.policy.EmailPolicy``, one that cannot be written within the line limits,
            or an attachment file that cannot be read.
    """
    if isinstance(message, Email):
        return prepare_email(message)
    if not isinstance(message, Message):
        raise ConfigurationError(
            f"send() takes an oauthsmtp.Email or an email.message.EmailMessage, "
            f"not {type(message).__name__}"
        )
    try:
        return _prepare_other(message)
    except ConfigurationError:
        raise
    except Exception as exc:  # the email package raises IndexError, AttributeError... on bad input
        raise ConfigurationError(
            f"the message cannot be read or written by the email package "
            f"({type(exc).__name__}: {exc}); it is malformed and was not sent"
        ) from exc


def _header_items(part: Message, name: str) -> list[object]:
    """Every value of header ``name`` of ``part``, as the part's policy parses it."""
    try:
        return list(part.get_all(name, []))
    except Exception as exc:  # the email package's header parser on malformed input
        raise ConfigurationError(
            f"header {name} cannot be parsed ({type(exc).__name__}); the message is "
            "malformed and was not sent"
        ) from exc


def _prepare_other(message: Message) -> OutgoingMessage:
    for part in message.walk():
        for name in dict.fromkeys(part.keys()):
            for value in _header_items(part, name):
                check_header(name, unfold(str(value)))
    fields: dict[str, list[Address]] = {}
    for name in message:
        lowered = name.lower()
        if lowered.startswith("resent-"):
            raise ConfigurationError(
                "Resent-* headers are not supported; build a new message to forward one"
            )
        if lowered in _ADDRESS_HEADERS and lowered not in fields:
            fields[lowered] = [
                address
                for value in _header_items(message, name)
                for address in header_addresses(name, value)
            ]
    senders = fields.get("sender") or fields.get("from") or []
    if len(senders) != 1:
        raise ConfigurationError(
            f"the message needs exactly one From address (or a Sender header), found {len(senders)}"
        )
    recipients = dict.fromkeys(
        envelope_address(key, a).addr_spec
        for key in ("to", "cc", "bcc")
        for a in fields.get(key, [])
    )
    if not recipients:
        raise ConfigurationError("the message has no recipient (To, Cc or Bcc)")
    every = [a for addresses in fields.values() for a in addresses]
    smtputf8 = not all(a.addr_spec.isascii() for a in every)
    data = _serialize(message, smtputf8=smtputf8)
    check_line_lengths(data)
    return OutgoingMessage(
        sender=envelope_address("sender", senders[0]).addr_spec,
        recipients=tuple(recipients),
        data=data,
        smtputf8=smtputf8,
        eight_bit=not data.isascii(),
    )


def prepare_email(email: Email) -> OutgoingMessage:
    """Serialize an Email without the email package (see :mod:`oauthsmtp._message.mime`).

    Raises:
        ConfigurationError: an attachment file cannot be read, or a field or an attached
            message cannot be written within RFC 5322's line limits.
    """
    from email.utils import formatdate, make_msgid

    parsed = parsed_addresses(email)
    mailboxes = (parsed.sender, *parsed.to, *parsed.cc, *parsed.bcc, *parsed.reply_to)
    attachments: list[Attachment] = []
    for spec in email.attachments:
        filename, maintype, subtype = describe_attachment(spec)
        if (maintype, subtype) == ("message", "rfc822"):  # sent as it is: read whole
            attachments.append((filename, read_attachment(spec), maintype, subtype))
            continue
        if maintype in ("message", "multipart"):
            maintype, subtype = "application", "octet-stream"  # RFC 2046 forbids base64 here
        # Not copied, not read yet: encoded a block at a time into the message.
        attachments.append((filename, attachment_content(spec), maintype, subtype))
    headers = cast("tuple[tuple[str, str], ...]", email.headers)  # see Email.__post_init__
    given = {name.lower() for name, _ in headers}
    data = render(
        sender=(parsed.sender.display_name, parsed.sender.addr_spec),
        to=[(a.display_name, a.addr_spec) for a in parsed.to],
        cc=[(a.display_name, a.addr_spec) for a in parsed.cc],
        reply_to=[(a.display_name, a.addr_spec) for a in parsed.reply_to],
        subject=email.subject,
        headers=headers,
        text=email.text,
        html=email.html,
        attachments=attachments,
        date="" if "date" in given else formatdate(localtime=True),
        message_id="" if "message-id" in given else make_msgid(domain=parsed.sender.domain),
    )
    smtputf8 = not all(a.addr_spec.isascii() for a in mailboxes)
    # Only UTF-8 headers or an attached message can put 8-bit octets in what render() writes:
    # no need to scan a large message otherwise.
    maybe_8bit = smtputf8 or any(a[2:] == ("message", "rfc822") for a in attachments)
    return OutgoingMessage(
        sender=parsed.sender.addr_spec,
        recipients=email.envelope_recipients,
        data=data,
        smtputf8=smtputf8,
        eight_bit=maybe_8bit and not data.isascii(),
    )


def _serialize(message: Message, *, smtputf8: bool) -> bytes:
    import copy
    from email import policy as email_policy

    if "bcc" in message:
        message = copy.copy(message)  # __delitem__ rebinds the header list: no mutation
        del message["bcc"]
    if isinstance(message.policy, email_policy.EmailPolicy):
        policy = wire_policy(utf8=smtputf8)
    elif smtputf8:
        raise ConfigurationError(
            "a message with non-ASCII addresses must be an EmailMessage "
            "(policy=email.policy.default) to be sent with SMTPUTF8"
        )
    else:
        policy = message.policy.clone(linesep="\r\n")
    data = flatten(message, policy)
    # RFC 5321 §2.3.8: no bare CR or LF on the wire. With an EmailPolicy, the generator
    # writes every header with the policy's separator and flatten() every body; only a
    # message/* part may carry raw text, and a legacy (compat32) header raw 8-bit lines.
    if not isinstance(policy, email_policy.EmailPolicy) or any(
        part.get_content_maintype() == "message" for part in message.walk()
    ):
        data = to_crlf(data)
    return data
