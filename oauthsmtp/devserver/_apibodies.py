"""What the emulated Gmail API and Microsoft Graph answer (pure): routes, error bodies, switches.

The error bodies follow each API's own format: Google's ``{"error": {"code", "message",
"errors": [{"reason"}], "status", "details": [{"@type": "...ErrorInfo", "reason"}]}}`` and
Graph's ``{"error": {"code", "message", "innerError"}}``. :func:`forced_answer` is what
:meth:`~oauthsmtp.devserver.APIServer.fail_next` makes the server answer.
"""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass
from email.headerregistry import Address
from email.message import EmailMessage
from email.parser import BytesHeaderParser
from email.policy import compat32
from email.utils import getaddresses
from typing import Any
from urllib.parse import unquote, urlsplit

__all__ = [
    "mime_from_graph_json",
    "split_envelope",
    "FAILURES",
    "Forced",
    "forced_answer",
    "google_error",
    "graph_error",
    "route",
    "to_json",
]

FAILURES = (
    "401",
    "403",
    "403-disabled",
    "403-license",
    "429",
    "500",
    "503",
    "html",
    "no-id",
    "drop",
)
"""The answers :meth:`APIServer.fail_next` can force."""


@dataclass(frozen=True)
class Forced:
    kind: str
    retry_after: str | None


def google_error(code: int, message: str, status: str, reason: str) -> dict[str, Any]:
    return {
        "error": {
            "code": code,
            "message": message,
            "errors": [{"message": message, "domain": "global", "reason": reason}],
            "status": status,
            "details": [
                {
                    "@type": "type.googleapis.com/google.rpc.ErrorInfo",
                    "reason": reason,
                    "domain": "googleapis.com",
                }
            ],
        }
    }


def graph_error(code: str, message: str) -> dict[str, Any]:
    return {"error": {"code": code, "message": message, "innerError": {"request-id": "dev"}}}


def to_json(data: object) -> bytes:
    return json.dumps(data).encode("utf-8")


def route(path: str) -> tuple[str, str]:
    """``(api, user)`` for a sending path; ``("", "")`` for anything else."""
    split = urlsplit(path)
    parts = [unquote(p) for p in split.path.split("/")]
    gmail_tail = ["messages", "send"]
    if len(parts) == 7 and parts[1:4] == ["gmail", "v1", "users"] and parts[5:] == gmail_tail:
        return "gmail", parts[4]
    if (
        len(parts) == 8
        and parts[1:5] == ["upload", "gmail", "v1", "users"]
        and parts[6:] == gmail_tail
        and split.query == "uploadType=media"
    ):
        return "gmail-upload", parts[5]
    if len(parts) == 4 and parts[1:4] == ["graph", "v1.0", "$batch"]:
        return "graph-batch", ""
    if len(parts) == 5 and parts[1:4] == ["graph", "v1.0", "me"] and parts[4] == "sendMail":
        return "graph", "me"
    if len(parts) == 6 and parts[1:4] == ["graph", "v1.0", "users"] and parts[5] == "sendMail":
        return "graph", parts[4]
    return "", ""


def forced_answer(api: str, forced: Forced) -> tuple[int, dict[str, str], bytes] | None:
    json_type = {"Content-Type": "application/json; charset=UTF-8"}
    kind = forced.kind
    if kind == "drop":
        return None
    if kind == "html":
        page = b"<!DOCTYPE html><html><body>Please sign in to the Wi-Fi</body></html>"
        return 200, {"Content-Type": "text/html"}, page
    if kind == "no-id":
        return 200, json_type, b"{}"
    status = int(kind[:3])
    gmail = api == "gmail"
    if kind == "401":
        data = (
            google_error(
                401,
                "Request had invalid authentication credentials.",
                "UNAUTHENTICATED",
                "ACCESS_TOKEN_EXPIRED",
            )
            if gmail
            else graph_error(
                "InvalidAuthenticationToken", "Lifetime validation failed, the token is expired."
            )
        )
    elif kind == "403-disabled" or (kind == "403-license" and gmail):
        data = google_error(
            403,
            "Gmail API has not been used in project 0 before or it is disabled.",
            "PERMISSION_DENIED",
            "SERVICE_DISABLED",
        )
    elif kind == "403-license":
        data = graph_error(
            "MailboxNotEnabledForRESTAPI",
            "The mailbox is either inactive, soft-deleted, or is hosted on-premise.",
        )
    elif kind == "403":
        data = (
            google_error(
                403,
                "Request had insufficient authentication scopes.",
                "PERMISSION_DENIED",
                "ACCESS_TOKEN_SCOPE_INSUFFICIENT",
            )
            if gmail
            else graph_error(
                "ErrorAccessDenied", "Access is denied. Check credentials and try again."
            )
        )
    elif kind == "429":
        data = (
            google_error(
                429, "User-rate limit exceeded.", "RESOURCE_EXHAUSTED", "rateLimitExceeded"
            )
            if gmail
            else graph_error(
                "ApplicationThrottled", "Application is over its MailboxConcurrency limit."
            )
        )
    else:
        data = (
            google_error(
                status,
                "Backend Error",
                "UNAVAILABLE" if status == 503 else "INTERNAL",
                "backendError",
            )
            if gmail
            else graph_error(
                "ServiceUnavailable" if status == 503 else "InternalServerError", "Service error."
            )
        )
    headers = dict(json_type)
    if forced.retry_after is not None:
        headers["Retry-After"] = forced.retry_after
    return status, headers, to_json(data)


def _recipients(message: dict[str, Any], key: str) -> list[Address]:
    found = []
    for entry in message.get(key) or []:
        email = entry.get("emailAddress") if isinstance(entry, dict) else None
        if not isinstance(email, dict):
            raise ValueError(f"invalid {key}")
        address = email.get("address")
        if not isinstance(address, str) or address.count("@") != 1:
            raise ValueError(f"invalid {key}")
        local, domain = address.split("@")
        found.append(
            Address(display_name=str(email.get("name") or ""), username=local, domain=domain)
        )
    return found


def mime_from_graph_json(payload: object) -> bytes | str:
    """The RFC 5322 message Exchange would build from a JSON ``sendMail`` body, or a problem.

    Takes ``{"message": {subject, body, from, toRecipients, ccRecipients, bccRecipients,
    replyTo, attachments (fileAttachment), internetMessageHeaders}}``; Bcc is kept as a
    header here (the caller takes the envelope from it and removes it).
    """
    message = payload.get("message") if isinstance(payload, dict) else None
    if not isinstance(message, dict):
        return "The message is missing."
    try:
        out = EmailMessage()
        out["Subject"] = str(message.get("subject", ""))
        sender = _recipients({"from": [message["from"]]} if "from" in message else {}, "from")
        if sender:
            out["From"] = sender[0]
        for key, header in (("toRecipients", "To"), ("ccRecipients", "Cc"),
                            ("bccRecipients", "Bcc"), ("replyTo", "Reply-To")):  # fmt: skip
            addresses = _recipients(message, key)
            if addresses:
                out[header] = addresses
        for item in message.get("internetMessageHeaders") or []:
            name, value = str(item["name"]), str(item["value"])
            if not name.lower().startswith("x-"):
                return "The internet message header name should start with 'x-' or 'X-'."
            out[name] = value
        body = message.get("body") or {}
        content = str(body.get("content", ""))
        if str(body.get("contentType", "Text")).lower() == "html":
            out.set_content(content, subtype="html")
        else:
            out.set_content(content)
        for attachment in message.get("attachments") or []:
            data = base64.b64decode(attachment["contentBytes"], validate=True)
            maintype, _, subtype = str(
                attachment.get("contentType") or "application/octet-stream"
            ).partition("/")
            out.add_attachment(data, maintype=maintype, subtype=subtype or "octet-stream",
                               filename=str(attachment.get("name") or "attachment"))  # fmt: skip
    except (KeyError, TypeError, ValueError, AttributeError, binascii.Error):
        return "The JSON message is not valid."
    return out.as_bytes(policy=out.policy.clone(linesep="\r\n"))


def split_envelope(raw: bytes) -> tuple[str | None, tuple[str, ...], bytes] | str:
    """``(sender, recipients, message without Bcc)`` as the APIs take them from the headers.

    Both APIs read the recipients from To, Cc and Bcc and remove Bcc before delivery.
    Returns the problem's words when there is no recipient.
    """
    data = raw.replace(b"\r\n", b"\n").replace(b"\n", b"\r\n")
    head = data.split(b"\r\n\r\n", 1)[0] + b"\r\n\r\n"
    parsed = BytesHeaderParser(policy=compat32).parsebytes(head)
    recipients = [
        address
        for _, address in getaddresses(
            [str(v) for name in ("to", "cc", "bcc") for v in parsed.get_all(name, [])]
        )
        if address
    ]
    if not recipients:
        return "Recipient address required"
    senders = [a for _, a in getaddresses([str(v) for v in parsed.get_all("from", [])]) if a]
    if "bcc" in parsed:
        lines = data.split(b"\r\n\r\n", 1)
        kept: list[bytes] = []
        skipping = False
        for line in lines[0].split(b"\r\n"):
            if line[:1] in (b" ", b"\t") and skipping:
                continue
            skipping = line.lower().startswith(b"bcc:")
            if not skipping:
                kept.append(line)
        data = b"\r\n".join(kept) + b"\r\n\r\n" + (lines[1] if len(lines) > 1 else b"")
    return (senders[0] if senders else None), tuple(dict.fromkeys(recipients)), data
