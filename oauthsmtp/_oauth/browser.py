"""The browser login: authorization code with PKCE through a loopback redirect (RFC 8252).

:func:`browser_login` binds the loopback listener first (so a busy port fails
before any browser opens), opens the user's own browser (RFC 8252 §8.12: never
an embedded view), waits for the redirect, exchanges the code and returns the
new :class:`~oauthsmtp._oauth.tokenresponse.TokenState`. Keeping it is the
caller's business (``save=``).
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from typing import TextIO

from oauthsmtp._errors import AccountMismatch, AuthorizationError, ConfigurationError

from .endpoint import exchange_code
from .params import OAuth2Parameters
from .scopes import MAIL_SCOPES, first_resource
from .tokenresponse import TokenState, token_identity

__all__ = [
    "DEFAULT_TIMEOUT",
    "MAX_TIMEOUT",
    "browser_login",
    "browser_usable",
    "check_account",
    "check_granted_scope",
    "check_login_timeout",
]

DEFAULT_TIMEOUT = 300.0
"""Seconds a login may take, from the listener's start to the redirect."""

MAX_TIMEOUT = 24 * 3600.0
"""The longest login wait accepted (a day)."""


def check_login_timeout(timeout: object) -> float:
    """``timeout`` as seconds for a login, or ConfigurationError.

    A real number above 0 and at most MAX_TIMEOUT: not a bool, NaN, infinite
    (``inf``, ``1e309``), zero or negative.
    """
    if isinstance(timeout, bool) or not isinstance(timeout, (int, float)):
        raise ConfigurationError(
            f"timeout must be a number of seconds, not {type(timeout).__name__}"
        )
    seconds = float(timeout)
    if not (0 < seconds <= MAX_TIMEOUT):  # also false for NaN
        raise ConfigurationError(
            f"timeout must be between 0 and {int(MAX_TIMEOUT)} seconds (the default is "
            f"{int(DEFAULT_TIMEOUT)}), got {timeout!r}"
        )
    return seconds


def check_account(params: OAuth2Parameters, state: TokenState, account: str | None) -> None:
    """The account that logged in must be ``account``, when the provider says who it was.

    The identity is read from an OpenID Connect ``id_token`` in the token
    answer (see :func:`~oauthsmtp._oauth.tokenresponse.token_identity`); a
    match of any of its claims, ignoring case, is enough. Without an
    ``account`` or an identity, nothing is checked.

    Raises:
        AccountMismatch: the provider names another account.
    """
    if not account:
        return
    names = token_identity(state.server_response, client_id=params.client_id)
    if not names or account.casefold() in {name.casefold() for name in names}:
        return
    actual = names[0]
    raise AccountMismatch(
        f"the browser logged in as {actual}, but this login is for {account}; nothing was "
        f"saved. Log in again and choose {account} in the browser (sign out of {actual} "
        "there first if it is picked automatically), or log in for the account "
        f"{actual} instead",
        expected=account,
        actual=actual,
    )


def check_granted_scope(params: OAuth2Parameters, state: TokenState) -> None:
    """A login that asked for a mail scope must be granted it (docs/security.md).

    A login that consents to several Microsoft resources at once (SMTP.Send and Graph's
    Mail.Send for ``transport="auto"``) gets a token for the first one only; the others'
    scopes are granted by the refresh that redeems a token for them.
    """
    asked = first_resource(params.scopes)
    missing = [s for s in asked if s in MAIL_SCOPES and s not in state.scope]
    if missing:
        raise AuthorizationError(
            f"the provider granted {' '.join(state.scope) or 'no scope'} but not "
            f"{' '.join(missing)}, which is needed to send mail: the permission was probably "
            "unticked on the consent screen. Log in again and allow sending email.",
            error="insufficient_scope",
        )


def browser_usable() -> bool:
    """False on a Unix machine with no display and no BROWSER: a console browser
    would take over the terminal, and a graphical one cannot start."""
    if os.environ.get("BROWSER"):
        return True
    if sys.platform in ("win32", "darwin"):
        return True
    return bool(os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY"))


def announce(url: str, port: int, timeout: float, *, opened: bool, out: TextIO) -> None:
    wait = f"Waiting up to {int(timeout)} seconds for the login to finish..."
    if opened:
        print(
            "oauthsmtp: your browser was opened to log in. If it did not open, visit:\n"
            f"  {url}\n{wait}",
            file=out,
            flush=True,
        )
        return
    print(
        "oauthsmtp: open this URL in a browser to log in:\n"
        f"  {url}\n"
        f"If the browser runs on another machine, forward the port first:\n"
        f"  ssh -L {port}:127.0.0.1:{port} USER@THIS-MACHINE\n{wait}",
        file=out,
        flush=True,
    )


def browser_login(
    params: OAuth2Parameters,
    *,
    open_browser: bool = True,
    timeout: float = DEFAULT_TIMEOUT,
    out: TextIO | None = None,
    save: Callable[[TokenState], None] | None = None,
    opener: Callable[[str], bool] | None = None,
    account: str | None = None,
) -> TokenState:
    """Run the authorization-code flow with PKCE once and return the new state.

    ``save`` is called with the new state before the browser is told that the
    login succeeded (so what the page says is true). ``opener`` replaces
    ``webbrowser.open`` (the demo uses it to approve on a machine with no browser).
    With ``account``, a token answer that names another account (see
    :func:`check_account`) is refused before ``save``.

    Raises:
        ConfigurationError: ``timeout`` is not a usable number of seconds.
        LoopbackError: the redirect port cannot be opened (before any browser).
        AccountMismatch: the browser logged in to another account.
        AuthorizationTimeout / AccessDenied / AuthorizationError / TokenError.
    """
    import webbrowser  # imported here: only the browser login needs them

    timeout = check_login_timeout(timeout)
    out = out if out is not None else sys.stderr
    deadline = time.monotonic() + timeout
    from .authz import build_request  # imported when a login runs, not for a cached token
    from .loopback import LoopbackListener

    listener = LoopbackListener(params.redirect_url)
    listener.open()
    try:
        request = build_request(params, redirect_uri=listener.redirect_uri)
        opened = False
        if opener is not None:
            opened = opener(request.url)
        elif open_browser and browser_usable():
            try:
                opened = webbrowser.open(request.url, new=1, autoraise=True)
            except webbrowser.Error:
                opened = False
        announce(request.url, listener.port, timeout, opened=opened, out=out)
        result: list[TokenState] = []

        def finish(code: str) -> tuple[int, str, str, bool]:
            state = exchange_code(
                params,
                code=code,
                code_verifier=request.code_verifier,
                redirect_uri=request.redirect_uri,
            )
            check_granted_scope(params, state)
            check_account(params, state, account)
            if save is not None:
                save(state)
            result.append(state)
            return (
                200,
                "Login complete",
                "oauthsmtp received the authorization and saved the token.",
                True,
            )

        listener.wait(request, deadline=deadline, finish=finish)
    finally:
        listener.close()
    return result[0]
