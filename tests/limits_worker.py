"""One worker process of the fleet tests (test_limits_fleet.py): a RedisStore, SendLimits,
an SMTPSession to a loopback server; prints one JSON line of statuses, then exits.

    python tests/limits_worker.py CONFIG_JSON

CONFIG_JSON: {"url", "port", "worker", "count", "limits": {...}, "lease", "connections",
"hold": bool}. With ``hold``, the worker opens its session (taking a connection slot),
prints ``holding`` and waits to be killed.
"""

from __future__ import annotations

import json
import sys
import time
from email.message import EmailMessage

import oauthsmtp


def main(config: dict[str, object]) -> None:
    store = oauthsmtp.RedisStore(str(config["url"]), lease=float(config.get("lease", 5.0)))  # type: ignore[arg-type]
    limits = oauthsmtp.SendLimits(**config["limits"])  # type: ignore[arg-type]
    session = oauthsmtp.SMTPSession(
        "127.0.0.1",
        int(config["port"]),  # type: ignore[call-overload]
        security="none",
        connections=int(config.get("connections", 1)),  # type: ignore[call-overload]
        limits=limits,
        limits_store=store,
    )
    if config.get("hold"):
        session.start()
        print("holding", flush=True)
        time.sleep(120)
        return
    messages = []
    for n in range(int(config["count"])):  # type: ignore[call-overload]
        msg = EmailMessage()
        msg["From"] = "fleet@example.test"
        msg["To"] = "rcpt@example.test"
        msg["Subject"] = f"worker {config['worker']} message {n}"
        msg["Message-ID"] = f"<w{config['worker']}-{n}@example.test>"
        msg.set_content("hello\n")
        messages.append(msg)
    with session:
        results = session.send_many(messages)
    print(json.dumps([r.status for r in results]), flush=True)


if __name__ == "__main__":
    main(json.loads(sys.argv[1]))
