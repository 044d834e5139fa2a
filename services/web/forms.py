"""HTML form fields to and from a subscription request (pure: no I/O, no web framework).

A form sends text: lists arrive one item a line (or separated by commas), the threshold as
a string. :func:`request_body` turns them into the JSON body the API takes, so the one
validator (:func:`services.alerts.subscriptions.parse_request`) checks both; fields the
running version does not know (digest, filters) are left out rather than refused.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

from services.alerts.request import DEFAULT_THRESHOLD, SubscriptionRequest

LIST_FIELDS = ("queries", "arxiv_ids", "categories", "include_terms", "exclude_terms", "authors")
# Queries and authors may hold commas ("Smith, J."): one item a line. The others split on
# commas and whitespace too.
LINE_ONLY = {"queries", "authors", "include_terms", "exclude_terms"}
DIGESTS = ("off", "daily", "weekly")


def split_items(raw: str, lines_only: bool) -> list[str]:
    parts = raw.splitlines() if lines_only else re.split(r"[\s,;]+", raw)
    return [p.strip() for p in parts if p.strip()]


def features() -> dict[str, bool]:
    """Which optional request fields this version knows (the form shows only those)."""
    fields = SubscriptionRequest.model_fields
    return {
        name: name in fields
        for name in ("digest", "email", "include_terms", "exclude_terms", "authors", "cross_lists")
    }


def request_body(form: Mapping[str, str]) -> dict[str, Any]:
    """The API body for a submitted form (unvalidated: ``parse_request`` does that).

    A threshold that is not a number is passed on as text so the validator names it.
    """
    known = features()
    body: dict[str, Any] = {"name": (form.get("name") or "").strip()}
    for name in LIST_FIELDS:
        if name in ("queries", "arxiv_ids", "categories") or known.get(name):
            body[name] = split_items(form.get(name) or "", name in LINE_ONLY)
    raw = (form.get("threshold") or "").strip()
    try:
        body["threshold"] = float(raw) if raw else DEFAULT_THRESHOLD
    except ValueError:
        body["threshold"] = raw
    if known["digest"]:
        body["digest"] = form.get("digest") or "off"
    if known["email"]:
        email = (form.get("email") or "").strip()
        if email:
            body["email"] = email
    if known["cross_lists"]:
        body["cross_lists"] = form.get("cross_lists") == "on"
    return body


def form_values(view: Mapping[str, Any]) -> dict[str, str]:
    """A stored subscription (its public view) as the edit form's field values."""
    values: dict[str, str] = {"name": str(view.get("name") or "")}
    for name in LIST_FIELDS:
        values[name] = "\n".join(str(v) for v in view.get(name) or [])
    values["threshold"] = f"{float(view.get('threshold', DEFAULT_THRESHOLD)):g}"
    values["digest"] = str(view.get("digest") or "off")
    values["email"] = str(view.get("email") or "")
    values["cross_lists"] = "on" if view.get("cross_lists", True) else ""
    return values


def empty_values() -> dict[str, str]:
    return {
        **{name: "" for name in LIST_FIELDS},
        "name": "",
        "threshold": f"{DEFAULT_THRESHOLD:g}",
        "digest": "off",
        "email": "",
        "cross_lists": "on",
    }
