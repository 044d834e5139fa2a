"""HTTP views of subscriptions and their alerts (api role)."""

from __future__ import annotations

import hmac
from typing import Any, cast

import faust
from pydantic import SecretStr

from services.alerts.feedback import FeedbackStore, parse_feedback
from services.alerts.hook import MAX_ALERTS_LIMIT, SUBSCRIPTIONS
from services.alerts.ranking import delete_stored_sync
from services.alerts.subscriptions import AlertSort, SubscriptionStore, parse_request
from services.core.errors import InvalidRequest, UnknownPaper
from services.http.params import int_param
from services.http.views import JsonView


def register_subscriptions(
    app: faust.App,
    subs: SubscriptionStore,
    feedback: FeedbackStore,
    token: SecretStr | None,
    allow_private: bool,
) -> None:
    """``/subscriptions`` and everything under it."""

    class SubscriptionView(JsonView):
        """Shared by the subscription routes: the bearer token."""

        def refused(self, request: Any) -> Any:
            """A 401 response when a token is set and the request lacks it, else None."""
            if token is None:
                return None
            given = request.headers.get("Authorization", "")
            expected = f"Bearer {token.get_secret_value()}"
            if hmac.compare_digest(given.encode(), expected.encode()):
                return None
            return self.error(
                401,
                "missing or wrong bearer token: send 'Authorization: Bearer $ASTRO_API_TOKEN'",
                headers={"WWW-Authenticate": 'Bearer realm="astrostream"'},
            )

    @app.page("/subscriptions", name="subscriptions")
    class Subscriptions(SubscriptionView):
        route_name = "subscriptions"

        async def get(self, request: Any) -> Any:
            found = await subs.list_all()
            return self.json({"subscriptions": found, "count": len(found)})

        async def post(self, request: Any) -> Any:
            refused = self.refused(request)
            if refused is not None:
                return refused
            created = await subs.create(parse_request(await self.json_body(request)), allow_private)
            SUBSCRIPTIONS.set(await subs.store.run(subs.count_sync))
            return self.json(created, status=201)

    @app.page("/subscriptions/{subscription_id}/alerts", name="subscription_alerts")
    class SubscriptionAlerts(SubscriptionView):
        route_name = "subscription_alerts"

        async def get(self, request: Any, subscription_id: str) -> Any:
            query = request.query
            limit = int_param(query, "limit", 20, 1, MAX_ALERTS_LIMIT)
            sort = query.get("sort") or "time"
            if sort not in ("score", "time", "relevance"):
                raise InvalidRequest(f"sort must be 'score', 'relevance' or 'time', got {sort!r}")
            alerts = await subs.list_alerts(subscription_id, limit, cast(AlertSort, sort))
            return self.json({"subscription_id": subscription_id, "sort": sort, "alerts": alerts})

    @app.page("/subscriptions/{subscription_id}/feedback", name="subscription_feedback")
    class SubscriptionFeedback(SubscriptionView):
        route_name = "subscription_feedback"

        async def get(self, request: Any, subscription_id: str) -> Any:
            sub_id = (await subs.get(subscription_id))["id"]
            labels = await subs.store.run(feedback.list_sync, [sub_id])
            return self.json({"subscription_id": sub_id, "feedback": labels})

        async def post(self, request: Any, subscription_id: str) -> Any:
            refused = self.refused(request)
            if refused is not None:
                return refused
            label = parse_feedback(await self.json_body(request))
            sub_id = (await subs.get(subscription_id))["id"]
            store = subs.store
            if label.arxiv_id not in await store.run(store.papers_by_id, [label.arxiv_id]):
                raise UnknownPaper([label.arxiv_id])
            return self.json(await store.run(feedback.put_sync, sub_id, label))

    @app.page("/subscriptions/{subscription_id}", name="subscription")
    class Subscription(SubscriptionView):
        route_name = "subscription"

        async def get(self, request: Any, subscription_id: str) -> Any:
            return self.json(await subs.get(subscription_id))

        async def delete(self, request: Any, subscription_id: str) -> Any:
            refused = self.refused(request)
            if refused is not None:
                return refused
            deleted = await subs.delete(subscription_id)
            await subs.store.run(feedback.delete_sync, deleted["deleted"])
            await subs.store.run(delete_stored_sync, subs.store, deleted["deleted"])
            SUBSCRIPTIONS.set(await subs.store.run(subs.count_sync))
            return self.json(deleted)
