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

from services.alerts.records import per_subscription
from services.core.errors import InvalidRequest, describe_validation_error
from services.core.ids import NAMESPACE
from services.core.schemas import split_arxiv_id, utcnow
from services.store.binding import Binding
from services.store.models import Filter, matching
from services.store.tables import PayloadTable
from services.store.vectorstore import VectorStore

Label = Literal["relevant", "not_relevant"]
MAX_LISTED = 10_000


def feedback_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_feedback"


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


def by_subscription(subscription_ids: list[str]) -> Filter:
    return matching(subscription_id=subscription_ids)


class FeedbackStore:
    """Labels per subscription. Methods named ``*_sync`` block: run them with ``store.run``."""

    def __init__(self, binding: Binding) -> None:
        self.binding = binding
        self.name = feedback_collection(binding.store)
        self.table = PayloadTable(lambda: binding.store, self.name, keyword=["subscription_id"])

    def ensure_sync(self) -> None:
        self.table.ensure()

    def put_sync(self, subscription_id: str, request: FeedbackRequest) -> dict[str, Any]:
        now = utcnow()
        payload = {
            "subscription_id": subscription_id,
            "arxiv_id": request.arxiv_id,
            "label": request.label,
            "at": now.isoformat(),
            "at_ts": now.timestamp(),
        }
        self.table.put(feedback_id(subscription_id, request.arxiv_id), payload)
        return view(payload)

    def list_sync(self, subscription_ids: list[str]) -> list[dict[str, Any]]:
        """Every label of these subscriptions, newest first."""
        if not subscription_ids:
            return []
        payloads, _ = self.table.page(by_subscription(subscription_ids), limit=MAX_LISTED)
        found = [p for p in payloads if p]
        found.sort(key=lambda p: (-float(p.get("at_ts", 0)), p.get("arxiv_id", "")))
        return [view(p) for p in found]

    def muted_sync(self, subscription_ids: list[str], arxiv_ids: list[str]) -> dict[str, set[str]]:
        """Per subscription, which of these papers it labelled ``not_relevant``."""
        if not subscription_ids or not arxiv_ids:
            return {}
        only = matching(subscription_id=subscription_ids, arxiv_id=arxiv_ids, label="not_relevant")
        payloads, _ = self.table.page(only, limit=MAX_LISTED)
        muted: dict[str, set[str]] = {}
        for payload in payloads:
            muted.setdefault(str(payload["subscription_id"]), set()).add(str(payload["arxiv_id"]))
        return muted


@per_subscription("feedback")
def forget_feedback(store: VectorStore, subscription_id: str) -> None:
    table = PayloadTable(store, feedback_collection(store))
    if table.exists():
        table.delete_where(by_subscription([subscription_id]))


def view(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: payload[k] for k in ("subscription_id", "arxiv_id", "label", "at") if k in payload}
