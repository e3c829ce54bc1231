"""The Python blocks of docs/sending.md run as written, against the development provider.

Each block runs in its own namespace where ``oauthsmtp`` is the real package except for
``SMTPSession`` (any host becomes the provider's SMTP server, with its CA trusted and its
token) and ``auth_identify`` (the provider's login). ``token``, ``message``, ``messages``
and ``others`` are given, as the document assumes; a block may define its own.
"""

from __future__ import annotations

import logging
import re
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

import oauthsmtp
from oauthsmtp.devserver import CertificateSet, DevProvider

DOC = Path(__file__).resolve().parent.parent / "docs" / "sending.md"
BLOCKS = re.findall(r"^```python\n(.*?)^```", DOC.read_text(encoding="utf-8"), re.S | re.M)


@pytest.fixture
def provider(certs: CertificateSet, tmp_path: Path) -> Iterator[DevProvider]:
    with DevProvider(certificates=certs, maildir=tmp_path / "mail") as running:
        yield running


def test_the_document_has_python_blocks() -> None:
    """The extraction finds the blocks (a change of fence style would silently skip them)."""
    assert len(BLOCKS) >= 6


@pytest.mark.parametrize("number", range(len(BLOCKS)))
def test_block_runs(
    number: int, provider: DevProvider, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Block ``number`` runs without an exception; what it sends reaches the provider."""
    token = provider.login()

    def session(host: str, port: int | None = None, **options: Any) -> oauthsmtp.SMTPSession:
        options.pop("username", None)  # the provider's user is the token's account
        options.pop("auth_token", None)
        return provider.session(auth_token=token, **options)

    shim = types.SimpleNamespace(**{name: getattr(oauthsmtp, name) for name in oauthsmtp.__all__})
    shim.SMTPSession = session

    def async_session(host: str, port: int | None = None, **options: Any) -> Any:
        options.pop("username", None)
        options.pop("auth_token", None)
        return oauthsmtp.AsyncSMTPSession(
            "127.0.0.1", provider.smtp.port, auth_token=token, ssl_context=provider.ssl_context()
        )

    shim.AsyncSMTPSession = async_session
    shim.auth_identify = lambda params, **options: token
    mail = [
        oauthsmtp.Email(sender=provider.user, to=[f"r{i}@example.org"], subject=f"{i}", text=".")
        for i in range(3)
    ]
    # One refused recipient in the given batch and in the document's: error branches run.
    provider.smtp.reject_recipients = frozenset({"r2@example.org", "bob@example.com"})
    (tmp_path / "report.pdf").write_bytes(b"%PDF-1.4 test")
    monkeypatch.chdir(tmp_path)
    printed: list[tuple[object, ...]] = []
    namespace: dict[str, object] = {
        "oauthsmtp": shim,
        "token": token,
        "message": mail[0],
        "messages": mail,
        "others": mail[1:],
        "print": lambda *args: printed.append(args),
    }
    code = re.sub(r"^import oauthsmtp$", "", BLOCKS[number], flags=re.M)
    root = logging.getLogger()
    level = root.level
    try:
        exec(compile(code, f"{DOC.name} block {number + 1}", "exec"), namespace)  # noqa: S102
    finally:
        root.setLevel(level)
    if re.search(r"\.send(_many)?\(", code):
        assert provider.wait_for_messages(1)
    if "send_many" in code and "print(" in code:
        assert printed  # the error branch ran and printed
