"""Query-string parameters of the HTTP API, checked before any expensive work."""

from __future__ import annotations

import datetime as dt
from collections.abc import Mapping

from services.core.errors import InvalidRequest
from services.core.schemas import split_arxiv_id


def int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise InvalidRequest(f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise InvalidRequest(f"{name} must be between {lo} and {hi}, got {value}")
    return value


def date_param(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return (
            dt.date.fromisoformat(raw[:10]).isoformat()
            if len(raw) <= 10
            else (dt.datetime.fromisoformat(raw).isoformat())
        )
    except ValueError:
        raise InvalidRequest(f"{name} must be an ISO date like 2025-04-17, got {raw!r}") from None


def bare_id(arxiv_id: str) -> str:
    """The arXiv id of a path without its version; 400 when it is not an arXiv id."""
    try:
        return split_arxiv_id(arxiv_id)[0]
    except ValueError as exc:
        raise InvalidRequest(str(exc)) from None


def filters(query: Mapping[str, str]) -> dict[str, str | None]:
    category = (query.get("category") or "").strip() or None
    if category is not None and len(category) > 64:
        raise InvalidRequest("category is too long (max 64 characters)")
    return {"category": category, "since": date_param(query, "since")}
