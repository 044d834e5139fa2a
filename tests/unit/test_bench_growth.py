"""The growth benchmark's pure helpers: the synthetic corpus and recall."""

from __future__ import annotations

import numpy as np
import pytest

from benchmarks.growth import batches, mix, normalise_rows, percentiles, recall_at, synthetic_rows


def test_recall_counts_the_exact_top_k_found() -> None:
    exact = [["a", "b", "c"], ["d", "e", "f"]]
    approx = [["a", "b", "x"], ["f", "e", "d"]]
    assert recall_at(approx, exact, 3) == pytest.approx((2 / 3 + 1) / 2)
    assert recall_at(approx, exact, 1) == pytest.approx(0.5)
    assert recall_at([[]], [[]], 10) == 1.0  # nothing to find


def test_synthetic_rows_copy_the_real_ones_in_order_reproducibly() -> None:
    n_real = 7
    p, q, a = synthetic_rows(n_real, n_real, 4 * n_real)
    assert list(p[:n_real]) == list(range(n_real)) == list(p[2 * n_real : 3 * n_real])
    assert ((q >= 0) & (q < n_real)).all()
    assert ((a >= 0.55) & (a <= 0.95)).all()
    # any range alone gives the same rows as the whole
    p2, q2, a2 = synthetic_rows(n_real, 2 * n_real + 3, 3 * n_real)
    assert list(p2) == list(p[n_real + 3 : 2 * n_real])
    assert list(q2) == list(q[n_real + 3 : 2 * n_real])
    assert np.allclose(a2, a[n_real + 3 : 2 * n_real])
    # copies differ from each other
    assert list(q[:n_real]) != list(q[n_real : 2 * n_real]) or not np.allclose(
        a[:n_real], a[n_real : 2 * n_real]
    )
    with pytest.raises(ValueError):
        synthetic_rows(n_real, 0, 3)


def test_mixtures_are_unit_vectors_near_their_first_source() -> None:
    rng = np.random.default_rng(1)
    real = normalise_rows(rng.standard_normal((50, 16)))
    p, q, a = synthetic_rows(50, 50, 150)
    mixed = mix(real, p, q, a)
    assert mixed.dtype == np.float32
    assert np.allclose(np.linalg.norm(mixed, axis=1), 1, atol=1e-5)
    nearest = np.argmax(mixed @ real.T, axis=1)
    assert (nearest == p).mean() > 0.9  # a ≥ 0.55: mostly its first source's neighbour


def test_percentiles_in_milliseconds() -> None:
    p50, p95 = percentiles([0.001] * 19 + [0.1])
    assert p50 == pytest.approx(1.0)
    assert p95 == pytest.approx(1.0 + 0.05 * 99, rel=1e-6)
    assert all(np.isnan(percentiles([])))


def test_batches_cover_the_range_once() -> None:
    assert list(batches(600, 256)) == [(0, 256), (256, 512), (512, 600)]
    assert list(batches(0, 256)) == []
