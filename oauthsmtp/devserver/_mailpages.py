"""The development provider's received-messages pages, and one-line message summaries.

:class:`MessagesPage` answers ``/messages`` (the list, newest first), ``/messages/<n>`` (one
message: envelope, headers, text part, HTML part, attachments), ``/messages/<n>.eml`` (the
message as received) and ``/messages/<n>/attachments/<k>`` (one attachment, as a download) on
the authorization server's HTTP server, through
:meth:`~oauthsmtp.devserver.AuthServer.add_page`. Messages and attachments are numbered from
1 in the order they arrived or appear.

Every value taken from a message is HTML-escaped here, and control characters are made
visible, so a hostile subject (``<script>``, terminal escape sequences) shows as text. The
pages are self-contained: inline styles, no scripts, nothing loaded from elsewhere, under
the server's Content-Security-Policy (``default-src 'none'``). The HTML part is shown
rendered in an ``<iframe sandbox srcdoc=...>``: the empty ``sandbox`` attribute runs no
script, submits no form, opens no window and gives the frame an origin of its own, and the
page's policy, which the frame inherits, loads nothing (no remote images, no tracking).
Attachments are always served as ``application/octet-stream`` downloads, never rendered.
"""

from __future__ import annotations

import email.message
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from html import escape
from urllib.parse import quote

from ._authserver import PageResult
from ._pages import html_page
from ._smtpserver import ReceivedMessage

__all__ = [
    "Attachment",
    "MessageSummary",
    "MessagesPage",
    "attachments",
    "download_name",
    "printable",
    "summarize",
]

PATH = "/messages"

_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_NUMBER = re.compile(r"^[1-9][0-9]{0,8}$")
_MAX_SHOWN = 200_000  # characters of a text part shown on a page
_UNSAFE_FILENAME = re.compile(r"[^A-Za-z0-9._ -]")

_STYLE = """
body { font-family: system-ui, sans-serif; background: #f4f5f7; color: #1d1f23; margin: 0; }
main { max-width: 64rem; margin: 2rem auto; background: #fff; padding: 1.5rem 2rem;
       border-radius: 8px; box-shadow: 0 1px 4px rgba(0, 0, 0, .15); }
h1 { font-size: 1.4rem; margin-top: 0; word-break: break-word; }
h2 { font-size: 1.1rem; margin-top: 1.8rem; }
table { border-collapse: collapse; width: 100%; }
th, td { text-align: left; vertical-align: top; padding: .35rem .6rem;
         border-bottom: 1px solid #e3e5e8; word-break: break-word; }
th { background: #eef0f3; white-space: nowrap; }
td.when { white-space: nowrap; }
pre { background: #f6f8fa; padding: .8rem; overflow-x: auto; white-space: pre-wrap;
      word-break: break-word; border-radius: 4px; }
iframe { width: 100%; height: 28rem; border: 1px solid #e3e5e8; border-radius: 4px;
         background: #fff; }
details { margin-top: .6rem; }
.empty, .note { color: #667; }
.note { margin-top: 2rem; font-size: .85rem; }
nav { margin-bottom: 1rem; }
"""

_NOTE = (
    '<p class="note">oauthsmtp development SMTP server: messages are kept here and never '
    "delivered. For local development and tests only.</p>"
)


def printable(text: str) -> str:
    """Return ``text`` with control characters (and line breaks) shown as ``\\xNN`` escapes.

    Used for console lines and page cells, so that a hostile header cannot move the cursor,
    clear the screen or forge extra lines.
    """
    text = text.replace("\r", "\\r").replace("\n", "\\n").replace("\t", " ")
    return _CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", text)


@dataclass(frozen=True)
class MessageSummary:
    """What the list page and the console show for one message (raw text, not escaped).

    Attributes:
        received: when the message arrived, ``YYYY-MM-DD HH:MM:SS`` (UTC).
        sender: the From header, or the envelope sender when there is none.
        recipients: the To header, or the envelope recipients when there is none.
        subject: the decoded subject, or ``""``.
        cc: the Cc header, or ``""``.
    """

    received: str
    sender: str
    recipients: str
    subject: str
    cc: str = ""


def _header(message: email.message.EmailMessage, name: str) -> str:
    try:
        values = message.get_all(name) or []
        return ", ".join(str(value) for value in values)
    except Exception:  # a header the email package cannot parse: show nothing, not a 500
        return ""


def _parse(received: ReceivedMessage) -> email.message.EmailMessage | None:
    try:
        return received.message
    except Exception:
        return None


def summarize(received: ReceivedMessage) -> MessageSummary:
    """Return the time, sender, recipients and subject of a received message."""
    message = _parse(received)
    sender = _header(message, "From") if message is not None else ""
    recipients = _header(message, "To") if message is not None else ""
    subject = _header(message, "Subject") if message is not None else ""
    cc = _header(message, "Cc") if message is not None else ""
    return MessageSummary(
        received=f"{received.received_at:%Y-%m-%d %H:%M:%S}",
        sender=sender or received.mail_from or "<>",
        recipients=recipients or ", ".join(received.rcpt_tos),
        subject=subject,
        cc=cc,
    )


def _text(value: str) -> str:
    """Escape for HTML after making control characters visible."""
    return escape(printable(value))


def _block(value: str) -> str:
    """Escape a multi-line text for ``<pre>``: line breaks and tabs kept, other controls shown."""
    value = value.replace("\r\n", "\n")
    return escape(_CONTROL.sub(lambda m: f"\\x{ord(m.group()):02x}", value))


def _page(title: str, body: str) -> str:
    return html_page(_text(title), body, style=_STYLE, note=_NOTE)


def render_list(messages: Sequence[ReceivedMessage]) -> str:
    """Return the list page: one row per message, newest first."""
    rows = []
    for number in range(len(messages), 0, -1):
        summary = summarize(messages[number - 1])
        link = f"{PATH}/{number}"
        subject = _text(summary.subject) if summary.subject else "<em>(no subject)</em>"
        rows.append(
            f'<tr id="message-{number}">'
            f'<td class="when">{_text(summary.received)}</td>'
            f'<td class="from">{_text(summary.sender)}</td>'
            f'<td class="to">{_text(summary.recipients)}</td>'
            f'<td class="cc">{_text(summary.cc)}</td>'
            f'<td class="subject"><a href="{link}">{subject}</a></td></tr>'
        )
    count = len(messages)
    if rows:
        table = (
            '<table id="messages">\n<thead><tr><th>Received (UTC)</th><th>From</th><th>To</th>'
            "<th>Cc</th><th>Subject</th></tr></thead>\n<tbody>\n"
            + "\n".join(rows)
            + "\n</tbody>\n</table>"
        )
    else:
        table = (
            '<p class="empty" id="no-messages">No messages yet. Reload this page after sending.</p>'
        )
    plural = "" if count == 1 else "s"
    body = (
        "<h1>Received messages</h1>\n"
        f'<p id="count">{count} message{plural}, newest first. '
        f'<a href="{PATH}">Reload</a></p>\n{table}'
    )
    return _page("Received messages - oauthsmtp dev server", body)


def _body_part(message: email.message.EmailMessage, kind: str) -> str | None:
    """The decoded ``text/<kind>`` body part (``plain`` or ``html``), or None."""
    try:
        part = message.get_body(preferencelist=(kind,))
    except Exception:
        part = None
    if part is None or not isinstance(part, email.message.EmailMessage):
        return None
    if part.get_content_type() != f"text/{kind}":
        return None
    try:
        text = part.get_content()
    except Exception:
        payload = part.get_payload(decode=True)
        text = payload.decode("utf-8", "replace") if isinstance(payload, bytes) else None
    return text if isinstance(text, str) else None


@dataclass(frozen=True)
class Attachment:
    """One attachment of a received message (``data`` decoded from its transfer encoding)."""

    filename: str
    content_type: str
    data: bytes


def attachments(message: email.message.EmailMessage) -> list[Attachment]:
    """The message's attachments, in order; a part that cannot be decoded is skipped."""
    found = []
    try:
        for part in message.iter_attachments():
            payload = part.get_payload(decode=True)
            found.append(
                Attachment(
                    filename=part.get_filename() or "",
                    content_type=part.get_content_type(),
                    data=payload if isinstance(payload, bytes) else b"",
                )
            )
    except Exception:
        return found
    return found


def download_name(filename: str, number: int, index: int) -> str:
    """A ``Content-Disposition`` value for an attachment: never a path, never a header break.

    The plain ``filename`` keeps safe ASCII only; the full name goes in RFC 6266 /
    RFC 8187 ``filename*`` (UTF-8, percent-encoded), which browsers prefer.
    """
    base = filename.replace("\\", "/").rsplit("/", 1)[-1].strip().lstrip(".")
    fallback = _UNSAFE_FILENAME.sub("_", base)[:120] or f"message-{number}-attachment-{index}"
    value = f'attachment; filename="{fallback}"'
    if base and base != fallback:
        value += "; filename*=UTF-8''" + quote(base[:200], safe="")
    return value


def render_message(number: int, received: ReceivedMessage) -> str:
    """Return the page of one message: envelope, headers, text part and attachments."""
    summary = summarize(received)
    message = _parse(received)
    envelope = [
        ("Received (UTC)", summary.received),
        ("MAIL FROM", received.mail_from or "<>"),
        ("RCPT TO", ", ".join(received.rcpt_tos)),
        ("Authenticated as", received.user or "(nobody)"),
        ("Size", f"{len(received.data)} bytes"),
    ]
    envelope_rows = "\n".join(
        f"<tr><th>{_text(name)}</th><td>{_text(value)}</td></tr>" for name, value in envelope
    )
    header_rows = []
    if message is not None:
        for name in dict.fromkeys(message.keys()):
            value = _header(message, name)
            header_rows.append(f"<tr><th>{_text(name)}</th><td>{_text(value)}</td></tr>")
    headers = "\n".join(header_rows) or '<tr><td class="empty">(none readable)</td></tr>'
    text = _body_part(message, "plain") if message is not None else None
    html = _body_part(message, "html") if message is not None else None
    sections = []
    if text is not None:
        if len(text) > _MAX_SHOWN:
            text = text[:_MAX_SHOWN] + "\n[... cut: download the .eml for the rest]"
        sections.append(f'<h2>Text</h2>\n<pre id="text">{_block(text)}</pre>')
    if html is not None:
        sections.append(_html_section(html))
    if not sections:
        sections.append('<p class="empty" id="no-text">(no text part)</p>')
    body_html = "\n".join(sections)
    found = attachments(message) if message is not None else []
    attachment_html = ""
    if found:
        items = "\n".join(
            f'<li><a href="{PATH}/{number}/attachments/{index}" download>'
            f"{_text(item.filename or '(no name)')}</a> "
            f"({_text(item.content_type)}, {len(item.data)} bytes)</li>"
            for index, item in enumerate(found, start=1)
        )
        attachment_html = f'<h2>Attachments</h2>\n<ul id="attachments">\n{items}\n</ul>'
    title = summary.subject or "(no subject)"
    body = (
        f'<nav><a href="{PATH}">All messages</a> · '
        f'<a href="{PATH}/{number}.eml" id="raw">Download .eml</a></nav>\n'
        f'<h1 id="subject">{_text(title)}</h1>\n'
        f'<h2>Envelope</h2>\n<table id="envelope">\n{envelope_rows}\n</table>\n'
        f'<h2>Headers</h2>\n<table id="headers">\n{headers}\n</table>\n'
        f"{body_html}\n{attachment_html}"
    )
    return _page(f"{title} - oauthsmtp dev server", body)


def _html_section(html: str) -> str:
    """The HTML part, rendered where it can do nothing, and its source (see the module doc)."""
    html = html.replace("\r\n", "\n")
    if len(html) > _MAX_SHOWN:
        html = html[:_MAX_SHOWN]
    # escape(quote=True) makes the whole document one attribute value; the browser unescapes
    # it into the frame, whose empty sandbox attribute turns every permission off.
    return (
        "<h2>HTML part</h2>\n"
        '<iframe id="html" title="HTML part (sandboxed: no scripts, nothing loaded)" '
        f'sandbox="" referrerpolicy="no-referrer" srcdoc="{escape(html, quote=True)}"></iframe>\n'
        "<details><summary>HTML source</summary>\n"
        f'<pre id="html-source">{_block(html)}</pre></details>'
    )


def _not_found(what: str) -> tuple[int, str, bytes]:
    body = f'<h1>Not found</h1>\n<p>{_text(what)}</p>\n<p><a href="{PATH}">All messages</a></p>'
    return 404, "text/html; charset=utf-8", _page("Not found", body).encode("utf-8")


class MessagesPage:
    """The page handler for :meth:`AuthServer.add_page` (see the module docstring).

    Args:
        messages: returns the received messages, oldest first (called on each request).
    """

    def __init__(self, messages: Callable[[], Sequence[ReceivedMessage]]) -> None:
        self._messages = messages

    def __call__(self, path: str, query: str) -> PageResult:
        """Answer one GET: the list, one message, or its ``.eml`` file."""
        messages = self._messages()
        rest = path[len(PATH) :]
        if rest in ("", "/"):
            return 200, "text/html; charset=utf-8", render_list(messages).encode("utf-8")
        name = rest[1:] if rest.startswith("/") else ""
        if "/attachments/" in name:
            return self._attachment(messages, *name.split("/attachments/", 1))
        raw = name.endswith(".eml")
        number_text = name[:-4] if raw else name
        if not _NUMBER.match(number_text) or int(number_text) > len(messages):
            return _not_found("There is no such message.")
        number = int(number_text)
        received = messages[number - 1]
        if raw:
            disposition = f'attachment; filename="message-{number}.eml"'
            return 200, "message/rfc822", received.data, [("Content-Disposition", disposition)]
        page = render_message(number, received)
        return 200, "text/html; charset=utf-8", page.encode("utf-8")

    def _attachment(
        self, messages: Sequence[ReceivedMessage], number_text: str, index_text: str
    ) -> PageResult:
        """One attachment as a download (``application/octet-stream``: never rendered)."""
        if not _NUMBER.match(number_text) or int(number_text) > len(messages):
            return _not_found("There is no such message.")
        number = int(number_text)
        message = _parse(messages[number - 1])
        found = attachments(message) if message is not None else []
        if not _NUMBER.match(index_text) or int(index_text) > len(found):
            return _not_found("There is no such attachment.")
        index = int(index_text)
        item = found[index - 1]
        disposition = download_name(item.filename, number, index)
        return 200, "application/octet-stream", item.data, [("Content-Disposition", disposition)]
