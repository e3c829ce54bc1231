"""Send one message from a fresh process: the cold-start comparison (started by coldstart.py).

Usage: ``python bench/oneshot.py oauthsmtp|smtplib CONFIG.json``

* ``oauthsmtp``: load the cached token from the FileStore named in the config (its access
  token has expired), refresh it (one request to the token endpoint, the new token saved),
  and send one message over STARTTLS with XOAUTH2.
* ``smtplib``: send the same message with smtplib used well (verified STARTTLS, EHLO again,
  XOAUTH2), with an access token already in hand (``config["access_token"]``).

Both build the same small message and quit the SMTP session politely.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Any

SUBJECT = "Cold start"
TEXT = "One message from a fresh process.\n"


def oauthsmtp_send(config: dict[str, Any]) -> None:
    """Refresh the cached token and send one message with oauthsmtp."""
    import ssl

    import oauthsmtp

    params = oauthsmtp.OAuth2Parameters(**config["params"])
    store = oauthsmtp.FileStore(config["store"])
    token = oauthsmtp.auth_identify(
        params, account=config["account"], store=store, interactive=False
    )
    context = ssl.create_default_context(cafile=config["ca_file"])
    message = oauthsmtp.Email(
        sender=config["account"], to=[config["recipient"]], subject=SUBJECT, text=TEXT
    )
    with oauthsmtp.SMTPSession(
        config["smtp_host"],
        config["smtp_port"],
        security="starttls",
        username=config["account"],
        auth_token=token,
        ssl_context=context,
    ) as session:
        session.send(message).raise_for_status()


def smtplib_send(config: dict[str, Any]) -> None:
    """Send one message with smtplib and the access token in the config."""
    import smtplib
    import ssl
    from email.message import EmailMessage

    message = EmailMessage()
    message["From"] = config["account"]
    message["To"] = config["recipient"]
    message["Subject"] = SUBJECT
    message.set_content(TEXT)
    context = ssl.create_default_context(cafile=config["ca_file"])
    initial = f"user={config['account']}\x01auth=Bearer {config['access_token']}\x01\x01"
    with smtplib.SMTP(
        config["smtp_host"], config["smtp_port"], local_hostname="[127.0.0.1]", timeout=60
    ) as smtp:
        smtp.starttls(context=context)
        smtp.ehlo()
        smtp.auth("XOAUTH2", lambda challenge=None: initial if challenge is None else "")
        smtp.send_message(message)


def main() -> None:
    """Run the mode named on the command line."""
    mode, config_path = sys.argv[1], sys.argv[2]
    config = json.loads(Path(config_path).read_text())
    (oauthsmtp_send if mode == "oauthsmtp" else smtplib_send)(config)


if __name__ == "__main__":
    main()
