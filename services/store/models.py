"""The store's query vocabulary: the qdrant-client model types that code outside the store uses.

qdrant-client shares one ``models`` vocabulary between its remote and local implementations,
and the embedded engine translates the same types, so filters and records keep one shape
whatever engine holds the data. Import this module (``from services.store import models as
qm``), never a Qdrant library: only ``services.store`` talks to an engine (an import-linter
contract checks it). Add a name here when the product needs one more.
"""

from __future__ import annotations

from typing import Any

from qdrant_client.models import (
    FieldCondition,
    Filter,
    MatchAny,
    MatchValue,
    QueryRequest,
    Range,
    Record,
    ScoredPoint,
)

__all__ = [
    "FieldCondition",
    "Fields",
    "Filter",
    "MatchAny",
    "MatchValue",
    "Payload",
    "QueryRequest",
    "Range",
    "Record",
    "ScoredPoint",
    "matching",
]

Payload = dict[str, Any]
Fields = bool | list[str]  # which payload fields to read: all, none, or these


def matching(**fields: Any) -> Filter:
    """Points whose every ``field`` equals its value, or is one of its values (list, tuple).

    ``matching(subscription_id=sub_id)`` is the filter most tables are read and cleared by.
    """
    return Filter(
        must=[
            FieldCondition(key=key, match=MatchAny(any=list(value)))
            if isinstance(value, list | tuple)
            else FieldCondition(key=key, match=MatchValue(value=value))
            for key, value in fields.items()
        ]
    )
