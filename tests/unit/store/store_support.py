"""Helpers of the store tests (import as ``from store_support import ...``): a store written
by today's product code, and everything of a store to compare."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm

from services.alerts.feedback import FeedbackRequest, FeedbackStore
from services.alerts.lifecycle import SubscriptionService
from services.alerts.marks import ReadMarks
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionStore
from services.core.settings import Settings, load_settings
from services.embed.pipeline import EmbedPipeline, RawRecord
from services.store.binding import Binding
from services.store.vectorstore import VectorStore

DIM = 16
MODEL = "fake-v1"
NEXT_MODEL = "fake-v2"  # a rollout's collections, not yet behind the aliases


class FakeEncoder:
    """Deterministic unit vectors from a hash of the text: same text, same vector."""

    dim = DIM

    async def aencode(self, texts: list[str]) -> np.ndarray:
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.vstack(rows)


class RecordingClient(QdrantClient):
    """A real qdrant-client that remembers the payload indexes asked of it.

    Local mode keeps no record of them (``payload_schema`` is always empty), so this is how a
    test sees which indexes the product, or a migration, creates.
    """

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.indexes: dict[str, dict[str, Any]] = {}

    def create_payload_index(  # type: ignore[override]
        self, collection_name: str, field_name: str, field_schema: Any = None, **kwargs: Any
    ) -> Any:
        self.indexes.setdefault(collection_name, {})[field_name] = field_schema
        return super().create_payload_index(
            collection_name, field_name, field_schema=field_schema, **kwargs
        )


def release_settings(path: Path) -> Settings:
    return load_settings(qdrant_path=path, data_dir=path.parent / "data")


def write_release_store(path: Path, records: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    """A local-mode store as today's release writes it, at ``path``; returns its indexes.

    Real papers through the embed stage (sentences; papers with the IDF ``lexical`` sparse
    vector), a subscription (interest points with a sparse vector; its metadata and the
    alerts table, payload only), a read mark and a feedback label (payload only, indexed), a
    rollout's collections without aliases, and the aliases of the live version.
    """
    settings = release_settings(path)
    client = RecordingClient(path=str(path))
    store = VectorStore(settings, DIM, MODEL, client=client)
    try:
        store.ensure_collections()
        binding = Binding(FakeEncoder(), store)

        async def no_dead_letters(letter: Any) -> None:
            raise AssertionError(f"dead-lettered: {letter}")

        pipeline = EmbedPipeline(settings, binding, no_dead_letters)
        raw = [
            RawRecord("astro.papers", 0, i, r["arxiv_id"].encode(), json.dumps(r).encode(), 1.0)
            for i, r in enumerate(records)
        ]
        asyncio.run(pipeline.process(raw))
        subs = SubscriptionStore(binding)
        subs.ensure_sync()
        request = {"queries": ["dust in galaxies"], "arxiv_ids": [records[0]["arxiv_id"]]}
        sub = asyncio.run(SubscriptionService(subs).create(parse_request(request), False))
        marks = ReadMarks(binding)
        marks.ensure_sync()
        marks.mark_sync(sub["id"], records[1]["arxiv_id"])
        feedback = FeedbackStore(binding)
        feedback.ensure_sync()
        label = FeedbackRequest(arxiv_id=records[2]["arxiv_id"], label="relevant")
        feedback.put_sync(sub["id"], label)
        store.sibling(NEXT_MODEL, DIM).ensure_collections(set_alias=False)
    finally:
        store.close()
    return client.indexes


def snapshot(client: Any) -> dict[str, Any]:
    """Everything a store holds: each collection's layout and points, and the aliases."""
    collections: dict[str, Any] = {}
    for description in client.get_collections().collections:
        name = description.name
        params = client.get_collection(name).config.params
        points: dict[str, Any] = {}
        offset = None
        while True:
            page, offset = client.scroll(
                name, limit=100, offset=offset, with_payload=True, with_vectors=True
            )
            points.update({str(r.id): (r.payload, vectors_of(r.vector)) for r in page})
            if offset is None:
                break
        collections[name] = {
            "vectors": params.vectors,
            "sparse": params.sparse_vectors,
            "points": points,
        }
    aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}
    return {"collections": collections, "aliases": aliases}


def vectors_of(vector: Any) -> Any:
    """Dense vectors as float32 arrays, sparse ones as (indices, float32 values) tuples."""
    if isinstance(vector, dict):
        return {name: vectors_of(v) for name, v in vector.items()}
    if isinstance(vector, qm.SparseVector):
        return (list(vector.indices), np.asarray(vector.values, dtype=np.float32))
    if isinstance(vector, list):
        return np.asarray(vector, dtype=np.float32)
    return vector


def assert_same_store(want: dict[str, Any], got: dict[str, Any]) -> None:
    """Equal snapshots: the same collections, layouts, ids, payloads and sparse indices, and
    vector values equal to float32 rounding (a cosine collection normalises what it is given,
    which can move the last bit; Edge keeps sparse values as float32, local mode as float64)."""
    assert got["aliases"] == want["aliases"]
    assert sorted(got["collections"]) == sorted(want["collections"])
    for name, collection in want["collections"].items():
        copy = got["collections"][name]
        assert (copy["vectors"], copy["sparse"]) == (collection["vectors"], collection["sparse"])
        assert sorted(copy["points"]) == sorted(collection["points"]), name
        for point_id, (payload, vector) in collection["points"].items():
            copied_payload, copied_vector = copy["points"][point_id]
            assert copied_payload == payload, (name, point_id)
            assert_same_vector(copied_vector, vector, f"{name} {point_id}")


def assert_same_vector(got: Any, want: Any, where: str) -> None:
    if isinstance(want, dict):
        assert isinstance(got, dict) and sorted(got) == sorted(want), where
        for name in want:
            assert_same_vector(got[name], want[name], f"{where} {name!r}")
    elif isinstance(want, tuple):  # sparse
        assert isinstance(got, tuple) and got[0] == want[0], where
        assert_same_vector(got[1], want[1], where)
    elif isinstance(want, np.ndarray):
        assert isinstance(got, np.ndarray) and got.shape == want.shape, where
        assert np.allclose(got, want, rtol=1e-6, atol=1e-7), where
    else:
        assert got == want, where


def assert_same_folders(want: Path, got: Path) -> None:
    """:func:`assert_same_store` of two local-mode folders, each opened and closed here."""
    source, copy = QdrantClient(path=str(want)), QdrantClient(path=str(got))
    try:
        assert_same_store(snapshot(source), snapshot(copy))
    finally:
        source.close()
        copy.close()
