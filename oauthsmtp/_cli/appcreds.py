"""App-only accounts on the command line: their credentials rebuilt from what ``login`` recorded.

An app-only account (``--provider microsoft-app`` or ``google-service-account``)
has no refresh token: its token is renewed by making the grant again, so every
command needs the app's credentials. ``login`` records where they are: a client
secret goes to the token store (as for a browser login); a private key,
certificate or service-account key stays in its file, whose absolute path is
recorded with the account (in its ``extra_auth_params``, which no authorization
request ever uses for an app-only account) and read again at each renewal, so a
rotated key file is picked up and a file others can read is warned about each time.
"""

from __future__ import annotations

# The rebuilding itself lives in the library (oauthsmtp._accounts), which the Django backend
# and the logging handler share; the command line keeps these names.
from oauthsmtp._accounts import (
    APP_PROVIDERS,
    CERTIFICATE_FILE,
    KEY_FILE,
    PRIVATE_KEY_FILE,
    SUBJECT,
    app_credentials,
)

__all__ = [
    "APP_PROVIDERS",
    "CERTIFICATE_FILE",
    "KEY_FILE",
    "PRIVATE_KEY_FILE",
    "SUBJECT",
    "app_credentials",
]
