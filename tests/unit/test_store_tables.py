"""Unit tests of the store's payload-only tables, point operations and filter helper (in memory)."""

from __future__ import annotations

import uuid
from collections.abc import Iterator

import numpy as np
import pytest
from qdrant_client import models as qdrant_models

from services.core.ids import interest_point_id, paper_point_id
from services.core.settings import load_settings
from services.store import points
from services.store.binding import Binding
from services.store.models import Range, matching
from services.store.tables import PayloadTable
from services.store.vectorstore import VectorStore

DIM = 4


@pytest.fixture
def store() -> Iterator[VectorStore]:
    vs = VectorStore(load_settings(qdrant_path=":memory:"), DIM, "test")
    vs.ensure_collections()
    yield vs
    vs.close()


def ids(n: int) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"row:{i}")) for i in range(n)]


def test_matching_builds_value_and_any_conditions() -> None:
    flt = matching(subscription_id="s1", arxiv_id=["a", "b"])
    assert flt == qdrant_models.Filter(
        must=[
            qdrant_models.FieldCondition(
                key="subscription_id", match=qdrant_models.MatchValue(value="s1")
            ),
            qdrant_models.FieldCondition(
                key="arxiv_id", match=qdrant_models.MatchAny(any=["a", "b"])
            ),
        ]
    )


def test_a_table_is_created_once_and_holds_payloads_without_vectors(store: VectorStore) -> None:
    table = PayloadTable(store, "astro_things", keyword=["owner"], floats=["rank"])
    assert not table.exists()
    table.ensure()
    table.ensure()  # idempotent (and remembered)
    assert table.exists()
    a, b, c = ids(3)
    table.put(a, {"owner": "x", "rank": 2.0})
    table.put_many([(b, {"owner": "x", "rank": 1.0}), (c, {"owner": "y", "rank": 3.0})])
    table.put_many([])
    assert table.get(a) == {"owner": "x", "rank": 2.0}
    assert table.get(ids(4)[3]) is None
    assert sorted(p["rank"] for p in table.get_many([a, c, ids(4)[3]])) == [2.0, 3.0]
    assert table.get_many([]) == []
    record = store.client.retrieve("astro_things", ids=[a], with_vectors=True)[0]
    assert not record.vector  # payload only, as the collections were before
    assert table.count() == 3 and table.count(matching(owner="x")) == 2


def test_pages_scans_order_and_deletes(store: VectorStore) -> None:
    table = PayloadTable(store, "astro_things", floats=["rank"])
    table.ensure()
    rows = ids(7)
    table.put_many(
        (i, {"owner": "x" if n % 2 else "y", "rank": float(n)}) for n, i in enumerate(rows)
    )
    page, offset = table.page(limit=3)
    assert len(page) == 3 and offset is not None
    assert sorted(p["rank"] for p in table.scan(page=2)) == [float(n) for n in range(7)]
    assert {p["owner"] for p in table.scan(matching(owner="x"), fields=["owner"])} == {"x"}
    assert all(set(p) == {"owner"} for p in table.scan(fields=["owner"]))
    top, _ = table.page(limit=2, order_by="rank", descending=True)
    assert [p["rank"] for p in top] == [6.0, 5.0]
    low, _ = table.page(
        qdrant_models.Filter(must=[qdrant_models.FieldCondition(key="rank", range=Range(gt=1.0))]),
        limit=2,
        order_by="rank",
    )
    assert [p["rank"] for p in low] == [2.0, 3.0]
    table.delete([rows[0]])
    table.delete_where(matching(owner="x"))
    assert sorted(p["rank"] for p in table.scan()) == [2.0, 4.0, 6.0]


def test_a_table_follows_the_live_store_of_a_binding(store: VectorStore) -> None:
    binding = Binding(encoder=None, store=store)  # type: ignore[arg-type]
    table = PayloadTable(lambda: binding.store, "astro_things")
    table.ensure()
    newer = store.sibling("v2", DIM)
    binding.swap(None, newer)  # type: ignore[arg-type]
    assert table.store is newer
    table.put(ids(1)[0], {"k": 1})
    assert table.count() == 1


def test_point_operations_on_papers_and_interests(store: VectorStore) -> None:
    vectors = np.eye(DIM, dtype=np.float32)[:2]
    store.upsert(
        store.sentences,
        ids(2),
        vectors,
        [{"arxiv_id": "2501.00001", "sentence_index": i, "text": f"s{i}"} for i in range(2)],
    )
    store.upsert(
        store.papers, [paper_point_id("2501.00001")], vectors[:1], [{"arxiv_id": "2501.00001"}]
    )
    points.set_paper_fields(store, "2501.00001", {"title": "T"})
    payloads, offset = points.sentence_page(
        store, limit=10, fields=["title"], arxiv_ids=["2501.00001"]
    )
    assert payloads == [{"title": "T"}, {"title": "T"}] and offset is None
    assert points.sentence_page(store, limit=10, arxiv_ids=["other"])[0] == []
    assert store.papers_by_id(["2501.00001"])["2501.00001"].payload == {
        "arxiv_id": "2501.00001",
        "title": "T",
    }

    assert not points.has_interests(store)
    sub = [interest_point_id("s1", i) for i in range(2)]
    store.upsert(
        store.subscriptions,
        sub,
        vectors,
        [{"subscription_id": "s1", "interest": f"q{i}"} for i in range(2)],
        [([3, 5], [0.6, 0.8]), None],
    )
    assert points.has_interests(store)
    points.set_interest_fields(store, "s1", {"threshold": 0.3})
    records = points.interests_by_id(store, sub[:1], ["threshold"])
    assert records[0].payload == {"threshold": 0.3} and records[0].vector
    page, _ = points.interest_page(store, lexical=True)
    lexical = [points.lexical_of(r) for r in page]
    assert lexical.count(None) == 1
    (indices, values) = next(v for v in lexical if v is not None)
    assert indices == [3, 5] and values == pytest.approx([0.6, 0.8])  # Edge keeps float32
    answers = points.percolate(
        store,
        [
            points.dense_query(vectors[1], 1, ["interest"]),
            points.lexical_query(([5], [1.0]), 5, ["interest"]),
        ],
    )
    assert [[h.payload for h in hits] for hits in answers] == [
        [{"interest": "q1"}],
        [{"interest": "q0"}],
    ]
    points.delete_interest_points(store, sub[1:])
    assert store.count(store.subscriptions) == 1
    points.delete_interests(store, "s1")
    assert not points.has_interests(store)
