"""The pairs of a micro-batch: which (paper, subscription) pairs to score, and their scores.

Pure (no I/O): the alert matcher (``services.alerts.hook``) hands over the percolation's
:class:`~services.alerts.percolation.Reach` and the subscriptions' metadata; :func:`select`
applies the filters, :func:`score` scores every selected pair at once
(``services.alerts.scoring``) and keeps those at or above their threshold, and
:class:`Centroids` keeps each subscription's TF-IDF centroid as a sparse row, recomputed as
the IDF drifts.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np
from scipy import sparse

from services.alerts import scoring
from services.alerts.filters import (
    author_key,
    author_keys,
    passes_cross_lists,
    passes_terms,
)
from services.alerts.matcher import CorpusStats
from services.alerts.percolation import Reach
from services.alerts.subscriptions import SubscriptionMeta
from services.embed.pipeline import IndexedPaper

IDF_REFRESH = 0.05  # recompute a subscription's TF-IDF centroid when the corpus grew by 5 %
MAX_TERMS = 5_000_000  # terms numbered for the vectorised lexical score before a fresh start


class Centroids:
    """Each subscription's TF-IDF centroid: (corpus size then, its columns, its weights)."""

    def __init__(self) -> None:
        self.lexicon = scoring.Lexicon()
        self.cache: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}

    def forget(self, sub_id: str) -> None:
        self.cache.pop(sub_id, None)

    def rows(self, metas: Sequence[SubscriptionMeta], corpus: CorpusStats) -> sparse.csr_matrix:
        """The subscriptions' TF-IDF centroids as rows, recomputed as the IDF drifts."""
        if len(self.lexicon.terms) > MAX_TERMS:  # a long-lived worker: start the numbering anew
            self.lexicon, self.cache = scoring.Lexicon(), {}
        docs = corpus.docs
        stale = [
            m
            for m in metas
            if (cached := self.cache.get(m.id)) is None or docs > cached[0] * (1 + IDF_REFRESH)
        ]
        if stale:
            interests = [dict(i.terms) for m in stale for i in m.interests]
            owner = np.repeat(np.arange(len(stale)), [len(m.interests) for m in stale])
            tf = self.lexicon.counts(interests)
            fresh = self.lexicon.centroids(tf, owner, len(stale), corpus)
            for n, meta in enumerate(stale):
                span = slice(fresh.indptr[n], fresh.indptr[n + 1])
                self.cache[meta.id] = (docs, fresh.indices[span], fresh.data[span])
        rows = [self.cache[m.id] for m in metas]
        lengths = np.fromiter((len(r[1]) for r in rows), np.int64, len(rows))
        return sparse.csr_matrix(
            (
                np.concatenate([r[2] for r in rows]) if rows else np.zeros(0),
                np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.int64),
                np.r_[0, np.cumsum(lengths)],
            ),
            shape=(len(rows), self.lexicon.width),
        )


def select(
    papers: list[IndexedPaper],
    reach: Reach,
    followed: list[set[str]],
    metas: Mapping[str, SubscriptionMeta],
    muted: Mapping[str, Any],
) -> list[tuple[int, str, int, bool]]:
    """The (paper row, subscription, pair in ``reach`` or -1, by a followed author) to
    score, in the order reached: filters, seed papers and muted papers left out."""
    out: list[tuple[int, str, int, bool]] = []
    order: list[list[tuple[str, int]]] = [[] for _ in papers]
    for k, (row, col) in enumerate(
        zip(reach.pair_rows.tolist(), reach.pair_subs.tolist(), strict=True)
    ):
        order[row].append((reach.sub_ids[col], k))
    for row, item in enumerate(papers):
        paper = item.paper
        keys = author_keys(paper.authors)
        listed = order[row]
        seen = {sub_id for sub_id, _ in listed}
        listed += [(sub_id, -1) for sub_id in followed[row] if sub_id not in seen]
        for sub_id, pair in listed:
            meta = metas.get(sub_id)
            if meta is None or paper.arxiv_id in meta.arxiv_ids:
                continue  # being created or deleted, or one of its own seed papers
            if paper.arxiv_id in muted.get(sub_id, ()):
                continue  # its reader said: not relevant
            by_author = bool(meta.authors) and bool({author_key(a) for a in meta.authors} & keys)
            if _filtered(meta) and not _passes_filters(meta, item, by_author):
                continue
            out.append((row, sub_id, pair, by_author))
    return out


def score(
    papers: list[IndexedPaper],
    reach: Reach,
    pairs: list[tuple[int, str, int, bool]],
    metas: Mapping[str, SubscriptionMeta],
    counts: Sequence[Mapping[str, int]],
    centroids: Centroids,
    corpus: CorpusStats,
    aggregation: str,
    weight: float,
) -> list[tuple[int, str, int, bool, float]]:
    """The pairs that alert, with their score: every pair scored at once (the dense
    aggregate of its hits fused with the lexical cosine), kept at or above the
    subscription's threshold, or always for a followed author."""
    hit = [(row, sub_id, pair) for row, sub_id, pair, _ in pairs if pair >= 0]
    if not hit:
        return [(r, s, p, a, 0.0) for r, s, p, a in pairs if p < 0]
    rows = np.fromiter((r for r, _, _ in hit), np.int64, len(hit))
    index = np.fromiter((p for _, _, p in hit), np.int64, len(hit))
    subs = sorted({s for _, s, _ in hit})
    column = {s: c for c, s in enumerate(subs)}
    cols = np.fromiter((column[s] for _, s, _ in hit), np.int64, len(hit))
    lexical = scoring.pair_cosines(
        centroids.lexicon.tfidf(centroids.lexicon.counts(counts), corpus),
        centroids.rows([metas[s] for s in subs], corpus),
        rows,
        cols,
    )
    totals = np.diff(np.r_[reach.starts, len(reach.scores)])  # each pair's hits
    points = np.fromiter((metas[s].points for s in subs), np.int64, len(subs))[cols]
    sentences = np.fromiter((len(p.sentences) for p in papers), np.int64, len(papers))
    totals[index] = sentences[rows] * np.where(points > 0, points, totals[index])
    dense = scoring.aggregate_groups(reach.scores, reach.starts, totals, aggregation)
    dense = dense[index]
    score = (1.0 - weight) * dense + weight * lexical
    thresholds = np.fromiter((metas[s].threshold for s in subs), np.float64, len(subs))
    passed = (score >= thresholds[cols]).tolist()
    scores = iter(zip(passed, score.tolist(), strict=True))
    out = []
    for row, sub_id, pair, by_author in pairs:
        if pair < 0:
            out.append((row, sub_id, pair, by_author, 0.0))
            continue
        ok, value = next(scores)
        if ok or by_author:  # a followed author's paper always alerts
            out.append((row, sub_id, pair, by_author, value))
    return out


def _filtered(meta: SubscriptionMeta) -> bool:
    """Whether any filter can leave a paper out (without one, all pass)."""
    return bool(meta.categories or meta.include_terms or meta.exclude_terms)


def _passes_filters(meta: SubscriptionMeta, item: IndexedPaper, by_author: bool) -> bool:
    """Exclude terms always apply; categories, cross-lists and include terms unless followed."""
    paper = item.paper
    text = f"{paper.title}\n{paper.abstract}"
    if by_author:
        return passes_terms(text, (), meta.exclude_terms)
    if meta.categories and not set(meta.categories) & set(paper.categories):
        return False
    if not passes_cross_lists(paper.categories, meta.categories, meta.cross_lists):
        return False
    return passes_terms(text, meta.include_terms, meta.exclude_terms)
