"""HTTP views of subscriptions and their alerts (registered by ``services.alerts.install``)."""

from __future__ import annotations

import hmac
import json
from typing import Any

from services.alerts import MAX_ALERTS_LIMIT, SUBSCRIPTIONS
from services.api import ApiError, int_param
from services.subscriptions import SubscriptionStore, parse_request


def register_views(app: Any, runtime: Any, subs: SubscriptionStore, allow_private: bool) -> None:
    from aiohttp import web

    from services.app import JsonView

    token = runtime.settings.api_token

    class SubscriptionView(JsonView):
        """Shared by the subscription routes: the bearer token, the JSON body, 405s."""

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

        async def body(self, request: Any) -> Any:
            try:
                raw = await request.read()
            except web.HTTPRequestEntityTooLarge:
                raise ApiError(413, "body too large (max 1 MiB)") from None
            if not raw:
                raise ApiError(400, "body is empty: expected a JSON object")
            try:
                return json.loads(raw)
            except (UnicodeDecodeError, json.JSONDecodeError) as exc:
                raise ApiError(400, f"body is not valid JSON: {exc}") from None

        async def put(self, request: Any, **kwargs: Any) -> Any:
            raise ApiError(405, f"PUT is not supported on {request.path}")

        async def patch(self, request: Any, **kwargs: Any) -> Any:
            raise ApiError(405, f"PATCH is not supported on {request.path}")

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
            created = await subs.create(parse_request(await self.body(request)), allow_private)
            SUBSCRIPTIONS.set(await subs.store.run(subs.count_sync))
            return self.json(created, status=201)

        async def delete(self, request: Any) -> Any:
            raise ApiError(405, "DELETE needs a subscription id: /subscriptions/{id}")

    @app.page("/subscriptions/{subscription_id}/alerts", name="subscription_alerts")
    class SubscriptionAlerts(SubscriptionView):
        route_name = "subscription_alerts"

        async def get(self, request: Any, subscription_id: str) -> Any:
            query = request.query
            limit = int_param(query, "limit", 20, 1, MAX_ALERTS_LIMIT)
            sort = query.get("sort") or "time"
            if sort == "score":
                alerts = await subs.list_alerts(subscription_id, limit, "score")
            elif sort == "time":
                alerts = await subs.list_alerts(subscription_id, limit, "time")
            else:
                raise ApiError(400, f"sort must be 'score' or 'time', got {sort!r}")
            return self.json({"subscription_id": subscription_id, "sort": sort, "alerts": alerts})

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
            SUBSCRIPTIONS.set(await subs.store.run(subs.count_sync))
            return self.json(deleted)
