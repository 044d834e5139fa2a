"""Unit tests of services.alerts.matcher: tokens, TF-IDF, aggregations, fusion and evidence (no I/O)."""

from __future__ import annotations

import math

import numpy as np
import pytest

from services.alerts.matcher import (
    CorpusStats,
    Entry,
    aggregate,
    centroid,
    cosine,
    evidence,
    fuse,
    score_subscription,
    term_counts,
    tfidf,
    tokens,
)


def test_tokens_drop_stop_words_and_latex_and_add_bigrams() -> None:
    assert tokens(r"The mass of Sgr A* is $4\times10^6 M_\odot$ with JWST") == [
        "mass",
        "sgr",
        "m_",
        "jwst",
        "mass sgr",
        "sgr m_",
        "m_ jwst",
    ]
    assert tokens("") == []
    assert term_counts("dark matter dark matter")["dark matter"] == 2


def test_idf_favours_rare_terms_and_tfidf_is_unit_length() -> None:
    stats = CorpusStats()
    for text in ["galaxy cluster lensing", "galaxy rotation curve", "galaxy exoplanet transit"]:
        stats.add(term_counts(text))
    assert stats.docs == 3
    assert stats.idf("galaxy") < stats.idf("lensing") < stats.idf("never seen")
    vector = tfidf(term_counts("galaxy lensing lensing"), stats)
    assert math.isclose(math.sqrt(sum(w * w for w in vector.values())), 1.0)
    assert vector["lensing"] > vector["galaxy"]
    assert tfidf({}, stats) == {}


def test_cosine_and_centroid() -> None:
    a, b = {"x": 1.0}, {"y": 1.0}
    assert cosine(a, b) == 0.0 and cosine(a, a) == 1.0
    mid = centroid([a, b])
    assert math.isclose(cosine(mid, a), 1 / math.sqrt(2))
    assert centroid([]) == {}


def test_aggregations_order_and_bounds() -> None:
    scores = np.array([[0.9, 0.2], [0.5, 0.1]])
    assert aggregate(scores, "max") == pytest.approx(0.9)
    assert aggregate(scores, "topk", k=2) == pytest.approx(0.7)
    soft = aggregate(scores, "lse")
    assert scores.mean() < soft < scores.max()
    # Small temperature → max; large → mean.
    assert aggregate(scores, "lse", tau=0.001) == pytest.approx(0.9 - 0.001 * math.log(4), abs=1e-6)
    assert aggregate(scores, "lse", tau=100) == pytest.approx(scores.mean(), abs=1e-3)


def test_lse_of_a_partial_matrix_matches_the_full_one() -> None:
    rng = np.random.default_rng(0)
    full = np.concatenate([rng.uniform(0.6, 0.8, 10), rng.uniform(-0.1, 0.2, 990)])
    top = np.sort(full)[-50:]  # what a percolation with limit 50 would return
    assert aggregate(top, "lse", total=full.size) == pytest.approx(aggregate(full, "lse"), abs=1e-4)


def test_aggregate_rejects_bad_input() -> None:
    with pytest.raises(ValueError, match="unknown aggregation 'mean'"):
        aggregate(np.array([0.1]), "mean")
    with pytest.raises(ValueError, match="no scores"):
        aggregate(np.array([]), "max")


def test_fuse_is_convex() -> None:
    assert fuse(0.5, 0.1, 0.0) == 0.5
    assert fuse(0.5, 0.1, 1.0) == 0.1
    assert fuse(0.5, 0.1, 0.5) == pytest.approx(0.3)


def test_evidence_keeps_the_best_match_of_each_sentence() -> None:
    entries = [
        Entry(0, "2501.00001", 0.5),
        Entry(1, "2501.00001", 0.9),
        Entry(1, "dark matter", 0.8),
        Entry(2, "dark matter", 0.7),
        Entry(3, "dark matter", 0.1),
    ]
    best = evidence(entries, limit=3)
    assert [(e.sentence_index, e.interest) for e in best] == [
        (1, "2501.00001"),
        (2, "dark matter"),
        (0, "2501.00001"),
    ]


def test_score_subscription_combines_dense_and_lexical() -> None:
    entries = [Entry(0, "q", 0.8), Entry(1, "q", 0.4)]
    scored = score_subscription(
        entries, sentences=2, interest_points=1, lexical=0.2, method="max", weight=0.5
    )
    assert scored.dense == pytest.approx(0.8)
    assert scored.score == pytest.approx(0.5)
    assert scored.evidence[0].score == 0.8


def test_strength_words_cover_the_relevance_scale() -> None:
    from services.alerts.calibration import strength

    assert strength(None) == "unrated"
    assert strength(0.995) == "very strong"
    assert strength(0.96) == "strong"
    assert strength(0.85) == "medium"
    assert strength(0.2) == "weak" and strength(0.0) == "weak"
