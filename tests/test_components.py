"""The rule for missing real components (tests/components.py): skip locally, fail on CI."""

from __future__ import annotations

import pytest
from components import on_ci, require


@pytest.mark.parametrize(
    ("value", "ci"),
    [("true", True), ("1", True), ("yes", True), ("", False), ("0", False), ("false", False)],
)
def test_on_ci_reads_the_ci_variable(monkeypatch: pytest.MonkeyPatch, value: str, ci: bool) -> None:
    monkeypatch.setenv("CI", value)
    assert on_ci() is ci


def test_missing_component_fails_on_ci(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CI", "true")
    with pytest.raises(pytest.fail.Exception, match=r"msmtp is needed.*apt-get install msmtp"):
        require(False, "msmtp", "apt-get install msmtp")


def test_missing_component_skips_with_the_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("CI", raising=False)
    with pytest.raises(pytest.skip.Exception, match="apt-get install msmtp"):
        require(False, "msmtp", "apt-get install msmtp")
    require(True, "msmtp", "apt-get install msmtp")  # present: nothing happens
