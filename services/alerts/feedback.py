"""What a reader told us about an alert: relevant or not, one label per (subscription, paper).

Labels live in a payload-only collection ``<prefix>_feedback`` (not model-versioned: a label
survives a new model). The point id is derived from the subscription and the paper, so
sending the same label twice, or changing one's mind, never adds a second label.
A paper labelled ``not_relevant`` never alerts that subscription again; the labels are also
the positives and negatives a per-subscription ranking can learn from.
"""

from __future__ import annotations

import uuid
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, ValidationError, field_validator
from qdrant_client import models as qm

from services.core.errors import InvalidRequest, describe_validation_error
from services.core.ids import NAMESPACE
from services.core.schemas import split_arxiv_id, utcnow
from services.store.binding import Binding

Label = Literal["relevant", "not_relevant"]
MAX_LISTED = 10_000


def feedback_collection(binding: Binding) -> str:
    return f"{binding.store.settings.collection_prefix}_feedback"


def feedback_id(subscription_id: str, arxiv_id: str) -> str:
    """Same subscription + paper ⇒ same label point (the request is idempotent)."""
    return str(uuid.uuid5(NAMESPACE, f"feedback:{subscription_id}:{arxiv_id}"))


class FeedbackRequest(BaseModel):
    """The body of ``POST /subscriptions/{id}/feedback``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    arxiv_id: str
    label: Label

    @field_validator("arxiv_id")
    @classmethod
    def _arxiv_id(cls, value: str) -> str:
        return split_arxiv_id(value)[0]


def parse_feedback(body: Any) -> FeedbackRequest:
    """Validate a feedback body.

    Raises:
        InvalidRequest: naming each wrong field.
    """
    if not isinstance(body, dict):
        raise InvalidRequest(f"body must be a JSON object, got {type(body).__name__}")
    try:
        return FeedbackRequest.model_validate(body)
    except ValidationError as exc:
        problems = describe_validation_error(exc, root="body")
        raise InvalidRequest(
            "; ".join(problems) + ' (expected {"arxiv_id": ..., "label": '
            '"relevant" or "not_relevant"})'
        ) from None


def by_subscription(subscription_ids: list[str]) -> qm.Filter:
    return qm.Filter(
        must=[qm.FieldCondition(key="subscription_id", match=qm.MatchAny(any=subscription_ids))]
    )


class FeedbackStore:
    """Labels per subscription. Methods named ``*_sync`` block: run them with ``store.run``."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.name = feedback_collection(binding)

    def ensure_sync(self) -> None:
        client = self.binding.store.client
        if not client.collection_exists(self.name):
            client.create_collection(self.name, vectors_config={})
            client.create_payload_index(self.name, "subscription_id", qm.PayloadSchemaType.KEYWORD)

    def put_sync(self, subscription_id: str, request: FeedbackRequest) -> dict[str, Any]:
        now = utcnow()
        payload = {
            "subscription_id": subscription_id,
            "arxiv_id": request.arxiv_id,
            "label": request.label,
            "at": now.isoformat(),
            "at_ts": now.timestamp(),
        }
        point = qm.PointStruct(
            id=feedback_id(subscription_id, request.arxiv_id), vector={}, payload=payload
        )
        self.binding.store.client.upsert(self.name, [point], wait=True)
        return view(payload)

    def list_sync(self, subscription_ids: list[str]) -> list[dict[str, Any]]:
        """Every label of these subscriptions, newest first."""
        if not subscription_ids:
            return []
        records, _ = self.binding.store.client.scroll(
            self.name,
            scroll_filter=by_subscription(subscription_ids),
            limit=MAX_LISTED,
            with_payload=True,
        )
        found = [r.payload for r in records if r.payload]
        found.sort(key=lambda p: (-float(p.get("at_ts", 0)), p.get("arxiv_id", "")))
        return [view(p) for p in found]

    def muted_sync(self, subscription_ids: list[str], arxiv_ids: list[str]) -> dict[str, set[str]]:
        """Per subscription, which of these papers it labelled ``not_relevant``."""
        if not subscription_ids or not arxiv_ids:
            return {}
        only = qm.Filter(
            must=[
                qm.FieldCondition(key="subscription_id", match=qm.MatchAny(any=subscription_ids)),
                qm.FieldCondition(key="arxiv_id", match=qm.MatchAny(any=arxiv_ids)),
                qm.FieldCondition(key="label", match=qm.MatchValue(value="not_relevant")),
            ]
        )
        records, _ = self.binding.store.client.scroll(
            self.name, scroll_filter=only, limit=MAX_LISTED, with_payload=True
        )
        muted: dict[str, set[str]] = {}
        for record in records:
            payload = record.payload or {}
            muted.setdefault(str(payload["subscription_id"]), set()).add(str(payload["arxiv_id"]))
        return muted

    def delete_sync(self, subscription_id: str) -> None:
        self.binding.store.client.delete(
            self.name, qm.FilterSelector(filter=by_subscription([subscription_id])), wait=True
        )


def view(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("subscription_id", "arxiv_id", "label", "at") if k in payload}
