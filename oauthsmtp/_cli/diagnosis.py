"""The judgements of ``oauthsmtp doctor`` (pure): facts in, one :class:`Check` per line out.

Each function here takes what :mod:`oauthsmtp._cli.doctor` gathered (settings, the saved
token's dates and scopes, the identity an ``id_token`` names, the server's extensions) and
says ``ok``, ``warn``, ``skip`` or ``FAIL`` with one line of detail. Every failure's fix
comes from the explain table (:func:`oauthsmtp._explain.lookup`, else the check's own
entry by key), so a fix is written once, for ``explain``, the errors and ``doctor`` alike.
No I/O, no clock: the time is an argument.
"""

from __future__ import annotations

import textwrap
from dataclasses import dataclass
from datetime import datetime, timedelta

from oauthsmtp._explain import by_key, lookup
from oauthsmtp._oauth.scopes import GMAIL_SCOPE, MICROSOFT_APP_SCOPE, MICROSOFT_SMTP_SCOPE

from .exits import EXIT_FAILURE, EXIT_LOGIN_REQUIRED, EXIT_OK

__all__ = [
    "IDLE_LIMITS",
    "OAUTH_MECHANISMS",
    "Check",
    "check_identity",
    "check_mechanisms",
    "check_scopes",
    "check_token",
    "exit_code",
    "failed",
    "passed",
    "render",
    "rows",
]

OAUTH_MECHANISMS = ("XOAUTH2", "OAUTHBEARER")

IDLE_LIMITS = {"microsoft": "90 days", "gmail": "6 months"}
"""How long each provider keeps an unused refresh token (their documented idle limits)."""

_GOOGLE_SMTP = GMAIL_SCOPE
_MICROSOFT_SMTP = (
    MICROSOFT_SMTP_SCOPE.lower(),  # any of Microsoft's resource spellings: suffix match
    "/smtp.send",
    "/smtp.sendasapp",
    MICROSOFT_APP_SCOPE.lower(),
)
_GRAPH = "graph.microsoft.com"

_STATUS_WIDTH = 6
_CHECK_WIDTH = 14
_LINE_WIDTH = 100


@dataclass(frozen=True)
class Check:
    """One line of ``oauthsmtp doctor``.

    Attributes:
        check: what was checked (``settings``, ``token store``, ``smtp auth``, ...).
        status: ``ok``, ``warn`` (passes, but act soon), ``skip`` (nothing to check) or
            ``FAIL``.
        detail: what was found, in one line; never a secret.
        fix: what to do (from the explain table), or None.
        login: the failure is cured by logging in again (exit 3).
    """

    check: str
    status: str
    detail: str
    fix: str | None = None
    login: bool = False

    @property
    def ok(self) -> bool:
        """True unless the check failed."""
        return self.status != "FAIL"


def passed(check: str, detail: str, *, status: str = "ok") -> Check:
    """A check that passed (``ok``), passed with a warning, or had nothing to check."""
    return Check(check, status, detail)


def _fix(texts: tuple[str, ...], default: str, account: str) -> str:
    entry = next((e for e in (lookup(t) for t in texts if t) if e is not None), None)
    entry = entry or by_key(default)
    return entry.fix.replace("{account}", account)


def failed(
    check: str,
    detail: str,
    *,
    account: str,
    default: str,
    also: tuple[str, ...] = (),
    login: bool = False,
    status: str = "FAIL",
) -> Check:
    """A failed check whose fix is the explain entry matching ``also`` or ``detail``.

    Args:
        check: the check's name.
        detail: what was found (also looked up in the table, after ``also``).
        account: fills the fix's commands in.
        default: the entry key used when no text matches.
        also: texts to look up first (the server's own reply, the error's message).
        login: the failure needs a new login (exit 3).
        status: ``FAIL``, or ``warn`` for a passing check with advice.
    """
    fix = _fix((*also, detail), default, account)
    return Check(check, status, detail, fix, login)


def _span(delta: timedelta) -> str:
    seconds = int(delta.total_seconds())
    if seconds < 120:
        return f"{max(seconds, 0)} s"
    if seconds < 2 * 3600:
        return f"{seconds // 60} min"
    if seconds < 2 * 86400:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def check_token(
    *,
    account: str,
    provider: str,
    now: datetime,
    expires_at: datetime | None,
    obtained_at: datetime,
    has_refresh_token: bool,
    refresh_expires_at: datetime | None,
    refreshed: bool,
    warn_days: int,
) -> Check:
    """Freshness of the access token and health of the refresh token.

    ``refreshed`` says the doctor just renewed an expired access token (so the refresh
    token works). Warns when the refresh token lapses within ``warn_days`` days (where the
    provider said when) or when no refresh token is held.
    """
    if expires_at is None:
        fresh = "access token valid (no expiry given)"
    else:
        fresh = f"access token valid for {_span(expires_at - now)}"
    if refreshed:
        fresh = f"refreshed just now; {fresh}"
    if not has_refresh_token:
        return failed(
            "token",
            f"{fresh}; no refresh token is held: a login is needed once it expires",
            account=account,
            default="token-no-refresh",
            status="warn",
        )
    if refresh_expires_at is not None:
        when = refresh_expires_at.isoformat(timespec="minutes")
        if refresh_expires_at - now <= timedelta(days=warn_days):
            return failed(
                "token",
                f"{fresh}; the refresh token lapses in {_span(refresh_expires_at - now)} "
                f"({when}), as the provider said",
                account=account,
                default="oauth-invalid-grant",
                status="warn",
            )
        return passed("token", f"{fresh}; the refresh token lapses at {when}")
    idle = IDLE_LIMITS.get(provider)
    if idle is not None:
        last = "today" if obtained_at.date() == now.date() else obtained_at.date().isoformat()
        return passed(
            "token", f"{fresh}; refresh token lapses after {idle} unused (last used {last})"
        )
    return passed("token", f"{fresh}; refresh token held")


def check_identity(names: tuple[str, ...], account: str) -> Check:
    """Whether the OpenID Connect identity of the token (if the provider sent one) is ours."""
    if not names:
        return passed(
            "identity",
            "not known here (no id_token in the token endpoint's answers); the server "
            "checks it at AUTH",
            status="skip",
        )
    if account.casefold() in (name.casefold() for name in names):
        return passed("identity", f"token is for {account}")
    return failed(
        "identity",
        f"the token is for {', '.join(names)}, not {account}",
        account=account,
        default="identity-mismatch",
        login=True,
    )


def check_scopes(provider: str, granted: tuple[str, ...], *, account: str) -> Check:
    """Whether the granted scopes can send mail over SMTP (docs/security.md, scope check)."""
    lowered = [scope.lower() for scope in granted]
    shown = " ".join(granted) or "(none)"
    smtp_ms = [s for s, low in zip(granted, lowered, strict=True) if low.endswith(_MICROSOFT_SMTP)]
    if provider == "gmail" or _GOOGLE_SMTP in granted:
        if _GOOGLE_SMTP in granted:
            return passed("scopes", f"{_GOOGLE_SMTP} granted")
        return failed(
            "scopes",
            f"the mail scope {_GOOGLE_SMTP} was not granted (granted: {shown})",
            account=account,
            default="scope-missing",
            login=True,
        )
    if smtp_ms:
        return passed("scopes", f"{' '.join(smtp_ms)} granted")
    graph = [s for s, low in zip(granted, lowered, strict=True) if _GRAPH in low]
    if graph:
        return failed(
            "scopes",
            f"granted {' '.join(graph)}: a Microsoft Graph scope, not SMTP.Send",
            account=account,
            default="scope-graph-for-smtp",
            login=True,
        )
    if provider == "microsoft":
        return failed(
            "scopes",
            f"the mail scope {MICROSOFT_SMTP_SCOPE} was not granted (granted: {shown})",
            account=account,
            default="scope-missing",
            login=True,
        )
    return passed("scopes", f"granted: {shown} (a custom provider: not checked)")


def check_mechanisms(extensions: dict[str, str], *, host: str, account: str) -> Check:
    """Whether the post-TLS EHLO offers an OAuth2 mechanism, and what else it says."""
    offered = extensions.get("AUTH", "").upper().split()
    oauth = [m for m in OAUTH_MECHANISMS if m in offered]
    if not oauth:
        return failed(
            "ehlo",
            f"{host} offers no OAuth2 mechanism after TLS (AUTH {' '.join(offered) or '-'})",
            account=account,
            default="smtp-no-oauth-mechanism",
        )
    extras = [name for name in ("PIPELINING", "SMTPUTF8", "8BITMIME") if name in extensions]
    size = extensions.get("SIZE", "").strip()
    parts = [f"AUTH {' '.join(offered)}"]
    if size.isdigit() and int(size):
        parts.append(f"size limit {int(size) / 1_000_000:.0f} MB")
    parts.extend(extras)
    return passed("ehlo", ", ".join(parts))


def exit_code(checks: list[Check]) -> int:
    """0 when every check passed; 3 when a failure needs a login; 1 otherwise."""
    failures = [c for c in checks if not c.ok]
    if not failures:
        return EXIT_OK
    return EXIT_LOGIN_REQUIRED if any(c.login for c in failures) else EXIT_FAILURE


def render(checks: list[Check]) -> str:
    """The text report: one line per check, the fix under each failure or warning."""
    indent = " " * (_STATUS_WIDTH + _CHECK_WIDTH)
    lines: list[str] = []
    for c in checks:
        lines.append(f"{c.status:<{_STATUS_WIDTH}}{c.check:<{_CHECK_WIDTH}}{c.detail}")
        if c.fix:
            lines.extend(
                textwrap.wrap(
                    f"Fix: {c.fix}",
                    width=_LINE_WIDTH,
                    initial_indent=indent,
                    subsequent_indent=indent,
                    break_on_hyphens=False,
                    break_long_words=False,
                )
            )
    return "\n".join(lines) + "\n"


def rows(checks: list[Check]) -> list[dict[str, str | None]]:
    """The ``--json`` form: ``[{check, status, detail, fix}, ...]``."""
    return [
        {"check": c.check, "status": c.status, "detail": c.detail, "fix": c.fix} for c in checks
    ]
