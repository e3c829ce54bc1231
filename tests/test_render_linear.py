"""Rendering is linear in the number of parts (issue 17): counted in calls, not timed.

The fallback path (an ``EmailMessage`` with a non-ASCII address or a ``message/rfc822``
part goes through the email package under oauthsmtp's policy) once took 9.5 s for 3,000
attachments where the standard library took 0.36 s. Here every Python and C function call
made while preparing a message is counted (``sys.setprofile``); doubling the attachments
must not much more than double the count.
"""

from __future__ import annotations

import sys
from email.message import EmailMessage
from types import FrameType

import pytest

from oauthsmtp import Email
from oauthsmtp._message.prepare import prepare_message


def _calls(build: object) -> int:
    message = build()  # type: ignore[operator]
    count = 0

    def profile(frame: FrameType, event: str, arg: object) -> None:
        nonlocal count
        if event in ("call", "c_call"):
            count += 1

    sys.setprofile(profile)
    try:
        prepare_message(message)
    finally:
        sys.setprofile(None)
    return count


def _email_message(attachments: int, *, rfc822: bool) -> EmailMessage:
    message = EmailMessage()
    message["From"] = "sender@example.test"
    message["To"] = "Zoë <zoe@exämple.test>" if not rfc822 else "rcpt@example.test"
    message["Subject"] = "many parts"
    message.set_content("hello")
    if rfc822:
        inner = EmailMessage()
        inner["From"] = "inner@example.test"
        inner["Subject"] = "inner"
        inner.set_content("hi")
        message.add_attachment(inner)
    for i in range(attachments):
        message.add_attachment(
            b"x" * 100, maintype="application", subtype="octet-stream", filename=f"f{i}.bin"
        )
    return message


def _email(attachments: int) -> Email:
    parts = [(f"f{i}.bin", b"x" * 100) for i in range(attachments)]
    parts.append(("inner.eml", b"From: inner@example.test\r\n\r\nhi\r\n", "message/rfc822"))
    return Email(
        sender="sender@example.test", to=["Zoë <zoe@exämple.test>"], text="x", attachments=parts
    )


@pytest.mark.parametrize(
    "build",
    [
        lambda n: _email_message(n, rfc822=False),
        lambda n: _email_message(n, rfc822=True),
        _email,
    ],
    ids=["EmailMessage, non-ASCII address", "EmailMessage, message/rfc822 part", "Email"],
)
def test_rendering_work_is_linear_in_parts(build: object) -> None:
    small = _calls(lambda: build(200))  # type: ignore[operator]
    large = _calls(lambda: build(800))  # type: ignore[operator]
    assert large <= 4.4 * small, f"{large} calls for 800 attachments, {small} for 200"
