"""The default redirect, http://localhost:9000, in a private network namespace.

`unshare -rn` gives this test its own loopback where port 9000 is free, so the
default is exercised exactly as a user meets it: both 127.0.0.1:9000 and
[::1]:9000 held, the browser sent to localhost:9000, the token obtained.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import textwrap
from pathlib import Path

from components import require

HERE = Path(__file__).parent

SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, threading
    import oauthsmtp
    from oauthsmtp import MemoryStore
    from oauthsmtp._oauth.loopback import LoopbackListener
    from oauthsmtp.devserver import AuthServer

    with AuthServer(mode="auto") as server:
        params = server.parameters(server.register_client())  # redirect_url left at its default
        assert params.redirect_url == "http://localhost:9000", params.redirect_url
        # While a flow listens, nobody can bind 9000 on either address.
        probe = LoopbackListener("http://localhost:9000")
        probe.open()
        clash = []
        for family, host in ((socket.AF_INET, "127.0.0.1"), (socket.AF_INET6, "::1")):
            with socket.socket(family) as s:
                s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
                try:
                    s.bind((host, 9000)); s.listen(); clash.append(host)
                except OSError:
                    pass
        addresses = sorted(h for h, _ in probe.addresses)
        probe.close()
        first = oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=20)
        second = oauthsmtp.auth_identify(params, store=MemoryStore(), timeout=20)
        print(json.dumps({"addresses": addresses, "clash": clash,
                          "valid": [first.valid, second.valid],
                          "requests": server.token_requests}))
    """
)


def _unshare_works() -> bool:
    if shutil.which("unshare") is None or shutil.which("ip") is None:
        return False
    probe = subprocess.run(
        ["unshare", "-rn", "ip", "link", "set", "lo", "up"], capture_output=True, check=False
    )
    return probe.returncode == 0


def test_default_redirect_localhost_9000(tmp_path: Path) -> None:
    """Two logins in a row on the default http://localhost:9000, holding both addresses."""
    require(
        _unshare_works(),
        "unshare -rn and ip (a private loopback)",
        "apt-get install util-linux iproute2, and user namespaces enabled",
    )
    log = tmp_path / "browser.json"
    env = {
        **os.environ,
        "BROWSER": f"{sys.executable} {HERE / 'fake_browser.py'} %s",
        "FAKE_BROWSER_LOG": str(log),
        "PYTHONPATH": str(HERE.parent),
    }
    command = f"ip link set lo up && exec {sys.executable} -c '{SCRIPT}'"
    proc = subprocess.run(
        ["unshare", "-rn", "sh", "-c", command],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout.strip().splitlines()[-1])
    assert result["addresses"] == ["127.0.0.1", "::1"]
    assert result["clash"] == []
    assert result["valid"] == [True, True]
    assert result["requests"] == 2
    assert "redirect_uri=http%3A%2F%2Flocalhost%3A9000" in proc.stderr
