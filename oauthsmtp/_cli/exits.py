"""Exit codes of the command line and :class:`CommandError` (a leaf: imports only the errors).

Exit codes: ``0`` success, ``1`` failure, ``2`` bad usage, ``3`` login required (so
that a password command can tell "log in again" from other failures), ``130``
interrupted.
"""

from __future__ import annotations

from oauthsmtp._errors import OAuthSMTPError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_LOGIN_REQUIRED",
    "EXIT_OK",
    "EXIT_USAGE",
    "PROG",
    "CommandError",
]

PROG = "oauthsmtp"

EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_LOGIN_REQUIRED = 3
EXIT_INTERRUPTED = 130


class CommandError(OAuthSMTPError):
    """A failure of a command, worded for the command line (flags and commands, not Python).

    Attributes:
        code: the exit code to end with (``EXIT_FAILURE`` unless given).
    """

    def __init__(self, message: str, *, code: int = EXIT_FAILURE) -> None:
        super().__init__(message)
        self.code = code
