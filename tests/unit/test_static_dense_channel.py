"""The alerts' static dense channel: the compact shipped model and its share of the score."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import numpy as np
import pytest
from test_subscription_model import TOPICS, corpus_and_vectors, meta
from test_subscriptions import subs  # noqa: F401 - the fixture

from services.alerts import model as submodel
from services.alerts.dense import StaticModel, shipped
from services.alerts.matcher import tfidf
from services.alerts.ranking import SubscriptionModels
from services.alerts.subscriptions import SubscriptionStore
from services.models.encoder import bundled_model_path
from trainer.compact import export

PAPERS = [
    {"title": "Pulsar timing arrays", "abstract": "We search for nanohertz gravitational waves."},
    {"title": "Weak lensing of clusters", "abstract": "Cluster masses from galaxy shear."},
]


def test_compact_export_gives_the_static_embedding_s_vectors(tmp_path: Path) -> None:
    """Export a random static model and load it in numpy: the vectors of texts made of corpus
    tokens are sentence-transformers' StaticEmbedding vectors (int8 rows: cosine > 0.999)."""
    from safetensors.numpy import save_file
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules.static_embedding import (
        StaticEmbedding,
    )
    from tokenizers import Tokenizer

    tokenizer_json = (bundled_model_path() / "tokenizer.json").read_text(encoding="utf-8")
    vocab = Tokenizer.from_str(tokenizer_json).get_vocab_size()
    table = np.random.default_rng(0).normal(size=(vocab, 16)).astype(np.float32)
    model_dir = tmp_path / "model"
    model_dir.mkdir()
    save_file({"embedding.weight": table}, str(model_dir / "model.safetensors"))
    (model_dir / "tokenizer.json").write_text(tokenizer_json, encoding="utf-8")
    (model_dir / "train_args.json").write_text(json.dumps({"name": "toy", "version": "1"}))
    papers = tmp_path / "papers.jsonl.gz"
    with gzip.open(papers, "wt", encoding="utf-8") as handle:
        handle.writelines(json.dumps(p) + "\n" for p in PAPERS)

    meta = export(model_dir, papers, tmp_path / "out")
    assert meta["version"] == "toy-1" and 0 < meta["kept_tokens"] < 60
    compact = StaticModel.load("toy", tmp_path / "out")
    texts = [f"{p['title']} {p['abstract']}" for p in PAPERS] + ["Cluster shear of pulsar waves"]
    original = SentenceTransformer(
        modules=[StaticEmbedding(Tokenizer.from_str(tokenizer_json), embedding_weights=table)],
        device="cpu",
    )
    from services.core.text import normalise

    want = original.encode([normalise(t) for t in texts], normalize_embeddings=True)
    got = compact.papers(texts)
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    assert float((got * want).sum(axis=1).min()) > 0.999
    # Tokens outside the corpus add nothing; no known token at all gives a zero vector.
    assert not np.any(compact.encode(["zzzqqq"]))


def test_the_shipped_model_loads_once_and_places_related_papers_close() -> None:
    model = shipped()
    assert shipped() is model and model.dim == 256
    assert model.version == "astro-static-256-20261201045143"
    pulsar, lensing, pta = model.papers(
        [
            "Pulsar timing array limits on a gravitational-wave background",
            "Weak lensing masses of galaxy clusters",
            "Nanohertz gravitational waves from millisecond pulsar timing",
        ]
    )
    assert float(pulsar @ pta) > float(pulsar @ lensing) + 0.1


def fitted_pair(
    weight: float,
) -> tuple[submodel.SubscriptionModel, list[dict[str, float]], np.ndarray]:
    """A model fit on lexical vectors plus toy dense vectors: the positives' dense direction
    is axis 0; the reference papers' point anywhere."""
    stats, papers = corpus_and_vectors()
    vec = [tfidf(c, stats) for _, c in papers]
    rng = np.random.default_rng(1)
    ref_dense = rng.normal(size=(50, 8)).astype(np.float32)
    ref_dense /= np.linalg.norm(ref_dense, axis=1, keepdims=True)
    fitted = submodel.fit(
        vec[:2],
        vec[2:50],
        vec[50:100],
        dense_positives=[np.eye(8, dtype=np.float32)[0]] * 2,
        dense_reference=list(ref_dense),
        dense_weight=weight,
    )
    return fitted, vec, np.eye(8, dtype=np.float32)


def test_weight_zero_or_no_dense_vector_is_exactly_the_lexical_score() -> None:
    """Today's score, ``mix * z(margin) + (1 - mix) * z(cosine)``, to the bit. (Two fits are
    compared only to 1e-4: the SVM's coordinate descent shuffles.)"""
    stats, papers = corpus_and_vectors()
    vec = [tfidf(c, stats) for _, c in papers]
    lexical = submodel.fit(vec[:2], vec[2:50], vec[50:100])
    off, _, axes = fitted_pair(0.0)
    on, _, _ = fitted_pair(0.4)
    assert off.dense_centre is None and off.dense_weight == 0.0
    assert off.reference == pytest.approx(lexical.reference, abs=1e-4)
    for model in (off, on):
        for v in vec[100:]:
            margin, cos = model.parts(v)
            today = model.mix * margin + (1.0 - model.mix) * cos
            assert model.score(v) == today  # a paper without a dense vector
            if model is off:
                assert model.score(v, axes[0]) == today
    assert on.reference != pytest.approx(lexical.reference, abs=1e-2)  # the mixed scores


def test_the_dense_channel_lifts_the_paper_near_the_positives() -> None:
    fitted, vec, axes = fitted_pair(0.4)
    paper = vec[101]
    near, far = fitted.score(paper, axes[0]), fitted.score(paper, axes[1])
    assert near > far
    assert fitted.relevance(near) > fitted.relevance(far)  # type: ignore[operator]
    (lm, ls), (dm, ds) = fitted.lexical_stats, fitted.dense_stats
    assert near == pytest.approx(
        0.6 * (fitted.score(paper) - lm) / ls + 0.4 * (1.0 - dm) / ds, rel=1e-6
    )


def test_payload_round_trip_keeps_the_dense_channel() -> None:
    fitted, vec, axes = fitted_pair(0.4)
    payload = json.loads(json.dumps(fitted.payload()))
    again = submodel.SubscriptionModel.from_payload(payload)
    assert again is not None and again.dense_weight == 0.4
    for v in vec[100:]:
        for axis in axes[:3]:
            assert again.score(v, axis) == pytest.approx(fitted.score(v, axis), abs=1e-4)
    assert submodel.SubscriptionModel.from_payload({**payload, "format": 1}) is None


def test_fingerprint_has_the_dense_model_and_weight() -> None:
    terms = [[("pulsar", 2)]]
    plain = submodel.fingerprint(terms, {})
    assert plain != submodel.fingerprint(terms, {}, dense="astro-static-256-x:0.4")
    assert submodel.fingerprint(terms, {}, dense="m:0.4") != submodel.fingerprint(
        terms, {}, dense="m:0.3"
    )


def test_the_worker_s_models_embed_sample_and_queries_with_the_shipped_model(
    subs: SubscriptionStore,  # noqa: F811
) -> None:
    import random

    from test_subscription_model import text as paper_text

    stats, papers = corpus_and_vectors()
    rng = random.Random(0)
    texts = [paper_text(TOPICS[i % len(TOPICS)], rng) for i in range(len(papers))]
    dense = SubscriptionModels(lambda: subs.store, None, dense=shipped())
    plain = SubscriptionModels(lambda: subs.store, None, dense=shipped(), dense_weight=0.0)
    for (arxiv_id, counts), body in zip(papers, texts, strict=True):
        dense.observe(arxiv_id, counts, body)
        plain.observe(arxiv_id, counts, body)
    assert plain.dense_of(papers[0][0]) is None and plain.dense_key == ""
    metas = {"a": meta("a", TOPICS[0])}
    got = dense.models_sync(metas, stats)["a"]
    assert got.dense_weight == submodel.DENSE_WEIGHT and got.dense_centre is not None
    assert got.dense_centre @ shipped().papers([TOPICS[0]])[0] == pytest.approx(1.0, abs=1e-5)
    lexical = plain.models_sync(metas, stats)["a"]
    assert lexical.dense_centre is None and lexical.fingerprint != got.fingerprint
    # The topic's papers still rank first, by relevance, with the dense channel on.
    on_topic = [i for i in range(len(papers)) if i % len(TOPICS) == 0]
    scores = [got.score(tfidf(c, stats), dense.dense_of(a)) for a, c in papers]
    worst_on = min(scores[i] for i in on_topic)
    best_off = max(s for i, s in enumerate(scores) if i not in on_topic)
    assert worst_on > best_off
