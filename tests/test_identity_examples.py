"""examples/identities run with --dev (device login, discovery, moving a login) and exit 0."""

from __future__ import annotations

from pathlib import Path

import pytest
from example_runner import run_example

EXAMPLES = Path(__file__).resolve().parent.parent / "examples" / "identities"

EXPECTED = {
    "device_login.py": [
        "and enter the code: ",
        "sent 250 2.0.0 OK queued",
        "arrived: user@example.test -> user@example.test: 'Sent after a device login'",
    ],
    "discover.py": [
        "device login:     http://127.0.0.1:",
        "sent 250 2.0.0 OK queued",
    ],
    "move_login.py": [
        "imported: user@example.test, found again without a login: valid=True",
        "sent 250 2.0.0 OK queued",
    ],
}


def test_every_example_is_covered() -> None:
    assert sorted(p.name for p in EXAMPLES.glob("*.py")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_example_runs_with_dev(name: str, tmp_path: Path) -> None:
    proc = run_example(EXAMPLES / name, tmp_path, "--dev")
    assert proc.returncode == 0, proc.stderr
    for expected in EXPECTED[name]:
        assert expected in proc.stdout, (expected, proc.stdout)
    assert not (tmp_path / "home").exists()  # a --dev run keeps nothing
