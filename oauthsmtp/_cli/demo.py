"""``oauthsmtp demo``: the whole product, end to end, against an embedded dev provider.

Each step says in plain words what happens. The exit code is 0 only when both
messages arrived at the development provider (over SMTP, or with ``--transport api``
through its Microsoft Graph emulation).
"""

from __future__ import annotations

import io
import shutil
import sys
import tempfile
import textwrap
import threading
import urllib.request
from pathlib import Path
from typing import TYPE_CHECKING, TextIO

if TYPE_CHECKING:
    from oauthsmtp._api.graph import GraphSession
    from oauthsmtp._smtp.session import SMTPSession
    from oauthsmtp._tokens.token import AuthToken
    from oauthsmtp.devserver import DevProvider

__all__ = ["run_demo"]

ACCOUNT = "demo@oauthsmtp.test"


def _say(out: TextIO, step: str, text: str) -> None:
    out.write(f"\n== {step}\n")
    for paragraph in text.strip().split("\n\n"):
        out.write(textwrap.fill(" ".join(paragraph.split()), width=78) + "\n")
    out.flush()


def _headless_opener(url: str) -> bool:
    """Act as a browser that approves: follow the URL and its redirects in the background."""

    def follow() -> None:
        try:
            with urllib.request.urlopen(url, timeout=30) as resp:  # noqa: S310 - loopback only
                resp.read()
        except OSError:
            pass  # the flow reports what went wrong

    threading.Thread(target=follow, daemon=True, name="oauthsmtp-demo-browser").start()
    return True


def run_demo(
    *, out: TextIO | None = None, use_browser: bool | None = None, transport: str = "smtp"
) -> int:
    """Run the demo; returns the exit code (0 when both messages arrived).

    ``transport="api"`` logs in for Microsoft Graph's scope and sends through the
    development provider's Graph emulation instead of its SMTP server.

    Leaves nothing behind, also when stopped by Ctrl-C or SIGTERM.
    """
    from oauthsmtp._oauth.browser import browser_usable
    from oauthsmtp.devserver import DevProvider
    from oauthsmtp.devserver._run import sigterm_stops

    out = out if out is not None else sys.stdout
    interactive = browser_usable() if use_browser is None else use_browser
    # SIGTERM unwinds like Ctrl-C, so the servers stop and the folders below (tokens, and
    # the SMTP server's certificates with their private key) are removed.
    with sigterm_stops():
        workdir = Path(tempfile.mkdtemp(prefix="oauthsmtp-demo-"))
        try:
            return _run(
                out,
                interactive,
                workdir,
                DevProvider,
                api=transport == "api",
                auto=transport == "auto",
            )
        finally:
            shutil.rmtree(workdir, ignore_errors=True)


def _run(
    out: TextIO,
    interactive: bool,
    workdir: Path,
    provider_class: type[DevProvider],
    *,
    api: bool = False,
    auto: bool = False,
) -> int:
    """The six steps, with the provider and the token store in ``workdir``.

    ``api``: through the Graph emulation; ``auto``: an AutoSession whose SMTP AUTH the
    provider refuses as Microsoft 365 does with SMTP AUTH off, so it switches to Graph.
    """
    from oauthsmtp._api.auto import AutoSession
    from oauthsmtp._message.prepare import Email
    from oauthsmtp._oauth.browser import browser_login
    from oauthsmtp._tokens.audience import token_for_scope
    from oauthsmtp._tokens.identify import auth_identify
    from oauthsmtp._tokens.manager import TokenManager
    from oauthsmtp._tokens.stores.base import TokenKey
    from oauthsmtp._tokens.stores.filestore import FileStore

    _say(
        out,
        "Step 1 of 6: start a local development provider",
        """oauthsmtp starts, on this machine only, an OAuth2 authorization server (playing
        Google or Microsoft) and an SMTP server that accepts XOAUTH2 and OAUTHBEARER
        (playing smtp.gmail.com). Nothing leaves this computer.""",
    )
    mode = "consent" if interactive else "auto"
    with provider_class(mode=mode, user=ACCOUNT, maildir=workdir / "mail") as provider:
        out.write(f"   authorization server: {provider.auth.issuer}\n")
        out.write(
            f"   SMTP server:          127.0.0.1:{provider.smtp.port} (STARTTLS), "
            f"CA certificate {provider.ca_path}\n"
        )
        if api or auto:
            out.write(f"   Microsoft Graph (emulated): {provider.graph_api_url}\n")
        graph = f"{provider.GRAPH_API_SCOPE} offline_access"
        scope = {"scope": graph} if api else {}
        if auto:  # as providers.microsoft(api="auto"): SMTP's scope first, then Graph's
            scope = {"scope": f"{provider.auth.scope} offline_access {provider.GRAPH_API_SCOPE}"}
        params = provider.parameters(redirect_url="http://127.0.0.1:0/callback", **scope)

        def session(token: AuthToken) -> SMTPSession | GraphSession | AutoSession:
            if api:
                return provider.graph_session(auth_token=token)
            smtp = provider.session(auth_token=token, mechanism="XOAUTH2")
            if auto:
                return AutoSession(
                    smtp,
                    lambda: provider.graph_session(auth_token=token_for_scope(token, graph)),
                )
            return smtp

        store = FileStore(workdir / "tokens")
        key = TokenKey(params.token_url, params.client_id, ACCOUNT)
        manager = TokenManager(params, store, key)

        if interactive:
            how = """Your browser opens on the provider's consent page. Check the address
            and click "Approve" (the page offers "Deny" too). oauthsmtp receives the
            answer on a loopback port that is open only while it waits."""
        else:
            how = """No browser can be opened here (no display and no BROWSER setting),
            so the demo approves automatically, exactly as a browser would: it follows
            the authorization URL, the provider redirects to the loopback port, and
            oauthsmtp receives the code."""
        _say(
            out,
            "Step 2 of 6: log in once through the browser",
            f"""oauthsmtp builds an authorization URL with a fresh PKCE challenge and a
            random state, and listens on a loopback port for the answer. {how}
            The code is then exchanged for an access token and a refresh token.""",
        )
        state = browser_login(
            params,
            timeout=300,
            out=sys.stderr if interactive else io.StringIO(),
            save=manager.save,
            opener=None if interactive else _headless_opener,
        )
        expiry = state.expires_at.isoformat(timespec="seconds") if state.expires_at else "?"
        out.write(f"   logged in as {ACCOUNT}; access token valid until {expiry}\n")

        _say(
            out,
            "Step 3 of 6: the token is cached",
            f"""The token was saved in the token store (here a 0600 file store in
            {workdir / "tokens"}; by default the OS keyring). A later call, or another
            process, gets it without a browser:""",
        )
        token = auth_identify(params, account=ACCOUNT, store=store, interactive=False)
        out.write(f"   auth_identify(..., interactive=False) -> a valid token: {token.valid}\n")

        if auto:
            provider.smtp.auth_failure = "mailbox"
            _say(
                out,
                "Step 4 of 6: send with transport auto, SMTP AUTH switched off",
                """The SMTP server now answers AUTH as Microsoft 365 does when SMTP AUTH is
                disabled for the mailbox (535 5.7.139). AutoSession tries SMTP, sees that
                refusal (and only that one), logs a warning naming the permanent fix, and
                sends through Graph with a token redeemed from the same login.""",
            )
        elif api:
            _say(
                out,
                "Step 4 of 6: send a message through Microsoft Graph",
                """GraphSession posts the message (MIME, base64) to /me/sendMail with the
                access token as a bearer token, over one kept-alive connection; the
                provider checks that the token was issued for Graph.""",
            )
        else:
            _say(
                out,
                "Step 4 of 6: send a message over STARTTLS with XOAUTH2",
                """SMTPSession connects, upgrades to TLS with STARTTLS (verifying the server's
                certificate), says EHLO again, authenticates with SASL XOAUTH2 using the
                access token, and sends the message.""",
            )
        first = Email(
            sender=ACCOUNT,
            to=["friend@example.test"],
            subject="Hello from the oauthsmtp demo",
            text="This message was sent with an OAuth2 access token, no password.\n",
            html="<p>This message was sent with an <b>OAuth2</b> access token.</p>",
        )
        with session(token) as sender:
            result = sender.send(first)
        out.write(f"   server answered: {result.code} {result.message}\n")
        if auto:
            out.write(f"   sent through: {result.transport}\n")
        received = provider.wait_for_messages(1)
        msg = received[0]
        _say(
            out,
            "Step 5 of 6: the message arrived",
            "The development provider stored what it received:",
        )
        out.write(
            f"   from:    {msg.mail_from}\n   to:      {', '.join(msg.rcpt_tos)}\n"
            f"   subject: {msg.subject}\n   user:    {msg.user} (the authenticated identity)\n"
        )
        if msg.path is not None:
            out.write(f"   saved:   {msg.path}\n")
        out.write(f"   web:     {provider.web_url}\n")

        _say(
            out,
            "Step 6 of 6: refresh the token and send again",
            """Access tokens expire (Gmail's after an hour). oauthsmtp refreshes them with
            the refresh token, automatically and once however many threads or processes
            ask; here a refresh is forced. The provider rotates the refresh token, and the
            new one is saved before the new access token is used.""",
        )
        old = token.state
        token.refresh()
        saved = auth_identify(params, account=ACCOUNT, store=store, interactive=False)
        out.write(
            f"   new access token: {token.state.access_token != old.access_token}; "
            f"refresh token rotated: {token.refresh_token != old.refresh_token}; "
            f"new one saved: {saved.refresh_token == token.refresh_token}\n"
        )
        second = Email(
            sender=ACCOUNT,
            to=["friend@example.test"],
            subject="Second message, after a token refresh",
            text="Sent with the refreshed access token.\n",
        )
        with session(token) as sender:
            result = sender.send(second)
        out.write(f"   server answered: {result.code} {result.message}\n")
        if auto:
            out.write(f"   sent through: {result.transport}\n")
        arrived = provider.wait_for_messages(2)
        ok = len(arrived) >= 2 and arrived[1].subject == second.subject
    if ok:
        _say(
            out,
            "Done",
            (
                """Both messages arrived. In your own code: oauthsmtp.providers.microsoft(...,
                api="auto") for the parameters, oauthsmtp.auth_identify(...) for the token,
                and oauthsmtp.AutoSession(SMTPSession(...), GraphSession factory).send(...);
                or `oauthsmtp login --transport auto`. See docs/api.md."""
                if auto
                else """Both messages arrived. In your own code the same takes three calls:
                oauthsmtp.providers.microsoft(..., api=True) for the parameters,
                oauthsmtp.auth_identify(...) for the token, and
                oauthsmtp.GraphSession(...).send(...). See docs/api.md."""
                if api
                else """Both messages arrived. In your own code the same takes three calls:
                oauthsmtp.providers.gmail(...) for the parameters, oauthsmtp.auth_identify(...)
                for the token, and oauthsmtp.SMTPSession(...).send(...). See README.md and
                docs/."""
            ),
        )
        return 0
    out.write("oauthsmtp demo: the second message did not arrive\n")
    return 1
