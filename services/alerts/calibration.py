"""Scores a person can read: an alert's calibrated ``relevance`` in [0, 1], and words for it.

``relevance`` is the share of a reference sample of recent, unrelated papers that this paper
beats for this subscription (a percentile: 0.99 means "better than 99 % of recent papers"),
so it reads the same for every subscription whatever the raw scale of its score.
"""

from __future__ import annotations

# (lowest relevance, words), best first.
STRENGTHS: tuple[tuple[float, str], ...] = (
    (0.99, "very strong"),
    (0.95, "strong"),
    (0.80, "medium"),
    (0.0, "weak"),
)


def strength(relevance: float | None) -> str:
    """Words for a calibrated relevance ("unrated" for alerts stored before it existed)."""
    if relevance is None:
        return "unrated"
    for lowest, words in STRENGTHS:
        if relevance >= lowest:
            return words
    return STRENGTHS[-1][1]
