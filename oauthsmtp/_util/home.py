"""Where oauthsmtp keeps its files: ``$OAUTHSMTP_HOME`` or the platform's user config folder."""

from __future__ import annotations

import os
import pathlib

__all__ = ["oauthsmtp_home"]


def oauthsmtp_home() -> pathlib.Path:
    """The folder for account settings, locks and (when chosen) token files.

    Returns:
        ``$OAUTHSMTP_HOME`` (``~`` expanded, made absolute) when set and
        non-empty, else ``platformdirs.user_config_path("oauthsmtp")``:
        ``~/.config/oauthsmtp`` (or ``$XDG_CONFIG_HOME/oauthsmtp``) on Linux,
        ``~/Library/Application Support/oauthsmtp`` on macOS,
        ``%LOCALAPPDATA%\\oauthsmtp`` on Windows. The folder is not created here.
    """
    configured = os.environ.get("OAUTHSMTP_HOME", "").strip()
    if configured:
        return pathlib.Path(configured).expanduser().absolute()
    import platformdirs

    return platformdirs.user_config_path("oauthsmtp", appauthor=False, roaming=False)
