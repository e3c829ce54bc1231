"""The small, self-contained pages the loopback listener answers the browser with."""

from __future__ import annotations

import html

__all__ = ["SECURITY_HEADERS", "render_page"]

SECURITY_HEADERS: tuple[tuple[str, str], ...] = (
    ("Cache-Control", "no-store"),
    ("Pragma", "no-cache"),
    ("Referrer-Policy", "no-referrer"),
    ("X-Content-Type-Options", "nosniff"),
    ("X-Frame-Options", "DENY"),
    ("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'"),
)
"""Sent with every page (RFC 9700 §4.2.4: no Referer leaks; never cached)."""

_TEMPLATE = """<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="referrer" content="no-referrer">
<title>{title}</title>
<style>
body{{font-family:system-ui,sans-serif;max-width:36rem;margin:4rem auto;padding:0 1rem;color:#222}}
h1{{font-size:1.4rem}} .ok{{color:#1a7f37}} .fail{{color:#b42318}} p{{line-height:1.5}}
</style></head>
<body><h1 class="{css}" id="result">{title}</h1><p id="message">{message}</p>
<p>{footer}</p></body></html>
"""


def render_page(title: str, message: str, *, ok: bool) -> bytes:
    """Return a complete HTML page; ``title`` and ``message`` are escaped here."""
    footer = (
        "You can close this tab and return to the application."
        if ok
        else "Return to the application for details."
    )
    return _TEMPLATE.format(
        title=html.escape(title),
        message=html.escape(message),
        css="ok" if ok else "fail",
        footer=footer,
    ).encode("utf-8")
