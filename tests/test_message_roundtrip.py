"""Round trip: what we send parses back to what the Email says, through both renderers.

The direct renderer (``prepare_message(email)``) and the email package with our wire policy
(``prepare_message(email.to_message())``) must both give, to a reader: the same addresses
and display names (decoded per RFC 2047 §6.2, which drops the white space between two
encoded-words), the same subject and custom headers, the same bodies (line ends aside) and
the same attachments; with CRLF line ends, no line over 998 octets and no NUL octet.
"""

from __future__ import annotations

import email.parser
import email.policy
from email.header import decode_header, make_header
from email.message import EmailMessage

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauthsmtp import Email
from oauthsmtp._message.addresses import parse_address
from oauthsmtp._message.prepare import OutgoingMessage, prepare_message

ATEXT = "abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789!#$%&'*+-/=?^_`{|}~"
# Printable text without controls (refused in headers), angle brackets (which keep the
# test's own splitting of address fields simple) and surrogates.
HEADER_TEXT = st.characters(
    blacklist_categories=("Cc", "Cs", "Zl", "Zp"), blacklist_characters="<>\x85"
)

atoms = st.text(ATEXT, min_size=1, max_size=12)
local_parts = st.one_of(
    st.builds(".".join, st.lists(atoms, min_size=1, max_size=3)),
    st.sampled_from(["ñoño", "josé.garcía", "用户", "o'brien"]),
)
labels = st.text("abcdefghijklmnopqrstuvwxyz0123456789", min_size=1, max_size=20)
domains = st.one_of(
    st.builds(
        lambda ls, tld: ".".join([*ls, tld]), st.lists(labels, min_size=1, max_size=3), labels
    ),
    st.sampled_from(["bücher.example", "straße.de", "日本.jp", "βόλος.gr"]),
)
display_names = st.one_of(
    st.just(""),
    st.text(ATEXT + " ", max_size=40),
    st.text(HEADER_TEXT, max_size=120),
    st.sampled_from(["Zoë Ü", "  spaced  ", " ", "Smith, John", 'a "q" \\ b', "a.b"]),
).filter(lambda name: "=?" not in name)  # refused in a display name: see test_message_hardening


@st.composite
def addresses(draw: st.DrawFn) -> str:
    addr = f"{draw(local_parts)}@{draw(domains)}"
    name = draw(display_names)
    if not name:
        return addr
    quoted = name.replace("\\", "\\\\").replace('"', '\\"')
    return f'"{quoted}" <{addr}>'


header_values = st.one_of(
    st.text(HEADER_TEXT | st.just("\t"), max_size=200),
    st.sampled_from(["=?utf-8?q?literal?=", " leading", "trailing ", "w" * 1200, "a  b"]),
)
bodies = st.one_of(
    st.none(),
    st.text(max_size=400).filter(lambda t: not any(0xD800 <= ord(c) <= 0xDFFF for c in t)),
    st.sampled_from(["x" * 2000, "a\x00b\r\nc\rd\n", "你好世界。\n" * 30, ".\r\n..\r\n"]),
)
filenames = st.text(HEADER_TEXT, min_size=1, max_size=120).filter(lambda n: n.strip() == n)


@st.composite
def attachments(draw: st.DrawFn) -> tuple[str, bytes, str]:
    name = draw(filenames)
    kind = draw(st.sampled_from(["application/octet-stream", "image/png", "message/rfc822"]))
    if kind == "message/rfc822":
        subject = draw(st.text(ATEXT + " ", max_size=60))
        body = draw(st.text(ATEXT + " \n", max_size=200))
        data = f"Subject: {subject}\r\nX-Inner: 1\r\n\r\n{body}".encode()
    else:
        data = draw(st.binary(max_size=300))
    return (name, data, kind)


@st.composite
def emails(draw: st.DrawFn) -> Email:
    to = draw(st.lists(addresses(), min_size=1, max_size=4))
    headers = draw(
        st.dictionaries(
            st.sampled_from(["X-Note", "X-Trace", "Comments", "Keywords", "X-Mailer"]),
            header_values,
            max_size=3,
        )
    )
    return Email(
        sender=draw(addresses()),
        to=to,
        cc=draw(st.lists(addresses(), max_size=3)),
        bcc=draw(st.lists(addresses(), max_size=2)),
        reply_to=draw(st.lists(addresses(), max_size=2)),
        subject=draw(header_values),
        text=draw(bodies),
        html=draw(bodies),
        attachments=draw(st.lists(attachments(), max_size=3)),
        headers=headers,
    )


def _parse(out: OutgoingMessage) -> EmailMessage:
    if out.smtputf8:  # RFC 6532 headers are UTF-8: the str parser reads them as such
        msg = email.parser.Parser(policy=email.policy.default).parsestr(out.data.decode())
    else:
        msg = email.parser.BytesParser(policy=email.policy.default).parsebytes(out.data)
    assert isinstance(msg, EmailMessage)
    return msg


def _raw_fields(out: OutgoingMessage) -> dict[str, str]:
    """The header fields as sent, unfolded, still encoded."""
    head = out.data.split(b"\r\n\r\n", 1)[0].decode("utf-8")
    fields: dict[str, str] = {}
    for field in head.replace("\r\n ", " ").replace("\r\n\t", "\t").split("\r\n"):
        name, _, value = field.partition(":")
        fields.setdefault(name.lower(), value.strip(" "))
    return fields


def _phrase(raw: str) -> str:
    """A display name as an RFC 2047 reader decodes it."""
    if raw.startswith('"') and raw.endswith('"'):
        out, escaped = [], False
        for char in raw[1:-1]:
            if escaped or char != "\\":
                out.append(char)
                escaped = False
            else:
                escaped = True
        return "".join(out)
    if "=?" in raw:
        return str(make_header(decode_header(raw)))
    return raw


def _mailboxes(raw: str, expected: list[tuple[str, str]]) -> list[tuple[str, str]]:
    """Split an address field we wrote into (display name, addr-spec), decoding names."""
    found, pos = [], 0
    for name, addr in expected:
        if not name:
            assert raw.startswith(addr, pos), (raw[pos:], addr)
            found.append(("", addr))
            pos += len(addr)
        else:
            end = raw.index(f"<{addr}>", pos)
            found.append((_phrase(raw[pos:end].strip()), addr))
            pos = end + len(addr) + 2
        pos = len(raw) - len(raw[pos:].lstrip(", "))
    assert pos == len(raw)
    return found


def _text(value: str | None) -> str | None:
    if value is None:
        return None
    value = value.replace("\r\n", "\n").replace("\r", "\n")
    return value if value.endswith("\n") else value + "\n"


def _check(mail: Email, out: OutgoingMessage, *, bcc: bool = True) -> None:
    data = out.data
    assert b"\x00" not in data
    assert data.count(b"\n") == data.count(b"\r\n") == data.count(b"\r")
    assert max(map(len, data.split(b"\r\n"))) <= 998
    assert data.isascii() or out.smtputf8 or out.eight_bit
    assert out.sender == mail.envelope_sender
    if bcc:
        assert out.recipients == mail.envelope_recipients
    else:  # to_message() leaves Bcc out: it is never a header
        shown = (parse_address("to", a).addr_spec for a in (*mail.to, *mail.cc))
        assert out.recipients == tuple(dict.fromkeys(shown))
    msg = _parse(out)
    raw = _raw_fields(out)
    for name, values in (
        ("From", (mail.sender,)),
        ("To", mail.to),
        ("Cc", mail.cc),
        ("Reply-To", mail.reply_to),
    ):
        if not values:
            assert msg[name] is None
            continue
        expected = [(a.display_name, a.addr_spec) for a in (parse_address(name, v) for v in values)]
        assert _mailboxes(raw[name.lower()], expected) == expected
        header = msg[name]
        assert [d for d in header.defects if type(d).__name__ != "NonASCIILocalPartDefect"] == []
        assert [a.addr_spec for a in header.addresses] == [a for _, a in expected]
    assert msg["Bcc"] is None
    assert str(msg["Subject"]) == mail.subject
    for name, value in mail.headers:
        assert str(msg[name]) == value, name
    plain = msg.get_body(("plain",)) if mail.text is not None or mail.html is None else None
    html = msg.get_body(("html",)) if mail.html is not None else None
    if plain is not None:
        assert _text(plain.get_content()) == _text(mail.text or "")
    if html is not None:
        assert _text(html.get_content()) == _text(mail.html)
    sent = list(msg.iter_attachments())
    assert len(sent) == len(mail.attachments)
    for part, (filename, data, kind) in zip(sent, mail.attachments, strict=True):  # type: ignore[misc]
        assert part.get_filename() == filename
        assert part.get_content_type() == kind
        if kind == "message/rfc822":
            inner = part.get_content()
            original = email.parser.BytesParser(policy=email.policy.default).parsebytes(data)
            assert inner["Subject"] == original["Subject"]
            assert _text(inner.get_content()) == _text(original.get_content())
        else:
            assert part.get_payload(decode=True) == data


SETTINGS = settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@SETTINGS
@given(emails())
def test_direct_renderer_round_trips(mail: Email) -> None:
    """The direct renderer: every field parses back as the Email says."""
    _check(mail, prepare_message(mail))


@SETTINGS
@given(emails())
def test_email_package_renderer_round_trips(mail: Email) -> None:
    """The email package with our wire policy: the same, from Email.to_message()."""
    _check(mail, prepare_message(mail.to_message()), bcc=False)
