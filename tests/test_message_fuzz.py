"""Fuzzing: Email() and prepare_message() raise ConfigurationError or nothing, whatever they get.

Callers (``send_many`` above all) rely on this contract to fail one message, not a batch.
"""

from __future__ import annotations

import contextlib
import email.policy
from email.message import EmailMessage, Message
from email.parser import BytesParser

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from oauthsmtp import ConfigurationError, Email
from oauthsmtp._message.prepare import prepare_message

FRAGMENTS = ['"', "<", ">", "@", ",", ";", ":", "(", ")", "\\", "=?", "?=", "[", "]", " ", "\t"]
FRAGMENTS += ["a", "b.org", "é", "ß", "xn--", ".", "g:", "=?utf-8?q?", "\x00", "\r", "\n"]
tricky_text = st.lists(st.sampled_from(FRAGMENTS) | st.text(max_size=5), max_size=12).map("".join)
anything = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.binary(max_size=20),
    tricky_text,
    st.lists(tricky_text, max_size=3),
    st.tuples(tricky_text, st.binary(max_size=10)),
    st.dictionaries(tricky_text, tricky_text, max_size=2),
)
address_field = st.one_of(anything, st.lists(tricky_text | anything, max_size=3))
SETTINGS = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])


def _send(message: Email | Message) -> None:
    out = prepare_message(message)
    assert max(map(len, out.data.split(b"\r\n"))) <= 998
    assert out.data.count(b"\n") == out.data.count(b"\r\n")


@SETTINGS
@given(
    sender=address_field,
    to=address_field,
    cc=address_field,
    subject=anything,
    text=anything,
    headers=anything,
    attachments=st.one_of(anything, st.lists(st.tuples(tricky_text, st.binary(max_size=9)))),
)
def test_email_raises_only_configuration_error(
    sender: object,
    to: object,
    cc: object,
    subject: object,
    text: object,
    headers: object,
    attachments: object,
) -> None:
    """Any value in any field: a valid Email, or ConfigurationError; never another exception."""
    try:
        mail = Email(
            sender=sender,  # type: ignore[arg-type]
            to=to,  # type: ignore[arg-type]
            cc=cc,  # type: ignore[arg-type]
            subject=subject,  # type: ignore[arg-type]
            text=text,  # type: ignore[arg-type]
            headers=headers,  # type: ignore[arg-type]
            attachments=attachments,  # type: ignore[arg-type]
        )
    except ConfigurationError:
        return
    try:
        _send(mail)
        _send(mail.to_message())
    except ConfigurationError:
        pass


HEADER_NAMES = ["From", "To", "Cc", "Bcc", "Sender", "Reply-To", "Message-ID", "Subject"]
HEADER_NAMES += ["Content-Type", "Content-Transfer-Encoding", "Date", "X-A", "MIME-Version"]
header_lines = st.lists(
    st.tuples(st.sampled_from(HEADER_NAMES), tricky_text), min_size=1, max_size=6
)


@SETTINGS
@given(header_lines, st.binary(max_size=200), st.booleans())
def test_prepare_message_raises_only_configuration_error(
    headers: list[tuple[str, str]], body: bytes, legacy: bool
) -> None:
    """A parsed message with any header values: sent, or ConfigurationError; nothing else."""
    raw = b"".join(
        f"{name}: {value}".encode("utf-8", "surrogateescape") + b"\r\n" for name, value in headers
    )
    policy = email.policy.compat32 if legacy else email.policy.default
    message = BytesParser(policy=policy).parsebytes(raw + b"\r\n" + body)
    with contextlib.suppress(ConfigurationError):
        _send(message)


@SETTINGS
@given(st.dictionaries(st.sampled_from(HEADER_NAMES), tricky_text, min_size=1, max_size=6))
def test_built_emailmessage_raises_only_configuration_error(headers: dict[str, str]) -> None:
    """An EmailMessage built in Python with any header values: the same contract."""
    message = EmailMessage()
    for name, value in headers.items():
        try:
            message[name] = value
        except (ValueError, TypeError, IndexError, AttributeError):
            continue  # the email package refused it itself: nothing of ours to test
    with contextlib.suppress(ConfigurationError):
        _send(message)
