"""The arguments of ``oauthsmtp sendmail``: sendmail(8)'s flags, parsed as its getopt does (pure).

Programs call sendmail with the flags of Sendmail, Postfix and msmtp; this module accepts the
common ones and ignores (listing them in :attr:`SendmailOptions.ignored`) those that make no
sense for a program that sends one message at once through one account.

Meaningful: ``-t`` (recipients from To/Cc/Bcc), ``-f ADDR`` / ``-r ADDR`` (envelope
sender), ``-F NAME`` (full name for an added ``From``), ``-bm`` (deliver: the default),
``--account A``, ``--help``, ``--`` (end of options). Accepted without effect: ``-i`` /
``-oi``: the message always ends at the end of input, never at a line holding only ``.`` (as
msmtp reads it; sendmail without ``-i`` would stop there and drop the rest silently, which is
why programs pass ``-i``). Ignored, with their argument where they take one: every ``-o``
option (``-oem``, ``-odi``, ...), ``-B TYPE``, ``-C FILE``, ``-d X``, ``-h N``, ``-L TAG``,
``-N DSN``, ``-O OPT=VAL``, ``-R RET``, ``-V ENVID``, ``-X FILE``, ``-G``, ``-m``, ``-n``,
``-U``, ``-v``. Refused (a usage error): other ``-b`` modes (``-bs``, ``-bp``, ``-bd`` ...:
there is no daemon or queue), ``-q`` and any unknown flag.

Flags can be grouped (``-ti``) and their values joined (``-fme@example.org``) or separate
(``-f me@example.org``); options and recipients may be mixed, as GNU getopt allows, until
``--``.
"""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["SENDMAIL_HELP", "SendmailOptions", "SendmailUsageError", "parse_sendmail_args"]

_WITH_VALUE = frozenset("fFrBCdhLNORVXbo")
_IGNORED_FLAGS = frozenset("GimnUv")
_IGNORED_WITH_VALUE = frozenset("BCdhLNORVX")

SENDMAIL_HELP = """\
usage: oauthsmtp sendmail [-t] [-i] [-f FROM] [-F NAME] [--account EMAIL] [--] [RECIPIENT ...]

A sendmail(8) stand-in: reads one whole RFC 5322 message on standard input and sends it
through the account's SMTP server with its OAuth2 token, unchanged but for Bcc (removed) and
a From, Date and Message-ID added when missing.

  -t               recipients from the To, Cc and Bcc fields too (Bcc is removed)
  -i, -oi          accepted: the message always ends at the end of input, never at "."
  -f FROM, -r FROM the envelope sender (default: the account)
  -F NAME          the full name for the From field when the message has none
  --account EMAIL  the recorded account (default: $OAUTHSMTP_ACCOUNT, else the only one)
  --               end of options: the rest are recipients
  ignored: -oX... (other than -oi), -B -C -d -h -L -N -O -R -V -X (with their value),
           -G -m -n -U -v, -bm
exit codes (sysexits.h): 0 sent, 64 usage, 65 bad message, 67 recipient refused,
  69 server refused, 70 internal error, 75 temporary failure or login needed (try again
  later; log in with oauthsmtp login), 77 authentication refused, 78 configuration error
"""


class SendmailUsageError(ValueError):
    """The arguments are not a sendmail command line this stand-in accepts."""


@dataclass(frozen=True)
class SendmailOptions:
    """What a sendmail command line asks for.

    Attributes:
        recipients: the recipient arguments, as given (one address or a comma list each).
        read_recipients: ``-t``.
        sender: ``-f`` / ``-r``, or None.
        full_name: ``-F``, or None.
        account: ``--account``, or None.
        ignored: the flags given that have no effect, for ``--debug``.
        help: ``--help`` / ``-?`` was given.
        debug: ``--debug`` was given after the command.
    """

    recipients: tuple[str, ...] = ()
    read_recipients: bool = False
    sender: str | None = None
    full_name: str | None = None
    account: str | None = None
    ignored: tuple[str, ...] = ()
    help: bool = False
    debug: bool = False


def parse_sendmail_args(argv: list[str]) -> SendmailOptions:
    """Parse sendmail's flags (see the module's docstring for what each does).

    Raises:
        SendmailUsageError: an unknown or unsupported flag, or a flag without its value.
    """
    values: dict[str, object] = {}
    recipients: list[str] = []
    ignored: list[str] = []
    args = list(argv)
    index = 0
    while index < len(args):
        arg = args[index]
        index += 1
        if arg == "--":
            recipients.extend(args[index:])
            break
        if arg.startswith("--"):
            name, has_value, value = arg[2:].partition("=")
            if name in ("help", "debug"):
                if has_value:
                    raise SendmailUsageError(f"--{name} takes no value")
                values[name] = True
                continue
            if name != "account":
                raise SendmailUsageError(f"unknown option --{name}")
            if not has_value:
                if index >= len(args):
                    raise SendmailUsageError("--account needs an EMAIL")
                value = args[index]
                index += 1
            values["account"] = value
            continue
        if not arg.startswith("-") or arg == "-":
            recipients.append(arg)
            continue
        position = 1
        while position < len(arg):
            flag = arg[position]
            position += 1
            if flag not in _WITH_VALUE:
                if flag == "t":
                    values["read_recipients"] = True
                elif flag == "?":
                    values["help"] = True
                elif flag in _IGNORED_FLAGS:
                    ignored.append(f"-{flag}")
                else:
                    raise SendmailUsageError(f"unknown option -{flag}")
                continue
            value = arg[position:]
            if not value:
                if index >= len(args):
                    raise SendmailUsageError(f"option -{flag} needs a value")
                value = args[index]
                index += 1
            position = len(arg)
            _apply(flag, value, values, ignored)
    return SendmailOptions(
        recipients=tuple(recipients),
        ignored=tuple(ignored),
        **values,  # type: ignore[arg-type]
    )


def _apply(flag: str, value: str, values: dict[str, object], ignored: list[str]) -> None:
    if flag in ("f", "r"):
        values["sender"] = value
    elif flag == "F":
        values["full_name"] = value
    elif flag == "o":
        ignored.append(f"-o{value}")
    elif flag == "b":
        if value != "m":
            raise SendmailUsageError(
                f"-b{value} is not supported: this stand-in only delivers (-bm); it has no "
                "queue, daemon or SMTP mode (for programs that speak SMTP: oauthsmtp relay)"
            )
        ignored.append("-bm")
    elif flag in _IGNORED_WITH_VALUE:
        ignored.append(f"-{flag} {value}")
