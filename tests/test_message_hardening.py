"""Messages that used to be misdelivered, crash, or go out broken: each is now right or refused.

International domains (IDNA 2008, not 2003), malformed input (always our ConfigurationError,
naming the field), and RFC 5322 / RFC 5321 limits on what goes on the wire.
"""

from __future__ import annotations

import email.parser
import email.policy
import subprocess
import sys
from email.message import EmailMessage, Message
from email.parser import BytesParser

import pytest

from oauthsmtp import ConfigurationError, Email
from oauthsmtp._message.prepare import prepare_message

ALICE = "alice@example.org"
BOB = "bob@example.org"


def parse(data: bytes) -> EmailMessage:
    message = BytesParser(policy=email.policy.default).parsebytes(data)
    assert isinstance(message, EmailMessage)
    return message


def lines(data: bytes) -> list[bytes]:
    return data.split(b"\r\n")


# -- international domains: IDNA 2008 / UTS #46 ----------------------------------------
@pytest.mark.parametrize(
    ("domain", "a_labels"),
    [
        ("straße.de", "xn--strae-oqa.de"),  # IDNA 2003: strasse.de, another domain
        ("faß.de", "xn--fa-hia.de"),  # IDNA 2003: fass.de
        ("βόλος.gr", "xn--nxasmm1c.gr"),  # IDNA 2003 maps the final sigma
        ("BÜCHER.example", "xn--bcher-kva.example"),  # UTS #46 maps case
    ],
)
def test_international_domain_uses_idna_2008(domain: str, a_labels: str) -> None:
    """The envelope and the To header name the domain the user wrote, not an IDNA 2003 twin."""
    out = prepare_message(Email(sender=ALICE, to=[f"user@{domain}"]))
    assert out.recipients == (f"user@{a_labels}",)
    assert parse(out.data)["To"].addresses[0].domain == a_labels
    assert not out.smtputf8


@pytest.mark.parametrize("domain", ["a\u200db.com", "☃.net", "xn--zz.de", "a" * 64 + "ü.de"])
def test_invalid_international_domain_refused(domain: str) -> None:
    """What IDNA 2008 refuses (a joiner out of context, a symbol...) is refused, named."""
    with pytest.raises(ConfigurationError, match=r"to: the domain of .*not a valid"):
        Email(sender=ALICE, to=[f"user@{domain}"])


def test_emailmessage_envelope_domain_uses_idna_2008() -> None:
    """An EmailMessage's envelope gets the same A-labels; its header keeps the U-labels."""
    msg = EmailMessage()
    msg["From"], msg["To"] = ALICE, "user@straße.de"
    msg.set_content("x")
    out = prepare_message(msg)
    assert out.recipients == ("user@xn--strae-oqa.de",)
    msg.replace_header("To", "user@a\u200db.com")
    with pytest.raises(ConfigurationError, match="not a valid internationalized"):
        prepare_message(msg)


def test_idna_is_imported_only_for_an_international_domain() -> None:
    """`import oauthsmtp` and ASCII messages stay free of the idna package."""
    code = (
        "import sys, oauthsmtp\n"
        "from oauthsmtp._message.prepare import prepare_message\n"
        "prepare_message(oauthsmtp.Email(sender='a@example.org', to=['b@example.org']))\n"
        "print('idna' in sys.modules)\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip() == "False"


# -- malformed input is always our own error -------------------------------------------
@pytest.mark.parametrize("address", ["<", '"', "a@b.org <", "g:a@b.org;", "(", "\\", "@"])
def test_email_unparseable_address_is_configuration_error(address: str) -> None:
    """Input that crashes the email package's parser (IndexError...) is refused, named."""
    with pytest.raises(ConfigurationError, match=r"^to: "):
        Email(sender=ALICE, to=[address])


@pytest.mark.parametrize(
    ("raw", "field"),
    [
        (b"From: a@example.org\r\nTo: <\r\n", "To"),
        (b'From: a@example.org\r\nTo: b@example.org\r\nCc: "\r\n', "Cc"),
        (b"From: a@example.org\r\nTo: b@example.org\r\nMessage-ID: <\r\n", "Message-ID"),
        (b"From: g:a@b.org; a@b.org\r\nTo: b@example.org\r\n", "From"),
    ],
    ids=["to", "cc", "message-id", "from-group"],
)
def test_parsed_message_that_crashes_the_parser_is_refused(raw: bytes, field: str) -> None:
    """prepare_message raises only ConfigurationError, naming the field, for these."""
    message = parse(raw + b"\r\nbody\r\n")
    with pytest.raises(ConfigurationError, match=field) as caught:
        prepare_message(message)
    assert type(caught.value) is ConfigurationError


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"sender": None}, "sender"),
        ({"sender": b"a@example.org"}, "sender"),
        ({"to": 42}, "to must be"),
        ({"to": b"b@example.org"}, "to must be"),
        ({"to": [None]}, "to: an address must be a string"),
        ({"cc": {"x": 1}}, "cc must be"),
        ({"subject": None}, "subject must be a string"),
        ({"subject": "a\x01b"}, "subject contains the control character U\\+0001"),
        ({"subject": "\ud800"}, "subject contains a lone surrogate"),
        ({"text": 5}, "text must be a string"),
        ({"html": "\udfff"}, "html contains a lone surrogate"),
        ({"headers": 5}, "headers must be"),
        ({"headers": [("X-A",)]}, "headers must be"),
        ({"headers": {"X-A": None}}, "header X-A must be a string"),
        ({"headers": {5: "v"}}, "header name must be a string"),
        ({"headers": {"X-A": "a\x7fb"}}, "control character"),
        ({"attachments": "report.pdf"}, "attachments must be a list"),
        ({"attachments": [("a.txt", b"x", 5)]}, "MIME type must be a string"),
        ({"attachments": [("", b"x")]}, "file name is empty"),
        ({"attachments": [(5, b"x")]}, "file name must be a string"),
        ({"attachments": [("a\x01.txt", b"x")]}, "control character"),
        ({"to": ["a\x01b@example.org"]}, "control character"),
        ({"to": ["c" * 65 + "@example.org"]}, "local part .* 65 octets"),
        ({"to": ["c@" + ".".join(["d" * 60] * 30)]}, "domain .* too long"),
        ({"to": ["c@" + "d" * 64 + ".org"]}, "domain .* too long"),
    ],
)
def test_wrong_types_and_values_are_configuration_errors(
    kwargs: dict[str, object], match: str
) -> None:
    """Every wrong type or value of the public Email API is a clear ConfigurationError."""
    fields: dict[str, object] = {"sender": ALICE, "to": [BOB], **kwargs}
    with pytest.raises(ConfigurationError, match=match):
        Email(**fields)  # type: ignore[arg-type]


def test_to_accepts_one_string_and_address_objects() -> None:
    """A lone address string is one recipient, not a list of characters."""
    from email.headerregistry import Address

    mail = Email(sender=Address("Al", "alice", "example.org"), to=BOB)  # type: ignore[arg-type]
    assert mail.to == (BOB,)
    assert mail.sender == "Al <alice@example.org>"


# -- RFC 5322 line limits, RFC 5321 command limits --------------------------------------
def test_long_display_name_is_folded_not_one_long_line() -> None:
    """A 3,000-character display name is encoded over many lines and decodes to itself."""
    from email.header import decode_header, make_header

    name = "n" * 3000
    out = prepare_message(Email(sender=ALICE, to=[f'"{name}" <c@example.org>']))
    assert max(map(len, lines(out.data))) <= 78
    raw = out.data.split(b"\r\nTo: ")[1].split(b"<c@example.org>")[0].decode()
    assert str(make_header(decode_header(raw.replace("\r\n", "").strip()))) == name


def test_long_message_id_refused() -> None:
    """A 3,000-character Message-ID cannot be folded: refused, not written on one line."""
    mail = Email(sender=ALICE, to=[BOB], headers={"Message-ID": "<" + "m" * 3000 + "@x>"})
    with pytest.raises(ConfigurationError, match=r"Message-ID.*998"):
        prepare_message(mail)


def test_long_unstructured_word_is_encoded() -> None:
    """A 3,000-character word in a custom header is encoded over several lines, exactly."""
    value = "w" * 3000
    out = prepare_message(Email(sender=ALICE, to=[BOB], subject=value, headers={"X-W": value}))
    assert max(map(len, lines(out.data))) <= 78
    msg = parse(out.data)
    assert (msg["Subject"], msg["X-W"]) == (value, value)


def test_emailmessage_long_lines_refused() -> None:
    """An EmailMessage whose header or body cannot be written within 998 octets is refused."""
    msg = EmailMessage()
    msg["From"], msg["To"] = ALICE, BOB
    msg["Message-ID"] = "<" + "m" * 3000 + "@x>"
    msg.set_content("x")
    with pytest.raises(ConfigurationError, match=r"Message-ID.*998"):
        prepare_message(msg)
    legacy = Message()
    legacy["From"], legacy["To"] = ALICE, BOB
    legacy.set_payload("y" * 2000)
    with pytest.raises(ConfigurationError, match=r"a body line.*2000 octets"):
        prepare_message(legacy)


def test_rfc822_attachment_with_long_line_refused() -> None:
    """A message/rfc822 part cannot be re-encoded (RFC 2046 §5.2.1): a long line is refused."""
    inner = b"Subject: x\r\n\r\n" + b"z" * 1500 + b"\r\n"
    mail = Email(sender=ALICE, to=[BOB], attachments=[("fwd.eml", inner)])
    with pytest.raises(ConfigurationError, match=r"fwd.eml.*application/octet-stream"):
        prepare_message(mail)


def test_nul_in_text_body_is_encoded_not_sent_raw() -> None:
    """A NUL in a text body is quoted-printable (=00), both ways, and decodes back."""
    mail = Email(sender=ALICE, to=[BOB], text="a\x00b")
    for data in (prepare_message(mail).data, prepare_message(mail.to_message()).data):
        assert b"\x00" not in data
        body = parse(data).get_body(("plain",))
        assert body is not None
        assert body.get_content().rstrip("\r\n") == "a\x00b"


def test_emailmessage_with_raw_nul_refused() -> None:
    """An EmailMessage that would put a NUL octet on the wire is refused."""
    msg = EmailMessage()
    msg["From"], msg["To"] = ALICE, BOB
    msg.set_content("a\x00b", cte="7bit")
    with pytest.raises(ConfigurationError, match="NUL"):
        prepare_message(msg)


# -- the email package's folder is not trusted with address fields ---------------------
TO = ["x <a@example.org>", "y <" + "b" * 39 + "@example.org>", "é <c@example.org>"]


@pytest.mark.parametrize("headers", [{}, {"X-Trace": "tab\there"}, {"X-Note": "café"}])
def test_address_list_keeps_every_address(headers: dict[str, str]) -> None:
    """Three To addresses stay three, whichever way the message is written.

    Python 3.11.7's folder puts the comma before "é" into an encoded-word, merging two
    addresses; Debian's 3.11.2 does not. Neither folder writes our address fields now.
    """
    mail = Email(sender=ALICE, to=TO, headers=headers)
    msg = EmailMessage()
    msg["From"], msg["To"] = ALICE, ", ".join(TO)
    msg.set_content("x")
    for message in (mail, mail.to_message(), msg):
        to = parse(prepare_message(message).data)["To"]
        assert [a.addr_spec for a in to.addresses] == [
            "a@example.org",
            "b" * 39 + "@example.org",
            "c@example.org",
        ]
        assert to.defects == ()


@pytest.mark.parametrize("value", ["=?utf-8?q?abc?=", "x =?iso-8859-1?b?YQ==?= y"])
def test_literal_encoded_word_in_custom_header_stays_literal(value: str) -> None:
    """A custom header that looks like an encoded-word reads as typed, both ways."""
    mail = Email(sender=ALICE, to=[BOB], headers={"X-Note": value})
    for data in (prepare_message(mail).data, prepare_message(mail.to_message()).data):
        assert str(parse(data)["X-Note"]) == value


def test_smtputf8_message_and_rfc822_part_written_directly() -> None:
    """A non-ASCII local part with an attached message: UTF-8 header, 8bit part, exact."""
    inner = "Subject: inner\r\n\r\nhé\r\n".encode()
    mail = Email(
        sender="Zoë <zoe@example.org>",
        to=["ñoño@example.org", "Plain <p@example.org>"],
        attachments=[("fwd.eml", inner)],
    )
    out = prepare_message(mail)
    assert out.smtputf8
    assert out.eight_bit
    msg = email.parser.Parser(policy=email.policy.default).parsestr(out.data.decode())
    assert [a.addr_spec for a in msg["To"].addresses] == ["ñoño@example.org", "p@example.org"]
    [part] = msg.iter_attachments()
    assert part["Content-Transfer-Encoding"] == "8bit"
    assert part.get_content()["Subject"] == "inner"
    assert max(map(len, lines(out.data))) <= 78


@pytest.mark.parametrize(
    ("data", "refused"),
    [
        (b"x" * 998 + b"\r\nend\r\n", False),
        (b"x" * 999 + b"\r\nend\r\n", True),
        (b"a\r\n" * 400 + b"x" * 998, False),
        (b"a\r\n" * 400 + b"x" * 999, True),
        ((b"y" * 997 + b"\r\n") * 50, False),
        ((b"y" * 500 + b"\r\n") * 3 + b"z" * 1200 + b"\r\n", True),
    ],
)
def test_line_length_scan(data: bytes, refused: bool) -> None:
    """The 998-octet check finds a long line wherever it is, and only then (RFC 5322 §2.1.1)."""
    from oauthsmtp._message.checks import check_line_lengths

    if refused:
        with pytest.raises(ConfigurationError, match="998"):
            check_line_lengths(data)
    else:
        check_line_lengths(data)


@pytest.mark.parametrize(("length", "refused"), [(998, False), (999, True)])
def test_rfc822_attachment_line_limit_counts_crlf(length: int, refused: bool) -> None:
    """An attached message with LF line ends is measured as sent, with CRLF."""
    inner = b"Subject: x\n\n" + b"z" * length + b"\n"
    mail = Email(sender=ALICE, to=[BOB], attachments=[("fwd.eml", inner)])
    if refused:
        with pytest.raises(ConfigurationError, match="998"):
            prepare_message(mail)
    else:
        out = prepare_message(mail)
        assert max(map(len, lines(out.data))) == length


def test_stored_addresses_parse_back_to_themselves() -> None:
    """An Email's address fields hold text that builds the same Email again (replace())."""
    import dataclasses

    mail = Email(
        sender='"  Zoë  " <zoe@straße.de>',
        to=[
            '" " <ñoño@example.org>',
            '"a \\"q\\" \\\\ b" <q@example.org>',
            "John Q. Public <j@x.org>",
        ],
        cc=["Plain Name <p@example.org>"],
        headers={"X-A": "1"},
    )
    again = dataclasses.replace(mail, subject="again")
    assert (again.sender, again.to, again.cc) == (mail.sender, mail.to, mail.cc)
    assert again.envelope_recipients == mail.envelope_recipients
    names = [a.display_name for a in parse(prepare_message(again).data)["To"].addresses]
    assert names[1:] == ['a "q" \\ b', "John Q. Public"]
