"""oauthsmtp's pytest entry point: loaded in every pytest run, it adds nothing by default.

Installing oauthsmtp registers this module with pytest (entry point group ``pytest11``,
name ``oauthsmtp``). It only declares the ini option ``oauthsmtp_dev_provider``; when a
project sets it to true, the fixtures of :mod:`oauthsmtp.testing` are loaded. Projects
that do not ask get no fixtures, no servers and no imports beyond this small module.

The fixtures live in another module on purpose: ``-p oauthsmtp.testing`` and
``pytest_plugins = ["oauthsmtp.testing"]`` register that module under its own name, and
pytest refuses to register one module under two names (this one is ``oauthsmtp``).
"""

from __future__ import annotations

import pytest

__all__ = ["pytest_addoption", "pytest_configure"]

INI_OPTION = "oauthsmtp_dev_provider"
FIXTURES_PLUGIN = "oauthsmtp.testing"


def pytest_addoption(parser: pytest.Parser) -> None:
    """Declare the ``oauthsmtp_dev_provider`` ini option."""
    parser.addini(
        INI_OPTION,
        type="bool",
        default=False,
        help="load oauthsmtp's development-provider fixtures (oauthsmtp.testing); "
        "same as -p oauthsmtp.testing",
    )


def pytest_configure(config: pytest.Config) -> None:
    """Load :mod:`oauthsmtp.testing` when the ini option asks for it."""
    if config.getini(INI_OPTION):
        config.pluginmanager.import_plugin(FIXTURES_PLUGIN)
