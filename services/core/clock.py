"""The one clock: timezone-aware UTC now, so no naive datetime leaks into records or state."""

from __future__ import annotations

import datetime as dt


def utcnow() -> dt.datetime:
    """The current time, timezone-aware, in UTC."""
    return dt.datetime.now(dt.UTC)
