"""Alerts and papers as a page shows them: words for scores, evidence, links (pure, no I/O)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from services.alerts.calibration import strength
from services.alerts.filters import REASON_INTERESTS

MAX_AUTHORS = 8
EVIDENCE_SHOWN = 3
SEED_TITLE_CHARS = 70


def arxiv_links(arxiv_id: str, version: Any = None) -> dict[str, str]:
    suffix = f"v{version}" if isinstance(version, int) and version > 0 else ""
    return {
        "abs_url": f"https://arxiv.org/abs/{arxiv_id}{suffix}",
        "pdf_url": f"https://arxiv.org/pdf/{arxiv_id}{suffix}",
    }


def authors_line(authors: Any) -> str:
    names = [str(a) for a in authors or []]
    if len(names) > MAX_AUTHORS:
        return ", ".join(names[:MAX_AUTHORS]) + f" et al. ({len(names)} authors)"
    return ", ".join(names)


def strength_view(relevance: float | None, score: float) -> dict[str, Any]:
    """The strength words, a bar width (0-100) and a sentence a person can read."""
    words = strength(relevance)
    if relevance is None:
        return {
            "words": words,
            "label": "Not rated yet",
            "bar": None,
            "explain": (
                f"raw score {score:.3f}; calibrated once the service has seen enough recent "
                "papers to compare with"
            ),
        }
    share = max(0.0, min(1.0, float(relevance)))
    return {
        "words": words,
        "label": f"{words.capitalize()} match",
        "bar": round(share * 100),
        "explain": f"closer to your interests than {share:.0%} of recent papers",
    }


def interest_label(interest: str, seed_titles: Mapping[str, str]) -> str:
    if interest in seed_titles:
        title = seed_titles[interest]
        if len(title) > SEED_TITLE_CHARS:
            title = title[: SEED_TITLE_CHARS - 1].rstrip() + "…"
        return f"your paper {interest}" + (f" “{title}”" if title else "")
    return f"your query “{interest}”"


def alert_item(
    alert: Mapping[str, Any],
    paper: Mapping[str, Any] | None,
    label: str | None,
    read: bool,
    seed_titles: Mapping[str, str],
) -> dict[str, Any]:
    """One alert as the alerts page lists it (``paper`` is the indexed paper's payload)."""
    paper = paper or {}
    arxiv_id = str(alert.get("arxiv_id"))
    matches = sorted(alert.get("matches") or [], key=lambda m: -float(m.get("score", 0)))
    evidence = [
        {
            "sentence": str(m.get("sentence", "")),
            "interest": interest_label(str(m.get("interest", "")), seed_titles),
        }
        for m in matches[:EVIDENCE_SHOWN]
    ]
    published = paper.get("published") or alert.get("created_at") or ""
    return {
        "arxiv_id": arxiv_id,
        "title": str(alert.get("title") or paper.get("title") or arxiv_id),
        "authors": authors_line(paper.get("authors")),
        "categories": list(paper.get("categories") or []),
        "date": str(published)[:10],
        "strength": strength_view(alert.get("relevance"), float(alert.get("score", 0.0))),
        "evidence": evidence,
        # Every alert is related to the interests; only another reason is worth a line.
        "reason": None if alert.get("reason") in (None, REASON_INTERESTS) else alert["reason"],
        "label": label,
        "read": read,
        **arxiv_links(arxiv_id, alert.get("version")),
    }


def search_item(result: Mapping[str, Any]) -> dict[str, Any]:
    """One ``/search`` (or ``/similar``) result as the search page lists it."""
    arxiv_id = str(result.get("arxiv_id"))
    score = float(result.get("score", 0.0))
    return {
        "arxiv_id": arxiv_id,
        "title": str(result.get("title") or arxiv_id),
        "categories": list(result.get("categories") or []),
        "date": str(result.get("published") or "")[:10],
        "similarity": score,
        "bar": round(max(0.0, min(1.0, score)) * 100),
        "sentences": [str(s.get("text", "")) for s in result.get("sentences") or []],
        **arxiv_links(arxiv_id, result.get("version")),
    }


def seconds(value: float | None) -> str:
    """A duration for people: "0.8 s", "3 min", "2.1 h"; "not measured" for None."""
    if value is None:
        return "not measured"
    if value < 60:
        return f"{value:.1f} s"
    if value < 3600:
        return f"{value / 60:.0f} min"
    return f"{value / 3600:.1f} h"
