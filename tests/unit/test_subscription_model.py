"""The per-subscription ranking model: fit, score, calibration, storage and refit rules."""

from __future__ import annotations

import random
from collections import Counter

import pytest
from test_subscriptions import subs  # noqa: F401 - the fixture

from services.alerts import model as submodel
from services.alerts.feedback import FeedbackStore, parse_feedback
from services.alerts.matcher import CorpusStats, term_counts, tfidf
from services.alerts.ranking import FITS, LOADS, SubscriptionModels, delete_stored_sync
from services.alerts.subscriptions import Interest, SubscriptionMeta, SubscriptionStore

TOPICS = [
    "pulsar timing array gravitational waves",
    "galaxy cluster weak lensing mass",
    "exoplanet transit radial velocity",
    "interstellar dust grain polarisation",
    "supernova light curve nickel",
    "cosmic microwave background polarisation",
]
FILLER = [
    "we",
    "present",
    "new",
    "observations",
    "and",
    "a",
    "model",
    "of",
    "the",
    "data",
    "sample",
]


def text(topic: str, rng: random.Random) -> str:
    words = topic.split() * 2 + rng.sample(FILLER, 5)
    rng.shuffle(words)
    return " ".join(words)


def corpus_and_vectors(n: int = 120) -> tuple[CorpusStats, list[tuple[str, Counter[str]]]]:
    rng = random.Random(0)
    stats = CorpusStats()
    papers = []
    for i in range(n):
        counts = term_counts(text(TOPICS[i % len(TOPICS)], rng))
        stats.add(counts)
        papers.append((f"2601.{i:05d}", counts))
    return stats, papers


def test_fit_ranks_the_subscriptions_topic_first_and_needs_a_positive() -> None:
    stats, papers = corpus_and_vectors()
    vec = [tfidf(c, stats) for _, c in papers]
    pulsar = [v for i, v in enumerate(vec) if i % len(TOPICS) == 0]
    others = [v for i, v in enumerate(vec) if i % len(TOPICS) != 0]
    fitted = submodel.fit(pulsar[:3], others[:40], others[40:80])
    assert fitted.positives == 3 and fitted.negatives == 40 and len(fitted.reference) == 40
    assert 0 < fitted.mix < 1 and fitted.weights
    assert min(fitted.score(v) for v in pulsar[3:]) > max(fitted.score(v) for v in others[80:])
    assert min(fitted.relevance(fitted.score(v)) or 0 for v in pulsar[3:]) > 0.95
    with pytest.raises(ValueError, match="at least one positive"):
        submodel.fit([], others, others)
    # No negatives: the centroid alone, still calibrated.
    alone = submodel.fit(pulsar[:3], [], others[40:80])
    assert alone.mix == 0 and not alone.weights and alone.reference


def test_relevance_is_a_strictly_increasing_share_of_the_reference() -> None:
    fitted = submodel.SubscriptionModel(
        weights={},
        bias=0.0,
        centre={},
        mix=0.0,
        margin_stats=(0.0, 1.0),
        cosine_stats=(0.0, 1.0),
        reference=[0.0, 1.0, 2.0, 3.0],
    )
    scores = [-5.0, -1.0, 0.0, 0.5, 1.0, 2.5, 3.0, 4.0, 30.0]
    values = [fitted.relevance(s) for s in scores]
    assert all(v is not None and 0 <= v <= 1 for v in values)
    assert values == sorted(values) and len(set(values)) == len(values)
    assert fitted.relevance(1.0) == pytest.approx(1.5 / 4)  # beats 1, ties 1 (half)
    assert fitted.relevance(3.0) == pytest.approx(3.5 / 4)
    assert (fitted.relevance(4.0) or 0) > 3.5 / 4
    empty = submodel.SubscriptionModel({}, 0.0, {}, 0.0, (0.0, 1.0), (0.0, 1.0))
    assert empty.relevance(1.0) is None


def test_payload_round_trip_scores_the_same() -> None:
    stats, papers = corpus_and_vectors()
    vec = [tfidf(c, stats) for _, c in papers]
    fitted = submodel.fit(vec[:2], vec[2:50], vec[50:100], key="k", corpus_docs=stats.docs)
    again = submodel.SubscriptionModel.from_payload(fitted.payload())
    assert again is not None and again.fingerprint == "k" and again.corpus_docs == stats.docs
    for v in vec[100:]:
        assert again.score(v) == pytest.approx(fitted.score(v), abs=1e-4)
    assert submodel.SubscriptionModel.from_payload({**fitted.payload(), "format": 0}) is None


def test_fingerprint_changes_with_interests_and_labels_only() -> None:
    terms = [[("pulsar", 2), ("timing", 1)]]
    key = submodel.fingerprint(terms, {})
    assert key == submodel.fingerprint([[("pulsar", 2), ("timing", 1)]], {})
    assert key != submodel.fingerprint([[("pulsar", 1)]], {})
    assert key != submodel.fingerprint(terms, {"2601.00001": "relevant"})
    assert submodel.fingerprint(terms, {"2601.00001": "relevant"}) != submodel.fingerprint(
        terms, {"2601.00001": "not_relevant"}
    )


def meta(sub_id: str, topic: str) -> SubscriptionMeta:
    return SubscriptionMeta(
        id=sub_id,
        created_at="2026-01-01T00:00:00+00:00",
        queries=[topic],
        interests=[
            Interest(interest=topic, kind="query", terms=sorted(term_counts(topic).items()))
        ],
    )


def test_models_are_stored_loaded_and_refit_only_when_their_inputs_change(
    subs: SubscriptionStore,  # noqa: F811
) -> None:
    stats, papers = corpus_and_vectors()
    feedback = FeedbackStore(subs.binding)
    feedback.ensure_sync()
    models = SubscriptionModels(lambda: subs.store, feedback)
    for arxiv_id, counts in papers:
        models.observe(arxiv_id, counts)
    metas = {"a": meta("a", TOPICS[0]), "b": meta("b", TOPICS[1])}
    fits = FITS._value.get()
    first = models.models_sync(metas, stats)
    assert set(first) == {"a", "b"} and FITS._value.get() == fits + 2
    assert models.models_sync(metas, stats) == first  # cached: no fit
    assert FITS._value.get() == fits + 2

    # A restarted worker loads them instead of fitting.
    loads = LOADS._value.get()
    restarted = SubscriptionModels(lambda: subs.store, feedback)
    for arxiv_id, counts in papers:
        restarted.observe(arxiv_id, counts)
    again = restarted.models_sync(metas, stats)
    assert LOADS._value.get() == loads + 2 and FITS._value.get() == fits + 2
    assert again["a"].payload() == first["a"].payload()

    # Feedback changes one fingerprint: only that model is refit, and it learns.
    labelled = papers[2][0]  # a "galaxy cluster" paper, off-topic for "a"
    feedback.put_sync("a", parse_feedback({"arxiv_id": labelled, "label": "relevant"}))
    refit = restarted.models_sync(metas, stats)
    assert FITS._value.get() == fits + 3
    assert refit["a"].fingerprint != first["a"].fingerprint
    assert refit["a"].positives == first["a"].positives + 1
    cluster = tfidf(papers[8][1], stats)
    assert refit["a"].score(cluster) > first["a"].score(cluster)

    # The IDF grew past its tolerance: refit all.
    grown = stats.copy()
    grown.docs = int(stats.docs * 1.2)
    restarted.models_sync(metas, grown)
    assert FITS._value.get() == fits + 5

    # A deleted subscription's model is gone from storage.
    delete_stored_sync(subs.store, "a")
    fresh = SubscriptionModels(lambda: subs.store, feedback)
    for arxiv_id, counts in papers:
        fresh.observe(arxiv_id, counts)
    fresh.models_sync(metas, grown)
    assert FITS._value.get() == fits + 6  # "a" refit, "b" loaded


def test_feedback_moves_the_labelled_paper_and_similar_papers_the_right_way() -> None:
    """A paper marked relevant, and papers like it, move up from the unrelated papers toward
    the subscription's topic; marked not relevant, down; the topic stays first either way."""
    stats, papers = corpus_and_vectors()
    rng = random.Random(1)
    mixed = "pulsar timing supernova light curve nickel"
    extra = [term_counts(text(mixed, rng)) for _ in range(3)]
    for counts in extra:
        stats.add(counts)
    vec = [tfidf(c, stats) for _, c in papers]
    labelled, *similar = (tfidf(c, stats) for c in extra)
    pulsar = [v for i, v in enumerate(vec) if i % len(TOPICS) == 0]
    others = [v for i, v in enumerate(vec) if i % len(TOPICS) != 0]
    seeds, negatives, reference = pulsar[:3], others[:40], others[40:80]

    def position(fitted: submodel.SubscriptionModel, v: dict[str, float]) -> float:
        """0: the unrelated papers' mean score, 1: the topic's (scores are standardised, so
        compare models on where a paper stands between the two)."""
        topic = sum(fitted.score(p) for p in pulsar[3:]) / len(pulsar[3:])
        unrelated = sum(fitted.score(p) for p in others[80:]) / len(others[80:])
        return (fitted.score(v) - unrelated) / (topic - unrelated)

    plain = submodel.fit(seeds, negatives, reference)
    liked = submodel.fit(seeds, negatives, reference, relevant=[labelled])
    disliked = submodel.fit(seeds, negatives, reference, not_relevant=[labelled])
    for v in (labelled, *similar):
        assert position(liked, v) > position(plain, v) > position(disliked, v)
    assert liked.positives == 4 and disliked.negatives == 41
    # The seeds' topic is not lost to a hard negative.
    topic = min(disliked.score(v) for v in pulsar[3:])
    assert topic > max(disliked.score(v) for v in [labelled, *similar, *others[80:]])
    # Without labels the model is the one fitted before feedback existed (up to the SVM's
    # tolerance: liblinear visits the samples in a random order).
    again = submodel.fit(seeds, negatives, reference, relevant=[], not_relevant=[])
    assert again.centre == plain.centre and again.positives == plain.positives
    for v in vec:
        assert again.score(v) == pytest.approx(plain.score(v), rel=0.02, abs=0.02)


def test_matrix_columns_follow_first_occurrence() -> None:
    vocab: dict[str, int] = {"z": 0}
    x = submodel._matrix([{"a": 1.0, "b": 2.0}, {}, {"b": 3.0, "z": 4.0, "c": 5.0}], vocab)
    assert vocab == {"z": 0, "a": 1, "b": 2, "c": 3}
    assert x.shape == (3, 4)
    assert x.toarray().tolist() == [[0, 1, 2, 0], [0, 0, 0, 0], [4, 0, 3, 5]]


def test_a_shared_sample_matrix_gives_exactly_the_same_matrix_and_model() -> None:
    stats, papers = corpus_and_vectors()
    vec = [tfidf(c, stats) for _, c in papers]
    vec[7] = {}  # a paper without terms
    sample = submodel.Sample(vec[:80])
    outsider = tfidf(term_counts("pulsar timing with a brand new glitch model"), stats)
    positives = [vec[0], outsider]  # one row from the sample, one from outside
    negatives = [v for i, v in enumerate(vec[:40]) if i not in (0, 6)]
    reference = vec[40:80]
    rows = [*positives, *negatives, {"zzz-only-here": 1.0}, *reference]
    vocab: dict[str, int] = {}
    plain = submodel._matrix(rows, vocab)
    shared, terms = sample.matrix(rows)
    assert list(terms) == list(vocab)
    assert (plain != shared).nnz == 0 and plain.shape == shared.shape
    assert (plain.indptr == shared.indptr).all() and (plain.indices == shared.indices).all()
    labels = {"relevant": [vec[6], vec[100]], "not_relevant": [vec[12], vec[101]]}
    for kwargs in ({}, labels):
        a = submodel.fit(positives, negatives, reference, sample=sample, **kwargs)  # type: ignore[arg-type]
        b = submodel.fit(positives, negatives, reference, **kwargs)  # type: ignore[arg-type]
        assert a.payload() == b.payload()
        assert (a.weights, a.bias, a.centre, a.reference) == (
            b.weights,
            b.bias,
            b.centre,
            b.reference,
        )


def test_a_fit_is_a_function_of_its_inputs() -> None:
    import numpy as np

    stats, papers = corpus_and_vectors()
    vec = [tfidf(c, stats) for _, c in papers]
    first = submodel.fit(vec[:3], vec[3:60], vec[60:])
    np.random.seed(12345)  # the global generator must not matter (liblinear's sample order)
    np.random.random(1000)
    again = submodel.fit(vec[:3], vec[3:60], vec[60:])
    assert (first.weights, first.bias, first.reference) == (
        again.weights,
        again.bias,
        again.reference,
    )
