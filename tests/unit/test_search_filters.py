"""The fast read paths give what Qdrant's filters and order_by gave, on in-memory Qdrant.

Searches with ``category``/``since``/an excluded paper are filtered in Python over an
unfiltered over-fetch (falling back to a ``published_ts`` range filter); a subscription's
alerts are sorted in Python. Each is compared with the old query: Qdrant filtering on a
``DatetimeRange`` over ``published``, and an ``order_by`` scroll.
"""

from __future__ import annotations

import asyncio
import datetime as dt
from typing import Any
from unittest import mock

import numpy as np
import pytest
from qdrant_client import models as qm

from services.alerts import subscriptions as subscriptions_module
from services.alerts.lifecycle import SubscriptionService
from services.alerts.request import parse_request
from services.alerts.subscriptions import SORT_KEYS, SubscriptionStore
from services.core.ids import alert_id, paper_point_id, sentence_point_id
from services.core.settings import load_settings
from services.embed.pipeline import relabel_paper
from services.store import vectorstore
from services.store.binding import Binding
from services.store.vectorstore import PaperFilter, VectorStore, published_ts

DIM = 8
CATEGORIES = ["astro-ph.GA", "astro-ph.CO", "astro-ph.SR", "gr-qc", "rare.XX"]
DATES = [
    "2025-03-01",
    "2025-06-30",
    "2025-07-01",
    "2025-07-01T00:00:00",
    "2025-06-30T23:30:00-02:00",  # 2025-07-01T01:30Z
    "2025-07-01T10:00:00+00:00",
    "2026-01-16",
    None,
]


def old_filter(category: str | None, since: str | None, exclude: str | None) -> qm.Filter | None:
    """The filter searches used before ``published_ts``."""
    must: list[qm.Condition] = []
    if category:
        must.append(qm.FieldCondition(key="categories", match=qm.MatchValue(value=category)))
    if since:
        start = dt.datetime.fromisoformat(since)
        must.append(qm.FieldCondition(key="published", range=qm.DatetimeRange(gte=start)))
    must_not: list[qm.Condition] = []
    if exclude:
        must_not.append(qm.FieldCondition(key="arxiv_id", match=qm.MatchValue(value=exclude)))
    return qm.Filter(must=must, must_not=must_not) if must or must_not else None


@pytest.fixture(scope="module")
def store() -> VectorStore:
    """200 papers; every third written without ``published_ts`` (as before it existed)."""
    rng = np.random.default_rng(3)
    store = VectorStore(load_settings(qdrant_path=":memory:"), DIM, "test")
    store.ensure_collections()
    new_ids, new_vectors, new_payloads = [], [], []
    for n in range(200):
        arxiv_id = f"2501.{n:05d}"
        cats = [CATEGORIES[n % 4]] + (["rare.XX"] if n % 29 == 0 else [])
        payload: dict[str, Any] = {
            "arxiv_id": arxiv_id,
            "title": f"paper {n}",
            "categories": cats,
            "published": DATES[n % len(DATES)],
        }
        vector = rng.standard_normal(DIM).astype(np.float32)
        if n % 3 == 0:  # legacy point: straight to Qdrant, no published_ts
            store.client.upsert(
                store.papers,
                [
                    qm.PointStruct(
                        id=paper_point_id(arxiv_id), vector=vector.tolist(), payload=payload
                    )
                ],
                wait=True,
            )
        else:
            new_ids.append(paper_point_id(arxiv_id))
            new_vectors.append(vector)
            new_payloads.append(payload)
    store.upsert(store.papers, new_ids, np.stack(new_vectors), new_payloads)
    return store


def test_published_ts_is_what_qdrant_compares() -> None:
    assert published_ts("2025-07-01") == dt.datetime(2025, 7, 1, tzinfo=dt.UTC).timestamp()
    assert published_ts("2025-06-30T23:30:00-02:00") == published_ts("2025-07-01T01:30:00")
    assert published_ts(None) is None and published_ts("not a date") is None


def test_new_points_carry_published_ts_and_legacy_ones_do_not(store: VectorStore) -> None:
    records = store.papers_by_id(["2501.00001", "2501.00003"])
    assert records["2501.00001"].payload["published_ts"] == published_ts("2025-06-30")  # type: ignore[index]
    assert "published_ts" not in (records["2501.00003"].payload or {})


@pytest.mark.parametrize("category", [None, "astro-ph.GA", "rare.XX", "none.YY"])
@pytest.mark.parametrize("since", [None, "2025-07-01", "2025-07-01T01:00:00", "2026-01-01"])
@pytest.mark.parametrize("exclude", [None, "2501.00004"])
def test_filtered_search_equals_the_old_filter(
    store: VectorStore, category: str | None, since: str | None, exclude: str | None
) -> None:
    rng = np.random.default_rng(hash((category, since, exclude)) % 1000)
    where = PaperFilter(category, since, exclude)
    for limit in (1, 5, 30):
        vector = rng.standard_normal(DIM).tolist()
        want = store.search(store.papers, vector, limit, old_filter(category, since, exclude))
        fast = store.search_where(store.papers, vector, limit, where)
        server = store.search(store.papers, vector, limit, where.qdrant())  # the fallback
        assert [h.id for h in fast] == [h.id for h in want]
        assert [h.id for h in server] == [h.id for h in want]
        assert all(where.accepts(h.payload) for h in want)
        assert [h.score for h in fast] == pytest.approx([h.score for h in want])


@pytest.fixture
def subs() -> SubscriptionStore:
    store = VectorStore(load_settings(qdrant_path=":memory:"), DIM, "test")
    store.ensure_collections()

    class Encoder:
        name = "fake"
        dim = DIM

        async def aencode(self, texts: list[str]) -> np.ndarray:
            return np.ones((len(texts), DIM), dtype=np.float32) / np.sqrt(DIM)

    subscriptions = SubscriptionStore(Binding(Encoder(), store))  # type: ignore[arg-type]
    subscriptions.ensure_sync()
    return subscriptions


@pytest.mark.parametrize("sorted_here", [1000, 5])
def test_alerts_sorted_in_python_equal_the_order_by_scroll(
    subs: SubscriptionStore, sorted_here: int, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(subscriptions_module, "ALERTS_SORTED_HERE", sorted_here)
    rng = np.random.default_rng(5)

    async def go() -> None:
        ids = [
            (
                await SubscriptionService(subs).create(
                    parse_request({"queries": [f"topic {n}"]}), False
                )
            )["id"]
            for n in range(3)
        ]
        payloads = []
        for sub_id in ids:
            for n in range(40):
                arxiv_id = f"2502.{n:05d}"
                payload: dict[str, Any] = {
                    "alert_id": alert_id(sub_id, arxiv_id),
                    "subscription_id": sub_id,
                    "arxiv_id": arxiv_id,
                    "score": float(rng.uniform()),
                    "created_ts": float(rng.integers(0, 10**9)),
                }
                if n % 4:  # older alerts have no relevance
                    payload["relevance"] = float(rng.uniform())
                payloads.append(payload)
        subs.put_alerts_sync(payloads)
        for sub_id in ids:
            for sort, key in SORT_KEYS.items():
                for limit in (1, 7, 100):
                    records, _ = subs.store.client.scroll(
                        subs.alerts,
                        scroll_filter=qm.Filter(
                            must=[
                                qm.FieldCondition(
                                    key="subscription_id", match=qm.MatchValue(value=sub_id)
                                )
                            ]
                        ),
                        limit=limit,
                        order_by=qm.OrderBy(key=key, direction=qm.Direction.DESC),
                    )
                    want = [r.payload["arxiv_id"] for r in records if r.payload]
                    got = await subs.list_alerts(sub_id, limit, sort)  # type: ignore[arg-type]
                    assert [a["arxiv_id"] for a in got] == want, (sort, limit)
                    assert len(want) == min(limit, 30 if sort == "relevance" else 40)

    asyncio.run(go())


def test_a_new_date_from_a_metadata_change_is_what_since_filters_on() -> None:
    store = VectorStore(load_settings(qdrant_path=":memory:"), DIM, "test")
    store.ensure_collections()
    payload = {"arxiv_id": "2501.00001", "title": "t", "authors": [], "categories": ["gr-qc"]}
    payload |= {"primary_category": "gr-qc", "published": "2025-01-01"}
    store.upsert(store.papers, [paper_point_id("2501.00001")], np.ones((1, DIM)), [payload])
    relabel_paper(store, "2501.00001", {**payload, "published": "2026-02-01"})
    vector = np.ones(DIM).tolist()
    for since, found in (("2026-01-01", 1), ("2026-03-01", 0)):
        where = PaperFilter(since=since)
        assert len(store.search_where(store.papers, vector, 5, where)) == found
        assert len(store.search(store.papers, vector, 5, where.qdrant())) == found


def test_sentences_by_id_equal_the_filtered_scroll() -> None:
    store = VectorStore(load_settings(qdrant_path=":memory:"), DIM, "test")
    store.ensure_collections()
    rng = np.random.default_rng(1)
    # (arxiv id, version, sentences, the paper point's sentence_count)
    for arxiv_id, version, n, count in (
        ("2501.00001", 2, 5, 5),  # by id
        ("2501.00002", 1, 3, None),  # no sentence_count (written before it existed): scroll
        ("2501.00003", 1, 4, 6),  # a count that does not add up: scroll
    ):
        ids = [sentence_point_id(arxiv_id, version, i) for i in reversed(range(n))]
        payloads = [
            {"arxiv_id": arxiv_id, "version": version, "sentence_index": i, "text": f"s{i}"}
            for i in reversed(range(n))
        ]
        store.upsert(store.sentences, ids, rng.standard_normal((n, DIM)), payloads)
        paper = {"arxiv_id": arxiv_id, "version": version}
        if count is not None:
            paper["sentence_count"] = count
        store.upsert(store.papers, [paper_point_id(arxiv_id)], np.ones((1, DIM)), [paper])
        for with_vectors in (True, False):
            want = store.sentences_of_many([arxiv_id], with_vectors=with_vectors)
            with mock.patch.object(
                store, "sentences_of_many", wraps=store.sentences_of_many
            ) as scroll:
                got = store.sentences_of(arxiv_id, with_vectors=with_vectors)
            assert scroll.call_count == (count != n)  # by id where the count adds up
            assert [(r.id, r.payload, r.vector) for r in got] == [
                (r.id, r.payload, r.vector) for r in want
            ]
            assert [r.payload["sentence_index"] for r in got] == list(range(n))  # type: ignore[index]
    assert store.sentences_of("2501.09999") == []


@pytest.mark.parametrize("category", ["astro-ph.GA", "rare.XX"])
def test_a_capped_over_fetch_still_equals_the_old_filter(
    store: VectorStore, category: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(vectorstore, "MAX_OVERFETCH", 40)
    vector = np.random.default_rng(9).standard_normal(DIM).tolist()
    for limit in (5, 30, 60):
        want = store.search(store.papers, vector, limit, old_filter(category, "2025-07-01", None))
        got = store.search_where(store.papers, vector, limit, PaperFilter(category, "2025-07-01"))
        assert [h.id for h in got] == [h.id for h in want]
