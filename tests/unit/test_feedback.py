"""Feedback on alerts: one label per (subscription, paper), validated, and muting in the matcher."""

from __future__ import annotations

import asyncio
from typing import Any

import numpy as np
import pytest
from test_subscriptions import (
    index,
    paper,
    subs,  # noqa: F401 - the fixture
    unit,
)

from services.alerts.feedback import FeedbackStore, forget_feedback, parse_feedback
from services.alerts.hook import AlertMatcher
from services.alerts.lifecycle import SubscriptionService
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionStore
from services.alerts.webhooks import WebhookSender
from services.core.errors import InvalidRequest
from services.core.schemas import Alert
from services.embed.pipeline import IndexedPaper, RawRecord


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({"arxiv_id": "2501.00001"}, "label: Field required"),
        ({"arxiv_id": "2501.00001", "label": "meh"}, "label: Input should be 'relevant'"),
        ({"arxiv_id": "nope", "label": "relevant"}, "arxiv_id:"),
        ({"arxiv_id": "2501.00001", "label": "relevant", "x": 1}, "x: Extra inputs"),
        (["2501.00001"], "body must be a JSON object"),
    ],
)
def test_bad_feedback_is_refused_naming_the_field(body: Any, message: str) -> None:
    with pytest.raises(InvalidRequest, match=message.replace("(", r"\(")):
        parse_feedback(body)


def test_one_label_per_paper_and_the_latest_wins(subs: SubscriptionStore) -> None:  # noqa: F811
    store = FeedbackStore(subs.binding)
    store.ensure_sync()
    one = parse_feedback({"arxiv_id": "2501.00001v3", "label": "relevant"})
    assert one.arxiv_id == "2501.00001"
    store.put_sync("a", one)
    store.put_sync("a", one)
    store.put_sync("a", parse_feedback({"arxiv_id": "2501.00001", "label": "not_relevant"}))
    store.put_sync("b", parse_feedback({"arxiv_id": "2501.00001", "label": "relevant"}))
    labels = store.list_sync(["a"])
    assert [(x["arxiv_id"], x["label"]) for x in labels] == [("2501.00001", "not_relevant")]
    assert store.muted_sync(["a", "b"], ["2501.00001", "2501.00002"]) == {"a": {"2501.00001"}}
    forget_feedback(subs.store, "a")  # what deleting subscription "a" does
    assert store.list_sync(["a"]) == []
    assert len(store.list_sync(["b"])) == 1


def test_a_paper_marked_not_relevant_never_alerts_again(subs: SubscriptionStore) -> None:  # noqa: F811
    seed = paper("2501.00001", "Bars in disc galaxies")
    index(subs.store, seed, ["Bars drive gas inwards."], unit(1)[None, :])
    feedback = FeedbackStore(subs.binding)
    feedback.ensure_sync()
    published: list[Alert] = []

    async def publish(alerts: list[Alert]) -> None:
        published.extend(alerts)

    def indexed(arxiv_id: str, digest: str) -> IndexedPaper:
        vectors = np.vstack([unit(1, 0.1)])
        new = paper(arxiv_id, "Bars and gas inflow")
        return IndexedPaper(
            new,
            RawRecord("t", 0, 0, None, None),
            ["Gas flows inwards."],
            vectors,
            vectors[0],
            digest,
        )

    async def go() -> None:
        sub = await SubscriptionService(subs).create(
            parse_request({"arxiv_ids": [seed.arxiv_id], "threshold": 0}), False
        )
        matcher = AlertMatcher(subs, publish, WebhookSender(), feedback=feedback)
        label = parse_feedback({"arxiv_id": "2502.00002", "label": "not_relevant"})
        feedback.put_sync(sub["id"], label)
        alerts = await matcher.match([indexed("2502.00002", "d1"), indexed("2502.00003", "d1")])
        assert [a.arxiv_id for a in alerts] == ["2502.00003"]
        # Changing one's mind lets the paper alert on its next version.
        feedback.put_sync(
            sub["id"], parse_feedback({"arxiv_id": "2502.00002", "label": "relevant"})
        )
        alerts = await matcher.match([indexed("2502.00002", "d2")])
        assert [a.arxiv_id for a in alerts] == ["2502.00002"]

    asyncio.run(go())
