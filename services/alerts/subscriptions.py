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
import re
import secrets
import uuid
from dataclasses import dataclass
from typing import Any, Literal
from urllib.parse import urlsplit

import numpy as np
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.alerts.filters import author_key
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
from services.store.models import Filter, matching
from services.store.points import delete_interest_points, delete_interests, set_interest_fields
from services.store.tables import PayloadTable
from services.store.vectorstore import Sparse, VectorStore

log = logging.getLogger(__name__)

MAX_INTERESTS = 50  # queries + seed papers of one subscription
MAX_QUERY_CHARS = 2000
MAX_NAME_CHARS = 200
MAX_CATEGORIES = 20
MAX_SUBSCRIPTIONS_LISTED = 10_000
MAX_TERMS = 50  # include or exclude terms
MAX_TERM_CHARS = 100
MAX_AUTHORS = 100
MAX_AUTHOR_CHARS = 200
MAX_EMAIL_CHARS = 254
EMAIL_RE = re.compile(
    r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
Digest = Literal["off", "daily", "weekly"]
DEFAULT_THRESHOLD = 0.05  # ~ the 99th percentile of unrelated papers (docs/alerts.md)
AlertSort = Literal["score", "relevance", "time"]
SORT_KEYS: dict[str, str] = {"score": "score", "relevance": "relevance", "time": "created_ts"}
DEFAULT_MIN_RELEVANCE = 0.0  # calibrated relevance an alert needs (docs/alerts.md)
ALERTS_SORTED_HERE = 1000  # a subscription with more alerts has Qdrant sort them


def meta_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_subscription_meta"


def alerts_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_alerts"


def count_subscriptions(store: VectorStore) -> int:
    """Subscriptions (not interest vectors); 0 before the first one (blocking)."""
    table = PayloadTable(store, meta_collection(store))
    return table.count() if table.exists() else 0


class SubscriptionRequest(BaseModel):
    """The body of ``POST /subscriptions``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = ""
    queries: list[str] = Field(default_factory=list)
    arxiv_ids: list[str] = Field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    min_relevance: float = DEFAULT_MIN_RELEVANCE
    categories: list[str] = Field(default_factory=list)
    webhook: str | None = None
    webhook_secret: str | None = None
    digest: Digest = "off"
    email: str | None = None  # where digests go
    include_terms: list[str] = Field(default_factory=list)
    exclude_terms: list[str] = Field(default_factory=list)
    authors: list[str] = Field(default_factory=list)  # followed authors: always alert
    cross_lists: bool = True  # False: only papers whose primary category is in categories

    @field_validator("include_terms", "exclude_terms")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_TERMS:
            raise ValueError(f"at most {MAX_TERMS} terms, got {len(value)}")
        for i, term in enumerate(value):
            if not term.strip():
                raise ValueError(f"term {i} is empty")
            if len(term) > MAX_TERM_CHARS:
                raise ValueError(f"term {i} has {len(term)} characters, max {MAX_TERM_CHARS}")
        return list(dict.fromkeys(" ".join(t.split()) for t in value))

    @field_validator("authors")
    @classmethod
    def _authors(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_AUTHORS:
            raise ValueError(f"at most {MAX_AUTHORS} authors, got {len(value)}")
        for i, name in enumerate(value):
            if len(name) > MAX_AUTHOR_CHARS:
                raise ValueError(f"author {i} has {len(name)} characters, max {MAX_AUTHOR_CHARS}")
            if not author_key(name):
                raise ValueError(f"author {i} ({name!r}) has no name in it")
        return list(dict.fromkeys(" ".join(n.split()) for n in value))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) > MAX_EMAIL_CHARS or not EMAIL_RE.match(value):
            raise ValueError(f"not an e-mail address: {value[:80]!r} (expected name@example.org)")
        return value

    @field_validator("cross_lists", mode="before")
    @classmethod
    def _cross_lists(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value

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

    @field_validator("threshold", "min_relevance", mode="before")
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
    if interests == 0 and not request.authors:
        raise InvalidSubscription(
            "a subscription needs at least one of queries, arxiv_ids or authors"
        )
    if interests > MAX_INTERESTS:
        raise InvalidSubscription(
            f"too many interests: {interests} queries and arxiv_ids, max {MAX_INTERESTS}"
        )
    if request.webhook_secret and not request.webhook:
        raise InvalidSubscription("webhook_secret given without webhook")
    if request.digest != "off" and not request.email:
        raise InvalidSubscription(f"digest {request.digest!r} needs an email address")
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


def _request_fields(request: SubscriptionRequest) -> dict[str, Any]:
    """The metadata fields that come straight from the request."""
    return {
        "name": request.name,
        "threshold": request.threshold,
        "min_relevance": request.min_relevance,
        "categories": request.categories,
        "queries": request.queries,
        "arxiv_ids": request.arxiv_ids,
        "digest": request.digest,
        "email": request.email,
        "include_terms": request.include_terms,
        "exclude_terms": request.exclude_terms,
        "authors": request.authors,
        "cross_lists": request.cross_lists,
    }


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
    """Create, read and delete subscriptions; store and list their alerts.

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
            **_request_fields(request),
        )
        store = self.store
        await store.run(self._write_points_sync, built)
        # Metadata last: a subscription whose metadata is missing is never matched.
        await store.run(self._put_meta_sync, sub_id, meta)
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
        old = await self.get_meta(raw_id)
        await self._check_webhook(request, allow_private)
        sub_id = old.id
        store = self.store
        changes: dict[str, Any] = dict(_request_fields(request))
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
        await store.run(self._put_meta_sync, sub_id, meta)
        view = meta.public()
        if meta.webhook and meta.webhook is not old.webhook:
            view["webhook_secret"] = meta.webhook.secret
        return view

    async def rotate_feed_token(self, raw_id: str) -> str:
        """A new feed token for the subscription; the old feed and unsubscribe links stop working.

        Raises:
            NotFound: for a malformed or unknown id.
        """
        old = await self.get_meta(raw_id)
        token = new_feed_token()
        meta = old.model_copy(update={"feed_token": token, "updated_at": utcnow().isoformat()})
        await self.store.run(self._put_meta_sync, old.id, meta)
        return token

    async def set_digest(self, raw_id: str, digest: Digest) -> SubscriptionMeta:
        """Change only the digest cadence (the one-click unsubscribe link turns it off)."""
        old = await self.get_meta(raw_id)
        meta = old.model_copy(update={"digest": digest, "updated_at": utcnow().isoformat()})
        await self.store.run(self._put_meta_sync, old.id, meta)
        return meta

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
        seeds = await store.run(self.resolve_seeds_sync, request.arxiv_ids)
        unknown = [a for a in request.arxiv_ids if a not in seeds]
        if unknown:
            raise UnknownPaper(unknown)
        query_vectors = (
            await self.encoder.aencode([normalise(q) for q in request.queries])
            if request.queries
            else np.zeros((0, store.dim), dtype=np.float32)
        )
        return build_interests(sub_id, request, seeds, query_vectors, self.prior)

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

    def lexical_vector(self, interests: list[Interest]) -> Sparse:
        """The subscription's sparse vector: unit TF-IDF centroid of its interests' terms."""
        return lexical_vector(interests, self.prior)

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

    async def delete(self, raw_id: str) -> dict[str, Any]:
        """Remove the interest vectors first (no new matches), then the metadata and alerts."""
        view = await self.get(raw_id)
        sub_id = view["id"]

        def remove() -> None:
            delete_interests(self.store, sub_id)
            self.meta_table.delete([sub_id])
            self.alerts_table.delete_where(matching(subscription_id=sub_id))

        await self.store.run(remove)
        return {"deleted": sub_id}

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


def build_interests(
    sub_id: str,
    request: SubscriptionRequest,
    seeds: dict[str, Seed],
    query_vectors: np.ndarray,
    prior: CorpusStats,
) -> InterestPoints:
    """A subscription's interests and their points (pure): one vector per query, one per
    sentence of each seed paper (``seeds``: :meth:`SubscriptionStore.resolve_seeds_sync`;
    ``query_vectors``: the encoded, normalised queries), and the sparse TF-IDF centroid
    (IDF of ``prior``) on the first point.
    """
    dim = query_vectors.shape[1]
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


def lexical_vector(interests: list[Interest], prior: CorpusStats) -> Sparse:
    """A subscription's sparse vector: unit TF-IDF centroid of its interests' terms."""
    return sparse(centroid([tfidf(dict(interest.terms), prior) for interest in interests]))


def _terms(text: str) -> list[tuple[str, int]]:
    """Term counts as a list of pairs (payload keys may not hold dots or spaces safely)."""
    return sorted(term_counts(text).items())


def alert_view(payload: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in payload.items() if k not in ("digest", "created_ts")}
