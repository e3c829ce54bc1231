"""The Celery application of the example: one task that sends mail as a recorded account.

Start a worker (from this folder, with the same environment as the login):

    celery -A tasks worker --loglevel=INFO

Settings, from the environment:

    REDIS_URL           the Redis server, without a database number
                        (default redis://127.0.0.1:6379): database 1 is the broker,
                        2 the result backend, 0 the token store unless OAUTHSMTP_STORE says
    OAUTHSMTP_STORE     the RedisStore URL every worker and the login share
    OAUTHSMTP_REDIS_KEY optional: the Fernet key the tokens are encrypted with
    OAUTHSMTP_ACCOUNT   the account `oauthsmtp login` recorded (required)
    OAUTHSMTP_HOME      where that login recorded the account's settings
    OAUTHSMTP_LIMITS    optional: microsoft365, gmail or workspace (the provider's limits,
                        shared by every worker through the store)
"""

from __future__ import annotations

import os

from celery import Celery

import oauthsmtp
from oauthsmtp.integrations.celery import make_send_task

REDIS_URL = os.environ.get("REDIS_URL", "redis://127.0.0.1:6379").rstrip("/")
STORE_URL = os.environ.get("OAUTHSMTP_STORE", "")
if not STORE_URL.startswith(("redis://", "rediss://")):
    STORE_URL = f"{REDIS_URL}/0"

app = Celery("mail", broker=f"{REDIS_URL}/1", backend=f"{REDIS_URL}/2")
app.conf.update(
    broker_connection_retry_on_startup=True,
    # One message at a time per worker process: a killed worker holds back only that one.
    worker_prefetch_multiplier=1,
    # Redelivered when not acknowledged within 10 minutes (the task acknowledges late).
    broker_transport_options={"visibility_timeout": 600},
    result_expires=24 * 3600,
)

LIMITS = {
    "": None,
    "microsoft365": oauthsmtp.providers.MICROSOFT_365_LIMITS,
    "gmail": oauthsmtp.providers.GMAIL_LIMITS,
    "workspace": oauthsmtp.providers.GOOGLE_WORKSPACE_LIMITS,
}

store = oauthsmtp.RedisStore(STORE_URL, encryption_key=os.environ.get("OAUTHSMTP_REDIS_KEY"))

send_mail = make_send_task(
    app,
    account=os.environ["OAUTHSMTP_ACCOUNT"],
    store=store,
    limits=LIMITS[os.environ.get("OAUTHSMTP_LIMITS", "").lower()],
)
