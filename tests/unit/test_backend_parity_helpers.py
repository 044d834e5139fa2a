"""The pure helpers of benchmarks/backend_parity.py and benchmarks/edge.py."""

from __future__ import annotations

import math

import numpy as np
import pytest

from benchmarks.backend_parity import pair_agreement, topk_overlap, verdict
from benchmarks.edge import batches, percentiles, unit_vectors


def test_topk_overlap_counts_shared_ids_of_the_first_k() -> None:
    assert topk_overlap(["a", "b", "c", "d"], ["b", "a", "x", "c"], 2) == 1.0
    assert topk_overlap(["a", "b", "c"], ["c", "x", "y"], 3) == pytest.approx(1 / 3)
    assert topk_overlap(["a", "b"], ["x", "y"], 2) == 0.0


def test_topk_overlap_of_short_lists_is_relative_to_the_longer_one() -> None:
    # /search on a tiny index may return fewer than k: one shared of two returned is 0.5.
    assert topk_overlap(["a"], ["a", "b"], 10) == 0.5
    assert topk_overlap([], [], 10) == 1.0


def test_pair_agreement_splits_the_pairs() -> None:
    a = {(0, "p1"), (0, "p2"), (1, "p1")}
    b = {(0, "p1"), (1, "p1"), (1, "p3")}
    got = pair_agreement(a, b)
    assert got == {"only_a": 1.0, "only_b": 1.0, "both": 2.0, "jaccard": 0.5}
    assert pair_agreement(set(), set())["jaccard"] == 1.0


def test_verdict_allows_at_most_the_tolerance_below_the_reference() -> None:
    assert verdict(0.0) == "pass"
    assert verdict(-0.005) == "pass"
    assert verdict(-0.0051) == "FAIL"
    assert verdict(+0.02) == "pass"


def test_percentiles_are_milliseconds() -> None:
    p50, p95 = percentiles([0.001 * i for i in range(1, 101)])
    assert p50 == pytest.approx(50.5)
    assert p95 == pytest.approx(95.05)
    assert all(math.isnan(v) for v in percentiles([]))


def test_batches_cover_the_range_once() -> None:
    assert list(batches(600, 256)) == [(0, 256), (256, 512), (512, 600)]
    assert list(batches(0, 256)) == []


def test_unit_vectors_are_seeded_and_normalised() -> None:
    a = unit_vectors(5, 384, seed=1)
    assert a.shape == (5, 384) and a.dtype == np.float32
    assert np.allclose(np.linalg.norm(a, axis=1), 1.0, atol=1e-5)
    assert np.array_equal(a, unit_vectors(5, 384, seed=1))
    assert not np.array_equal(a, unit_vectors(5, 384, seed=2))
