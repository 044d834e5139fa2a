"""Papers a reader marked as read, per subscription (payload-only ``<prefix>_read`` collection).

Kept apart from the relevance labels (``services.alerts.feedback``): "read" says nothing
about relevance, and a paper may be both read and relevant. One point per (subscription,
paper), so marking twice adds nothing.
"""

from __future__ import annotations

import uuid

from qdrant_client import models as qm

from services.alerts.feedback import by_subscription
from services.core.ids import NAMESPACE
from services.core.schemas import utcnow
from services.store.binding import Binding

MAX_LISTED = 10_000


class ReadMarks:
    """Methods named ``*_sync`` block: run them with ``store.run``."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.name = f"{binding.store.settings.collection_prefix}_read"

    def ensure_sync(self) -> None:
        client = self.binding.store.client
        if not client.collection_exists(self.name):
            client.create_collection(self.name, vectors_config={})
            client.create_payload_index(self.name, "subscription_id", qm.PayloadSchemaType.KEYWORD)

    def mark_sync(self, subscription_id: str, arxiv_id: str) -> None:
        point = qm.PointStruct(
            id=str(uuid.uuid5(NAMESPACE, f"read:{subscription_id}:{arxiv_id}")),
            vector={},
            payload={
                "subscription_id": subscription_id,
                "arxiv_id": arxiv_id,
                "at": utcnow().isoformat(),
            },
        )
        self.binding.store.client.upsert(self.name, [point], wait=True)

    def read_sync(self, subscription_id: str) -> set[str]:
        records, _ = self.binding.store.client.scroll(
            self.name,
            scroll_filter=by_subscription([subscription_id]),
            limit=MAX_LISTED,
            with_payload=True,
        )
        return {str((r.payload or {}).get("arxiv_id")) for r in records}

    def delete_sync(self, subscription_id: str) -> None:
        self.binding.store.client.delete(
            self.name, qm.FilterSelector(filter=by_subscription([subscription_id])), wait=True
        )
