"""Papers a reader marked as read, per subscription (payload-only ``<prefix>_read`` collection).

Kept apart from the relevance labels (``services.alerts.feedback``): "read" says nothing
about relevance, and a paper may be both read and relevant. One point per (subscription,
paper), so marking twice adds nothing.
"""

from __future__ import annotations

import uuid

from services.alerts.feedback import by_subscription
from services.alerts.records import per_subscription
from services.core.ids import NAMESPACE
from services.core.schemas import utcnow
from services.store.binding import Binding
from services.store.tables import PayloadTable
from services.store.vectorstore import VectorStore

MAX_LISTED = 10_000


def marks_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_read"


class ReadMarks:
    """Methods named ``*_sync`` block: run them with ``store.run``."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.name = marks_collection(binding.store)
        self.table = PayloadTable(lambda: binding.store, self.name, keyword=["subscription_id"])

    def ensure_sync(self) -> None:
        self.table.ensure()

    def mark_sync(self, subscription_id: str, arxiv_id: str) -> None:
        self.table.put(
            str(uuid.uuid5(NAMESPACE, f"read:{subscription_id}:{arxiv_id}")),
            {"subscription_id": subscription_id, "arxiv_id": arxiv_id, "at": utcnow().isoformat()},
        )

    def read_sync(self, subscription_id: str) -> set[str]:
        payloads, _ = self.table.page(by_subscription([subscription_id]), limit=MAX_LISTED)
        return {str(p.get("arxiv_id")) for p in payloads}


@per_subscription("read marks")
def forget_marks(store: VectorStore, subscription_id: str) -> None:
    table = PayloadTable(store, marks_collection(store))
    if table.exists():
        table.delete_where(by_subscription([subscription_id]))
