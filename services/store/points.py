"""Reads and writes of one model version's points beyond ``VectorStore``'s own: payload edits,
deletes, interest-vector pages, percolation batches and sentence pages.

Functions of a :class:`~services.store.vectorstore.VectorStore` (the collections of one
model version); all block, so run them with ``store.run``.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np
from qdrant_client import models as qm

from services.core.ids import paper_point_id
from services.store.models import Fields, Payload, matching
from services.store.vectorstore import LEXICAL, Sparse, VectorStore, sparse_vector


# papers and sentences ----------------------------------------------------------------------
def set_paper_fields(store: VectorStore, arxiv_id: str, fields: Payload) -> None:
    """Overwrite these payload fields of a paper's sentence points, then of its paper point.

    The paper point goes last, as it marks the paper done.
    """
    store.client.set_payload(
        store.sentences, payload=fields, points=matching(arxiv_id=arxiv_id), wait=True
    )
    store.client.set_payload(
        store.papers, payload=fields, points=[paper_point_id(arxiv_id)], wait=True
    )


def sentence_page(
    store: VectorStore,
    *,
    limit: int,
    offset: Any = None,
    fields: Fields = True,
    arxiv_ids: Sequence[str] | None = None,
) -> tuple[list[Payload], Any]:
    """Payloads of one page of sentence points (of these papers only, when given) and the
    offset of the next page (None: the last)."""
    records, after = store.client.scroll(
        store.sentences,
        scroll_filter=matching(arxiv_id=list(arxiv_ids)) if arxiv_ids is not None else None,
        limit=limit,
        offset=offset,
        with_payload=fields,
        with_vectors=False,
    )
    return [r.payload or {} for r in records], after


# interest vectors (the subscriptions collection) -------------------------------------------
def has_interests(store: VectorStore) -> bool:
    """Whether any interest vector exists (an approximate count: cheap on a server)."""
    return int(store.client.count(store.subscriptions, exact=False).count) > 0


def set_interest_fields(store: VectorStore, subscription_id: str, fields: Payload) -> None:
    """Overwrite these payload fields of every interest point of one subscription."""
    store.client.set_payload(
        store.subscriptions, fields, points=matching(subscription_id=subscription_id), wait=True
    )


def delete_interest_points(store: VectorStore, point_ids: Sequence[str]) -> None:
    """Remove these interest points (a subscription that now has fewer)."""
    store.client.delete(
        store.subscriptions, qm.PointIdsList(points=list[Any](point_ids)), wait=True
    )


def delete_interests(store: VectorStore, subscription_id: str) -> None:
    """Remove every interest point of one subscription, in every model version's collection.

    The live version's first (it is matched no more); then the versions a rollout left
    behind or is filling, so no collection keeps the vectors of a deleted subscription.
    """
    where = qm.FilterSelector(filter=matching(subscription_id=subscription_id))
    store.client.delete(store.subscriptions, where, wait=True)
    others = f"{store.alias('subscriptions')}__"
    for found in store.client.get_collections().collections:
        if found.name.startswith(others) and found.name != store.subscriptions:
            store.client.delete(found.name, where, wait=True)


def interests_by_id(
    store: VectorStore, point_ids: Sequence[str], fields: Fields = True
) -> list[qm.Record]:
    """These interest points, with their vectors (see ``vectorstore.dense_of``)."""
    return store.client.retrieve(
        store.subscriptions, ids=list(point_ids), with_payload=fields, with_vectors=True
    )


def interest_page(
    store: VectorStore, offset: Any = None, limit: int = 256, *, lexical: bool = False
) -> tuple[list[qm.Record], Any]:
    """One page of interest points with their payloads and, with ``lexical``, their sparse
    vector (read it with :func:`lexical_of`); the offset of the next page (None: last)."""
    return store.client.scroll(
        store.subscriptions,
        limit=limit,
        offset=offset,
        with_payload=True,
        with_vectors=[LEXICAL] if lexical else False,
    )


def lexical_of(record: qm.Record) -> Sparse | None:
    """The ``lexical`` sparse vector of a point read with it, as (indices, values)."""
    vector = record.vector
    found = vector.get(LEXICAL) if isinstance(vector, dict) else None
    return (list(found.indices), list(found.values)) if isinstance(found, qm.SparseVector) else None


# percolation: many queries into the interest vectors, one request --------------------------
def dense_query(
    vector: Sequence[float] | np.ndarray, limit: int, fields: Fields = True
) -> qm.QueryRequest:
    """A query of a :func:`percolate` batch: the nearest interest vectors of a dense vector."""
    query = vector.tolist() if isinstance(vector, np.ndarray) else list(vector)
    return qm.QueryRequest(query=query, limit=limit, with_payload=fields)


def lexical_query(terms: Sparse, limit: int, fields: Fields = True) -> qm.QueryRequest:
    """A query of a :func:`percolate` batch: the best ``lexical`` sparse vectors for terms."""
    return qm.QueryRequest(
        query=sparse_vector(terms), using=LEXICAL, limit=limit, with_payload=fields
    )


def percolate(store: VectorStore, queries: Sequence[qm.QueryRequest]) -> list[list[qm.ScoredPoint]]:
    """Run these queries against the interest vectors in one request; hits per query."""
    answers = store.client.query_batch_points(store.subscriptions, list(queries))
    return [answer.points for answer in answers]


def percolate_hits(
    store: VectorStore, queries: Sequence[qm.QueryRequest]
) -> list[list[tuple[float, Payload]]]:
    """:func:`percolate` as (score, payload) pairs per query (on Edge without an object per
    hit: the alert matcher reads thousands of hits per paper)."""
    fast = getattr(store.client, "query_batch_hits", None)
    if fast is not None:
        return fast(store.subscriptions, list(queries))  # type: ignore[no-any-return]
    return [[(float(p.score), p.payload or {}) for p in hits] for hits in percolate(store, queries)]
