"""services.alerts.scoring (vectorised) against services.alerts.matcher (one pair at a time),
on real papers: the same lexical cosines and dense aggregates, pair for pair."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from services.alerts import scoring
from services.alerts.matcher import (
    CorpusStats,
    aggregate,
    centroid,
    cosine,
    fuse,
    term_counts,
    tfidf,
)
from services.core.papers import read_papers_jsonl

PAPERS = Path(__file__).resolve().parents[1] / "data" / "papers-1k.jsonl.gz"


@pytest.fixture(scope="module")
def papers() -> list[dict[str, object]]:
    found = []
    for paper in read_papers_jsonl(PAPERS):
        found.append(
            {"id": paper.arxiv_id, "counts": term_counts(f"{paper.title} {paper.abstract}")}
        )
        if len(found) == 400:
            break
    return found


def test_tfidf_centroids_and_pair_cosines_equal_the_per_pair_functions(
    papers: list[dict[str, object]],
) -> None:
    rng = random.Random(7)
    corpus = CorpusStats()
    for p in papers[:300]:
        corpus.add(p["counts"])  # type: ignore[arg-type]
    subs = [[p["counts"] for p in rng.sample(papers[:300], rng.randint(1, 3))] for _ in range(60)]
    subs.append([{}])  # an interest without terms: a zero centroid
    new = [p["counts"] for p in papers[300:]]

    lexicon = scoring.Lexicon()
    interests = [c for sub in subs for c in sub]
    owner = np.repeat(np.arange(len(subs)), [len(s) for s in subs])
    centres = lexicon.centroids(lexicon.counts(interests), owner, len(subs), corpus)  # type: ignore[arg-type]
    rows = lexicon.tfidf(lexicon.counts(new), corpus)  # type: ignore[arg-type]

    pairs = [(r, c) for r in range(len(new)) for c in range(len(subs))]
    got = scoring.pair_cosines(
        rows, centres, np.array([r for r, _ in pairs]), np.array([c for _, c in pairs])
    )
    slow_centres = [centroid([tfidf(c, corpus) for c in sub]) for sub in subs]  # type: ignore[arg-type]
    slow_rows = [tfidf(c, corpus) for c in new]  # type: ignore[arg-type]
    want = np.array([cosine(slow_rows[r], slow_centres[c]) for r, c in pairs])
    assert np.abs(got - want).max() < 1e-12
    assert (got > 0.05).sum() > 10  # real overlaps, not only zeros
    # the rows themselves, term by term
    first = rows[0].toarray().ravel()
    assert {lexicon.terms[i]: first[i] for i in np.flatnonzero(first)} == pytest.approx(
        slow_rows[0], abs=1e-15
    )


def test_a_matrix_built_before_new_terms_still_multiplies() -> None:
    corpus = CorpusStats()
    lexicon = scoring.Lexicon()
    centres = lexicon.centroids(lexicon.counts([{"dark matter": 2}]), np.array([0]), 1, corpus)
    rows = lexicon.tfidf(lexicon.counts([{"dark matter": 1, "halo": 3}]), corpus)
    got = scoring.pair_cosines(rows, centres, np.array([0]), np.array([0]))
    want = cosine(tfidf({"dark matter": 1, "halo": 3}, corpus), tfidf({"dark matter": 2}, corpus))
    assert got[0] == pytest.approx(want, abs=1e-15)


def test_lse_groups_equal_aggregate_per_group() -> None:
    rng = np.random.default_rng(3)
    groups = [rng.uniform(-0.2, 0.8, size=rng.integers(1, 40)) for _ in range(200)]
    totals = rng.integers(1, 300, size=len(groups))
    totals[:5] = 1  # fewer than the hits: the hits count
    flat = np.concatenate(groups)
    starts = np.r_[0, np.cumsum([len(g) for g in groups])[:-1]]
    got = scoring.lse_groups(flat, starts, totals)
    want = [aggregate(g, "lse", total=int(t)) for g, t in zip(groups, totals, strict=True)]
    assert np.abs(got - np.array(want)).max() < 1e-12
    assert fuse(float(got[0]), 0.1, 1.0) == pytest.approx(0.1)


def test_reach_likely_keeps_pairs_whose_sparse_score_can_reach_the_threshold() -> None:
    from services.alerts.percolation import Reach

    reach = Reach(
        sub_ids=["a", "b", "c"],
        pair_rows=np.array([0, 0, 0, 1]),
        pair_subs=np.array([0, 1, 2, 0]),
        starts=np.array([0, 2, 3, 5]),
        sentences=np.array([0, 1, 0, 0, 1, 2]),
        interests=["x", "y", "z", "z", "x", "x"],
        scores=np.array([0.5, 0.4, 0.3, 0.2, 0.1, 0.6]),
        sparse_scores=np.array([0.041, 0.01, np.nan, np.nan]),
        sparse_floor=np.array([0.0, 0.045]),  # paper 1's lexical search was cut off at 0.045
        thresholds=np.array([0.05, 0.05, 0.05]),
        searched=True,
    )
    kept = reach.likely(0.8)
    # a: 0.041 >= 0.8 * 0.05; b: 0.01 is not; c (paper 0): no sparse hit, nothing cut off;
    # a (paper 1): no sparse hit, but the search was cut off above 0.04
    pairs = zip(kept.pair_rows.tolist(), kept.pair_subs.tolist(), strict=True)
    assert list(pairs) == [(0, 0), (1, 0)]
    assert [e.score for e in kept.entries(0)] == [0.5, 0.4]
    assert [e.score for e in kept.entries(1)] == [0.6]
    assert [e.interest for e in kept.entries(1)] == ["x"]
    assert reach.likely(0.0) is reach
    off = Reach(**{**reach.__dict__, "searched": False})
    assert off.likely(0.8) is off
