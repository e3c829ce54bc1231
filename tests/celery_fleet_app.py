"""The Celery application the fleet tests start workers with (``celery -A celery_fleet_app``).

Configured from the environment the test sets (nothing here is a default a user should
copy; examples/celery/ is the one for users):

``FLEET_BROKER``      the broker (and result backend) URL: the test's redis-server
``FLEET_STORE``       the RedisStore URL (tokens, idempotency keys, the shared budget)
``FLEET_ACCOUNT``     the account recorded under ``OAUTHSMTP_HOME``
``FLEET_VISIBILITY``  seconds before an unacknowledged task is delivered again
``FLEET_LEASE``       seconds a message's sending claim lives unless renewed
``FLEET_LIMITS``      optional: JSON keywords of ``oauthsmtp.SendLimits``
"""

from __future__ import annotations

import json
import os

from celery import Celery

import oauthsmtp
from oauthsmtp.integrations.celery import make_send_task

broker = os.environ["FLEET_BROKER"]
app = Celery("oauthsmtp_fleet_test", broker=broker, backend=broker)
app.conf.update(
    broker_transport_options={
        "visibility_timeout": float(os.environ.get("FLEET_VISIBILITY", "3600")),
        "unacked_restore_interval": 1,
    },
    broker_connection_retry_on_startup=True,
    worker_prefetch_multiplier=1,
    worker_hijack_root_logger=False,
    result_expires=3600,
)

store = oauthsmtp.RedisStore(os.environ["FLEET_STORE"], lease=2.0)
limits_json = os.environ.get("FLEET_LIMITS")
limits = oauthsmtp.SendLimits(**json.loads(limits_json)) if limits_json else None

send_mail = make_send_task(
    app,
    account=os.environ["FLEET_ACCOUNT"],
    store=store,
    limits=limits,
    lease=float(os.environ.get("FLEET_LEASE", "3")),
    retry_backoff=0.2,
    retry_backoff_max=2.0,
    max_retries=50,
    timeout=20,
)
