"""Glue for the frameworks where users already are: Django's mail, Python's logging, Celery.

Each module here imports its framework itself, and ``import oauthsmtp`` never imports
this package, so a program pays only for the integration it uses:

:mod:`oauthsmtp.integrations.django`
    ``EmailBackend``, an ``EMAIL_BACKEND`` for Django's ``send_mail`` and ``EmailMessage``
    (the ``oauthsmtp[django]`` extra installs Django).
:mod:`oauthsmtp.integrations.logging`
    ``SMTPHandler``, a :class:`logging.Handler` that mails log records with the cached
    token from a background thread, rate-limited.
:mod:`oauthsmtp.integrations.celery`
    ``make_send_task``, a Celery task that sends from any worker of a fleet, once per
    message (the ``oauthsmtp[celery]`` extra).
:mod:`oauthsmtp.integrations.ledger`
    ``SendLedger``, the idempotency keys the Celery task keeps in a ``RedisStore``'s Redis;
    framework-free, for RQ, Dramatiq or any job runner (docs/fleet.md).

All send as an account that ``oauthsmtp login`` recorded, with its saved token, never
opening a browser (docs/integrations.md).
"""
