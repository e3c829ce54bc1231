"""HTML pages of the development authorization server.

Plain, self-contained HTML: no scripts, no external resources, no links. Every
value that comes from a request is HTML-escaped here, so callers pass raw text.
"""

from __future__ import annotations

from collections.abc import Sequence
from html import escape

__all__ = [
    "CONTENT_SECURITY_POLICY",
    "html_page",
    "render_consent",
    "render_device",
    "render_device_done",
    "render_error",
]

CONTENT_SECURITY_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; base-uri 'none'; frame-ancestors 'none'"
)
"""Sent with every HTML page: inline styles only, nothing loaded, never framed.

``form-action`` is deliberately absent: browsers apply it to the redirect that
follows a form POST, and the consent form must redirect to the client's
loopback port.
"""

_STYLE = """
body { font-family: system-ui, sans-serif; background: #f4f5f7; color: #1d1f23; margin: 0; }
main { max-width: 32rem; margin: 4rem auto; background: #fff; padding: 2rem;
       border-radius: 8px; box-shadow: 0 1px 4px rgba(0, 0, 0, .15); }
h1 { font-size: 1.4rem; margin-top: 0; }
code { background: #eef0f3; padding: 0 .25rem; border-radius: 3px; word-break: break-all; }
label { display: block; margin: 1.2rem 0 .3rem; font-weight: 600; }
input[type=email], input[type=text] { width: 100%; box-sizing: border-box; padding: .5rem;
                                      font-size: 1rem; }
.buttons { margin-top: 1.5rem; display: flex; gap: .75rem; }
button { font-size: 1rem; padding: .5rem 1.4rem; border-radius: 4px; border: 1px solid #888;
         cursor: pointer; }
#approve { background: #1a7f37; color: #fff; border-color: #1a7f37; }
.error { color: #b42318; }
.note { margin-top: 2rem; font-size: .85rem; color: #667; }
"""

_NOTE = (
    '<p class="note">oauthsmtp development authorization server: for local '
    "development and tests only, not an identity provider.</p>"
)


def html_page(title_html: str, body: str, *, style: str, note: str) -> str:
    """A complete, self-contained page of the dev server (no external resources).

    ``title_html`` and ``body`` must already be escaped; ``style`` is inline CSS.
    """
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n<meta charset="utf-8">\n'
        '<meta name="viewport" content="width=device-width, initial-scale=1">\n'
        '<meta name="referrer" content="no-referrer">\n'
        f"<title>{title_html}</title>\n<style>{style}</style>\n</head>\n"
        f"<body>\n<main>\n{body}\n{note}\n</main>\n</body>\n</html>\n"
    )


def _page(title: str, body: str) -> str:
    return html_page(escape(title), body, style=_STYLE, note=_NOTE)


def render_consent(
    *,
    client_id: str,
    scopes: Sequence[str],
    redirect_origin: str,
    email: str,
    request_id: str,
    csrf_token: str,
    message: str | None = None,
) -> str:
    """Return the consent page: who asks, for what, and Approve / Deny buttons.

    Args:
        client_id: the requesting client (shown escaped).
        scopes: the requested scope tokens (shown escaped, one per line).
        redirect_origin: where the browser goes back to (shown escaped).
        email: the pre-filled value of the ``#email`` input.
        request_id: identifies the pending authorization request.
        csrf_token: the anti-forgery token bound to that request.
        message: an error to show above the form (e.g. an invalid email).
    """
    items = "\n".join(f"<li><code>{escape(s)}</code></li>" for s in scopes)
    error = f'<p class="error" id="message">{escape(message)}</p>\n' if message else ""
    body = (
        "<h1>Authorize access to your mailbox</h1>\n"
        f"{error}"
        f'<p>The application <code id="client-id">{escape(client_id)}</code> '
        "asks for:</p>\n"
        f'<ul id="scope">\n{items}\n</ul>\n'
        f"<p>You will be sent back to <code>{escape(redirect_origin)}</code>.</p>\n"
        '<form method="post" action="/authorize">\n'
        f'<input type="hidden" name="request_id" value="{escape(request_id)}">\n'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">\n'
        '<label for="email">Sign in as</label>\n'
        f'<input type="email" id="email" name="email" value="{escape(email)}" '
        'required maxlength="254" autocomplete="email">\n'
        '<div class="buttons">\n'
        '<button type="submit" id="approve" name="decision" value="approve">Approve</button>\n'
        '<button type="submit" id="deny" name="decision" value="deny" formnovalidate>'
        "Deny</button>\n"
        "</div>\n</form>"
    )
    return _page("Authorize access - oauthsmtp dev server", body)


def render_error(error: str, description: str) -> str:
    """Return an error page for a request that cannot be redirected back to a client.

    Args:
        error: the RFC 6749 error code (shown escaped).
        description: a human-readable explanation (shown escaped, never as a link).
    """
    body = (
        "<h1>Authorization request refused</h1>\n"
        f'<p>Error: <code id="error">{escape(error)}</code></p>\n'
        f'<p id="error-description">{escape(description)}</p>\n'
        "<p>The request was not sent back to the application because its client or "
        "redirect URI could not be trusted.</p>"
    )
    return _page("Authorization error - oauthsmtp dev server", body)


def render_device(
    *, user_code: str, email: str, csrf_token: str, message: str | None = None
) -> str:
    """The device login's verification page (RFC 8628 §3.3): enter the code, approve or deny.

    Args:
        user_code: the pre-filled ``#user_code`` value (from ``?user_code=``, §3.3.1).
        email: the pre-filled ``#email`` value (who approves).
        csrf_token: the anti-forgery token of this form.
        message: an error to show above the form (unknown code, invalid email).
    """
    error = f'<p class="error" id="message">{escape(message)}</p>\n' if message else ""
    body = (
        "<h1>Log in a device</h1>\n"
        f"{error}"
        "<p>Enter the code the device shows you. Only approve if you started this login "
        "yourself.</p>\n"
        '<form method="post" action="/device">\n'
        f'<input type="hidden" name="csrf_token" value="{escape(csrf_token)}">\n'
        '<label for="user_code">Code</label>\n'
        f'<input type="text" id="user_code" name="user_code" value="{escape(user_code)}" '
        'required maxlength="64" autocomplete="off">\n'
        '<label for="email">Sign in as</label>\n'
        f'<input type="email" id="email" name="email" value="{escape(email)}" '
        'required maxlength="254" autocomplete="email">\n'
        '<div class="buttons">\n'
        '<button type="submit" id="approve" name="decision" value="approve">Approve</button>\n'
        '<button type="submit" id="deny" name="decision" value="deny" formnovalidate>'
        "Deny</button>\n"
        "</div>\n</form>"
    )
    return _page("Log in a device - oauthsmtp dev server", body)


def render_device_done(*, approved: bool, user: str | None) -> str:
    """The page after a device decision: the device finishes on its own."""
    if approved:
        text = (
            f'<p id="result">Approved: the device is now logged in as <code>{escape(user or "")}'
            "</code>. You can close this page.</p>"
        )
        title = "Device approved"
    else:
        text = '<p id="result">Denied: the device was not logged in.</p>'
        title = "Device denied"
    return _page(f"{title} - oauthsmtp dev server", f"<h1>{escape(title)}</h1>\n{text}")
