"""``oauthsmtp status`` and ``oauthsmtp logout``: what is saved for an account, and forgetting it.

``status`` reads the recorded settings and the token store and never prints a token
nor contacts the provider. ``logout`` deletes the saved token (revoking it first with
``--revoke``) and, with ``--forget``, the recorded settings and client secret; it
says what it removed.
"""

from __future__ import annotations

import argparse
import sys

from . import context
from .exits import EXIT_OK

TYPE_CHECKING = False  # typing is not imported at run time: the CLI starts quickly
if TYPE_CHECKING:
    from datetime import datetime
    from typing import TextIO

    from oauthsmtp import TokenStore
    from oauthsmtp._accounts import AccountSettings

__all__ = [
    "REFRESH_WARNING_DAYS",
    "describe_refresh",
    "describe_token",
    "run_logout",
    "run_status",
    "summary",
]

REFRESH_WARNING_DAYS = 3
"""``status`` and ``doctor`` warn when the refresh token lapses within this many days."""

Summary = dict[str, "str | bool | list[str] | None"]


def summary(token_store: TokenStore, settings: AccountSettings) -> Summary:
    """What ``status --json`` shows for one account (never a token)."""
    from oauthsmtp import AuthToken

    row: Summary = {
        "account": settings.account,
        "provider": settings.provider,
        "client_id": settings.client_id,
        "scopes": list(settings.scope),
        "smtp": f"{settings.smtp_host}:{settings.smtp_port} ({settings.security})",
        "transport": settings.transport,
        "api": (
            ("gmail" if settings.api == "gmail" else "graph") + f" {settings.api_url or 'default'}"
            if settings.transport in ("api", "auto")
            else None
        ),
        "logged_in": False,
        "expires_at": None,
        "access_token_valid": False,
        "has_refresh_token": False,
        "refresh_expires_at": None,
        "app_only": settings.provider in ("microsoft-app", "google-service-account"),
    }
    raw = token_store.load(settings.token_key)
    if raw is None:
        return row
    try:
        token = AuthToken.from_json(raw)
    except ValueError:
        return row
    row.update(
        logged_in=True,
        scopes=list(token.scope) or list(settings.scope),
        expires_at=token.expires_at.isoformat(timespec="seconds") if token.expires_at else None,
        access_token_valid=token.valid,
        has_refresh_token=token.refresh_token is not None,
        refresh_expires_at=(
            token.refresh_expires_at.isoformat(timespec="seconds")
            if token.refresh_expires_at and token.refresh_token
            else None
        ),
    )
    return row


def describe_refresh(
    lapses_at: datetime | None, account: str, *, now: datetime
) -> tuple[str, bool] | None:
    """When the refresh token lapses, and whether that is soon enough to warn.

    Returns:
        ``(text, warn)``, or None when the provider did not say (nothing is guessed).
        ``warn`` is True within :data:`REFRESH_WARNING_DAYS` days (or after the date).
    """
    if lapses_at is None:
        return None
    from datetime import timedelta

    when = lapses_at.isoformat(timespec="seconds")
    login = f"oauthsmtp login --account {account}"
    if lapses_at <= now:
        return f"the refresh token lapsed at {when}: log in again ({login})", True
    left = lapses_at - now
    if left <= timedelta(days=REFRESH_WARNING_DAYS):
        hours = int(left.total_seconds() // 3600)
        soon = f"{hours} h" if hours < 48 else f"{left.days} days"
        return (
            f"WARNING: the refresh token lapses in {soon} (at {when}); log in again before "
            f"then ({login}), or, for a Google app in Testing status, publish the app",
            True,
        )
    return f"the refresh token lapses at {when}", False


def describe_token(row: Summary, *, now: datetime | None = None) -> str:
    """The ``token:`` line of ``status`` for one account, in the right tense, with the next step."""
    account = row["account"]
    login = f"oauthsmtp login --account {account}"
    expires = row["expires_at"]
    if row.get("app_only"):  # no refresh token: the app's own grant gets the next one
        if not row["logged_in"]:
            return "app-only: no token saved; the next use gets one by the app's grant"
        if row["access_token_valid"]:
            return f"app-only access token valid until {expires}; renewed by the app's grant"
        return f"app-only access token expired at {expires}; the next use makes the grant again"
    if not row["logged_in"]:
        return f"not logged in (run: {login})"
    from datetime import datetime, timezone

    moment = now if now is not None else datetime.now(timezone.utc)
    lapses = row.get("refresh_expires_at")
    forecast = (
        describe_refresh(datetime.fromisoformat(lapses), str(account), now=moment)
        if isinstance(lapses, str)
        else None
    )
    text = _describe_access(row, login, moment)
    return text if forecast is None else f"{text}; {forecast[0]}"


def _describe_access(row: Summary, login: str, moment: datetime) -> str:
    expires = row["expires_at"]
    refresh = bool(row["has_refresh_token"])
    if row["access_token_valid"]:
        until = f"valid until {expires}" if expires else "valid (no expiry given)"
        held = "refresh token held" if refresh else f"NO refresh token: run {login} after that"
        return f"access token {until}; {held}"
    from datetime import datetime

    when = f"expired at {expires}" if expires else "expired"
    if isinstance(expires, str) and datetime.fromisoformat(expires) > moment:
        when = f"expires at {expires} (within the refresh margin)"
    if refresh:
        return f"access token {when}; refresh token held (refreshed on next use)"
    return f"access token {when} and NO refresh token is held: log in again ({login})"


def run_status(args: argparse.Namespace, out: TextIO) -> int:
    """List the recorded accounts (or one) and their tokens' state; returns the exit code."""
    if args.account:
        accounts = {args.account: context.require_settings(args.account)}
    else:
        accounts = context.registry().load_all()
    rows: list[Summary] = []
    if accounts:
        token_store = context.store()
        rows = [summary(token_store, s) for _, s in sorted(accounts.items())]
    if args.json:
        import json

        out.write(json.dumps({"accounts": rows}, indent=2) + "\n")
        return EXIT_OK
    if not rows:
        out.write("No accounts. Log in with: oauthsmtp login --account EMAIL --provider ...\n")
        return EXIT_OK
    for row in rows:
        scopes = row["scopes"]
        out.write(
            f"{row['account']}\n"
            f"  provider: {row['provider']}   client: {row['client_id']}\n"
            f"  scopes:   {' '.join(scopes) if isinstance(scopes, list) else ''}\n"
            f"  smtp:     {row['smtp']}\n"
            + (
                f"  sends:    over SMTP, through the API ({row['api']}) when SMTP AUTH is "
                "refused as disabled (transport auto)\n"
                if row["api"] and row["transport"] == "auto"
                else f"  sends:    through the API ({row['api']})\n"
                if row["api"]
                else ""
            )
            + f"  token:    {describe_token(row)}\n"
        )
    return EXIT_OK


def _store_name(token_store: TokenStore) -> str:
    names = {"KeyringStore": "the OS keyring", "FileStore": "the file store"}
    return names.get(type(token_store).__name__, "the token store")


def run_logout(args: argparse.Namespace, out: TextIO) -> int:
    """Delete the account's token (revoke it first with --revoke); returns the exit code."""
    from oauthsmtp._accounts import secret_key
    from oauthsmtp._tokens.identify import logout

    accounts = context.registry()
    settings = context.require_settings(args.account)
    token_store = context.store()
    app_only = settings.provider in ("microsoft-app", "google-service-account")
    params = (
        settings.parameters(context.client_secret(token_store, settings))
        if args.revoke and not app_only
        else None
    )
    # Revocation and deletion happen under the store's lock: a refresh in flight in
    # another process cannot save its token back afterwards.
    result = logout(token_store, settings.token_key, revoke_with=params)
    notes: list[str] = []
    if result.revoke_error is not None:
        notes.append(f"revocation failed ({result.revoke_error}); the local copy is deleted anyway")
    elif result.revoked is True:
        notes.append("revoked it at the provider")
    elif app_only and args.revoke:
        notes.append(
            "an app-only token cannot be revoked, and the app's credentials still get new "
            "ones: to stop the app, delete its secret or certificate in the app registration "
            "(Google: its service account key)"
        )
    elif result.revoked is False:
        notes.append(
            "the provider has no revocation endpoint: remove the app's access in the "
            "account's security settings"
        )
    where = _store_name(token_store)
    if not result.removed:
        notes.insert(0, f"no token was saved in {where}")
    else:
        notes.insert(0, f"deleted its token from {where}")
    if args.forget:
        logout(token_store, secret_key(settings))
        if settings.has_client_secret:
            notes.append(f"deleted its client secret from {where}")
        accounts.remove(args.account)
        notes.append(f"removed its recorded settings from {accounts.path}")
    else:
        notes.append(
            f"its settings stay: log in again with oauthsmtp login --account {args.account}"
        )
    print(f"oauthsmtp: logged out {args.account}: {'; '.join(notes)}.", file=sys.stderr)
    return EXIT_OK
