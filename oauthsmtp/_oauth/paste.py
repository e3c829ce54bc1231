"""The paste-back login: the authorization-code flow without a listener.

For machines where no port can be forwarded: the user opens the printed
authorization URL in any browser, logs in, and pastes back the address the
browser ended on (a "cannot connect" page on ``http://localhost:PORT/...``: the
code is in its address). :func:`judge_pasted` (pure) applies the same checks as
the loopback listener (:func:`~oauthsmtp._oauth.authz.check_callback`: exactly
one matching ``state``, ``iss``, ``error``, a well-formed ``code``) plus the
exact redirect: scheme, host, port and path must be those sent as
``redirect_uri``. Anything else is refused before any token request.
:func:`paste_login` does the I/O.
"""

from __future__ import annotations

import sys
from collections.abc import Callable
from typing import TextIO
from urllib.parse import urlsplit, urlunsplit

from oauthsmtp._errors import AuthorizationError, CallbackError

from .authz import AuthorizationRequest, Outcome, build_request, check_callback
from .endpoint import exchange_code
from .params import OAuth2Parameters
from .tokenresponse import TokenState

__all__ = ["MAX_PASTE", "judge_pasted", "paste_login", "paste_redirect_uri"]

MAX_PASTE = 16 * 1024
"""Longest pasted address accepted."""


def paste_redirect_uri(params: OAuth2Parameters) -> str:
    """The ``redirect_uri`` the paste flow sends.

    ``params.redirect_url`` verbatim, except that port 0 ("any free port", which
    only a listener can choose) becomes no port at all: nothing has to listen,
    the browser only has to show the address.
    """
    parts = urlsplit(params.redirect_url)
    if parts.port != 0:
        return params.redirect_url
    host = parts.netloc.rsplit(":", 1)[0]
    return urlunsplit(parts._replace(netloc=host))


def _refused(message: str) -> CallbackError:
    return CallbackError(
        f"{message}; nothing was sent to the token endpoint. Log in again and paste the whole "
        "address from the browser's address bar"
    )


def judge_pasted(request: AuthorizationRequest, text: str) -> str:
    """The authorization code in the pasted address ``text``, or an error.

    Raises:
        CallbackError: not the redirect address (another scheme, host, port or
            path), a fragment (an implicit-flow answer), a missing or wrong
            ``state``, an unexpected ``iss``, repeated parameters, no or a
            malformed code.
        AccessDenied / AuthorizationError: the address carries ``error=``.
    """
    pasted = text.strip()
    if not pasted:
        raise _refused("nothing was pasted")
    if len(pasted) > MAX_PASTE or not pasted.isprintable() or any(ch.isspace() for ch in pasted):
        raise _refused("the pasted text is not an address (too long, spaces or control characters)")
    try:
        got = urlsplit(pasted)
        want = urlsplit(request.redirect_uri)
        same_place = (
            got.scheme.lower() == want.scheme.lower()
            and (got.hostname or "") == (want.hostname or "")
            and got.port == want.port
            and (got.path or "/") == (want.path or "/")
        )
    except ValueError:
        raise _refused("the pasted text is not an address") from None
    if not same_place:
        raise _refused(
            f"the pasted address is not the redirect address {request.redirect_uri} (it must "
            "start with it)"
        )
    if got.fragment:
        raise _refused("the pasted address carries a #fragment (an implicit-flow answer)")
    target = (want.path or "/") + ("?" + got.query if got.query else "")
    verdict = check_callback(request, "GET", target)
    if verdict.outcome is Outcome.CODE and verdict.code is not None:
        return verdict.code
    if verdict.outcome is Outcome.ERROR and verdict.error is not None:
        raise verdict.error
    raise _refused(f"the pasted address was refused: {verdict.message}")


def paste_login(
    params: OAuth2Parameters,
    *,
    read_redirect: Callable[[str], str] | None = None,
    out: TextIO | None = None,
    check: Callable[[TokenState], None] | None = None,
    save: Callable[[TokenState], None] | None = None,
) -> TokenState:
    """Run the authorization-code flow with PKCE through a pasted address.

    Prints the authorization URL (to ``out``, default standard error), reads the
    address the browser ended on (``read_redirect(prompt)``, default one line
    from standard input), checks it (:func:`judge_pasted`), exchanges the code,
    runs ``check`` on the answer and hands it to ``save``.

    Raises:
        CallbackError / AccessDenied / AuthorizationError: a refused address
            (no token request was made).
        TokenError: the code exchange failed.
    """
    out = out if out is not None else sys.stderr
    request = build_request(params, redirect_uri=paste_redirect_uri(params))
    print(
        "oauthsmtp: open this URL in a browser (on any machine) and log in:\n"
        f"  {request.url}\n"
        f"The browser then goes to {request.redirect_uri}... and shows an error page "
        "(nothing listens there): copy the whole address from its address bar and paste it "
        "here.",
        file=out,
        flush=True,
    )
    prompt = "Address the browser ended on: "
    if read_redirect is not None:
        text = read_redirect(prompt)
    else:
        print(prompt, end="", file=out, flush=True)
        text = sys.stdin.readline(MAX_PASTE + 2)
    if not isinstance(text, str):
        raise AuthorizationError("read_redirect must return the pasted address as a string")
    code = judge_pasted(request, text)
    state = exchange_code(
        params, code=code, code_verifier=request.code_verifier, redirect_uri=request.redirect_uri
    )
    if check is not None:
        check(state)
    if save is not None:
        save(state)
    return state
