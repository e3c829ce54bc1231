"""``python -m oauthsmtp``: the same as the ``oauthsmtp`` command."""

from ._cli.main import run

if __name__ == "__main__":
    run()
