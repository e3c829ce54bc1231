"""Send an HTML message with a plain-text alternative and two attachments.

``oauthsmtp.Email`` builds the MIME structure: with both ``text`` and ``html``
the body is multipart/alternative (mail programs show the HTML, or the text
where HTML is off), and ``attachments`` takes file paths (read when the
message is sent, type guessed from the name) and ``(filename, bytes)`` or
``(filename, bytes, mime_type)`` tuples for data made in memory.

With Gmail (the first run opens the browser to log in, later runs do not):

    export GMAIL_CLIENT_ID=... GMAIL_CLIENT_SECRET=... GMAIL_ACCOUNT=me@gmail.com
    python examples/gmail/send_html_attachments.py --to you@example.com

Offline, against oauthsmtp's local development provider, which also checks
the structure and the attachments of the message that arrived:

    python examples/gmail/send_html_attachments.py --dev
"""

from __future__ import annotations

import sys
import tempfile
from collections.abc import Iterator
from email.message import MIMEPart
from pathlib import Path

from _common import Mailbox, arrival, check, describe, example_parser, run

import oauthsmtp

SUBJECT = "Monthly report (HTML, with attachments)"
TEXT = """\
Hello,

the monthly report is attached: report.csv has the numbers, notes.txt the notes.

-- sent by oauthsmtp's send_html_attachments.py
"""
HTML = """\
<html>
  <body>
    <h1>Monthly report</h1>
    <p>Hello,</p>
    <p>the monthly report is attached: <b>report.csv</b> has the numbers,
       <b>notes.txt</b> the notes.</p>
    <table border="1" cellpadding="4">
      <tr><th>month</th><th>messages sent</th></tr>
      <tr><td>January</td><td>120</td></tr>
      <tr><td>February</td><td>98</td></tr>
    </table>
    <p><small>sent by oauthsmtp's <code>send_html_attachments.py</code></small></p>
  </body>
</html>
"""
NOTES = "Notes for the monthly report.\nFebruary was shorter.\n"
REPORT = b"month,messages sent\r\nJanuary,120\r\nFebruary,98\r\n"


def send_html(mailbox: Mailbox) -> None:
    token = oauthsmtp.auth_identify(mailbox.params, account=mailbox.account, store=mailbox.store)
    with tempfile.TemporaryDirectory() as folder:
        notes = Path(folder) / "notes.txt"  # stands for any file on disk
        notes.write_text(NOTES, encoding="utf-8")
        message = oauthsmtp.Email(
            sender=mailbox.account,
            to=list(mailbox.to),
            subject=SUBJECT,
            text=TEXT,
            html=HTML,
            attachments=[
                notes,  # a path: read when the message is sent, text/plain from ".txt"
                ("report.csv", REPORT, "text/csv"),  # bytes made in memory, type given
            ],
        )
        with mailbox.session(token) as session:
            result = session.send(message)
    print(describe(result))
    result.raise_for_status()  # SMTPError (exit 1) if the server refused the message

    if mailbox.provider is not None:
        [received] = mailbox.received(1)
        print(arrival(received))
        parsed = received.message
        for line in mime_tree(parsed):
            print(f"  {line}")
        body = parsed.get_body(preferencelist=("html",))
        check(body is not None and "<h1>Monthly report</h1>" in body.get_content(), "HTML body")
        text = parsed.get_body(preferencelist=("plain",))
        check(text is not None and "report.csv has the numbers" in text.get_content(), "text")
        attached = {
            part.get_filename(): part.get_payload(decode=True) for part in parsed.iter_attachments()
        }
        expected = {"notes.txt": NOTES.encode(), "report.csv": REPORT}
        check(attached == expected, "notes.txt and report.csv, byte for byte")
        print("dev check passed: HTML and text bodies, 2 attachments byte for byte")


def mime_tree(part: MIMEPart, depth: int = 0) -> Iterator[str]:
    """The MIME structure, one line per part, indented by depth."""
    line = "  " * depth + part.get_content_type()
    if part.is_attachment():
        size = len(part.get_payload(decode=True) or b"")
        line += f"  attachment {part.get_filename()} ({size} bytes)"
    yield line
    for child in part.iter_parts():
        yield from mime_tree(child, depth + 1)


def main(argv: list[str] | None = None) -> int:
    parser = example_parser(__doc__)
    return run(parser.prog, parser.parse_args(argv), send_html)


if __name__ == "__main__":
    sys.exit(main())
