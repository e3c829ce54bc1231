"""Running an example script as a user would, and reading what it printed."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# Settings a user's shell may hold for the real providers: an example under test sees none.
_PROVIDER_PREFIXES = ("GMAIL_", "MS_", "GOOGLE_")
_NO_BROWSER = ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")


def run_example(script: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``script`` with a private OAUTHSMTP_HOME (file store) in ``tmp_path``; 60 s at most."""
    env = {
        key: value
        for key, value in os.environ.items()
        if key not in _NO_BROWSER and not key.startswith(_PROVIDER_PREFIXES)
    }
    env["PYTHONPATH"] = str(ROOT)
    env["OAUTHSMTP_HOME"] = str(tmp_path / "home")
    env["OAUTHSMTP_STORE"] = "file"
    return subprocess.run(
        [sys.executable, str(script), *args],
        capture_output=True,
        text=True,
        env=env,
        cwd=tmp_path,
        timeout=60,
        check=False,
    )


def assert_lines_in_order(output: str, expected: Sequence[str]) -> None:
    """Each of ``expected`` is a whole line of ``output``, in this order."""
    lines = output.splitlines()
    position = 0
    for line in expected:
        assert line in lines[position:], f"{line!r} missing, in order:\n{output}"
        position = lines.index(line, position) + 1
