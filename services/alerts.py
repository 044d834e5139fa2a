"""Related-work alerts (placeholder until the alerts issue lands): no views, no matching."""

from __future__ import annotations

from typing import Any


def install(app: Any, runtime: Any) -> Any:
    """Register subscription views and return the embed stage's on_indexed hook (or None)."""
    return None
