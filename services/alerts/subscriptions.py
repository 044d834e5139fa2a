"""Subscriptions and their alerts in Qdrant: request validation, interest vectors, metadata, storage.

Three collections hold everything, so local and server mode behave the same and nothing
lives only in a worker's memory:

* ``<prefix>_subscription_meta`` (payload only, not model-versioned): what the user asked
  for (queries, seed arXiv ids, threshold, categories, webhook) and each interest's terms,
  enough to rebuild the vectors for another model;
* ``store.subscriptions`` (model-versioned): one point per interest vector, the target of
  the percolation search;
* ``<prefix>_alerts`` (payload only): one point per alert, id = ``alert_id``, so a
  re-delivered paper overwrites its alert instead of adding one.
"""

from __future__ import annotations

import logging
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator
from qdrant_client import models as qm

from services.alerts.matcher import CorpusStats, centroid, term_counts, tfidf
from services.alerts.webhooks import UnsafeUrl, check_url
from services.core.clock import utcnow
from services.core.errors import (
    InvalidSubscription,
    NotFound,
    UnknownPaper,
    describe_validation_error,
)
from services.core.ids import interest_point_id
from services.core.lexical import sparse
from services.core.schemas import split_arxiv_id
from services.core.text import normalise
from services.core.types import TextEncoder
from services.store.binding import Binding
from services.store.vectorstore import Sparse, VectorStore

log = logging.getLogger(__name__)

MAX_INTERESTS = 50  # queries + seed papers of one subscription
MAX_QUERY_CHARS = 2000
MAX_NAME_CHARS = 200
MAX_CATEGORIES = 20
MAX_SUBSCRIPTIONS_LISTED = 10_000
DEFAULT_THRESHOLD = 0.05  # ~ the 99th percentile of unrelated papers (docs/alerts.md)


def meta_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_subscription_meta"


def alerts_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_alerts"


def count_subscriptions(store: VectorStore) -> int:
    """Subscriptions (not interest vectors); 0 before the first one (blocking)."""
    name = meta_collection(store)
    if not store.client.collection_exists(name):
        return 0
    return store.count(name)


class SubscriptionRequest(BaseModel):
    """The body of ``POST /subscriptions``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = ""
    queries: list[str] = Field(default_factory=list)
    arxiv_ids: list[str] = Field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    categories: list[str] = Field(default_factory=list)
    webhook: str | None = None
    webhook_secret: str | None = None

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"at most {MAX_NAME_CHARS} characters, got {len(value)}")
        return value

    @field_validator("queries")
    @classmethod
    def _queries(cls, value: list[str]) -> list[str]:
        for i, query in enumerate(value):
            if not query.strip():
                raise ValueError(f"query {i} is empty")
            if len(query) > MAX_QUERY_CHARS:
                raise ValueError(
                    f"query {i} has {len(query)} characters, over the limit of {MAX_QUERY_CHARS}"
                )
        return list(dict.fromkeys(q.strip() for q in value))

    @field_validator("arxiv_ids")
    @classmethod
    def _arxiv_ids(cls, value: list[str]) -> list[str]:
        bare: list[str] = []
        for raw in value:
            try:
                bare.append(split_arxiv_id(raw)[0])
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        return list(dict.fromkeys(bare))

    @field_validator("threshold", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"must be a number between 0 and 1, got {value!r}")
        return float(value)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_CATEGORIES:
            raise ValueError(f"at most {MAX_CATEGORIES} categories, got {len(value)}")
        for category in value:
            if not 0 < len(category) <= 64:
                raise ValueError(f"category {category!r} must have 1 to 64 characters")
        return list(dict.fromkeys(value))

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, got {value!r}")
        if len(value) > 2000:
            raise ValueError("URL is too long (max 2000 characters)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not 16 <= len(value) <= 256:
            raise ValueError("must have 16 to 256 characters (omit it to get a generated one)")
        return value


def parse_request(body: Any) -> SubscriptionRequest:
    """Validate a request body.

    Raises:
        InvalidSubscription: with every problem, each naming its field.
    """
    if not isinstance(body, dict):
        raise InvalidSubscription(f"body must be a JSON object, got {type(body).__name__}")
    try:
        request = SubscriptionRequest.model_validate(body)
    except ValidationError as exc:
        problems = describe_validation_error(
            exc, root="body", fields_hint=SubscriptionRequest.model_fields
        )
        raise InvalidSubscription("; ".join(problems)) from None
    interests = len(request.queries) + len(request.arxiv_ids)
    if interests == 0:
        raise InvalidSubscription("a subscription needs at least one of queries or arxiv_ids")
    if interests > MAX_INTERESTS:
        raise InvalidSubscription(
            f"too many interests: {interests} queries and arxiv_ids, max {MAX_INTERESTS}"
        )
    if request.webhook_secret and not request.webhook:
        raise InvalidSubscription("webhook_secret given without webhook")
    return request


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
    categories: list[str] = []
    queries: list[str] = []
    arxiv_ids: list[str] = []
    interests: list[Interest] = []
    points: int = 0
    model_version: str | None = None
    webhook: Webhook | None = None
    owner: str | None = None  # owners.owner_id of the owner's secret; never shown

    def payload(self) -> dict[str, Any]:
        return self.model_dump(mode="json")

    def public(self) -> dict[str, Any]:
        """What the API shows of a subscription: no terms, no webhook secret."""
        return {
            "id": self.id,
            "name": self.name,
            "created_at": self.created_at,
            "threshold": self.threshold,
            "categories": self.categories,
            "queries": self.queries,
            "arxiv_ids": self.arxiv_ids,
            "interest_vectors": self.points,
            "model_version": self.model_version,
            "webhook": self.webhook.url if self.webhook else None,
        }


def check_subscription_id(raw: str) -> str:
    """The canonical (32 hex digits) form of a subscription id, or a 404."""
    try:
        return uuid.UUID(raw).hex
    except ValueError:
        raise NotFound(f"subscription {raw} does not exist") from None


@dataclass(frozen=True)
class Seed:
    """An indexed paper used as an interest: its sentences and their vectors."""

    arxiv_id: str
    title: str
    sentences: list[str]
    vectors: np.ndarray


class SubscriptionStore:
    """Create, read and delete subscriptions; store and list their alerts.

    Methods named ``*_sync`` block and run on the Qdrant thread via ``store.run``.
    """

    def __init__(self, binding: Binding, prior: CorpusStats | None = None) -> None:
        self.binding = binding
        # The IDF of the subscriptions' sparse vectors (the alerts' prior table; none: tf only).
        self.prior = prior if prior is not None else CorpusStats()
        self.meta = meta_collection(binding.store)
        self.alerts = alerts_collection(binding.store)

    @property
    def store(self) -> VectorStore:
        """The live model's store (a rollout swaps the binding)."""
        return self.binding.store

    @property
    def encoder(self) -> TextEncoder:
        return self.binding.encoder

    def ensure_sync(self) -> None:
        """Create the payload-only collections and their indexes (idempotent)."""
        client = self.store.client
        for name in (self.meta, self.alerts):
            if not client.collection_exists(name):
                client.create_collection(name, vectors_config={})
                log.info("created collection %s", name)
                if name == self.alerts:
                    client.create_payload_index(
                        name, "subscription_id", qm.PayloadSchemaType.KEYWORD
                    )
                    for field in ("score", "created_ts"):
                        client.create_payload_index(name, field, qm.PayloadSchemaType.FLOAT)

    # subscriptions ---------------------------------------------------------
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
        if request.webhook:
            try:
                await check_url(request.webhook, allow_private)
            except UnsafeUrl as exc:
                raise InvalidSubscription(f"webhook: {exc}") from None
        store = self.store
        seeds = await store.run(self.resolve_seeds_sync, request.arxiv_ids)
        unknown = [a for a in request.arxiv_ids if a not in seeds]
        if unknown:
            raise UnknownPaper(unknown)
        query_vectors = (
            await self.encoder.aencode([normalise(q) for q in request.queries])
            if request.queries
            else np.zeros((0, store.dim), dtype=np.float32)
        )
        sub_id = uuid.uuid4().hex
        interests: list[Interest] = []
        labels: list[tuple[int, str, str, str]] = []  # interest index, label, kind, text
        rows: list[np.ndarray] = []
        for query, vector in zip(request.queries, query_vectors, strict=True):
            index = len(interests)
            interests.append(Interest(interest=query, kind="query", terms=_terms(query)))
            labels.append((index, query, "query", query))
            rows.append(vector[None, :])
        for arxiv_id in request.arxiv_ids:
            seed = seeds[arxiv_id]
            index = len(interests)
            text = " ".join([seed.title, *seed.sentences])
            interests.append(Interest(interest=arxiv_id, kind="paper", terms=_terms(text)))
            labels.extend((index, arxiv_id, "sentence", s) for s in seed.sentences)
            rows.append(seed.vectors)
        vectors = np.vstack(rows).astype(np.float32)
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
        lexical: list[Sparse | None] = [self.lexical_vector(interests)] + [None] * (points - 1)
        secret = request.webhook_secret or (secrets.token_hex(32) if request.webhook else None)
        meta = SubscriptionMeta(
            id=sub_id,
            name=request.name,
            created_at=utcnow().isoformat(),
            threshold=request.threshold,
            categories=request.categories,
            queries=request.queries,
            arxiv_ids=request.arxiv_ids,
            interests=interests,
            points=points,
            model_version=store.model_version,
            webhook=Webhook(url=request.webhook, secret=secret)
            if request.webhook and secret
            else None,
            owner=owner,
        )
        await store.run(store.upsert, store.subscriptions, ids, vectors, payloads, lexical)
        # Metadata last: a subscription whose metadata is missing is never matched.
        await store.run(self._put_meta_sync, sub_id, meta)
        view = meta.public()
        if secret:
            view["webhook_secret"] = secret
        return view

    def lexical_vector(self, interests: list[Interest]) -> Sparse:
        """The subscription's sparse vector: unit TF-IDF centroid of its interests' terms."""
        vectors = [tfidf(dict(interest.terms), self.prior) for interest in interests]
        return sparse(centroid(vectors))

    def resolve_seeds_sync(self, arxiv_ids: list[str]) -> dict[str, Seed]:
        store = self.store
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

    def _put_meta_sync(self, sub_id: str, meta: SubscriptionMeta) -> None:
        self.store.client.upsert(
            self.meta, [qm.PointStruct(id=sub_id, vector={}, payload=meta.payload())], wait=True
        )

    def meta_sync(self, sub_ids: list[str]) -> dict[str, SubscriptionMeta]:
        """Full metadata (terms and webhook secret included) of the subscriptions that exist."""
        if not sub_ids:
            return {}
        records = self.store.client.retrieve(self.meta, ids=sub_ids, with_payload=True)
        metas = (SubscriptionMeta.model_validate(r.payload) for r in records if r.payload)
        return {m.id: m for m in metas}

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

        def scan() -> list[Any]:
            records, _ = self.store.client.scroll(
                self.meta, limit=MAX_SUBSCRIPTIONS_LISTED, with_payload=True
            )
            return records

        records = await self.store.run(scan)
        metas = [SubscriptionMeta.model_validate(r.payload) for r in records if r.payload]
        views = [m.public() for m in metas if owner is None or m.owner == owner]
        return sorted(views, key=lambda v: (v["created_at"], v["id"]))

    async def delete(self, raw_id: str) -> dict[str, Any]:
        """Remove the interest vectors first (no new matches), then the metadata and alerts."""
        view = await self.get(raw_id)
        sub_id = view["id"]
        by_sub = qm.Filter(
            must=[qm.FieldCondition(key="subscription_id", match=qm.MatchValue(value=sub_id))]
        )

        def remove() -> None:
            client = self.store.client
            client.delete(self.store.subscriptions, qm.FilterSelector(filter=by_sub), wait=True)
            client.delete(self.meta, qm.PointIdsList(points=[sub_id]), wait=True)
            client.delete(self.alerts, qm.FilterSelector(filter=by_sub), wait=True)

        await self.store.run(remove)
        return {"deleted": sub_id}

    def count_sync(self) -> int:
        return self.store.count(self.meta)

    # alerts ----------------------------------------------------------------
    def existing_alerts_sync(self, alert_ids: list[str]) -> dict[str, dict[str, Any]]:
        if not alert_ids:
            return {}
        records = self.store.client.retrieve(self.alerts, ids=alert_ids, with_payload=True)
        return {str(r.payload["alert_id"]): r.payload for r in records if r.payload}

    def put_alerts_sync(self, payloads: list[dict[str, Any]]) -> None:
        if payloads:
            points = [qm.PointStruct(id=p["alert_id"], vector={}, payload=p) for p in payloads]
            self.store.client.upsert(self.alerts, points, wait=True)

    async def list_alerts(
        self, raw_id: str, limit: int, sort: Literal["score", "time"]
    ) -> list[dict[str, Any]]:
        """A subscription's alerts, best score first or newest first."""
        sub_id = (await self.get(raw_id))["id"]
        by_sub = qm.Filter(
            must=[qm.FieldCondition(key="subscription_id", match=qm.MatchValue(value=sub_id))]
        )

        def scan() -> list[dict[str, Any]]:
            records, _ = self.store.client.scroll(
                self.alerts,
                scroll_filter=by_sub,
                limit=limit,
                with_payload=True,
                order_by=qm.OrderBy(
                    key="score" if sort == "score" else "created_ts", direction=qm.Direction.DESC
                ),
            )
            return [r.payload for r in records if r.payload]

        alerts = await self.store.run(scan)
        key = "score" if sort == "score" else "created_ts"
        alerts.sort(key=lambda a: (-float(a.get(key, 0)), a.get("arxiv_id", "")))
        return [alert_view(a) for a in alerts[:limit]]


def _terms(text: str) -> list[tuple[str, int]]:
    """Term counts as a list of pairs (payload keys may not hold dots or spaces safely)."""
    return sorted(term_counts(text).items())


def alert_view(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("digest", "created_ts")}
