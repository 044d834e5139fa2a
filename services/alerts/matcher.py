"""Alert scoring without I/O: sentence-interest similarities and TF-IDF → one score per subscription.

The alert matcher (``services.alerts.hook``) percolates a new paper's sentence vectors into the
interest collection and hands the hits to :func:`score_subscription`. Two signals meet here:

* dense: the cosine of every (paper sentence, interest vector) pair that the percolation
  returned, aggregated into one number (``max``, mean of the top-k, or a log-sum-exp
  "soft mean", see :func:`aggregate`);
* lexical: the TF-IDF cosine between the paper and the centroid of the subscription's
  interests, with document frequencies from a prior table (``services.alerts.lexicon``) plus the
  papers the worker has seen.

With the bundled general-purpose model the default score is the lexical one alone
(``LEXICAL_WEIGHT`` 1.0); the dense one is computed for the evidence and for models that
earn a share.

``docs/alerts.md`` has the measurements behind the defaults.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

# The terms of the lexical score live in core (the embed stage writes them as sparse vectors).
from services.core.lexical import STOP_WORDS as STOP_WORDS
from services.core.lexical import term_counts as term_counts
from services.core.lexical import tokens as tokens

Aggregation = Literal["max", "topk", "lse"]

AGGREGATIONS: tuple[str, ...] = ("max", "topk", "lse")
DEFAULT_AGGREGATION: Aggregation = "lse"
LSE_TAU = 0.05  # temperature of the soft mean; 0.02 behaves like max, 0.1 like the mean
TOP_K = 3
LEXICAL_WEIGHT = 1.0  # share of the TF-IDF cosine in the paper score (measured, see docs)
EVIDENCE = 3  # matches kept per alert


@dataclass
class CorpusStats:
    """Document frequencies of the papers seen so far: the IDF of the lexical signal."""

    docs: int = 0
    df: Counter[str] = field(default_factory=Counter)

    def add(self, terms: Iterable[str]) -> None:
        self.docs += 1
        self.df.update(set(terms))

    def copy(self) -> CorpusStats:
        return CorpusStats(self.docs, Counter(self.df))

    def idf(self, term: str) -> float:
        """Smoothed IDF (as scikit-learn's ``smooth_idf``): unseen terms get the highest value."""
        return math.log((1 + self.docs) / (1 + self.df.get(term, 0))) + 1.0


def tfidf(counts: Mapping[str, int], stats: CorpusStats) -> dict[str, float]:
    """Unit-length TF-IDF vector with sublinear term frequency (1 + log tf)."""
    weights = {t: (1.0 + math.log(n)) * stats.idf(t) for t, n in counts.items() if n > 0}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {t: w / norm for t, w in weights.items()} if norm > 0 else {}


def centroid(vectors: Sequence[Mapping[str, float]]) -> dict[str, float]:
    """Unit-length sum of unit vectors: each interest counts the same, however long it is."""
    total: Counter[str] = Counter()
    for vector in vectors:
        total.update(vector)
    norm = math.sqrt(sum(w * w for w in total.values()))
    return {t: w / norm for t, w in total.items()} if norm > 0 else {}


def cosine(a: Mapping[str, float], b: Mapping[str, float]) -> float:
    if len(a) > len(b):
        a, b = b, a
    return float(sum(w * b.get(t, 0.0) for t, w in a.items()))


def aggregate(
    scores: np.ndarray,
    method: str = DEFAULT_AGGREGATION,
    *,
    total: int | None = None,
    tau: float = LSE_TAU,
    k: int = TOP_K,
) -> float:
    """One paper-level number from sentence-interest cosines.

    Args:
        scores: the cosines that are known (any shape; percolation returns only the best).
        method: ``max``; ``topk`` (mean of the ``k`` best); ``lse``, the log-sum-exp soft
            mean ``m + τ·log(mean(exp((s - m)/τ)))``, between max (small τ) and mean.
        total: size of the full sentence-interest matrix. Entries the percolation did not
            return are far below the best ones and add ~0 to the exp-sum, but they still
            count in the mean, so ``lse`` over a partial matrix equals the full one.
        tau: temperature of ``lse``.
        k: entries averaged by ``topk``.

    Raises:
        ValueError: for an unknown method or no scores.
    """
    flat = np.asarray(scores, dtype=np.float64).ravel()
    if flat.size == 0:
        raise ValueError("no scores to aggregate")
    if method == "max":
        return float(flat.max())
    if method == "topk":
        best = np.sort(flat)[-k:]
        return float(best.mean())
    if method == "lse":
        n = max(int(total or flat.size), flat.size)
        top = float(flat.max())
        return top + tau * math.log(float(np.exp((flat - top) / tau).sum()) / n)
    raise ValueError(f"unknown aggregation {method!r}; choose from {', '.join(AGGREGATIONS)}")


def fuse(dense: float, lexical: float, weight: float = LEXICAL_WEIGHT) -> float:
    """The paper score: a convex mix of two cosines, so it stays on the cosine scale."""
    return (1.0 - weight) * dense + weight * lexical


@dataclass(frozen=True)
class Entry:
    """One percolation hit: paper sentence ``sentence_index`` is this close to an interest vector."""

    sentence_index: int
    interest: str
    score: float


@dataclass(frozen=True)
class Scored:
    score: float
    dense: float
    lexical: float
    evidence: list[Entry]


def evidence(entries: Sequence[Entry], limit: int = EVIDENCE) -> list[Entry]:
    """The best entries, one per paper sentence, best first."""
    seen: set[int] = set()
    chosen: list[Entry] = []
    for entry in sorted(entries, key=lambda e: (-e.score, e.sentence_index)):
        if entry.sentence_index in seen:
            continue
        seen.add(entry.sentence_index)
        chosen.append(entry)
        if len(chosen) >= limit:
            break
    return chosen


def score_subscription(
    entries: Sequence[Entry],
    *,
    sentences: int,
    interest_points: int,
    lexical: float,
    method: str = DEFAULT_AGGREGATION,
    weight: float = LEXICAL_WEIGHT,
) -> Scored:
    """Score one (paper, subscription) pair from its percolation hits and its TF-IDF cosine.

    Args:
        entries: the hits of this subscription's interest vectors (at least one).
        sentences: number of the paper's sentences (rows of the full matrix).
        interest_points: number of the subscription's interest vectors (its columns).
        lexical: TF-IDF cosine of the paper and the subscription's interests.
        method: dense aggregation (see :func:`aggregate`).
        weight: share of ``lexical`` in the score.
    """
    scores = np.fromiter((e.score for e in entries), dtype=np.float64, count=len(entries))
    dense = aggregate(scores, method, total=sentences * interest_points)
    return Scored(fuse(dense, lexical, weight), dense, lexical, evidence(entries))
