"""Subscriptions and their alerts in Qdrant: metadata, interest vectors, alerts, storage.

Three collections hold everything, so local and server mode behave the same and nothing
lives only in a worker's memory:

* ``<prefix>_subscription_meta`` (payload only, not model-versioned): what the user asked
  for (queries, seed arXiv ids, threshold, categories, webhook) and each interest's terms,
  enough to rebuild the vectors for another model;
* ``store.subscriptions`` (model-versioned): one point per interest vector, the target of
  the percolation search;
* ``<prefix>_alerts`` (payload only): one point per alert, id = ``alert_id``, so a
  re-delivered paper overwrites its alert instead of adding one.

This module reads them; creating, changing and deleting a subscription is
``services.alerts.lifecycle`` (the request it validates is ``services.alerts.request``).
Each of the three collections registers how to forget a deleted subscription
(``services.alerts.records``).
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
from pydantic import BaseModel, ConfigDict

from services.alerts.filters import author_key
from services.alerts.matcher import CorpusStats, centroid, term_counts, tfidf
from services.alerts.records import FIRST, LAST, per_subscription
from services.alerts.request import Digest, SubscriptionRequest
from services.core.errors import NotFound
from services.core.ids import interest_point_id
from services.core.lexical import sparse
from services.core.types import TextEncoder
from services.store.binding import Binding
from services.store.models import Filter, matching
from services.store.points import delete_interests
from services.store.tables import PayloadTable
from services.store.vectorstore import Sparse, VectorStore

log = logging.getLogger(__name__)

MAX_SUBSCRIPTIONS_LISTED = 10_000
AlertSort = Literal["score", "relevance", "time"]
SORT_KEYS: dict[str, str] = {"score": "score", "relevance": "relevance", "time": "created_ts"}
ALERTS_SORTED_HERE = 1000  # a subscription with more alerts has Qdrant sort them


def meta_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_subscription_meta"


def alerts_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_alerts"


def count_subscriptions(store: VectorStore) -> int:
    """Subscriptions (not interest vectors); 0 before the first one (blocking)."""
    table = PayloadTable(store, meta_collection(store))
    return table.count() if table.exists() else 0


class Interest(BaseModel):
    """One query or seed paper of a subscription, with the term counts of its text."""

    model_config = ConfigDict(frozen=True)

    interest: str
    kind: Literal["query", "paper"]
    terms: list[tuple[str, int]] = []  # pairs, not a dict: payload keys may not hold dots


class Webhook(BaseModel):
    """Where a subscription's alerts are POSTed, and the secret that signs them."""

    model_config = ConfigDict(frozen=True)

    url: str
    secret: str


class SubscriptionMeta(BaseModel):
    """A subscription as stored in the metadata collection (the point's payload, as JSON).

    Everything the matcher needs, terms and webhook secret included; :meth:`public` is what
    the API shows. Unknown payload keys are ignored, so older payloads stay readable.
    """

    model_config = ConfigDict(frozen=True, extra="ignore")

    id: str
    name: str = ""
    created_at: str
    threshold: float = 0.0
    min_relevance: float = 0.0
    categories: list[str] = []
    queries: list[str] = []
    arxiv_ids: list[str] = []
    interests: list[Interest] = []
    points: int = 0
    model_version: str | None = None
    webhook: Webhook | None = None
    owner: str | None = None  # owners.owner_id of the owner's secret; never shown
    # Capability for the feed and e-mail links; stored as is (the owner sees the link again),
    # never in public(); rotating it revokes the old links.
    feed_token: str | None = None
    digest: Digest = "off"
    email: str | None = None
    include_terms: list[str] = []
    exclude_terms: list[str] = []
    authors: list[str] = []
    cross_lists: bool = True
    updated_at: str | None = None

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def public(self) -> dict[str, Any]:
        """What the API shows of a subscription: no terms, no webhook secret."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "threshold": self.threshold,
            "min_relevance": self.min_relevance,
            "categories": self.categories,
            "queries": self.queries,
            "arxiv_ids": self.arxiv_ids,
            "interest_vectors": self.points,
            "model_version": self.model_version,
            "webhook": self.webhook.url if self.webhook else None,
            "digest": self.digest,
            "email": self.email,
            "include_terms": self.include_terms,
            "exclude_terms": self.exclude_terms,
            "authors": self.authors,
            "cross_lists": self.cross_lists,
            "updated_at": self.updated_at,
        }


def check_subscription_id(raw: str) -> str:
    """The canonical (32 hex digits) form of a subscription id, or a 404."""
    try:
        return uuid.UUID(raw).hex
    except ValueError:
        raise NotFound(f"subscription {raw} does not exist") from None


def new_feed_token() -> str:
    """A capability for a subscription's feed and e-mail links (not the owner secret)."""
    return secrets.token_urlsafe(24)


def request_body(meta: SubscriptionMeta) -> dict[str, Any]:
    """A subscription as the request body that would create it (webhook secret left out).

    ``PATCH`` merges its body into this; the web app fills its edit form from it.
    """
    fields = {
        "name": meta.name,
        "threshold": meta.threshold,
        "min_relevance": meta.min_relevance,
        "categories": meta.categories,
        "queries": meta.queries,
        "arxiv_ids": meta.arxiv_ids,
        "digest": meta.digest,
        "email": meta.email,
        "include_terms": meta.include_terms,
        "exclude_terms": meta.exclude_terms,
        "authors": meta.authors,
        "cross_lists": meta.cross_lists,
    }
    if meta.webhook:
        fields["webhook"] = meta.webhook.url
    return fields


@dataclass(frozen=True)
class InterestPoints:
    """A subscription's interests and the points that hold their vectors."""

    interests: list[Interest]
    ids: list[str]
    vectors: np.ndarray
    payloads: list[dict[str, Any]]
    lexical: list[Sparse | None]


@dataclass(frozen=True)
class Seed:
    """An indexed paper used as an interest: its sentences and their vectors."""

    arxiv_id: str
    title: str
    sentences: list[str]
    vectors: np.ndarray


class SubscriptionStore:
    """Read subscriptions; store and list their alerts.

    Creating, changing and deleting one is :class:`services.alerts.lifecycle.SubscriptionService`.
    Methods named ``*_sync`` block and run on the Qdrant thread via ``store.run``.
    """

    def __init__(self, binding: Binding, prior: CorpusStats | None = None) -> None:
        self.binding = binding
        # The IDF of the subscriptions' sparse vectors (the alerts' prior table; none: tf only).
        self.prior = prior if prior is not None else CorpusStats()
        self.meta = meta_collection(binding.store)
        self.alerts = alerts_collection(binding.store)
        self.meta_table = PayloadTable(lambda: binding.store, self.meta)
        self.alerts_table = PayloadTable(
            lambda: binding.store,
            self.alerts,
            keyword=["subscription_id"],
            floats=["score", "created_ts", "relevance"],
        )

    @property
    def store(self) -> VectorStore:
        """The live model's store (a rollout swaps the binding)."""
        return self.binding.store

    @property
    def encoder(self) -> TextEncoder:
        return self.binding.encoder

    def ensure_sync(self) -> None:
        """Create the payload-only collections and their indexes (idempotent)."""
        self.meta_table.ensure()
        self.alerts_table.ensure()

    # subscriptions ---------------------------------------------------------
    def lexical_vector(self, interests: list[Interest]) -> Sparse:
        """The subscription's sparse vector: unit TF-IDF centroid of its interests' terms."""
        return lexical_vector(interests, self.prior)

    def put_meta_sync(self, sub_id: str, meta: SubscriptionMeta) -> None:
        """Write a subscription's metadata (the service writes it after its interest vectors)."""
        self.meta_table.put(sub_id, meta.payload())

    def meta_sync(self, sub_ids: list[str]) -> dict[str, SubscriptionMeta]:
        """Full metadata (terms and webhook secret included) of the subscriptions that exist."""
        if not sub_ids:
            return {}
        payloads = self.meta_table.get_many(sub_ids)
        metas = (SubscriptionMeta.model_validate(p) for p in payloads if p)
        return {m.id: m for m in metas}

    def stamps_sync(self, sub_ids: list[str]) -> dict[str, str]:
        """When each existing subscription was last written (``updated_at``, else
        ``created_at``): every write sets it, so a cached metadata with the same stamp is
        current. Reads two small fields, not the interests' terms."""
        if not sub_ids:
            return {}
        payloads = self.meta_table.get_many(sub_ids, fields=["id", "created_at", "updated_at"])
        return {
            str(p["id"]): str(p.get("updated_at") or p.get("created_at") or "")
            for p in payloads
            if p
        }

    async def get_meta(self, raw_id: str) -> SubscriptionMeta:
        """The full metadata of one subscription (owner and webhook secret included).

        Raises:
            NotFound: for a malformed or unknown id.
        """
        sub_id = check_subscription_id(raw_id)
        found = await self.store.run(self.meta_sync, [sub_id])
        if sub_id not in found:
            raise NotFound(f"subscription {raw_id} does not exist")
        return found[sub_id]

    async def get(self, raw_id: str) -> dict[str, Any]:
        return (await self.get_meta(raw_id)).public()

    async def list_all(self, owner: str | None = None) -> list[dict[str, Any]]:
        """Every subscription, or only those of ``owner`` (an ``owner_id``), oldest first."""

        def scan() -> list[dict[str, Any]]:
            return self.meta_table.page(limit=MAX_SUBSCRIPTIONS_LISTED)[0]

        payloads = await self.store.run(scan)
        metas = [SubscriptionMeta.model_validate(p) for p in payloads if p]
        views = [m.public() for m in metas if owner is None or m.owner == owner]
        return sorted(views, key=lambda v: (v["created_at"], v["id"]))

    def followed_authors_sync(self) -> dict[str, set[str]]:
        """``author_key`` -> ids of the subscriptions that follow that author (blocking)."""
        if not self.meta_table.exists():
            return {}
        index: dict[str, set[str]] = {}
        for payload in self.meta_table.scan(fields=["id", "authors"]):
            for name in payload.get("authors") or ():
                key = author_key(str(name))
                if key:
                    index.setdefault(key, set()).add(str(payload.get("id")))
        return index

    def count_sync(self) -> int:
        return self.meta_table.count()

    # alerts ----------------------------------------------------------------
    def existing_alerts_sync(self, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not alert_ids:
            return {}
        payloads = self.alerts_table.get_many(alert_ids)
        return {str(p["alert_id"]): p for p in payloads if p}

    def put_alerts_sync(self, payloads: list[dict[str, Any]]) -> None:
        self.alerts_table.put_many((p["alert_id"], p) for p in payloads)

    async def list_alerts(self, raw_id: str, limit: int, sort: AlertSort) -> list[dict[str, Any]]:
        """A subscription's alerts, best score (or relevance) first or newest first.

        ``relevance`` lists only alerts that have one (those stored before it existed do not).
        """
        sub_id = (await self.get(raw_id))["id"]
        by_sub = matching(subscription_id=sub_id)
        key = SORT_KEYS[sort]
        alerts = await self.store.run(self._sorted_alerts_sync, by_sub, key, limit)
        return [alert_view(a) for a in alerts[:limit]]

    def _sorted_alerts_sync(self, by_sub: Filter, key: str, limit: int) -> list[dict[str, Any]]:
        """The ``limit`` alerts with the highest ``key`` (those without one left out).

        A subscription has few alerts: scroll them by the filter alone and sort here. An
        ``order_by`` scroll reads the key of every alert of every subscription, which local
        mode does in Python; it is used only past ``ALERTS_SORTED_HERE`` alerts.
        """
        payloads, offset = self.alerts_table.page(by_sub, limit=ALERTS_SORTED_HERE)
        if offset is not None:
            payloads, _ = self.alerts_table.page(by_sub, limit=limit, order_by=key, descending=True)
        alerts = [
            p
            for p in payloads
            if p and isinstance(p.get(key), int | float) and not isinstance(p.get(key), bool)
        ]
        alerts.sort(key=lambda a: (-float(a[key]), a.get("arxiv_id", "")))
        return alerts[:limit]


# Forgetting a deleted subscription (services.alerts.records): the interest vectors first, so
# it is matched no more, the metadata last, so a delete that failed half way can be retried.
@per_subscription("interests", order=FIRST)
def forget_interests(store: VectorStore, subscription_id: str) -> None:
    delete_interests(store, subscription_id)


@per_subscription("alerts")
def forget_alerts(store: VectorStore, subscription_id: str) -> None:
    table = PayloadTable(store, alerts_collection(store))
    if table.exists():
        table.delete_where(matching(subscription_id=subscription_id))


@per_subscription("metadata", order=LAST)
def forget_metadata(store: VectorStore, subscription_id: str) -> None:
    """The metadata, with the owner's hash and the feed token (the last of the records)."""
    table = PayloadTable(store, meta_collection(store))
    if table.exists():
        table.delete([subscription_id])


def build_interests(
    sub_id: str,
    request: SubscriptionRequest,
    seeds: dict[str, Seed],
    query_vectors: np.ndarray,
    prior: CorpusStats,
) -> InterestPoints:
    """A subscription's interests and their points (pure): one vector per query, one per
    sentence of each seed paper (``seeds``: :func:`resolve_seeds`;
    ``query_vectors``: the encoded, normalised queries), and the sparse TF-IDF centroid
    (IDF of ``prior``) on the first point.
    """
    dim = query_vectors.shape[1]
    interests: list[Interest] = []
    labels: list[tuple[int, str, str, str]] = []  # interest index, label, kind, text
    rows: list[np.ndarray] = []
    for query, vector in zip(request.queries, query_vectors, strict=True):
        index = len(interests)
        interests.append(Interest(interest=query, kind="query", terms=interest_terms(query)))
        labels.append((index, query, "query", query))
        rows.append(vector[None, :])
    for arxiv_id in request.arxiv_ids:
        seed = seeds[arxiv_id]
        index = len(interests)
        text = " ".join([seed.title, *seed.sentences])
        interests.append(Interest(interest=arxiv_id, kind="paper", terms=interest_terms(text)))
        labels.extend((index, arxiv_id, "sentence", s) for s in seed.sentences)
        rows.append(seed.vectors)
    vectors = np.vstack(rows).astype(np.float32) if rows else np.zeros((0, dim), np.float32)
    points = len(labels)
    payloads = [
        {
            "subscription_id": sub_id,
            "interest": label,
            "interest_index": index,
            "kind": kind,
            "text": text,
            "threshold": request.threshold,
            "categories": request.categories,
            "points": points,
        }
        for index, label, kind, text in labels
    ]
    ids = [interest_point_id(sub_id, i) for i in range(points)]
    # One sparse vector per subscription, on its first point: the TF-IDF centroid of its
    # interests (what the lexical score compares a paper with), so lexical percolation
    # spends one hit per subscription.
    lexical: list[Sparse | None] = [lexical_vector(interests, prior)] + [None] * (points - 1)
    return InterestPoints(interests, ids, vectors, payloads, lexical[:points])


def resolve_seeds(store: VectorStore, arxiv_ids: list[str]) -> dict[str, Seed]:
    """The indexed papers among ``arxiv_ids`` as seeds: each one's sentences and vectors of
    its current version (its paper vector when no sentence is left). Blocking."""
    found = store.papers_by_id(arxiv_ids, with_vectors=True)
    seeds: dict[str, Seed] = {}
    for arxiv_id, record in found.items():
        payload = record.payload or {}
        records = store.sentences_of(arxiv_id, with_vectors=True)
        version = payload.get("version")
        records = [r for r in records if (r.payload or {}).get("version") == version]
        if records:
            texts = [str((r.payload or {}).get("text", "")) for r in records]
            vectors = np.asarray([r.vector for r in records], dtype=np.float32)
        elif record.vector is not None:  # no sentences left: the paper vector stands in
            texts, vectors = [], np.asarray([record.vector], dtype=np.float32)
        else:
            continue
        seeds[arxiv_id] = Seed(arxiv_id, str(payload.get("title", "")), texts, vectors)
    return seeds


def lexical_vector(interests: list[Interest], prior: CorpusStats) -> Sparse:
    """A subscription's sparse vector: unit TF-IDF centroid of its interests' terms."""
    return sparse(centroid([tfidf(dict(interest.terms), prior) for interest in interests]))


def interest_terms(text: str) -> list[tuple[str, int]]:
    """Term counts as a list of pairs (payload keys may not hold dots or spaces safely)."""
    return sorted(term_counts(text).items())


def alert_view(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("digest", "created_ts")}
