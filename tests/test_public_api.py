"""The public API: an explicit, sorted, complete __all__."""

from __future__ import annotations

import subprocess
import sys

import oauthsmtp


def test_all_is_sorted() -> None:
    """__all__ is kept sorted so that additions are reviewed."""
    assert oauthsmtp.__all__ == sorted(oauthsmtp.__all__)


def test_all_names_resolve() -> None:
    """Every name in __all__ exists on the package."""
    for name in oauthsmtp.__all__:
        assert getattr(oauthsmtp, name) is not None, name


def test_public_names_are_exported() -> None:
    """Every public, non-module attribute of the package is in __all__."""
    public = {
        name
        for name in dir(oauthsmtp)
        if not name.startswith("_") and not isinstance(getattr(oauthsmtp, name), type(sys))
    }
    assert public <= set(oauthsmtp.__all__)


def test_errors_share_one_base() -> None:
    """Every exception class exported derives from OAuthSMTPError."""
    for name in oauthsmtp.__all__:
        value = getattr(oauthsmtp, name)
        if isinstance(value, type) and issubclass(value, BaseException):
            assert issubclass(value, oauthsmtp.OAuthSMTPError), name


def test_import_is_light() -> None:
    """import oauthsmtp does not pull in authlib, requests, keyring or http.server."""
    code = (
        "import sys, oauthsmtp; "
        "heavy = [m for m in ('authlib', 'requests', 'keyring', 'http.server', 'webbrowser') "
        "if m in sys.modules]; print(','.join(heavy))"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True
    ).stdout.strip()
    assert out == ""
