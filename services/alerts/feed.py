"""A subscription's alerts as an Atom 1.0 feed (RFC 4287): pure, no I/O.

Entry ids are ``urn:uuid:<alert_id>``: the alert id is derived from (subscription, paper), so
a feed reader that has seen a paper never shows it again, whatever changes in the entry.
"""

from __future__ import annotations

import datetime as dt
import re
import uuid
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from typing import Any

from services.alerts.calibration import strength
from services.alerts.subscriptions import SubscriptionMeta

ATOM_NS = "http://www.w3.org/2005/Atom"
CONTENT_TYPE = "application/atom+xml"
EVIDENCE_SHOWN = 3  # matching sentences quoted per entry

ET.register_namespace("", ATOM_NS)


# Characters XML 1.0 does not allow (control characters do occur in scraped abstracts).
_NOT_XML = re.compile("[\x00-\x08\x0b\x0c\x0e-\x1f\ufffe\uffff]")


def _el(parent: ET.Element, tag: str, text: str | None = None, **attrs: str) -> ET.Element:
    node = ET.SubElement(
        parent, f"{{{ATOM_NS}}}{tag}", {k: _NOT_XML.sub("", v) for k, v in attrs.items()}
    )
    if text is not None:
        node.text = _NOT_XML.sub("", text)
    return node


def _time(value: Any, default: str) -> str:
    """An RFC 3339 timestamp (Atom's date format) from an alert's ``created_at``."""
    if isinstance(value, str) and value:
        try:
            parsed = dt.datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            return default
        if parsed.tzinfo is None:
            parsed = parsed.replace(tzinfo=dt.UTC)
        return parsed.isoformat()
    return default


def urn(alert_id: str) -> str:
    """The entry id of an alert (stable: the alert id is deterministic)."""
    try:
        return uuid.UUID(alert_id).urn
    except ValueError:
        return f"urn:astrostream:alert:{alert_id}"


def summary(alert: Mapping[str, Any]) -> str:
    """Plain text: how strong the match is, why, and the evidence sentences."""
    relevance = alert.get("relevance")
    words = strength(relevance if isinstance(relevance, int | float) else None)
    lines = [f"Match: {words}"]
    if isinstance(relevance, int | float):
        lines[0] += f" (better than {relevance:.0%} of recent papers)"
    if alert.get("reason"):
        lines[0] += f"; {alert['reason']}"
    for match in list(alert.get("matches") or [])[:EVIDENCE_SHOWN]:
        lines.append(f"“{match.get('sentence', '')}” (matches {match.get('interest', '')})")
    return "\n".join(lines)


def atom_feed(
    meta: SubscriptionMeta,
    alerts: Sequence[Mapping[str, Any]],
    papers: Mapping[str, Mapping[str, Any]],
    self_url: str,
) -> bytes:
    """The feed document, newest alerts first.

    Args:
        meta: the subscription.
        alerts: its stored alert payloads (any order).
        papers: arxiv_id -> indexed paper payload (authors, categories); missing ones are fine.
        self_url: where this feed is served (its ``rel="self"`` link).
    """
    ordered = sorted(alerts, key=lambda a: (str(a.get("created_at", "")), a.get("arxiv_id", "")))
    ordered.reverse()
    created = _time(meta.created_at, dt.datetime.now(dt.UTC).isoformat())
    feed = ET.Element(f"{{{ATOM_NS}}}feed")
    _el(feed, "id", uuid.UUID(meta.id).urn)
    _el(feed, "title", f"astrostream: {meta.name or 'subscription ' + meta.id[:8]}")
    _el(feed, "updated", _time(ordered[0].get("created_at"), created) if ordered else created)
    _el(feed, "link", rel="self", href=self_url, type=CONTENT_TYPE)
    author = _el(feed, "author")
    _el(author, "name", "astrostream")
    _el(feed, "generator", "astrostream")
    for alert in ordered:
        arxiv_id = str(alert.get("arxiv_id", ""))
        paper = papers.get(arxiv_id, {})
        entry = _el(feed, "entry")
        _el(entry, "id", urn(str(alert.get("alert_id", ""))))
        _el(entry, "title", str(alert.get("title") or paper.get("title") or arxiv_id))
        _el(entry, "updated", _time(alert.get("created_at"), created))
        for name in list(paper.get("authors") or [])[:50]:
            _el(_el(entry, "author"), "name", str(name))
        _el(
            entry,
            "link",
            rel="alternate",
            href=f"https://arxiv.org/abs/{arxiv_id}",
            type="text/html",
        )
        _el(
            entry,
            "link",
            rel="related",
            href=f"https://arxiv.org/pdf/{arxiv_id}",
            type="application/pdf",
            title="PDF",
        )
        for category in list(paper.get("categories") or [])[:10]:
            _el(entry, "category", term=str(category))
        _el(entry, "summary", summary(alert), type="text")
    return ET.tostring(feed, encoding="utf-8", xml_declaration=True)
