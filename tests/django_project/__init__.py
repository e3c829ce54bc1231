"""A minimal Django project whose settings send mail through oauthsmtp (tests/test_django.py)."""
