"""The static-dense benchmark's default side is the default model of ``alerts.py --offline``."""

from __future__ import annotations

import numpy as np
from helpers import authored_papers

from benchmarks import static_dense as bench

alerts = bench.alerts


def evaluation() -> alerts.Evaluation:
    rows = authored_papers()
    return alerts.build_evaluation(
        rows,
        subscriptions=10,
        candidates=60,
        cutoff="2025-12-01",
        max_authors=25,
        max_seeds=2,
        max_relevant=10,
        seed=1,
        split="dev",
    )


def test_default_side_is_the_offline_default_and_zero_dense_features_change_nothing() -> None:
    ev = evaluation()
    base = bench.Default(ev, "2025-12-01", 10, 1)
    scores, stats = base.scores()
    cand = base.lex.matrix(ev.candidates)
    expected = [
        alerts.fit_and_score(
            base.lex,
            cand,
            s.seeds,
            base.negatives,
            base.reference,
            mix=alerts.model.MIX,
            c=alerts.model.C,
        )[0]
        for s in ev.subscriptions
    ]
    np.testing.assert_allclose(scores, np.vstack(expected), rtol=1e-12, atol=0)  # fits are seeded
    assert stats.shape == (len(ev.subscriptions), 2) and (stats[:, 1] > 0).all()

    rng = np.random.default_rng(0)
    ids = {*bench.paper_ids(ev), *base.negatives, *base.reference}
    vectors = {i: rng.normal(size=8) for i in ids}
    np.testing.assert_allclose(base.augmented(vectors, 0.0), scores, atol=1e-3)
    # a large scale lets the (random) dense features move the margin
    assert not np.allclose(base.augmented(vectors, 10.0), scores)


def test_reference_standardisation() -> None:
    scores = np.array([[1.0, 3.0], [0.0, 4.0]])
    stats = np.array([[1.0, 2.0], [2.0, 1.0]])
    np.testing.assert_allclose(bench.by_reference(scores, stats), [[0.0, 1.0], [-2.0, 2.0]])
