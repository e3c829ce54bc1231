"""One process of the "4 processes, one expired token" scenario (started by refresh.py).

Usage: ``python bench/refresh_worker.py oauthsmtp|authlib CONFIG.json``

The worker imports everything and loads what it needs, prints ``ready``, waits until the
``go`` file named in the config exists (so that all workers ask at the same moment), gets
a valid access token, and prints one JSON line: ``{"ok": bool, "token": <sha256 prefix of
the access token>, "error": str}``. Tokens themselves are never printed.

* ``oauthsmtp``: ``auth_identify(..., store=FileStore(config["store"]), interactive=False)``
  on the shared store (its single-flight refresh takes the store's cross-process lock).
* ``authlib``: an ``OAuth2Session`` holding the token read from ``config["token_file"]``,
  ``ensure_active_token()``, and an ``update_token`` hook that writes the new token back to
  that file: the usual way to share an authlib token between processes.
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any


def _fingerprint(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def _oauthsmtp(config: dict[str, Any]) -> Callable[[], str]:
    import oauthsmtp

    params = oauthsmtp.OAuth2Parameters(**config["params"])
    store = oauthsmtp.FileStore(config["store"])

    def get() -> str:
        token = oauthsmtp.auth_identify(
            params, account=config["account"], store=store, interactive=False
        )
        return token.access_token

    return get


def _authlib(config: dict[str, Any]) -> Callable[[], str]:
    from authlib.integrations.requests_client import OAuth2Session

    path = Path(config["token_file"])
    params = config["params"]

    def update_token(token: dict[str, Any], **_: Any) -> None:
        path.write_text(json.dumps(dict(token)))

    session = OAuth2Session(
        client_id=params["client_id"],
        client_secret=params["client_secret"],
        token_endpoint=params["token_url"],
        token_endpoint_auth_method="client_secret_post",  # noqa: S106 - a method name
        token=json.loads(path.read_text()),
        update_token=update_token,
    )

    def get() -> str:
        session.ensure_active_token()
        return str(session.token["access_token"])

    return get


def main() -> None:
    """Prepare, say ready, wait for the go file, get a token, report."""
    mode, config_path = sys.argv[1], sys.argv[2]
    config = json.loads(Path(config_path).read_text())
    get = _oauthsmtp(config) if mode == "oauthsmtp" else _authlib(config)
    print("ready", flush=True)
    go = Path(config["go"])
    while not go.exists():
        time.sleep(0.002)
    try:
        result = {"ok": True, "token": _fingerprint(get()), "error": ""}
    except Exception as exc:  # report, do not crash: the parent counts failures
        result = {
            "ok": False,
            "token": "",
            "error": f"{type(exc).__name__}: {str(exc)[:60]}".rstrip(": "),
        }
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main()
