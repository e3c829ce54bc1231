"""The wall clock, in one place: aware UTC datetimes.

I/O modules take a clock as an argument where tests need to move time; this
is the default they are given. Pure modules never call it.
"""

from __future__ import annotations

from datetime import datetime, timezone

__all__ = ["utcnow"]


def utcnow() -> datetime:
    """The current time as an aware datetime in UTC."""
    return datetime.now(timezone.utc)
