"""The Email builder and the checks every outgoing message passes (docs/security.md, rule 29)."""

from __future__ import annotations

import email
import email.policy
from email.message import EmailMessage, Message
from pathlib import Path

import pytest

from oauthsmtp._errors import ConfigurationError
from oauthsmtp._message.prepare import Email, prepare_message
from oauthsmtp._smtp.wire import encode_data

ALICE = "alice@example.org"
BOB = "bob@example.org"


def parse(data: bytes) -> EmailMessage:
    message = email.message_from_bytes(data, policy=email.policy.default)
    assert isinstance(message, EmailMessage)
    return message


def test_text_html_and_attachments(tmp_path: Path) -> None:
    """Text with an HTML alternative, attachments by path and by bytes, as MIME."""
    report = tmp_path / "report.pdf"
    report.write_bytes(b"%PDF-1.4 fake")
    mail = Email(
        sender=ALICE,
        to=[BOB],
        cc=["Carol <carol@example.org>"],
        reply_to=["replies@example.org"],
        subject="Hi",
        text="Hello",
        html="<p>Hello</p>",
        attachments=[report, ("notes.txt", b"some notes"), ("data.bin", b"\x00\x01", "x-app/bin")],
        headers={"X-Mailer": "oauthsmtp-test"},
    )
    out = prepare_message(mail)
    assert out.sender == ALICE
    assert out.recipients == (BOB, "carol@example.org")
    msg = parse(out.data)
    assert msg["X-Mailer"] == "oauthsmtp-test"
    assert msg["Reply-To"] == "replies@example.org"
    assert msg["Date"]
    assert msg["Message-ID"]
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip() == "Hello"
    html = msg.get_body(("html",))
    assert html is not None
    assert "<p>Hello</p>" in html.get_content()
    attachments = {a.get_filename(): a for a in msg.iter_attachments()}
    assert attachments["report.pdf"].get_content_type() == "application/pdf"
    assert attachments["report.pdf"].get_content() == b"%PDF-1.4 fake"
    assert attachments["notes.txt"].get_content() == "some notes"
    assert attachments["data.bin"].get_content_type() == "x-app/bin"
    assert out.data.isascii()
    assert not out.eight_bit


def test_bcc_only_in_envelope() -> None:
    """Bcc recipients get the message but appear in no header."""
    out = prepare_message(Email(sender=ALICE, to=[BOB], bcc=["secret@example.org"], text="x"))
    assert out.recipients == (BOB, "secret@example.org")
    assert b"secret@example.org" not in out.data
    assert b"Bcc" not in out.data


def test_bcc_removed_from_emailmessage_without_mutating_it() -> None:
    """An EmailMessage's Bcc header goes into the envelope, not onto the wire."""
    msg = EmailMessage()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg["Bcc"] = "hidden@example.org"
    msg["Subject"] = "s"
    msg.set_content("body")
    out = prepare_message(msg)
    assert out.recipients == (BOB, "hidden@example.org")
    assert b"hidden@example.org" not in out.data
    assert msg["Bcc"] == "hidden@example.org"


def test_non_ascii_names_and_subject_are_encoded() -> None:
    """Non-ASCII display names and subjects use RFC 2047; the body a 7-bit encoding."""
    out = prepare_message(
        Email(
            sender="Zoë Ü <zoe@example.org>",
            to=["Jürgen <j@example.org>"],
            subject="Grüße aus Köln",
            text="Schöne Grüße",
        )
    )
    assert out.data.isascii()
    assert not out.smtputf8
    msg = parse(out.data)
    assert msg["Subject"] == "Grüße aus Köln"
    assert msg["From"].addresses[0].display_name == "Zoë Ü"
    body = msg.get_body(("plain",))
    assert body is not None
    assert body.get_content().strip() == "Schöne Grüße"


def test_mostly_non_ascii_text_uses_base64() -> None:
    """CJK text is base64, not a tripling quoted-printable."""
    out = prepare_message(Email(sender=ALICE, to=[BOB], text="你好世界" * 20))
    assert b"Content-Transfer-Encoding: base64" in out.data


def test_internationalized_domain_becomes_a_labels() -> None:
    """An IDN domain is converted to IDNA, so no SMTPUTF8 is needed."""
    out = prepare_message(Email(sender=ALICE, to=["user@bücher.example"], text="x"))
    assert out.recipients == ("user@xn--bcher-kva.example",)
    assert not out.smtputf8


def test_internationalized_local_part_needs_smtputf8() -> None:
    """A non-ASCII local part marks the message SMTPUTF8 and sends UTF-8 headers (RFC 6532)."""
    out = prepare_message(Email(sender=ALICE, to=["ñoño@example.org"], subject="¡Hola!", text="x"))
    assert out.smtputf8
    assert out.recipients == ("ñoño@example.org",)
    assert "To: ñoño@example.org".encode() in out.data


@pytest.mark.parametrize(
    "field",
    ["sender", "to", "cc", "bcc", "reply_to"],
)
@pytest.mark.parametrize(
    "address",
    [
        "a@x\r\nRCPT TO:<evil@y>",
        "a@x\nRCPT TO:<evil@y>",
        "a@x\x00b",
        "alice@example.org)<bob@example.org>",
        "a@b@c",
        "<alice@example.org",
        "bob",
        "a@x, b@y",
    ],
    ids=["crlf", "lf", "nul", "paren-defect", "two-ats", "unclosed", "no-domain", "two"],
)
def test_bad_addresses_refused(field: str, address: str) -> None:
    """Injection and ambiguous addresses are refused before anything is built."""
    kwargs: dict[str, object] = {"sender": ALICE, "to": [BOB], field: [address]}
    if field == "sender":
        kwargs["sender"] = address
    with pytest.raises(ConfigurationError):
        Email(**kwargs)  # type: ignore[arg-type]


def test_bad_address_is_a_value_error() -> None:
    """ConfigurationError is a ValueError, so `except ValueError` catches an injection attempt."""
    with pytest.raises(ValueError, match="CR, LF or NUL"):
        Email(sender=ALICE, to=["a@x\r\nRCPT TO:<evil@y>"])


def test_obsolete_phrase_is_accepted() -> None:
    """'John Q. Public' (obsolete syntax, not ambiguous) is a normal address."""
    out = prepare_message(Email(sender=ALICE, to=["John Q. Public <jqp@example.org>"], text="x"))
    assert out.recipients == ("jqp@example.org",)


@pytest.mark.parametrize(
    "kwargs",
    [
        {"subject": "hi\r\nBcc: x@example.org"},
        {"subject": "hi\nBcc: x"},
        {"subject": "nul\x00"},
        {"headers": {"X-Test": "a\r\nBcc: x@example.org"}},
        {"headers": {"X Bad": "v"}},
        {"headers": {"X:Bad": "v"}},
        {"headers": {"Bcc": "x@example.org"}},
        {"headers": {"Content-Type": "text/html"}},
        {"headers": {"Resent-To": "x@example.org"}},
        {"attachments": [("evil\r\nname.txt", b"x")]},
        {"attachments": [("a.txt", "not bytes")]},
        {"attachments": [("a.txt", b"x", "no-slash")]},
        {"attachments": [42]},
        {"to": []},
        {"text": b"bytes"},
    ],
    ids=[
        "subject-crlf",
        "subject-lf",
        "subject-nul",
        "header-crlf",
        "header-name-space",
        "header-name-colon",
        "header-bcc",
        "header-structural",
        "header-resent",
        "filename-crlf",
        "attachment-str",
        "mime",
        "attachment-type",
        "no-recipient",
        "text-bytes",
    ],
)
def test_bad_fields_refused(kwargs: dict[str, object]) -> None:
    """Header injection and malformed fields are refused with ConfigurationError."""
    fields: dict[str, object] = {"sender": ALICE, "to": [BOB], **kwargs}
    with pytest.raises(ConfigurationError):
        Email(**fields)  # type: ignore[arg-type]


def test_email_is_frozen_and_hashable() -> None:
    """An Email is an immutable value; lists become tuples, headers pairs."""
    mail = Email(sender=ALICE, to=[BOB], headers={"X-A": "1"})
    assert mail.to == (BOB,)
    assert mail.headers == (("X-A", "1"),)
    assert hash(mail) == hash(Email(sender=ALICE, to=[BOB], headers={"X-A": "1"}))
    with pytest.raises(AttributeError):
        mail.subject = "changed"  # type: ignore[misc]


def test_given_date_and_message_id_are_kept() -> None:
    """headers= may supply Date and Message-ID."""
    mail = Email(sender=ALICE, to=[BOB], headers={"Message-ID": "<fixed@example.org>"})
    assert parse(prepare_message(mail).data)["Message-ID"] == "<fixed@example.org>"


def test_rfc822_attachment() -> None:
    """An .eml attachment becomes a message/rfc822 part, not base64 (RFC 2046 §5.2.1)."""
    eml = b"From: x@example.org\r\nSubject: inner\r\n\r\nhello\r\n"
    out = prepare_message(Email(sender=ALICE, to=[BOB], attachments=[("fwd.eml", eml)]))
    [part] = parse(out.data).iter_attachments()
    assert part.get_content_type() == "message/rfc822"
    assert part.get_content()["Subject"] == "inner"


def test_missing_attachment_file(tmp_path: Path) -> None:
    """A missing attachment file is a ConfigurationError naming it when the message is built."""
    mail = Email(sender=ALICE, to=[BOB], attachments=[tmp_path / "missing.pdf"])
    with pytest.raises(ConfigurationError, match=r"missing\.pdf.*cannot be read") as caught:
        prepare_message(mail)
    assert isinstance(caught.value.__cause__, FileNotFoundError)


def test_compat32_header_injection_refused() -> None:
    """A legacy Message with an injected header line is refused."""
    msg = Message()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg["Subject"] = "hi\r\nBcc: evil@example.org"
    with pytest.raises(ConfigurationError):
        prepare_message(msg)


def test_compat32_folded_header_is_fine() -> None:
    """Legitimate folding in a parsed legacy message is not mistaken for injection."""
    raw = (
        f"From: {ALICE}\r\nTo: {BOB},\r\n carol@example.org\r\nSubject: a\r\n long\r\n\r\nbody\r\n"
    )
    out = prepare_message(email.message_from_string(raw))
    assert out.recipients == (BOB, "carol@example.org")


@pytest.mark.parametrize(
    "headers",
    [
        {"To": BOB},
        {"From": f"{ALICE}, carol@example.org", "To": BOB},
        {"From": ALICE},
        {"From": ALICE, "To": "alice@example.org)<bob@example.org>"},
        {"From": ALICE, "To": BOB, "Resent-To": "x@example.org"},
    ],
    ids=["no-from", "two-from", "no-recipient", "defect", "resent"],
)
def test_emailmessage_envelope_errors(headers: dict[str, str]) -> None:
    """The envelope must come cleanly out of the headers, or the message is refused."""
    msg = Message()
    for name, value in headers.items():
        msg[name] = value
    with pytest.raises(ConfigurationError):
        prepare_message(msg)


def test_sender_header_is_envelope_sender() -> None:
    """With two From addresses, Sender names the envelope sender (RFC 5322 §3.6.2)."""
    msg = EmailMessage()
    msg["From"] = f"{ALICE}, carol@example.org"
    msg["Sender"] = "carol@example.org"
    msg["To"] = BOB
    assert prepare_message(msg).sender == "carol@example.org"


def test_not_a_message_refused() -> None:
    """send() takes Email or Message only."""
    with pytest.raises(ConfigurationError):
        prepare_message("From: a@b\r\n\r\nhi")  # type: ignore[arg-type]


def test_bare_line_endings_normalized_and_8bit_detected() -> None:
    """Bare LF/CR become CRLF (RFC 5321 §2.3.8); 8-bit bodies are flagged for BODY=8BITMIME."""
    msg = Message()
    msg["From"] = ALICE
    msg["To"] = BOB
    msg.set_payload("línea uno\nline two\rline three\r\n".encode(), charset=None)
    msg["Content-Transfer-Encoding"] = "8bit"
    out = prepare_message(msg)
    assert out.data.count(b"\n") == out.data.count(b"\r\n")
    assert out.data.count(b"\r") == out.data.count(b"\r\n")
    assert out.eight_bit


@pytest.mark.parametrize(
    ("data", "wire"),
    [
        (b"a\r\n.b\r\n", b"a\r\n..b\r\n.\r\n"),
        (b".start\r\n", b"..start\r\n.\r\n"),
        (b"no newline", b"no newline\r\n.\r\n"),
        (b"a\r\n.\r\n", b"a\r\n..\r\n.\r\n"),
        (b"", b"\r\n.\r\n"),
    ],
    ids=["inner-dot", "leading-dot", "no-final-crlf", "lone-dot", "empty"],
)
def test_dot_stuffing(data: bytes, wire: bytes) -> None:
    """Lines starting with '.' get another '.'; the body ends with CRLF.CRLF (RFC 5321 §4.5.2)."""
    assert encode_data(data) == wire


@pytest.mark.parametrize("size", [0, 1, 56, 57, 58, 1000, 300_001])
def test_fast_attachment_encoding_matches_email_package(size: int) -> None:
    """prepare_message's spliced base64 decodes to the same bytes, in 76-character lines."""
    data = bytes(i % 251 for i in range(size))
    mail = Email(sender=ALICE, to=[BOB], attachments=[("a.bin", data)])
    out = prepare_message(mail)
    [part] = parse(out.data).iter_attachments()
    assert part.get_content() == data
    assert part["Content-Transfer-Encoding"] == "base64"
    assert max(len(line) for line in out.data.split(b"\r\n")) <= 78
    [slow] = mail.to_message().iter_attachments()
    assert slow.get_content() == data


# -- the direct serializer (oauthsmtp._message.mime) against the email package ---------
def _lf(content: object) -> object:
    if isinstance(content, Message):  # message/rfc822: compare what it says
        return (content["Subject"], _lf(content.get_payload()))
    return content.replace("\r\n", "\n") if isinstance(content, str) else content


def _summary(msg: EmailMessage) -> dict[str, object]:
    """What a recipient sees: decoded headers, bodies and attachments (line ends as LF)."""
    text = msg.get_body(("plain",))
    html = msg.get_body(("html",))
    return {
        # Without white space: CPython's address parser keeps the (RFC 2047 §6.2: ignored)
        # space between two encoded-words of a display name, wherever either side folds.
        "headers": {
            name: "".join(str(msg[name]).split())
            for name in ("From", "To", "Cc", "Reply-To", "Subject", "X-Mailer", "References")
            if msg[name] is not None
        },
        "text": None if text is None else _lf(text.get_content()),
        "html": None if html is None else _lf(html.get_content()),
        "attachments": [
            (a.get_filename(), a.get_content_type(), _lf(a.get_content()))
            for a in msg.iter_attachments()
        ],
    }


FAST_CASES = {
    "plain": Email(sender=ALICE, to=[BOB], subject="Hello", text="Hi.\n.dot line\n"),
    "names": Email(
        sender="Zoë Ü <zoe@example.org>",
        to=["Jürgen <j@example.org>", "John Q. Public <jqp@example.org>", 'a "q" <q@example.org>'],
        cc=[
            *(f"Person {i} <p{i}@example.org>" for i in range(12)),
            "Jürgen Müller-Lüdenscheidt von und zu Großherzogtum Sachsen-Anhalt <jm@example.org>",
            '"Very Long Plain Name With Many Words In It, Indeed, Quoted" <v@example.org>',
        ],
        reply_to=["replies@example.org"],
        subject="Grüße aus Köln, " * 8,
        text="Schöne Grüße",
    ),
    "long-ascii-subject": Email(sender=ALICE, to=[BOB], subject="word " * 60 + "end"),
    "headers": Email(
        sender=ALICE,
        to=[BOB],
        text="x",
        headers={"X-Mailer": "oauthsmtp", "References": " ".join(f"<{i}@x.org>" for i in range(9))},
    ),
    "alternative": Email(sender=ALICE, to=[BOB], text="plain", html="<p>" + "h" * 200 + "</p>"),
    "html-only": Email(sender=ALICE, to=[BOB], html="<p>only</p>"),
    "cjk": Email(sender=ALICE, to=[BOB], text="你好世界。\n" * 40),
    "qp": Email(sender=ALICE, to=[BOB], text="ä line " + "x" * 200 + "\r\nbare\rcr\n"),
    "empty": Email(sender=ALICE, to=[BOB]),
    "attachments": Email(
        sender=ALICE,
        to=[BOB],
        text="see attached",
        html="<b>see</b>",
        attachments=[
            ("report.pdf", b"%PDF-1.4" * 100),
            ("été à.txt", b"caf\xc3\xa9"),
            ('quote".bin', b"\x00\x01"),
            ("empty.dat", b""),
            ("inner.eml.bin", b"x", "message/partial"),
        ],
    ),
}


@pytest.mark.parametrize("case", FAST_CASES.values(), ids=FAST_CASES.keys())
def test_direct_serialization_matches_email_package(case: Email) -> None:
    """The fast path says what the email package says, in 7-bit lines of at most 78."""
    from oauthsmtp._message.prepare import prepare_email

    fast = prepare_email(case)
    assert fast is not None  # these all take the fast path
    assert fast.data.isascii()
    assert fast.data.endswith(b"\r\n")
    assert fast.data.count(b"\n") == fast.data.count(b"\r\n") == fast.data.count(b"\r")
    assert max(len(line) for line in fast.data.split(b"\r\n")) <= 78
    assert _summary(parse(fast.data)) == _summary(parse(case.to_message().as_bytes()))
    assert parse(fast.data).defects == []
    assert fast.recipients == case.envelope_recipients
    assert fast.sender == case.envelope_sender
    assert str(parse(fast.data)["Subject"]) == case.subject


def test_long_display_name_decodes_exactly() -> None:
    """A display name split into several encoded-words decodes to itself (RFC 2047 §6.2)."""
    from email.header import decode_header, make_header

    name = "Jürgen Müller-Lüdenscheidt von und zu Großherzogtum Sachsen-Anhalt"
    out = prepare_message(Email(sender=ALICE, to=[f"{name} <j@example.org>"]))
    [field] = out.data.split(b"\r\n\r\n")[0].split(b"\r\nTo: ")[1:]
    phrase = field.split(b"<j@example.org>")[0].decode("ascii").replace("\r\n", "")
    assert phrase.count("=?utf-8?b?") > 1
    assert str(make_header(decode_header(phrase))).strip() == name


def test_subject_that_looks_encoded_stays_literal() -> None:
    """A subject that looks like an RFC 2047 encoded-word is encoded, so it reads as typed."""
    out = prepare_message(Email(sender=ALICE, to=[BOB], subject="=?utf-8?q?not_encoded?="))
    assert str(parse(out.data)["Subject"]) == "=?utf-8?q?not_encoded?="


@pytest.mark.parametrize(
    "case",
    [
        Email(sender=ALICE, to=[BOB], headers={"X-Note": "café"}),
        Email(sender=ALICE, to=[BOB], attachments=[("n" * 90 + ".txt", b"x")]),
        Email(sender=ALICE, to=[BOB], attachments=[("é" * 90 + ".txt", b"x")]),
        Email(sender=ALICE, to=["ñoño@example.org"]),
        Email(sender=ALICE, to=[BOB], attachments=[("fwd.eml", b"Subject: x\r\n\r\nhi\r\n")]),
    ],
    ids=["non-ascii-header", "long-filename", "long-non-ascii-filename", "smtputf8", "rfc822"],
)
def test_former_fallbacks_take_the_direct_path(case: Email) -> None:
    """What the email package used to write for us is written directly, and says the same."""
    out = prepare_message(case)
    assert out.data.count(b"\n") == out.data.count(b"\r\n")
    assert max(len(line) for line in out.data.split(b"\r\n")) <= 78
    assert _summary(parse(out.data)) == _summary(parse(case.to_message().as_bytes()))
    assert parse(out.data).defects == []


@pytest.mark.parametrize(
    "address",
    [
        "bob@example.org",
        "first.last+tag@sub.example.co.uk",
        "o'brien@example.org",
        "Bob Smith <bob@example.org>",
        "B <b@localhost>",
        "John Q. Public <jqp@example.org>",
        '"Smith, John" <j@example.org>',
        "=?utf-8?q?Z=C3=B6e?= <zoe@example.org>",
        "<bare@example.org>",
        "Zoë <zoe@example.org>",
        "a..b@example.org",
    ],
)
def test_simple_address_parser_agrees(address: str) -> None:
    """The quick parser of common addresses gives the general parser's answer, or none."""
    from email.headerregistry import Address

    from oauthsmtp._message.addresses import parse_address_list, simple_address

    quick = simple_address(address)
    if quick is not None:
        [general] = parse_address_list("to", address)
        assert (quick.display_name, quick.username, quick.domain) == (
            general.display_name,
            general.username,
            general.domain,
        )
        assert isinstance(quick, Address)


@pytest.mark.parametrize(
    ("data", "stuffed"),
    [
        (b"no dots\r\n", False),
        (b"a.b.c\r\nd.e\r\n", False),
        (b"x." * 200 + b"\r\n.late\r\n", True),
        (b".first\r\n", True),
        (b"a\r\n..\r\n", True),
    ],
    ids=["none", "inside-lines", "after-many-dots", "first", "double"],
)
def test_dot_stuffing_scan(data: bytes, stuffed: bool) -> None:
    """The quick scan never misses a line that starts with '.' (RFC 5321 §4.5.2)."""
    from oauthsmtp._smtp.wire import dot_stuff

    out = dot_stuff(data)
    assert (out is not data) is stuffed
    assert out == (b"." + data if data.startswith(b".") else data).replace(b"\n.", b"\n..")


def test_emailmessage_line_endings_normalized() -> None:
    """Bare CR and LF in an EmailMessage's bodies, preamble and parts become CRLF."""
    msg = EmailMessage()
    msg["From"], msg["To"], msg["Subject"] = ALICE, BOB, "s"
    msg.set_content("one\rtwo\nthree\r\n\n\r.")
    msg.add_attachment("att\rline\n", subtype="plain", cte="7bit")
    msg.add_attachment(b"\x00" * 100, maintype="application", subtype="octet-stream")
    msg.preamble = "pre\ramble\n"
    inner = EmailMessage()
    inner["Subject"] = "inner"
    inner.set_content("in\rner\n")
    msg.add_attachment(inner)
    out = prepare_message(msg)
    assert out.data.count(b"\n") == out.data.count(b"\r\n") == out.data.count(b"\r")
    reparsed = parse(out.data)
    body = reparsed.get_body(("plain",))
    assert body is not None
    assert body.get_content() == "one\r\ntwo\r\nthree\r\n\r\n\r\n.\r\n"
    assert reparsed.get_boundary() is not None
    assert reparsed.get_boundary() == msg.get_boundary()  # as as_bytes() would: set on msg
