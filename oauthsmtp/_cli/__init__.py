"""The ``oauthsmtp`` command line: one module per command group, parsed and dispatched by main.

Data flows one way::

    argv -> parser (values checks each flag) -> main -> the command's module
         -> the library (accounts, token store, login, SMTP) -> stdout / stderr + exit code
    errors -> hints (worded for the command line) -> main -> one line on stderr

- ``exits``: exit codes and :class:`~oauthsmtp._cli.exits.CommandError` (a leaf).
- ``values``: pure checks of flag values (argparse ``type=`` functions).
- ``parser``: every command, flag and help text.
- ``hints``: library errors worded for the command line (flags, not Python).
- ``context``: what the commands share: recorded accounts, the token store, a saved login.
- ``login``, ``token``, ``send``, ``status`` (status and logout), ``account``
  (``account set``), ``tools`` (providers, dev-server, demo), ``demo``: the commands.
- ``main``: :func:`~oauthsmtp._cli.main.main` and the console-script entry point ``run``.

The command modules import the library only inside their functions, so a command
pays only for what it uses.
"""
