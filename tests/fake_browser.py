"""A stand-in for the user's browser, for tests: `BROWSER="python fake_browser.py %s"`.

Python's webbrowser runs this command and waits for it, so it forks and
returns at once (otherwise the loopback listener would deadlock). The child
behaves like a browser that the user approves in: it asks the loopback
server for /favicon.ico the way Chromium does, then follows the
authorization URL and its redirects, and records what happened in the file
named by FAKE_BROWSER_LOG (one JSON object: the URL opened, the final status,
URL and page body).

FAKE_BROWSER_MODE:
  follow   (default) follow the URL and its redirects
  record   only record the URL, do nothing (the test drives the flow itself)
"""

from __future__ import annotations

import json
import os
import sys
import urllib.error
import urllib.request
from urllib.parse import urlsplit


def _loopback_origin(url: str) -> str | None:
    query = urlsplit(url).query
    for part in query.split("&"):
        if part.startswith("redirect_uri="):
            redirect = urllib.request.unquote(part.split("=", 1)[1])
            parts = urlsplit(redirect)
            return f"{parts.scheme}://{parts.netloc}"
    return None


def _browse(url: str) -> dict[str, object]:
    record: dict[str, object] = {"opened": url}
    origin = _loopback_origin(url)
    if origin:
        try:
            with urllib.request.urlopen(origin + "/favicon.ico", timeout=10) as resp:
                record["favicon"] = resp.status
        except urllib.error.HTTPError as exc:
            record["favicon"] = exc.code
            exc.close()
        except OSError as exc:
            record["favicon"] = repr(exc)
    try:
        with urllib.request.urlopen(url, timeout=30) as resp:
            record.update(status=resp.status, url=resp.url, body=resp.read().decode())
    except urllib.error.HTTPError as exc:
        record.update(status=exc.code, url=exc.url, body=exc.read().decode())
        exc.close()
    except OSError as exc:
        record.update(status=None, error=repr(exc))
    return record


def main() -> None:
    url = sys.argv[1]
    log = os.environ.get("FAKE_BROWSER_LOG")
    mode = os.environ.get("FAKE_BROWSER_MODE", "follow")
    if os.fork() != 0:
        return  # the parent returns at once, as a browser launcher does
    try:
        record = {"opened": url} if mode == "record" else _browse(url)
        if log:
            tmp = f"{log}.tmp"
            with open(tmp, "w", encoding="utf-8") as fh:
                json.dump(record, fh)
            os.replace(tmp, log)
    finally:
        os._exit(0)


if __name__ == "__main__":
    main()
