"""The registry of per-subscription records: every table that holds a record naming a
subscription says here how to forget it.

A module that keeps such records (interests, metadata, alerts, feedback, models, read marks,
digest state…) registers a function with :func:`per_subscription` next to the table it
forgets. Deleting a subscription (:class:`services.alerts.lifecycle.SubscriptionService`)
calls :func:`forget_sync`, which runs every registered function, so a new table is cleared
on delete as soon as it registers; ``tests/integration/test_lifecycle_e2e.py`` scans every
collection of a store after a delete and fails on one that did not.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from services.store.vectorstore import VectorStore

# ``forget(store, subscription_id)``: remove what this table holds about the subscription
# (blocking; nothing to remove, or no table yet, is no error).
Forget = Callable[[VectorStore, str], None]

FIRST = 0  # the interest vectors: once they are gone, the subscription is matched no more
LAST = 100  # the metadata: while it is there, a failed delete can be retried


@dataclass(frozen=True)
class Record:
    """One registered table: its name in this registry, when it is cleared, and how."""

    table: str
    order: int
    forget: Forget


_REGISTRY: dict[str, Record] = {}


def per_subscription(table: str, order: int = 50) -> Callable[[Forget], Forget]:
    """Register ``forget`` as the way to clear ``table`` of a deleted subscription.

    Args:
        table: a name for the table, unique in the registry (``"feedback"``).
        order: tables are cleared in ascending order (:data:`FIRST` … :data:`LAST`).
    """

    def register(forget: Forget) -> Forget:
        known = _REGISTRY.get(table)
        if known is not None and known.forget is not forget:
            raise ValueError(f"per-subscription table {table!r} is registered twice")
        _REGISTRY[table] = Record(table, order, forget)
        return forget

    return register


def registered() -> list[Record]:
    """Every registered table, in the order they are cleared."""
    return sorted(_REGISTRY.values(), key=lambda r: (r.order, r.table))


def forget_sync(store: VectorStore, subscription_id: str) -> list[str]:
    """Clear every registered table of ``subscription_id``; returns the tables, in order."""
    done: list[str] = []
    for record in registered():
        record.forget(store, subscription_id)
        done.append(record.table)
    return done
