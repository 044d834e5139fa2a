"""Congruence: every Qdrant operation the store uses gives the same answer on both engines.

qdrant-client's local mode stands in for the server's API (it is the reference qdrant-client
checks its own remote client against); ``EdgeClient`` is the embedded engine. Each test runs
one scenario on both and compares what the product reads back: ids, payloads, vectors (to
float precision), scores (to 1e-5), counts, orders and errors.
"""

from __future__ import annotations

import datetime as dt
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from services.core.settings import load_settings
from services.store.edge import EdgeClient
from services.store.vectorstore import LEXICAL, PaperFilter, VectorStore

DIM = 16
N = 60
CATEGORIES = ("astro-ph.GA", "astro-ph.SR", "astro-ph.CO")


def pid(i: int) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, f"point-{i}"))


def unit(rng: np.random.Generator, n: int) -> np.ndarray:
    v = rng.standard_normal((n, DIM)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


VECTORS = unit(np.random.default_rng(3), N)
QUERIES = unit(np.random.default_rng(4), 5)


def payload(i: int) -> dict[str, Any]:
    day = dt.datetime(2026, 1, 1, tzinfo=dt.UTC) + dt.timedelta(days=i % 40)
    return {
        "arxiv_id": f"2601.{i // 3:05d}",
        "version": 1 + i % 2,
        "sentence_index": i % 3,
        "categories": [CATEGORIES[i % 3]] + (["astro-ph.HE"] if i % 5 == 0 else []),
        "published": day.isoformat().replace("+00:00", "Z"),
        "published_ts": day.timestamp(),
        "created_ts": float(1000 + (i * 7) % N),
        "text": f"sentence {i}",
    }


def sparse(i: int) -> qm.SparseVector:
    return qm.SparseVector(indices=[i % 7, 10 + i % 11, 40 + i], values=[1.0, 0.5, 0.25])


@pytest.fixture(params=["local", "edge"])
def engine(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Any]:
    client: Any = QdrantClient(":memory:") if request.param == "local" else EdgeClient(tmp_path)
    yield client
    client.close()


def build(client: Any, *, with_sparse: bool = True) -> None:
    client.create_collection(
        "points",
        vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE),
        sparse_vectors_config={LEXICAL: qm.SparseVectorParams(modifier=qm.Modifier.IDF)}
        if with_sparse
        else None,
    )
    for field in ("arxiv_id", "categories"):
        client.create_payload_index("points", field, qm.PayloadSchemaType.KEYWORD)
    client.create_payload_index("points", "published", qm.PayloadSchemaType.DATETIME)
    for field in ("published_ts", "created_ts"):
        client.create_payload_index("points", field, qm.PayloadSchemaType.FLOAT)
    client.upsert(
        "points",
        points=[
            qm.PointStruct(
                id=pid(i),
                vector={"": VECTORS[i].tolist(), LEXICAL: sparse(i)}
                if with_sparse
                else VECTORS[i].tolist(),
                payload=payload(i),
            )
            for i in range(N)
        ],
        wait=True,
    )


def both(tmp_path: Path, scenario: Callable[[Any], Any]) -> tuple[Any, Any]:
    """The scenario's result on local mode and on Edge."""
    local = QdrantClient(":memory:")
    edge = EdgeClient(tmp_path / "edge")
    try:
        return scenario(local), scenario(edge)
    finally:
        local.close()
        edge.close()


def scored(points: list[qm.ScoredPoint]) -> list[tuple[str, float]]:
    return [(str(p.id), float(p.score)) for p in points]


def same_hits(a: list[tuple[str, float]], b: list[tuple[str, float]], tol: float = 2e-5) -> bool:
    """The same ranking up to float rounding: equal scores in order, the same point for
    each score, except that points tied at a score may come in any order (and a tie at the
    cut may keep a different one of them)."""
    assert len(a) == len(b)
    assert np.allclose([s for _, s in a], [s for _, s in b], atol=tol)
    first, second = dict(a), dict(b)
    cut = min((s for _, s in a), default=0.0)
    for point in set(first) | set(second):
        if point in first and point in second:
            assert abs(first[point] - second[point]) <= tol, point
        else:
            assert abs(first.get(point, second.get(point, 0.0)) - cut) <= tol, point
    return True


def dense(vector: Any) -> list[float]:
    v = vector[""] if isinstance(vector, dict) else vector
    return [round(float(x), 5) for x in v]


# collections, indexes, aliases ----------------------------------------------------------
def test_collections_and_their_config(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        client.create_collection("table", vectors_config={})
        info = client.get_collection("points")
        params = info.config.params
        return (
            sorted(c.name for c in client.get_collections().collections),
            client.collection_exists("points"),
            client.collection_exists("nope"),
            params.vectors.size,
            params.vectors.distance,
            {k: v.modifier for k, v in (params.sparse_vectors or {}).items()},
            client.get_collection("table").config.params.sparse_vectors or {},
            info.points_count,
            client.delete_collection("table"),
            client.collection_exists("table"),
        )

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert local[0] == ["points", "table"] and local[3] == DIM


def test_edge_reports_its_payload_indexes(tmp_path: Path) -> None:
    client = EdgeClient(tmp_path)
    try:
        build(client)
        schema = client.get_collection("points").payload_schema
    finally:
        client.close()
    assert {k: v.data_type for k, v in schema.items()} == {
        "arxiv_id": qm.PayloadSchemaType.KEYWORD,
        "categories": qm.PayloadSchemaType.KEYWORD,
        "published": qm.PayloadSchemaType.DATETIME,
        "published_ts": qm.PayloadSchemaType.FLOAT,
        "created_ts": qm.PayloadSchemaType.FLOAT,
    }


def test_creating_an_existing_collection_fails_on_both(engine: Any) -> None:
    engine.create_collection("t", vectors_config={})
    with pytest.raises(ValueError, match="already exists"):
        engine.create_collection("t", vectors_config={})


def test_aliases_switch_atomically_and_resolve(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        client.create_collection(
            "other", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)
        )
        create = qm.CreateAliasOperation(
            create_alias=qm.CreateAlias(collection_name="points", alias_name="alias")
        )
        client.update_collection_aliases(change_aliases_operations=[create])
        first = (client.count("alias", exact=True).count, client.get_aliases().aliases)
        switch = [
            qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name="alias")),
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name="other", alias_name="alias")
            ),
        ]
        client.update_collection_aliases(change_aliases_operations=switch)
        return first, client.count("alias", exact=True).count, client.get_aliases().aliases

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert local[0][0] == N and local[1] == 0


def test_aliases_and_points_survive_a_reopen(tmp_path: Path) -> None:
    client = EdgeClient(tmp_path)
    build(client)
    client.update_collection_aliases(
        change_aliases_operations=[
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name="points", alias_name="alias")
            )
        ]
    )
    client.close()
    again = EdgeClient(tmp_path)
    try:
        assert again.count("alias").count == N
        assert {a.alias_name: a.collection_name for a in again.get_aliases().aliases} == {
            "alias": "points"
        }
    finally:
        again.close()


def test_one_process_at_a_time(tmp_path: Path) -> None:
    first = EdgeClient(tmp_path)
    try:
        with pytest.raises(RuntimeError, match="already accessed"):
            EdgeClient(tmp_path)
    finally:
        first.close()
    EdgeClient(tmp_path).close()  # free again once closed


# reads ----------------------------------------------------------------------------------
def test_retrieve_with_payload_selectors_and_vectors(tmp_path: Path) -> None:
    ids = [pid(4), pid(9), str(uuid.uuid4())]  # the last one does not exist

    def scenario(client: Any) -> Any:
        build(client)
        full = client.retrieve("points", ids=ids, with_payload=True, with_vectors=True)
        some = client.retrieve("points", ids=ids, with_payload=["arxiv_id", "text"])
        return (
            sorted((str(r.id), r.payload, dense(r.vector)) for r in full),
            sorted((str(r.id), r.payload, r.vector) for r in some),
            sorted(str(r.id) for r in client.retrieve("points", ids=ids, with_payload=False)),
        )

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert len(local[0]) == 2


def test_sparse_vectors_read_back(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        (record,) = client.retrieve("points", ids=[pid(3)], with_vectors=True)
        lexical = record.vector[LEXICAL]
        return sorted(zip(lexical.indices, lexical.values, strict=True))

    local, edge = both(tmp_path, scenario)
    assert local == edge == [(3, 1.0), (13, 0.5), (43, 0.25)]


FILTERS = {
    "keyword": qm.Filter(
        must=[qm.FieldCondition(key="categories", match=qm.MatchValue(value="astro-ph.GA"))]
    ),
    "any": qm.Filter(
        must=[
            qm.FieldCondition(key="arxiv_id", match=qm.MatchAny(any=["2601.00001", "2601.00007"]))
        ]
    ),
    "range and not": qm.Filter(
        must=[qm.FieldCondition(key="sentence_index", range=qm.Range(lt=2))],
        must_not=[qm.FieldCondition(key="version", match=qm.MatchValue(value=2))],
    ),
    "datetime": qm.Filter(
        must=[
            qm.FieldCondition(key="published", range=qm.DatetimeRange(gte=dt.datetime(2026, 1, 20)))
        ]
    ),
    "should nested": qm.Filter(
        should=[
            qm.FieldCondition(key="published_ts", range=qm.Range(gte=1_769_000_000.0)),
            qm.Filter(
                must=[
                    qm.IsEmptyCondition(is_empty=qm.PayloadField(key="missing")),
                    qm.FieldCondition(key="categories", match=qm.MatchValue(value="astro-ph.HE")),
                ]
            ),
        ]
    ),
}


@pytest.mark.parametrize("name", sorted(FILTERS))
def test_filters_count_scroll_and_search_alike(tmp_path: Path, name: str) -> None:
    flt = FILTERS[name]

    def scenario(client: Any) -> Any:
        build(client)
        page, _ = client.scroll("points", scroll_filter=flt, limit=N, with_payload=["text"])
        hits = client.query_points(
            "points", query=QUERIES[0].tolist(), query_filter=flt, limit=7, with_payload=True
        ).points
        return (
            client.count("points", count_filter=flt, exact=True).count,
            sorted(str(r.id) for r in page),
            scored(hits),
        )

    local, edge = both(tmp_path, scenario)
    assert local[:2] == edge[:2] and same_hits(local[2], edge[2])
    assert 0 < local[0] < N


def test_scroll_pages_cover_everything_once(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        seen: list[str] = []
        offset = None
        while True:
            page, offset = client.scroll("points", limit=7, offset=offset, with_payload=False)
            seen.extend(str(r.id) for r in page)
            if offset is None:
                return seen

    local, edge = both(tmp_path, scenario)
    assert sorted(local) == sorted(edge) == sorted(pid(i) for i in range(N))
    assert len(edge) == N


def test_scroll_ordered_by_a_payload_field(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        out = []
        for direction in (qm.Direction.ASC, qm.Direction.DESC):
            page, offset = client.scroll(
                "points",
                scroll_filter=FILTERS["keyword"],
                limit=5,
                with_payload=["created_ts"],
                order_by=qm.OrderBy(key="created_ts", direction=direction),
            )
            out.append(([r.payload["created_ts"] for r in page], offset))
        return out

    local, edge = both(tmp_path, scenario)
    assert local == edge


def test_dense_search_scores_and_threshold(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        return [
            scored(
                client.query_points(
                    "points", query=q.tolist(), limit=10, score_threshold=0.2, with_payload=False
                ).points
            )
            for q in QUERIES
        ]

    local, edge = both(tmp_path, scenario)
    assert all(same_hits(a, b) for a, b in zip(local, edge, strict=True))
    assert any(local)


def test_sparse_search_uses_the_idf_modifier(tmp_path: Path) -> None:
    query = qm.SparseVector(indices=[2, 12, 45], values=[1.0, 1.0, 1.0])

    def scenario(client: Any) -> Any:
        build(client)
        return scored(client.query_points("points", query=query, using=LEXICAL, limit=10).points)

    local, edge = both(tmp_path, scenario)
    assert same_hits(local, edge, tol=1e-4)
    assert local


def test_hybrid_prefetch_with_rrf(tmp_path: Path) -> None:
    query = qm.SparseVector(indices=[41, 52, 63], values=[3.0, 2.0, 1.5])  # no ties

    def scenario(client: Any) -> Any:
        build(client)
        found = client.query_points(
            "points",
            prefetch=[
                qm.Prefetch(query=QUERIES[1].tolist(), limit=20),
                qm.Prefetch(query=query, using=LEXICAL, limit=20),
            ],
            query=qm.FusionQuery(fusion=qm.Fusion.RRF),
            limit=10,
        )
        return scored(found.points)

    local, edge = both(tmp_path, scenario)
    assert same_hits(local, edge)
    assert len(local) == 10


def test_query_batch_answers_each_request(tmp_path: Path) -> None:
    requests = [
        qm.QueryRequest(query=q.tolist(), limit=4, with_payload=["arxiv_id"]) for q in QUERIES
    ] + [
        qm.QueryRequest(query=qm.SparseVector(indices=[3], values=[1.0]), using=LEXICAL, limit=3),
        qm.QueryRequest(query=QUERIES[0].tolist(), limit=4, filter=FILTERS["keyword"]),
    ]

    def scenario(client: Any) -> Any:
        build(client)
        answers = client.query_batch_points("points", requests)
        return [
            (scored(answer.points), {str(p.id): p.payload for p in answer.points})
            for answer in answers
        ]

    local, edge = both(tmp_path, scenario)
    assert len(local) == len(edge) == len(requests)
    for (hits_l, payloads_l), (hits_e, payloads_e) in zip(local, edge, strict=True):
        assert same_hits(hits_l, hits_e, tol=1e-4)
        assert all(payloads_l[p] == payloads_e[p] for p in set(payloads_l) & set(payloads_e))


# writes ---------------------------------------------------------------------------------
def test_batch_upsert_overwrites_by_id(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client, with_sparse=False)
        client.upsert(
            "points",
            points=qm.Batch(
                ids=[pid(0), pid(N + 1)],
                vectors=[VECTORS[1].tolist(), VECTORS[2].tolist()],
                payloads=[{"arxiv_id": "x"}, {"arxiv_id": "y"}],
            ),
            wait=True,
        )
        found = client.retrieve("points", ids=[pid(0), pid(N + 1)], with_vectors=True)
        return client.count("points").count, sorted(
            (str(r.id), r.payload, dense(r.vector)) for r in found
        )

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert local[0] == N + 1


def test_payload_only_tables(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        client.create_collection("table", vectors_config={})
        client.create_payload_index("table", "subscription_id", qm.PayloadSchemaType.KEYWORD)
        client.upsert(
            "table",
            points=[
                qm.PointStruct(id=pid(i), vector={}, payload={"subscription_id": f"s{i % 3}"})
                for i in range(9)
            ],
            wait=True,
        )
        by_sub = qm.Filter(
            must=[qm.FieldCondition(key="subscription_id", match=qm.MatchValue(value="s1"))]
        )
        client.delete("table", qm.FilterSelector(filter=by_sub), wait=True)
        client.delete("table", qm.PointIdsList(points=[pid(0)]), wait=True)
        page, _ = client.scroll("table", limit=100, with_vectors=True)
        return sorted((str(r.id), r.payload, r.vector or {}) for r in page)

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert len(local) == 5


def test_set_payload_by_ids_and_by_filter(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        client.set_payload("points", {"digest": "d"}, points=[pid(1), pid(2)], wait=True)
        client.set_payload("points", {"title": "t"}, points=FILTERS["any"], wait=True)
        page, _ = client.scroll("points", limit=N, with_payload=["digest", "title"])
        return sorted((str(r.id), r.payload) for r in page if r.payload)

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert len(local) == 8


def test_delete_by_filter_and_by_ids(tmp_path: Path) -> None:
    def scenario(client: Any) -> Any:
        build(client)
        client.delete("points", qm.FilterSelector(filter=FILTERS["range and not"]), wait=True)
        client.delete("points", [pid(5), pid(8)], wait=True)
        return client.count("points").count, sorted(
            str(r.id) for r in client.scroll("points", limit=N)[0]
        )

    local, edge = both(tmp_path, scenario)
    assert local == edge
    assert local[0] < N


# the product's VectorStore on both --------------------------------------------------------
def store_scenario(vs: VectorStore) -> Any:
    ids = [pid(i) for i in range(N)]
    vs.upsert(vs.sentences, ids, VECTORS, [payload(i) for i in range(N)])
    papers = [f"2601.{i:05d}" for i in range(N // 3)]
    from services.core.ids import paper_point_id

    vs.upsert(
        vs.papers,
        [paper_point_id(a) for a in papers],
        VECTORS[: len(papers)],
        [{**payload(3 * i), "arxiv_id": a} for i, a in enumerate(papers)],
        lexical=[([i, 100 + i], [1.0, 0.5]) for i in range(len(papers))],
    )
    vs.delete_stale_sentences("2601.00001", 2, 1)
    where = PaperFilter(category="astro-ph.SR", since="2026-01-10")
    return (
        vs.count(vs.sentences),
        [(h.id, h.score) for h in vs.search(vs.sentences, QUERIES[0], 8)],
        [(h.id, h.score) for h in vs.search_where(vs.sentences, QUERIES[1], 5, where)],
        sorted(vs.papers_by_id(papers[:4], with_vectors=True)),
        [(r.payload or {})["sentence_index"] for r in vs.sentences_of_many(["2601.00002"])],
        vs.has_lexical("papers"),
        sorted(vs.aliases().items()),
    )


def test_vector_store_is_congruent(tmp_path: Path) -> None:
    answers = []
    for engine_name in ("local", "edge"):
        settings = load_settings(
            data_dir=tmp_path, qdrant_engine=engine_name, qdrant_path=str(tmp_path / engine_name)
        )
        vs = VectorStore(settings, DIM, "test")
        try:
            vs.ensure_collections()
            answers.append(store_scenario(vs))
        finally:
            vs.close()
    local, edge = answers
    assert local[0] == edge[0] and local[3:] == edge[3:]
    assert same_hits(local[1], edge[1]) and same_hits(local[2], edge[2])
    assert local[0] == N - 2  # 2601.00001's version-1 sentences are gone


@pytest.mark.parametrize("engine_name", ["local", "edge"])
def test_a_store_reopens_with_everything(tmp_path: Path, engine_name: str) -> None:
    settings = load_settings(
        data_dir=tmp_path, qdrant_engine=engine_name, qdrant_path=str(tmp_path / "q")
    )
    first = VectorStore(settings, DIM, "test")
    try:
        first.ensure_collections()
        first.upsert(first.sentences, [pid(0)], VECTORS[:1], [payload(0)])
    finally:
        first.close()
    again = VectorStore(settings, DIM, "test")
    try:
        again.ensure_collections()
        assert again.count(again.sentences) == 1
        assert again.aliases()[again.alias("sentences")] == again.sentences
    finally:
        again.close()
