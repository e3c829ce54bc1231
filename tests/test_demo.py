"""`oauthsmtp demo` end to end, as `make demo` runs it on a machine without a browser."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path


def test_demo_sends_two_messages_and_exits_0(tmp_path: Path) -> None:
    """The demo logs in, sends, refreshes, sends again, and says so step by step."""
    env = {
        k: v for k, v in os.environ.items() if k not in ("BROWSER", "DISPLAY", "WAYLAND_DISPLAY")
    }
    env["OAUTHSMTP_HOME"] = str(tmp_path / "home")
    proc = subprocess.run(
        [sys.executable, "-m", "oauthsmtp", "demo"],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    out = " ".join(proc.stdout.split())  # the demo wraps its prose
    for step in range(1, 7):
        assert f"Step {step} of 6" in out
    assert "No browser can be opened here" in out
    assert "subject: Hello from the oauthsmtp demo" in out
    assert "refresh token rotated: True; new one saved: True" in out
    assert "Both messages arrived." in out
    assert "Traceback" not in proc.stderr
    assert not (tmp_path / "home").exists()  # the demo keeps nothing in the user's settings
