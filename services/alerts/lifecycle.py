"""The subscription lifecycle: the one way to create, change and delete a subscription.

The API (``services.http.subscriptions``), the web app (``services.web.pages``) and, through
the API, the CLI call :class:`SubscriptionService`. It writes a subscription's interest
vectors and metadata (``services.alerts.subscriptions`` reads them), rotates its feed token,
and on delete removes every record that names the subscription: each table that keeps such
records registers how to forget one (``services.alerts.records``), and this module imports
every such module, so a delete clears them all (interests, alerts, feedback, the stored
model, read marks, digest state, and last the metadata with its owner hash and feed token).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from typing import Any

import numpy as np

# Each of these modules registers its per-subscription tables when imported.
from services.alerts import digests, feedback, marks, ranking, subscriptions
from services.alerts.hook import SUBSCRIPTIONS
from services.alerts.records import forget_sync
from services.alerts.request import Digest, SubscriptionRequest, request_fields
from services.alerts.subscriptions import (
    InterestPoints,
    SubscriptionMeta,
    SubscriptionStore,
    Webhook,
    build_interests,
    new_feed_token,
    resolve_seeds,
)
from services.alerts.webhooks import UnsafeUrl, check_url
from services.core.clock import utcnow
from services.core.errors import InvalidSubscription, UnknownPaper
from services.core.ids import interest_point_id
from services.core.text import normalise
from services.store.points import delete_interest_points, set_interest_fields
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)

KEEPERS = (subscriptions, feedback, ranking, marks, digests)  # see the module docstring


class SubscriptionService:
    """Create, update and delete subscriptions; rotate their feed tokens.

    Args:
        subs: where subscriptions are read and their metadata written.
    """

    def __init__(self, subs: SubscriptionStore) -> None:
        self.subs = subs

    @property
    def store(self) -> VectorStore:
        """The live model's store (a rollout swaps the binding)."""
        return self.subs.store

    async def create(
        self, request: SubscriptionRequest, allow_private: bool, owner: str | None = None
    ) -> dict[str, Any]:
        """Resolve seeds, encode queries, write interest vectors then metadata.

        ``owner`` is the :func:`services.alerts.owners.owner_id` of the owner's secret (None:
        only the operator token reaches the subscription).

        Raises:
            UnknownPaper: naming the arXiv ids that are not indexed.
            InvalidSubscription: for a webhook that points to a private address.
        """
        await self._check_webhook(request, allow_private)
        sub_id = uuid.uuid4().hex
        built = await self._interests(sub_id, request)
        secret = request.webhook_secret or (secrets.token_hex(32) if request.webhook else None)
        meta = SubscriptionMeta(
            id=sub_id,
            created_at=utcnow().isoformat(),
            interests=built.interests,
            points=len(built.ids),
            model_version=self.store.model_version,
            webhook=Webhook(url=request.webhook, secret=secret)
            if request.webhook and secret
            else None,
            owner=owner,
            feed_token=new_feed_token(),
            **request_fields(request),
        )
        store = self.store
        await store.run(self._write_points_sync, built)
        # Metadata last: a subscription whose metadata is missing is never matched.
        await store.run(self.subs.put_meta_sync, sub_id, meta)
        await self.count()
        view = meta.public()
        if secret:
            view["webhook_secret"] = secret
        return view

    async def update(
        self, raw_id: str, request: SubscriptionRequest, allow_private: bool
    ) -> dict[str, Any]:
        """Replace what a subscription asks for; keep its id, owner, feed token, creation time.

        Interest vectors are re-encoded only when the queries or seed papers changed (new
        vectors are written before the surplus old ones are removed, so matching never sees
        an empty subscription); otherwise their threshold and categories are updated in place.
        Feedback and alerts stay. An unchanged webhook URL keeps its secret unless a new
        one is given.

        Raises:
            NotFound: for a malformed or unknown id.
            UnknownPaper: naming the arXiv ids that are not indexed.
            InvalidSubscription: for a webhook that points to a private address.
        """
        old = await self.subs.get_meta(raw_id)
        await self._check_webhook(request, allow_private)
        sub_id = old.id
        store = self.store
        changes: dict[str, Any] = dict(request_fields(request))
        same_interests = request.queries == old.queries and request.arxiv_ids == old.arxiv_ids
        if same_interests and old.model_version == store.model_version:
            fields = {"threshold": request.threshold, "categories": request.categories}
            await store.run(self._set_interest_payload_sync, sub_id, fields)
        else:
            built = await self._interests(sub_id, request)
            points = len(built.ids)
            await store.run(self._write_points_sync, built)
            surplus = [interest_point_id(sub_id, i) for i in range(points, old.points)]
            if surplus:
                await store.run(self._delete_points_sync, surplus)
            changes.update(
                interests=built.interests, points=points, model_version=store.model_version
            )
        if not request.webhook:
            changes["webhook"] = None
        elif old.webhook and old.webhook.url == request.webhook and not request.webhook_secret:
            changes["webhook"] = old.webhook
        else:
            secret = request.webhook_secret or secrets.token_hex(32)
            changes["webhook"] = Webhook(url=request.webhook, secret=secret)
        changes["updated_at"] = utcnow().isoformat()
        meta = old.model_copy(update=changes)
        await store.run(self.subs.put_meta_sync, sub_id, meta)
        view = meta.public()
        if meta.webhook and meta.webhook is not old.webhook:
            view["webhook_secret"] = meta.webhook.secret
        return view

    async def rotate_feed_token(self, raw_id: str) -> str:
        """A new feed token for the subscription; the old feed and unsubscribe links stop working.

        Raises:
            NotFound: for a malformed or unknown id.
        """
        old = await self.subs.get_meta(raw_id)
        token = new_feed_token()
        meta = old.model_copy(update={"feed_token": token, "updated_at": utcnow().isoformat()})
        await self.store.run(self.subs.put_meta_sync, old.id, meta)
        return token

    async def set_digest(self, raw_id: str, digest: Digest) -> SubscriptionMeta:
        """Change only the digest cadence (the one-click unsubscribe link turns it off)."""
        old = await self.subs.get_meta(raw_id)
        meta = old.model_copy(update={"digest": digest, "updated_at": utcnow().isoformat()})
        await self.store.run(self.subs.put_meta_sync, old.id, meta)
        return meta

    async def delete(self, raw_id: str) -> dict[str, Any]:
        """Remove every record that names the subscription, in every registered table.

        Raises:
            NotFound: for a malformed or unknown id.
        """
        sub_id = (await self.subs.get_meta(raw_id)).id
        tables = await self.store.run(forget_sync, self.store, sub_id)
        log.info("subscription %s deleted from %s", sub_id, ", ".join(tables))
        await self.count()
        return {"deleted": sub_id}

    async def count(self) -> int:
        """How many subscriptions there are (and the gauge set to it)."""
        found = await self.store.run(self.subs.count_sync)
        SUBSCRIPTIONS.set(found)
        return found

    async def _check_webhook(self, request: SubscriptionRequest, allow_private: bool) -> None:
        if request.webhook:
            try:
                await check_url(request.webhook, allow_private)
            except UnsafeUrl as exc:
                raise InvalidSubscription(f"webhook: {exc}") from None

    async def _interests(self, sub_id: str, request: SubscriptionRequest) -> InterestPoints:
        """Resolve seeds, encode queries: the interest vectors of a subscription and their payloads.

        Raises:
            UnknownPaper: naming the arXiv ids that are not indexed.
        """
        store = self.store
        seeds = await store.run(resolve_seeds, store, request.arxiv_ids)
        unknown = [a for a in request.arxiv_ids if a not in seeds]
        if unknown:
            raise UnknownPaper(unknown)
        query_vectors = (
            await self.subs.encoder.aencode([normalise(q) for q in request.queries])
            if request.queries
            else np.zeros((0, store.dim), dtype=np.float32)
        )
        return build_interests(sub_id, request, seeds, query_vectors, self.subs.prior)

    def _write_points_sync(self, built: InterestPoints) -> None:
        """The interest points: dense vectors, payloads, and the sparse vector on the first."""
        store = self.store
        if built.ids:
            store.upsert(
                store.subscriptions, built.ids, built.vectors, built.payloads, built.lexical
            )

    def _set_interest_payload_sync(self, sub_id: str, fields: dict[str, Any]) -> None:
        set_interest_fields(self.store, sub_id, fields)

    def _delete_points_sync(self, ids: list[str]) -> None:
        delete_interest_points(self.store, ids)
