"""The pure helpers of benchmarks/backend_parity.py."""

from __future__ import annotations

import pytest

from benchmarks.backend_parity import pair_agreement, topk_overlap, verdict


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
