"""The one strict reader of JSON objects from untrusted bytes (pure).

Token endpoint answers, token files, the keyring index and the account
settings all arrive as bytes that someone else may have written. They are read
with :func:`load_json_object`, which accepts exactly one JSON object (RFC 8259)
and nothing that Python's :mod:`json` would otherwise let through: no
``NaN``/``Infinity`` (not JSON, RFC 8259 §6), no duplicate member names (whose
meaning differs between parsers, RFC 8259 §4), no invalid UTF-8, and no integer
so long that converting it raises (CVE-2020-10735: it reads as infinity).
"""

from __future__ import annotations

import json
from typing import Any

__all__ = ["load_json_object"]


def _reject_constant(value: str) -> Any:
    raise ValueError(f"{value} is not valid JSON")


def _parse_int(text: str) -> int | float:
    # int() refuses more than 4300 digits (CVE-2020-10735); such a number is only "very large".
    return int(text) if len(text) <= 100 else float("inf")


def _no_duplicates(pairs: list[tuple[str, Any]]) -> dict[str, Any]:
    result: dict[str, Any] = {}
    for key, value in pairs:
        if key in result:
            raise ValueError(f"duplicate key {key!r}")
        result[key] = value
    return result


def load_json_object(data: bytes | str) -> dict[str, Any] | None:
    """Parse ``data`` as one JSON object.

    Returns:
        The object, or None when ``data`` is not UTF-8, not JSON, nests too
        deeply, holds ``NaN``/``Infinity`` or a duplicate member name, or is
        valid JSON but not an object. The caller says what None means (the
        content is never echoed).
    """
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
        value = json.loads(
            text,
            parse_constant=_reject_constant,
            parse_int=_parse_int,
            object_pairs_hook=_no_duplicates,
        )
    except (UnicodeDecodeError, ValueError, RecursionError):
        return None
    return value if isinstance(value, dict) else None
