"""Lexical reach: the sparse term vectors, their collections, and percolation through them."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import math
import re
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import models as qm

from services.alerts.hook import AlertMatcher
from services.alerts.lifecycle import SubscriptionService
from services.alerts.matcher import CorpusStats
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionStore
from services.alerts.webhooks import WebhookSender
from services.core import lexical
from services.core.ids import paper_point_id
from services.core.lexical import sparse, sublinear_tf, term_counts, term_index
from services.core.schemas import Alert, Paper
from services.core.settings import load_settings
from services.embed.pipeline import IndexedPaper, RawRecord
from services.embed.points import PaperSource, build_points, texts_of
from services.store.binding import Binding
from services.store.vectorstore import LEXICAL, VectorStore

DIM = 8
DOCS = Path(__file__).resolve().parents[2] / "docs" / "alerts.md"


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def test_term_index_is_a_stable_31_bit_hash() -> None:
    # Fixed values: a change of hash would orphan every stored sparse vector.
    assert term_index("galaxy") == 0x198457F1
    assert term_index("ram pressure") == term_index("ram pressure")
    for term in ("galaxy", "ram pressure", "jwst", "h0", "z6"):
        digest = hashlib.blake2b(term.encode(), digest_size=4).digest()
        assert term_index(term) == int.from_bytes(digest, "big") & 0x7FFFFFFF
        assert 0 <= term_index(term) < 2**31


def test_sparse_weights_are_unit_sublinear_tf_with_collisions_summed(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    weights = sublinear_tf({"bar": 1, "gas": 3, "never": 0})
    raw = {"bar": 1.0, "gas": 1 + math.log(3)}
    norm = math.hypot(*raw.values())
    assert weights == pytest.approx({t: w / norm for t, w in raw.items()})
    indices, values = sparse(weights)
    assert indices == sorted(indices) and len(indices) == 2
    assert dict(zip(indices, values, strict=True))[term_index("gas")] == pytest.approx(
        raw["gas"] / norm
    )
    monkeypatch.setattr(lexical, "term_index", lambda term: 7)
    assert sparse({"a": 0.25, "b": 0.5}) == ([7], [0.75])  # a collision adds the weights


def test_paper_points_carry_the_terms_of_the_lexical_score() -> None:
    source = PaperSource(
        "2501.00001",
        {"arxiv_id": "2501.00001", "title": "Jellyfish galaxies"},
        [("s0", {"text": "Ram-pressure stripping of jellyfish galaxies."})],
    )
    texts = texts_of(["Jellyfish galaxies"], [["Ram-pressure stripping of jellyfish galaxies."]])
    points = build_points([source], np.ones((len(texts), DIM), dtype=np.float32), "v")
    counts = term_counts("Jellyfish galaxies Ram-pressure stripping of jellyfish galaxies.")
    assert points.paper_lexical == [sparse(sublinear_tf(counts))]


@pytest.fixture
def store() -> VectorStore:
    vs = VectorStore(load_settings(qdrant_path=":memory:"), DIM, "test")
    vs.ensure_collections()
    return vs


def test_new_collections_have_the_sparse_vector_and_old_ones_keep_working(
    store: VectorStore, caplog: pytest.LogCaptureFixture
) -> None:
    assert store.has_lexical("papers") and store.has_lexical("subscriptions")
    assert not store.has_lexical("sentences")
    # A collection made before the sparse vector existed: dense only, no error, logged once.
    legacy = store.sibling("legacy", DIM)
    for kind in ("sentences", "papers", "subscriptions"):
        store.client.create_collection(
            legacy.physical(kind),
            vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE),
        )
    with caplog.at_level(logging.WARNING):
        legacy.ensure_collections(set_alias=False)
        assert not legacy.has_lexical("papers")
    assert sum("has no 'lexical' sparse vector" in r.message for r in caplog.records) == 2
    for target in (store, legacy):
        target.upsert(
            target.papers,
            [paper_point_id("2501.00001")],
            unit(1)[None, :],
            [{"arxiv_id": "2501.00001"}],
            [sparse({"bar": 1.0})],
        )
        # Readers of the paper vector get the dense list, sparse vector or not.
        record = target.papers_by_id(["2501.00001"], with_vectors=True)["2501.00001"]
        assert record.vector == pytest.approx(unit(1).tolist())
        dense = target.search(target.papers, unit(1).tolist(), 1)
        assert dense and dense[0].score == pytest.approx(1.0, abs=1e-5)
    stored = store.client.retrieve(store.papers, [paper_point_id("2501.00001")], with_vectors=True)
    assert isinstance(stored[0].vector, dict) and LEXICAL in stored[0].vector


class MappedEncoder:
    """Queries encode to the vectors given; anything else to a fixed far-away vector."""

    dim = DIM

    def __init__(self, vectors: dict[str, np.ndarray]) -> None:
        self.vectors = vectors

    async def aencode(self, texts: list[str]) -> np.ndarray:
        return np.vstack([self.vectors.get(t, unit(0, 0, 0, 0, 0, 0, 0, 1)) for t in texts])


def test_a_subscription_with_no_dense_hit_is_reached_through_its_terms(
    store: VectorStore,
) -> None:
    """Dense percolation with limit 1 reaches only a distractor; the sparse one reaches ours."""
    target_query = "ram-pressure stripping of jellyfish galaxies"
    distractors = [f"cosmic dawn reionisation topic {i}" for i in range(20)]
    encoder = MappedEncoder({target_query: unit(0, 0, 0, 1), **{d: unit(1) for d in distractors}})
    subs = SubscriptionStore(Binding(encoder, store), CorpusStats())
    subs.ensure_sync()
    published: list[Alert] = []

    async def publish(alerts: list[Alert]) -> None:
        published.extend(alerts)

    new = Paper(
        arxiv_id="2502.00002",
        title="Jellyfish galaxies in clusters",
        abstract="x",
        categories=["astro-ph.GA"],
        authors=["A. Author"],
    )
    sentences = ["We find ram-pressure stripping in jellyfish galaxies of nearby clusters."]
    vectors = unit(1, 0.05)[None, :]  # next to the distractors, far from the target's query
    item = IndexedPaper(new, RawRecord("t", 0, 0, None, None), sentences, vectors, vectors[0], "d")

    async def go() -> tuple[list[Alert], list[Alert], dict[str, Any]]:
        for text in distractors:
            await SubscriptionService(subs).create(
                parse_request({"queries": [text], "threshold": 0.9}), False
            )
        target = await SubscriptionService(subs).create(
            parse_request({"queries": [target_query], "threshold": 0.05}), False
        )
        dense_only = AlertMatcher(subs, publish, WebhookSender(), percolate_limit=1, sparse_limit=0)
        missed = await dense_only.match([item])
        hybrid = AlertMatcher(subs, publish, WebhookSender(), percolate_limit=1, sparse_limit=10)
        reached = await hybrid.match([item])
        return missed, reached, target

    missed, reached, target = asyncio.run(go())
    assert missed == []
    assert [a.subscription_id for a in reached] == [target["id"]]
    alert = reached[0]
    assert alert.score >= 0.05
    # Evidence from the dense re-score of the paper's sentences against its interest vector.
    assert alert.matches and alert.matches[0].interest == target_query
    assert alert.matches[0].score == pytest.approx(float(unit(0, 0, 0, 1) @ vectors[0]), abs=1e-5)


def docs_snippet() -> str:
    text = DOCS.read_text()
    match = re.search(
        r"<!-- hybrid:begin -->\n```python\n(.*?)```\n<!-- hybrid:end -->", text, re.S
    )
    assert match, "docs/alerts.md lost its hybrid-search snippet"
    return match.group(1)


def test_the_documented_hybrid_search_runs_on_astro_papers(store: VectorStore) -> None:
    """docs/alerts.md's snippet, as written, against papers written by the embed stage."""
    titles = ["Ram-pressure stripping of jellyfish galaxies", "Reionisation by faint dwarfs"]
    texts = [["Jellyfish galaxies lose gas in clusters."], ["Faint dwarfs ionise the IGM."]]
    sources = [
        PaperSource(
            f"2501.0000{n}", {"arxiv_id": f"2501.0000{n}", "title": t}, [("", {"text": s[0]})]
        )
        for n, (t, s) in enumerate(zip(titles, texts, strict=True))
    ]
    points = build_points(sources, np.vstack([unit(1), unit(1), unit(0, 1), unit(0, 1)]), "test")
    store.upsert(
        store.papers,
        points.paper_ids,
        points.paper_vectors,
        points.paper_payloads,
        points.paper_lexical,
    )

    class Model:  # stands in for the worker's sentence-transformers model
        def encode(self, text: str) -> np.ndarray:
            return unit(0, 1)  # dense alone would pick the reionisation paper

    namespace: dict[str, Any] = {"model": Model(), "client": store.client, "__name__": "doc"}
    code = docs_snippet().replace('QdrantClient(url="http://localhost:6333")', "client")
    exec(compile(code, str(DOCS), "exec"), namespace)
    hits = namespace["hits"]
    # Dense alone ranks the reionisation paper first; the terms lift the jellyfish one.
    assert [h.payload["arxiv_id"] for h in hits] == ["2501.00000", "2501.00001"]
    sparse_only = store.client.query_points(
        store.alias("papers"), query=namespace["lexical"]("jellyfish stripping"), using=LEXICAL
    ).points
    assert [h.payload["arxiv_id"] for h in sparse_only] == ["2501.00000"]


def test_a_rollout_carries_the_subscriptions_sparse_vectors_over(store: VectorStore) -> None:
    from services.embed.rollout import Rollout

    encoder = MappedEncoder({})
    subs = SubscriptionStore(Binding(encoder, store), CorpusStats())
    subs.ensure_sync()
    new = store.sibling("next", DIM)
    new.ensure_collections(set_alias=False)

    async def go() -> dict[str, Any]:
        created = await SubscriptionService(subs).create(
            parse_request({"queries": ["jellyfish", "bars"]}), False
        )
        rollout = Rollout(
            load_settings(qdrant_path=":memory:"), Binding(encoder, store), Binding(encoder, new)
        )
        await rollout.copy_subscriptions(store, new, encoder)  # type: ignore[arg-type]
        return created

    created = asyncio.run(go())
    records = new.client.scroll(new.subscriptions, with_vectors=True)[0]
    with_sparse = [r for r in records if isinstance(r.vector, dict) and LEXICAL in r.vector]
    assert len(records) == 2 and len(with_sparse) == 1
    assert (with_sparse[0].payload or {})["subscription_id"] == created["id"]
    old = store.client.scroll(store.subscriptions, with_vectors=True)[0]
    old_sparse = [
        r.vector[LEXICAL] for r in old if isinstance(r.vector, dict) and LEXICAL in r.vector
    ]
    assert with_sparse[0].vector[LEXICAL] == old_sparse[0]  # type: ignore[index]
