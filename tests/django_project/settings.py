"""Django settings as a project using oauthsmtp would write them (docs/integrations.md).

The tests point ``OAUTHSMTP_HOME`` at a temporary folder per test (``override_settings``).
"""

SECRET_KEY = "test-only-not-secret"
USE_TZ = True
INSTALLED_APPS: list[str] = []
DEFAULT_FROM_EMAIL = "user@example.test"

EMAIL_BACKEND = "oauthsmtp.integrations.django.EmailBackend"
OAUTHSMTP_ACCOUNT = "user@example.test"
OAUTHSMTP_STORE = "file"
OAUTHSMTP_HOME = None  # set per test
EMAIL_TIMEOUT = 20
