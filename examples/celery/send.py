"""Queue messages for the Celery workers of tasks.py and wait for their results.

With a real provider: log in once with the token store in Redis, start workers, send:

    export REDIS_URL=redis://127.0.0.1:6379 OAUTHSMTP_ACCOUNT=me@example.com
    OAUTHSMTP_STORE=$REDIS_URL/0 oauthsmtp login --account me@example.com --provider microsoft ...
    celery -A tasks worker --loglevel=INFO        # as many as you like, anywhere
    python send.py --to you@example.com

Offline, against oauthsmtp's development provider and a Redis you started (for example
``redis-server --port 6399 --save ''``):

    REDIS_URL=redis://127.0.0.1:6399 python send.py --dev

--dev does everything a deployment does, in order: the login is recorded once with the
command line (``oauthsmtp login ... --refresh-token-file -``: a refresh token from the
development provider, stored in Redis), one worker is started (``celery -A tasks worker``),
three messages are queued, and the first one is queued a second time: the worker finds its
Message-ID recorded as sent and does not send it again.
"""

from __future__ import annotations

import argparse
import os
import shlex
import signal
import subprocess
import sys
import tempfile
from email.message import EmailMessage
from email.utils import make_msgid
from pathlib import Path

HERE = Path(__file__).resolve().parent


def message(sender: str, to: str, subject: str) -> EmailMessage:
    mail = EmailMessage()
    mail["From"] = sender
    mail["To"] = to
    mail["Subject"] = subject
    mail["Message-ID"] = make_msgid(domain=sender.rpartition("@")[2] or None)
    mail.set_content(f"{subject}\n\nSent by a Celery worker with oauthsmtp.\n")
    return mail


def show(n: int, result: dict[str, object]) -> None:
    again = " (recorded earlier: not sent again)" if result["replayed"] else ""
    print(f"#{n}: {result['status']} {result['code']} {result['message']}{again}")


def send(to: str, count: int) -> list[dict[str, object]]:
    from tasks import send_mail  # the worker's own task module: same name, same broker

    account = os.environ["OAUTHSMTP_ACCOUNT"]
    mails = [message(account, to, f"Celery example {n}") for n in range(1, count + 1)]
    pending = [send_mail.delay(mail.as_bytes()) for mail in mails]
    # The same message queued twice (a producer that retried, a duplicate event): one send.
    pending.append(send_mail.delay(mails[0].as_bytes()))
    results = [p.get(timeout=60) for p in pending]
    for n, result in enumerate(results, 1):
        show(n, result)
    return results


def dev() -> int:
    import oauthsmtp
    from oauthsmtp.devserver import DevProvider

    redis_url = os.environ.get("REDIS_URL")
    if not redis_url:
        raise SystemExit("--dev needs a Redis: REDIS_URL=redis://127.0.0.1:6399 (see above)")
    with DevProvider(smtps_port=None) as provider, tempfile.TemporaryDirectory() as home:
        env = {
            **os.environ,
            "OAUTHSMTP_HOME": home,
            "OAUTHSMTP_STORE": f"{redis_url.rstrip('/')}/0",
            "OAUTHSMTP_ACCOUNT": provider.user,
            "SSL_CERT_FILE": str(provider.ca_path),  # trust the development CA
            "PYTHONPATH": os.pathsep.join(filter(None, [str(HERE), os.environ.get("PYTHONPATH")])),
        }
        # 1. The one login, recorded with the command line; its refresh token goes to Redis.
        laptop = provider.login(store=oauthsmtp.MemoryStore())
        words = shlex.split(provider.login_command())[1:]  # without SSL_CERT_FILE=...
        login = subprocess.run(  # noqa: S603 - our own command line, with our own arguments
            [sys.executable, "-m", "oauthsmtp", *words[1:], "--refresh-token-file", "-"],
            input=f"{laptop.refresh_token}\n",
            capture_output=True,
            text=True,
            env=env,
            timeout=60,
            check=False,
        )
        if login.returncode != 0:
            raise SystemExit(f"oauthsmtp login failed: {login.stderr}")
        print(f"logged in once as {provider.user}; the token is in Redis")
        # 2. A worker (what `celery -A tasks worker` does in production).
        worker = subprocess.Popen(
            [sys.executable, "-m", "celery", "-A", "tasks", "worker", "--pool=solo",
             "--loglevel=WARNING", "--without-gossip", "--without-mingle"],
            cwd=HERE,
            env=env,
            stdout=subprocess.DEVNULL,  # the worker's banner
        )  # fmt: skip
        try:
            os.environ.update(env)
            # 3. Queue the messages and wait for the results.
            results = send(provider.user, 3)
        finally:
            worker.send_signal(signal.SIGTERM)
            try:
                worker.wait(timeout=30)
            except subprocess.TimeoutExpired:
                worker.kill()
                worker.wait(timeout=10)
        arrived = provider.smtp.messages
        print(f"arrived: {len(arrived)} messages")
        if [r["status"] for r in results] != ["sent"] * 4 or len(arrived) != 3:
            raise SystemExit("dev check failed")
        if not results[3]["replayed"] or results[3]["key"] != results[0]["key"]:
            raise SystemExit("dev check failed: the repeated message was sent again")
        print("dev check passed: 3 messages sent once each; the repeat was not sent again")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--to", help="the recipient")
    parser.add_argument("--count", type=int, default=1, help="how many messages to queue")
    parser.add_argument("--dev", action="store_true", help="run against the dev provider")
    args = parser.parse_args()
    if args.dev:
        return dev()
    if not args.to:
        parser.error("give --to ADDRESS (or use --dev)")
    sys.path.insert(0, str(HERE))
    results = send(args.to, args.count)
    return 0 if all(r["status"] == "sent" for r in results) else 1


if __name__ == "__main__":
    sys.exit(main())
