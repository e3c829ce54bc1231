"""`oauthsmtp demo` end to end, as `make demo` runs it on a machine without a browser."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

from components import Lines, spawned


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


def test_demo_stopped_by_sigterm_leaves_no_folder_behind(tmp_path: Path) -> None:
    """SIGTERM while the demo waits for the browser: it exits, and its temp folders are gone.

    Those folders hold the token store and the SMTP server's private key.
    """
    scratch = tmp_path / "tmp"
    scratch.mkdir()
    env = {k: v for k, v in os.environ.items() if k not in ("DISPLAY", "WAYLAND_DISPLAY")}
    # A "browser" that opens nothing: the demo waits on its consent page until stopped.
    env.update(BROWSER="true", TMPDIR=str(scratch), OAUTHSMTP_HOME=str(tmp_path / "home"))
    command = [sys.executable, "-m", "oauthsmtp", "demo"]
    with spawned(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE) as proc:
        assert proc.stderr is not None
        Lines(proc.stderr).until(r"^Waiting up to \d+ seconds", timeout=60)
        assert [p.name for p in scratch.iterdir() if p.name.startswith("oauthsmtp-")]
        proc.send_signal(signal.SIGTERM)
        code = proc.wait(timeout=30)
    assert code != 0
    assert sorted(p.name for p in scratch.iterdir()) == []
