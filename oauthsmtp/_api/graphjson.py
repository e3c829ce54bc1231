"""A prepared message as Microsoft Graph's JSON ``message`` resource, when that is faithful (pure).

Graph's JSON batching (``POST /$batch``, up to 20 requests) carries JSON bodies; a MIME
body would have to be base64-encoded twice, which Graph does not document for ``sendMail``.
So a batch sends each message as JSON (``{"message": {...}, "saveToSentItems": true}``),
and :func:`graph_message` converts the RFC 5322 bytes only when nothing is lost:

* a subject, one text and/or one HTML body (``text/plain`` and ``text/html``, alone or as
  ``multipart/alternative``; Graph keeps one body and makes the other), file attachments
  (``fileAttachment`` with base64 ``contentBytes``), From, To, Cc, Bcc and Reply-To;
* extension headers (``X-...``) as ``internetMessageHeaders``, the only ones Graph accepts.

Anything else (inline images, nested messages, other headers such as ``In-Reply-To``,
``References`` or ``List-Unsubscribe``, S/MIME, non-UTF-8 text) returns None: that message
is sent alone, as MIME, exactly as written. Date and Message-ID are set by Exchange.
"""

from __future__ import annotations

import base64
from email import policy
from email.headerregistry import Address
from email.message import EmailMessage, Message
from email.parser import BytesParser
from typing import Any

__all__ = ["BATCH_MAX_MESSAGE_BYTES", "MAX_BATCH", "graph_message"]

MAX_BATCH = 20
"""Graph's limit of requests in one JSON batch."""

BATCH_MAX_MESSAGE_BYTES = 256 * 1024
"""Larger messages are sent alone as MIME: their transfer, not the round trip, dominates, and
parsing and re-encoding them as JSON costs more than a batch saves (see ``make bench``)."""

_DROPPED = frozenset(
    {"date", "message-id", "mime-version", "content-type", "content-transfer-encoding"}
)
_MAPPED = frozenset({"from", "to", "cc", "bcc", "reply-to", "subject"})


def graph_message(raw: bytes) -> dict[str, Any] | None:
    """The ``sendMail`` JSON body for ``raw``, or None when JSON cannot carry it faithfully."""
    try:
        message = BytesParser(policy=policy.default).parsebytes(raw)
    except Exception:  # the email package's defects: not convertible, send as MIME
        return None
    if not isinstance(message, EmailMessage) or message.defects:
        return None
    extension: list[dict[str, str]] = []
    for name, value in message.items():
        lowered = name.lower()
        if lowered in _MAPPED or lowered in _DROPPED:
            continue
        if not lowered.startswith("x-"):
            return None
        extension.append({"name": name, "value": str(value)})
    bodies: dict[str, str] = {}
    attachments: list[dict[str, Any]] = []
    if not _collect(message, bodies, attachments, top=True):
        return None
    if not bodies and not attachments:
        bodies["text/plain"] = ""
    result: dict[str, Any] = {"subject": str(message.get("subject", ""))}
    if "text/html" in bodies:
        result["body"] = {"contentType": "HTML", "content": bodies["text/html"]}
    else:
        result["body"] = {"contentType": "Text", "content": bodies.get("text/plain", "")}
    for header, key in (("to", "toRecipients"), ("cc", "ccRecipients"), ("bcc", "bccRecipients"),
                        ("reply-to", "replyTo")):  # fmt: skip
        recipients = _addresses(message, header)
        if recipients is None:
            return None
        if recipients:
            result[key] = recipients
    senders = _addresses(message, "from")
    if not senders or len(senders) != 1:
        return None
    result["from"] = senders[0]
    if attachments:
        result["attachments"] = attachments
    if extension:
        result["internetMessageHeaders"] = extension
    return {"message": result, "saveToSentItems": True}


def _collect(
    part: Message, bodies: dict[str, str], attachments: list[dict[str, Any]], *, top: bool
) -> bool:
    kind = part.get_content_type()
    if part.is_multipart():
        if kind not in ("multipart/mixed", "multipart/alternative"):
            return False
        if kind == "multipart/mixed" and not top:
            return False
        return all(
            _collect(sub, bodies, attachments, top=False)
            for sub in part.iter_parts()  # type: ignore[attr-defined]
        )
    disposition = part.get_content_disposition()
    if disposition == "attachment" or (disposition is None and not kind.startswith("text/")):
        if part.get_content_maintype() in ("message", "multipart"):
            return False
        payload = part.get_payload(decode=True)
        if not isinstance(payload, bytes):
            return False
        attachments.append(
            {
                "@odata.type": "#microsoft.graph.fileAttachment",
                "name": part.get_filename() or "attachment",
                "contentType": kind,
                "contentBytes": base64.b64encode(payload).decode("ascii"),
            }
        )
        return True
    if disposition == "inline" or kind not in ("text/plain", "text/html") or kind in bodies:
        return False
    try:
        text = part.get_content()  # type: ignore[attr-defined]
        bodies[kind] = text.replace("\r\n", "\n")
    except (LookupError, UnicodeDecodeError):
        return False
    return True


def _addresses(message: EmailMessage, header: str) -> list[dict[str, Any]] | None:
    found: list[dict[str, Any]] = []
    for value in message.get_all(header, []):
        addresses = getattr(value, "addresses", None)
        if addresses is None:
            return None
        for address in addresses:
            if not isinstance(address, Address) or not address.addr_spec:
                return None
            entry: dict[str, Any] = {"address": address.addr_spec}
            if address.display_name:
                entry["name"] = address.display_name
            found.append({"emailAddress": entry})
    return found
