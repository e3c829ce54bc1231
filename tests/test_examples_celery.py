"""examples/celery runs with --dev: a real Celery worker, a real redis-server, the dev provider.

``send.py --dev`` records the login with the command line (its token in Redis), starts one
``celery -A tasks worker``, queues three messages and one of them again, and checks that
three arrived; it exits 0 only if its own checks passed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import example_runner
import pytest
from example_runner import assert_lines_in_order

if TYPE_CHECKING:
    from redis_server import RedisServer

pytest_plugins = ["redis_server"]

EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "celery"


def test_the_celery_example_sends_each_message_once(
    redis_server: RedisServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("REDIS_URL", f"redis://127.0.0.1:{redis_server.port}")
    done = example_runner.run_example(EXAMPLE / "send.py", tmp_path, "--dev")
    assert done.returncode == 0, done.stdout + done.stderr
    assert_lines_in_order(
        done.stdout,
        [
            "logged in once as user@example.test; the token is in Redis",
            "#1: sent 250 2.0.0 OK queued",
            "#3: sent 250 2.0.0 OK queued",
            "#4: sent 250 2.0.0 OK queued (recorded earlier: not sent again)",
            "arrived: 3 messages",
            "dev check passed: 3 messages sent once each; the repeat was not sent again",
        ],
    )
    assert not (tmp_path / "home").exists() or not any((tmp_path / "home").iterdir())
    client = redis_server.client()
    assert client.keys("oauthsmtp:token:*")  # the login lives in Redis, not on disk
    client.close()
