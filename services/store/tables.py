"""Payload-only tables: state, metadata and labels kept as points without vectors, by id.

Subscriptions' metadata and alerts, feedback labels, read marks, digest state, the fitted
subscription models and the model registry are such tables. They are not model-versioned
(one per deployment, ``<prefix>_<what>``, no alias), so they belong to the store's engine
rather than to one model version's collections. A :class:`PayloadTable` creates its
collection and payload indexes once (:meth:`~PayloadTable.ensure`), writes and reads whole
payloads by point id, and reads or clears them by filter.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable, Iterator, Sequence
from typing import Any

from qdrant_client import models as qm

from services.store.models import Fields, Payload
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)


class PayloadTable:
    """One payload-only collection. Every method blocks: run it with ``VectorStore.run``.

    Args:
        store: the store whose engine holds the table, or a function that returns the live
            one (a rollout swaps a binding's store; all versions share one engine).
        name: the collection's name.
        keyword: payload fields given a keyword index when the table is created.
        floats: payload fields given a float index (filters, ranges, ``order_by``).
    """

    def __init__(
        self,
        store: VectorStore | Callable[[], VectorStore],
        name: str,
        *,
        keyword: Sequence[str] = (),
        floats: Sequence[str] = (),
    ) -> None:
        self._store = store
        self.name = name
        self.keyword = tuple(keyword)
        self.floats = tuple(floats)
        self._ensured: object | None = None  # the engine the table is known to exist in

    @property
    def store(self) -> VectorStore:
        return self._store if isinstance(self._store, VectorStore) else self._store()

    # lifecycle -------------------------------------------------------------
    def exists(self) -> bool:
        """Whether the collection exists (readers that must not create it ask first)."""
        return bool(self.store.client.collection_exists(self.name))

    def ensure(self) -> None:
        """Create the collection and its payload indexes where it is missing (idempotent).

        Remembers that it did, so a caller on a hot path may call it every time.
        """
        client = self.store.client
        if self._ensured is client:
            return
        if not client.collection_exists(self.name):
            client.create_collection(self.name, vectors_config={})
            for field in self.keyword:
                client.create_payload_index(self.name, field, qm.PayloadSchemaType.KEYWORD)
            for field in self.floats:
                client.create_payload_index(self.name, field, qm.PayloadSchemaType.FLOAT)
            log.info("created collection %s", self.name)
        self._ensured = client

    # writes ----------------------------------------------------------------
    def put(self, point_id: str, payload: Payload) -> None:
        """Write one payload under its id (replacing what was there); waits until applied."""
        self.put_many([(point_id, payload)])

    def put_many(self, items: Iterable[tuple[str, Payload]]) -> None:
        """:meth:`put` for several (id, payload) pairs, in one request."""
        points = [qm.PointStruct(id=i, vector={}, payload=p) for i, p in items]
        if points:
            self.store.client.upsert(self.name, points, wait=True)

    def delete(self, point_ids: Sequence[str]) -> None:
        """Remove these points (absent ones are no error)."""
        self.store.client.delete(self.name, qm.PointIdsList(points=list(point_ids)), wait=True)

    def delete_where(self, where: qm.Filter) -> None:
        """Remove every point that ``where`` matches."""
        self.store.client.delete(self.name, qm.FilterSelector(filter=where), wait=True)

    # reads -----------------------------------------------------------------
    def get(self, point_id: str) -> Payload | None:
        """The payload stored under ``point_id``; None when there is none (or it is empty)."""
        found = self.get_many([point_id])
        return found[0] if found and found[0] else None

    def get_many(self, point_ids: Sequence[str], fields: Fields = True) -> list[Payload]:
        """The payloads (or only ``fields`` of them) of those of these points that exist, in
        no particular order.

        Keyed by nothing: an id reads back normalised (a hex UUID with dashes), so callers
        key the payloads by a field of their own.
        """
        if not point_ids:
            return []
        records = self.store.client.retrieve(self.name, ids=list(point_ids), with_payload=fields)
        return [r.payload or {} for r in records]

    def page(
        self,
        where: qm.Filter | None = None,
        *,
        limit: int,
        offset: Any = None,
        fields: Fields = True,
        order_by: str | None = None,
        descending: bool = False,
    ) -> tuple[list[Payload], Any]:
        """One page of payloads that ``where`` matches and the offset of the next (None: last).

        Args:
            order_by: a float-indexed field to read in its order instead of by id (points
                without it are left out); then there is no next page.
        """
        ordered: dict[str, Any] = {}  # no order_by argument at all unless asked for
        if order_by:
            direction = qm.Direction.DESC if descending else qm.Direction.ASC
            ordered["order_by"] = qm.OrderBy(key=order_by, direction=direction)
        records, after = self.store.client.scroll(
            self.name,
            scroll_filter=where,
            limit=limit,
            offset=offset,
            with_payload=fields,
            **ordered,
        )
        return [r.payload or {} for r in records], after

    def scan(
        self, where: qm.Filter | None = None, *, fields: Fields = True, page: int = 1000
    ) -> Iterator[Payload]:
        """Every payload that ``where`` matches, read ``page`` at a time."""
        offset: Any = None
        while True:
            payloads, offset = self.page(where, limit=page, offset=offset, fields=fields)
            yield from payloads
            if offset is None:
                return

    def count(self, where: qm.Filter | None = None) -> int:
        """Exactly how many points ``where`` matches."""
        return self.store.count(self.name, where)
