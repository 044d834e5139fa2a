"""HTTP views of subscriptions, their alerts, feedback and feed token (api role).

Who may do what (services.alerts.access): the operator token reaches everything; an owner's
secret (``Authorization: Bearer <secret>``) reaches that owner's subscriptions; anyone may
create one (a new owner secret is minted and returned once). For everything else about a
subscription, a caller that may not see it gets the same 404 as for an unknown id.
Creating, changing and deleting go through the one lifecycle
(:class:`services.alerts.lifecycle.SubscriptionService`), as the web app's do.
"""

from __future__ import annotations

import html
from typing import Any, cast

import faust
from aiohttp import web
from pydantic import SecretStr

from services.alerts import owners
from services.alerts.access import Caller, bearer, caller_of, feed_token_ok, feed_url, may_read
from services.alerts.feed import CONTENT_TYPE as ATOM_TYPE
from services.alerts.feed import atom_feed
from services.alerts.feedback import FeedbackStore, parse_feedback
from services.alerts.hook import MAX_ALERTS_LIMIT
from services.alerts.lifecycle import SubscriptionService
from services.alerts.request import parse_request
from services.alerts.subscriptions import (
    AlertSort,
    SubscriptionMeta,
    SubscriptionStore,
    request_body,
)
from services.core.errors import InvalidRequest, NotFound, UnknownPaper
from services.http.params import int_param
from services.http.views import JsonView

FEED_ENTRIES = 100  # newest alerts in a feed


def _html(body: str) -> Any:
    page = (
        '<!doctype html><html lang="en"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>astrostream</title></head><body>{body}</body></html>"
    )
    return web.Response(text=page, content_type="text/html")


class SubscriptionView(JsonView):
    """Shared by the subscription routes: who is calling, and may they see this subscription."""

    # Set by register_subscriptions on the classes it serves.
    service: SubscriptionService
    subs: SubscriptionStore
    feedback: FeedbackStore
    operator_token: str | None
    public_base: str
    allow_private: bool

    def caller(self, request: Any) -> Caller:
        return caller_of(bearer(request.headers.get("Authorization", "")), self.operator_token)

    async def authorised(self, request: Any, raw_id: str) -> SubscriptionMeta:
        """The subscription if this caller may see it.

        Raises:
            NotFound: unknown id, or not this caller's (the same answer: existence is private).
        """
        meta = await self.subs.get_meta(raw_id)
        if not may_read(meta, self.caller(request)):
            raise NotFound(f"subscription {raw_id} does not exist")
        return meta

    async def capability(self, request: Any, raw_id: str) -> SubscriptionMeta:
        """The subscription for its feed/unsubscribe link (``?token=``) or an authorised caller.

        Raises:
            NotFound: as :meth:`authorised`.
        """
        meta = await self.subs.get_meta(raw_id)
        if not (
            feed_token_ok(meta, request.query.get("token")) or may_read(meta, self.caller(request))
        ):
            raise NotFound(f"subscription {raw_id} does not exist")
        return meta

    def unauthorised(self, message: str) -> Any:
        return self.error(401, message, headers={"WWW-Authenticate": 'Bearer realm="astrostream"'})

    def view(self, meta: SubscriptionMeta) -> dict[str, Any]:
        """What an authorised caller sees: the public fields and the feed link."""
        return {**meta.public(), "feed_url": feed_url(self.public_base, meta)}


class Subscriptions(SubscriptionView):
    route_name = "subscriptions"

    async def get(self, request: Any) -> Any:
        caller = self.caller(request)
        if caller.operator:
            found = await self.subs.list_all()
        elif caller.valid_secret:
            found = await self.subs.list_all(owner=caller.owner)
        else:
            return self.unauthorised(
                "send 'Authorization: Bearer <owner secret>' (or the operator token) "
                "to list subscriptions"
            )
        return self.json({"subscriptions": found, "count": len(found)})

    async def post(self, request: Any) -> Any:
        caller = self.caller(request)
        minted: str | None = None
        if caller.operator:
            on_behalf = request.headers.get("X-Owner", "").strip()
            if on_behalf and len(on_behalf) < owners.MIN_SECRET_CHARS:
                raise InvalidRequest(
                    f"X-Owner must be an owner secret of at least "
                    f"{owners.MIN_SECRET_CHARS} characters"
                )
            owner = owners.owner_id(on_behalf) if on_behalf else None
        elif caller.valid_secret:
            owner = caller.owner
        elif caller.secret is not None:
            return self.unauthorised(
                "missing or wrong bearer token: send 'Authorization: Bearer "
                "$ASTRO_API_TOKEN' or an owner secret of at least "
                f"{owners.MIN_SECRET_CHARS} characters"
            )
        else:
            minted = owners.mint_secret()
            owner = owners.owner_id(minted)
        created = await self.service.create(
            parse_request(await self.json_body(request)), self.allow_private, owner=owner
        )
        meta = await self.subs.get_meta(created["id"])
        body = {**created, "feed_url": feed_url(self.public_base, meta)}
        if minted is not None:
            body["owner_secret"] = minted  # shown once; only its hash is stored
        return self.json(body, status=201)


class SubscriptionAlerts(SubscriptionView):
    route_name = "subscription_alerts"

    async def get(self, request: Any, subscription_id: str) -> Any:
        query = request.query
        limit = int_param(query, "limit", 20, 1, MAX_ALERTS_LIMIT)
        sort = query.get("sort") or "time"
        if sort not in ("score", "time", "relevance"):
            raise InvalidRequest(f"sort must be 'score', 'relevance' or 'time', got {sort!r}")
        meta = await self.authorised(request, subscription_id)
        alerts = await self.subs.list_alerts(meta.id, limit, cast(AlertSort, sort))
        return self.json({"subscription_id": subscription_id, "sort": sort, "alerts": alerts})


class SubscriptionFeedback(SubscriptionView):
    route_name = "subscription_feedback"

    async def get(self, request: Any, subscription_id: str) -> Any:
        sub_id = (await self.authorised(request, subscription_id)).id
        labels = await self.subs.store.run(self.feedback.list_sync, [sub_id])
        return self.json({"subscription_id": sub_id, "feedback": labels})

    async def post(self, request: Any, subscription_id: str) -> Any:
        sub_id = (await self.authorised(request, subscription_id)).id
        label = parse_feedback(await self.json_body(request))
        store = self.subs.store
        if label.arxiv_id not in await store.run(store.papers_by_id, [label.arxiv_id]):
            raise UnknownPaper([label.arxiv_id])
        return self.json(await store.run(self.feedback.put_sync, sub_id, label))


class SubscriptionFeed(SubscriptionView):
    route_name = "subscription_feed"

    async def get(self, request: Any, subscription_id: str) -> Any:
        """The Atom feed: with ``?token=<feed token>`` (a feed reader) or a bearer."""
        meta = await self.capability(request, subscription_id)
        alerts = await self.subs.list_alerts(meta.id, FEED_ENTRIES, "time")
        store = self.subs.store
        found = await store.run(store.papers_by_id, [a["arxiv_id"] for a in alerts])
        papers = {arxiv_id: r.payload or {} for arxiv_id, r in found.items()}
        self_url = feed_url(self.public_base, meta) or (
            f"{self.public_base}/subscriptions/{meta.id}/feed.atom"
        )
        body = atom_feed(meta, alerts, papers, self_url)
        return web.Response(  # type: ignore[return-value]
            body=body, headers={"Content-Type": f"{ATOM_TYPE}; charset=utf-8"}
        )


class SubscriptionUnsubscribe(SubscriptionView):
    """The e-mail digests' one-click unsubscribe link (RFC 8058): POST turns digests off.

    GET only shows a confirmation button: mail scanners follow links, they do not post.
    """

    route_name = "subscription_unsubscribe"

    async def get(self, request: Any, subscription_id: str) -> Any:
        meta = await self.capability(request, subscription_id)
        title = html.escape(meta.name or "this subscription")
        action = html.escape(f"?token={request.query.get('token', '')}")
        state = (
            f"<p>You get a {html.escape(meta.digest)} digest for {title}.</p>"
            f'<form method="post" action="{action}"><button type="submit">'
            "Stop the e-mails</button></form>"
            if meta.digest != "off"
            else f"<p>No e-mails are sent for {title}.</p>"
        )
        return _html(f"<h1>Unsubscribe</h1>{state}")

    async def post(self, request: Any, subscription_id: str) -> Any:
        meta = await self.capability(request, subscription_id)
        await self.service.set_digest(meta.id, "off")
        title = html.escape(meta.name or "this subscription")
        return _html(f"<h1>Unsubscribed</h1><p>No more e-mails for {title}.</p>")


class SubscriptionFeedToken(SubscriptionView):
    route_name = "subscription_feed_token"

    async def post(self, request: Any, subscription_id: str) -> Any:
        meta = await self.authorised(request, subscription_id)
        new = await self.service.rotate_feed_token(meta.id)
        rotated = meta.model_copy(update={"feed_token": new})
        return self.json(
            {"id": meta.id, "feed_token": new, "feed_url": feed_url(self.public_base, rotated)}
        )


class Subscription(SubscriptionView):
    route_name = "subscription"

    async def get(self, request: Any, subscription_id: str) -> Any:
        return self.json(self.view(await self.authorised(request, subscription_id)))

    async def put(self, request: Any, subscription_id: str) -> Any:
        """Replace what the subscription asks for (the whole request body)."""
        meta = await self.authorised(request, subscription_id)
        body = await self.json_body(request)
        updated = await self.service.update(meta.id, parse_request(body), self.allow_private)
        return self.json({**updated, "feed_url": feed_url(self.public_base, meta)})

    async def patch(self, request: Any, subscription_id: str) -> Any:
        """Change the fields the body names; the others stay as they are."""
        meta = await self.authorised(request, subscription_id)
        body = await self.json_body(request)
        if not isinstance(body, dict):
            raise InvalidRequest(f"body must be a JSON object, got {type(body).__name__}")
        merged = {**request_body(meta), **body}
        updated = await self.service.update(meta.id, parse_request(merged), self.allow_private)
        return self.json({**updated, "feed_url": feed_url(self.public_base, meta)})

    async def delete(self, request: Any, subscription_id: str) -> Any:
        meta = await self.authorised(request, subscription_id)
        return self.json(await self.service.delete(meta.id))


# In this order: aiohttp takes the first route that matches.
ROUTES: tuple[tuple[str, type[SubscriptionView]], ...] = (
    ("/subscriptions", Subscriptions),
    ("/subscriptions/{subscription_id}/alerts", SubscriptionAlerts),
    ("/subscriptions/{subscription_id}/feedback", SubscriptionFeedback),
    ("/subscriptions/{subscription_id}/feed.atom", SubscriptionFeed),
    ("/subscriptions/{subscription_id}/unsubscribe", SubscriptionUnsubscribe),
    ("/subscriptions/{subscription_id}/feed-token", SubscriptionFeedToken),
    ("/subscriptions/{subscription_id}", Subscription),
)


def register_subscriptions(
    app: faust.App,
    service: SubscriptionService,
    feedback: FeedbackStore,
    token: SecretStr | None,
    allow_private: bool,
    public_base: str = "http://127.0.0.1:6066",
) -> None:
    """``/subscriptions`` and everything under it: each view of :data:`ROUTES`, configured."""
    config = {
        "service": service,
        "subs": service.subs,
        "feedback": feedback,
        "operator_token": token.get_secret_value() if token is not None else None,
        "public_base": public_base.rstrip("/"),
        "allow_private": allow_private,
    }
    for path, view in ROUTES:
        app.page(path, name=view.route_name)(type(view.__name__, (view,), dict(config)))
