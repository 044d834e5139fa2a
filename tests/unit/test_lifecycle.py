"""The subscription lifecycle on an in-process store: a delete leaves no record that names the
subscription in any collection, touches no other subscription's, and can be retried."""

from __future__ import annotations

import asyncio
import time
import zlib
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from pathlib import Path

import numpy as np
import pytest
from helpers import records_naming

from services.alerts import records
from services.alerts.digests import Digester, DigestState
from services.alerts.feedback import FeedbackStore, parse_feedback
from services.alerts.lifecycle import SubscriptionService
from services.alerts.marks import ReadMarks
from services.alerts.matcher import CorpusStats, term_counts
from services.alerts.ranking import SubscriptionModels
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionStore
from services.core.errors import NotFound, VectorStoreUnavailable
from services.core.ids import alert_id, paper_point_id, sentence_point_id
from services.core.schemas import Paper
from services.core.settings import load_settings
from services.embed.pipeline import paper_payload, sentence_payload
from services.store.binding import Binding
from services.store.points import interest_page
from services.store.vectorstore import VectorStore

DIM = 8
SEED = "2501.00001"
NEWS = ["2501.00002", "2501.00003"]


class FakeEncoder:
    """Deterministic unit vectors from the text's CRC-32."""

    dim = DIM

    async def aencode(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def index(store: VectorStore, arxiv_id: str, sentences: list[str]) -> None:
    """A paper as the embed stage writes it: its sentence points, then its paper point."""
    paper = Paper(
        arxiv_id=arxiv_id, title=f"Paper {arxiv_id}", abstract="x", categories=["astro-ph.GA"]
    )
    vectors = asyncio.run(FakeEncoder().aencode(sentences))
    store.upsert(
        store.sentences,
        [sentence_point_id(arxiv_id, 1, i) for i in range(len(sentences))],
        vectors,
        [sentence_payload(paper, i, s, store.model_version) for i, s in enumerate(sentences)],
    )
    mean = vectors.mean(axis=0)
    store.upsert(
        store.papers,
        [paper_point_id(arxiv_id)],
        (mean / np.linalg.norm(mean))[None, :],
        [paper_payload(paper, store.model_version)],
    )


class World:
    """Every per-subscription table of the product over one in-memory store."""

    def __init__(self, folder: Path) -> None:
        settings = load_settings(qdrant_path=":memory:", data_dir=folder)
        self.store = VectorStore(settings, DIM, "v1")
        self.store.ensure_collections()
        binding = Binding(FakeEncoder(), self.store)
        self.subs = SubscriptionStore(binding)
        self.subs.ensure_sync()
        self.service = SubscriptionService(self.subs)
        self.feedback = FeedbackStore(binding)
        self.feedback.ensure_sync()
        self.marks = ReadMarks(binding)
        self.marks.ensure_sync()
        self.models = SubscriptionModels(lambda: self.store, self.feedback)
        self.digester = Digester(self.subs, settings, send=self.no_mail)
        self.digester.ensure_sync()
        self.stats = CorpusStats()
        for n in range(40):  # the sample a model is fitted with
            counts = term_counts(f"galactic bars gas inflow sample {n} dust discs")
            self.stats.add(counts)
            self.models.observe(f"2601.{n:05d}", Counter(counts))
        index(self.store, SEED, ["Bars drive gas inwards.", "We simulate discs."])
        for arxiv_id in NEWS:
            index(self.store, arxiv_id, [f"Galactic bars in {arxiv_id}."])

    async def no_mail(self, message: EmailMessage) -> None:
        raise AssertionError("no digest is sent here")

    def subscribe(self) -> str:
        """A subscription with a record in every table: what the product writes for it."""
        body = {"name": "bars", "queries": ["galactic bars"], "arxiv_ids": [SEED]}
        body |= {"digest": "daily", "email": "reader@example.org"}
        sub_id = str(asyncio.run(self.service.create(parse_request(body), False))["id"])
        now = time.time()
        self.subs.put_alerts_sync(
            [
                {
                    "alert_id": alert_id(sub_id, a),
                    "subscription_id": sub_id,
                    "arxiv_id": a,
                    "score": 0.5,
                    "created_ts": now,
                }
                for a in NEWS
            ]
        )
        self.feedback.put_sync(sub_id, parse_feedback({"arxiv_id": NEWS[0], "label": "relevant"}))
        self.marks.mark_sync(sub_id, NEWS[1])
        self.models.models_sync(self.subs.meta_sync([sub_id]), self.stats)
        self.digester.put_state_sync(DigestState(subscription_id=sub_id, last_at="2026-01-01"))
        return sub_id

    def roll_out(self) -> VectorStore:
        """A rollout's collections (a new model version) holding copies of the interests."""
        new = self.store.sibling("v2", DIM)
        new.ensure_collections(set_alias=False)
        page, _ = interest_page(self.store, limit=1000)
        vectors = asyncio.run(FakeEncoder().aencode([str(r.id) for r in page]))
        new.upsert(new.subscriptions, [str(r.id) for r in page], vectors, [r.payload for r in page])
        return new


@pytest.fixture
def world(tmp_path: Path) -> Iterator[World]:
    made = World(tmp_path)
    yield made
    made.store.close()


def test_every_per_subscription_table_is_registered() -> None:
    assert [r.table for r in records.registered()] == [
        "interests",
        "alerts",
        "digest state",
        "feedback",
        "models",
        "read marks",
        "metadata",
    ]


def test_a_delete_leaves_no_record_naming_the_subscription(world: World) -> None:
    gone, kept = world.subscribe(), world.subscribe()
    world.roll_out()
    before = records_naming(world.store.client, [gone, kept])
    prefix = world.store.settings.collection_prefix
    tables = ["subscription_meta", "alerts", "feedback", "read", "digests", "subscription_models"]
    every = {f"{prefix}_{t}" for t in tables} | {
        f"{prefix}_subscriptions__{v}" for v in ["v1", "v2"]
    }
    assert set(before[gone]) == set(before[kept]) == every  # a record in every table

    assert asyncio.run(world.service.delete(gone)) == {"deleted": gone}

    after = records_naming(world.store.client, [gone, kept])
    assert after[gone] == {}
    assert after[kept] == before[kept]
    with pytest.raises(NotFound):
        asyncio.run(world.service.delete(gone))
    # A digest round that read the subscription before the delete writes no state back.
    world.digester.put_state_sync(DigestState(subscription_id=gone, last_at="2026-01-02"))
    assert records_naming(world.store.client, [gone])[gone] == {}


def test_a_delete_that_failed_half_way_can_be_retried(
    world: World, monkeypatch: pytest.MonkeyPatch
) -> None:
    sub_id = world.subscribe()
    feedback = next(r for r in records.registered() if r.table == "feedback")

    def outage(store: VectorStore, subscription_id: str) -> None:
        raise ConnectionError("the store went away")

    monkeypatch.setitem(
        records._REGISTRY, "feedback", records.Record(feedback.table, feedback.order, outage)
    )
    with pytest.raises(VectorStoreUnavailable):  # the API answers 503
        asyncio.run(world.service.delete(sub_id))
    left = records_naming(world.store.client, [sub_id])[sub_id]
    prefix = world.store.settings.collection_prefix
    assert f"{prefix}_subscriptions__v1" not in left  # no longer matched
    assert f"{prefix}_subscription_meta" in left  # still there: the delete can be retried
    monkeypatch.undo()
    assert asyncio.run(world.service.delete(sub_id)) == {"deleted": sub_id}
    assert records_naming(world.store.client, [sub_id])[sub_id] == {}


def test_create_and_delete_keep_the_gauge(world: World) -> None:
    from services.alerts.hook import SUBSCRIPTIONS

    sub_id = world.subscribe()
    assert SUBSCRIPTIONS._value.get() == 1
    asyncio.run(world.service.delete(sub_id))
    assert SUBSCRIPTIONS._value.get() == 0
