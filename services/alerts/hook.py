"""The alert matcher: the embed stage's hook that percolates new papers into subscriptions.

For each newly embedded paper, every sentence vector is searched *into* the interest
collection (one batched request per micro-batch: the cost grows with the papers, not with
the number of subscriptions). The hits are grouped per subscription and scored by
``services.alerts.matcher``; papers at or above a subscription's threshold become alerts, published
on ``astro.alerts`` and stored under their deterministic ``alert_id``.

Delivery: an alert is published (and the broker has acknowledged it) before it is stored,
and both happen before the embed stage marks the paper done. A crash in between re-runs
the match: an alert already stored is never published again; one published but not yet
stored is published once more with the same ``alert_id`` (at-least-once, deduplicated by
id). A new version of an alerted paper never publishes a second alert: an unchanged text
leaves the stored alert as it is, a changed text updates its score and evidence in place.
"""

from __future__ import annotations

import asyncio
import logging
import os
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

from prometheus_client import Counter, Gauge, Histogram

from services.alerts import dense as static_dense
from services.alerts import pairs as batch_pairs
from services.alerts import percolation
from services.alerts.feedback import FeedbackStore
from services.alerts.filters import (
    REASON_AUTHOR,
    REASON_INTERESTS,
    author_keys,
)
from services.alerts.matcher import LEXICAL_WEIGHT, CorpusStats, evidence, term_counts, tfidf
from services.alerts.model import DENSE_WEIGHT
from services.alerts.ranking import SubscriptionModels
from services.alerts.subscriptions import SubscriptionMeta, SubscriptionStore
from services.alerts.webhooks import WebhookSender, webhook_body
from services.core import metrics
from services.core.errors import DependencyUnavailable
from services.core.ids import alert_id
from services.core.retry import until_available
from services.core.schemas import Alert, Match
from services.embed.pipeline import IndexedPaper
from services.store import points
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)
T = TypeVar("T")

BOOTSTRAP_SENTENCES = 20_000  # indexed sentences read at start to seed the IDF
META_CACHE = 10_000  # subscriptions whose metadata is kept in memory
META_TTL_S = 10.0  # a cached subscription is re-read after this long (PUT/PATCH changes it)
MAX_ALERTS_LIMIT = 500
# Score only pairs whose sparse score is at least this share of the threshold (lexical
# score alone): reach 1.0 at 10,000 subscriptions (docs/performance.md, "Matching at scale").
LEXICAL_MARGIN = 0.8

SUBSCRIPTIONS = Gauge(
    "astrostream_subscriptions", "Subscriptions, as last counted by this process."
)
MATCH_SECONDS = Histogram(
    "astrostream_match_seconds",
    "Time to match a micro-batch of new papers against all subscriptions.",
    buckets=metrics.LATENCY_BUCKETS,
)
ALERTS = Counter("astrostream_alerts", "Alerts published to the alerts topic.")
ALERTS_UPDATED = Counter(
    "astrostream_alerts_updated",
    "Stored alerts re-scored for a changed version (not re-published).",
)
ALERTS_PER_PAPER = Histogram(
    "astrostream_alerts_per_paper",
    "New alerts per new paper (how many subscriptions it matched).",
    buckets=(0, 1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024),
)


class AlertMatcher:
    """The embed stage's ``on_indexed`` hook: match, publish, store, notify.

    Args:
        subs: subscription and alert storage.
        publish: awaits until the broker holds the alerts.
        webhooks: background webhook delivery.
    """

    def __init__(
        self,
        subs: SubscriptionStore,
        publish: Callable[[list[Alert]], Awaitable[None]],
        webhooks: WebhookSender,
        *,
        aggregation: str = "lse",
        lexical_weight: float | None = None,
        prior: CorpusStats | None = None,
        percolate_limit: int = 256,
        sparse_limit: int = 1000,
        crash_after_publish: bool = False,
        feedback: FeedbackStore | None = None,
        dense_weight: float = DENSE_WEIGHT,
        lexical_margin: float = LEXICAL_MARGIN,
    ) -> None:
        self.subs = subs
        self.feedback = feedback
        self.publish = publish
        self.webhooks = webhooks
        self.aggregation = aggregation
        self.lexical_weight = lexical_weight
        self.percolate_limit = percolate_limit
        self.sparse_limit = sparse_limit  # subscriptions reached lexically per paper (0: off)
        # With the lexical score alone, score only pairs whose sparse score reaches this share
        # of the threshold (0: every pair reached); see percolation.Reach.likely.
        self.lexical_margin = lexical_margin
        self.crash_after_publish = crash_after_publish  # ASTRO_CRASH_AT (crash-safety tests)
        # IDF = prior table (a historical corpus) + every paper this process indexes or finds.
        self.corpus = prior.copy() if prior is not None else CorpusStats()
        self._bootstrapped = False
        self._meta: OrderedDict[str, SubscriptionMeta] = OrderedDict()
        self._meta_at: dict[str, float] = {}
        # Followed authors: author_key -> subscription ids, re-read every META_TTL_S.
        self._authors: dict[str, set[str]] = {}
        self._authors_at = -META_TTL_S
        # Each subscription's TF-IDF centroid: (corpus size then, its columns, its weights).
        self.centroids = batch_pairs.Centroids()
        self.max_backoff_s = 30.0
        # The static dense channel of the subscription models (0: lexical only).
        self.models = SubscriptionModels(
            lambda: self.store,
            feedback,
            dense=static_dense.shipped() if dense_weight > 0 else None,
            dense_weight=dense_weight,
        )

    @property
    def store(self) -> VectorStore:
        """The live model's store (a rollout moves ``subs`` to the new collections)."""
        return self.subs.store

    async def __call__(self, papers: list[IndexedPaper]) -> None:
        if not papers:
            return
        started = time.perf_counter()
        try:
            await self.match(papers)
        except (DependencyUnavailable, asyncio.CancelledError):
            raise
        except Exception as exc:
            # A bug here must not dead-letter papers that are indexed fine: log it, count it.
            metrics.ERRORS.labels("alerts", type(exc).__name__).inc()
            log.exception("alert matching failed for %d papers", len(papers))
        finally:
            MATCH_SECONDS.observe(time.perf_counter() - started)

    async def match(self, papers: list[IndexedPaper]) -> list[Alert]:
        """Score the papers against every subscription they reach; returns the new alerts."""
        if not self._bootstrapped:
            await self._bootstrap({p.paper.arxiv_id for p in papers})
        counts = []
        observed = []
        for item in papers:
            text = " ".join([item.paper.title, *item.sentences])
            terms = term_counts(text)
            self.corpus.add(terms)
            observed.append((item.paper.arxiv_id, terms, text))
            counts.append(terms)
        self.models.observe_all(observed)
        await self._refresh_authors()
        if not self._authors and not await self._call(self._any_interests):
            return []  # no subscriptions: skip the searches (costly in local mode)
        vectors = [tfidf(c, self.corpus) for c in counts]
        # With the lexical score alone, only pairs whose sparse score can reach the threshold.
        lexical_only = self.lexical_weight is None or self.lexical_weight >= 1.0
        margin = self.lexical_margin if lexical_only else 0.0
        reach = await percolation.percolate(
            self._call,
            self.store,
            [item.sentence_vectors for item in papers],
            vectors,
            self.percolate_limit,
            self.sparse_limit,
            margin,
        )
        reach = reach.likely(margin)
        followed = [self._followed_by(item.paper.authors) for item in papers]
        reached = {reach.sub_ids[int(c)] for c in set(reach.pair_subs.tolist())}
        metas = await self._metas(sorted(reached | {s for f in followed for s in f}))
        muted = (
            await self._call(
                self.feedback.muted_sync, sorted(metas), [p.paper.arxiv_id for p in papers]
            )
            if self.feedback is not None and metas
            else {}
        )
        pairs = batch_pairs.select(papers, reach, followed, metas, muted)
        weight = LEXICAL_WEIGHT if self.lexical_weight is None else self.lexical_weight
        scored = batch_pairs.score(
            papers,
            reach,
            pairs,
            metas,
            counts,
            self.centroids,
            self.corpus,
            self.aggregation,
            weight,
        )
        # The models only for the pairs that alert (the relevance filter comes after the score).
        alerting = {sub_id: metas[sub_id] for _, sub_id, _, _, _ in scored}
        batch = frozenset(p.paper.arxiv_id for p in papers)
        models = await self._call(self.models.models_sync, alerting, self.corpus, batch)

        candidates: list[tuple[IndexedPaper, Alert]] = []
        per_paper = [0] * len(papers)
        for row, sub_id, pair, by_author, score in scored:
            item, meta = papers[row], metas[sub_id]
            paper = item.paper
            model = models.get(sub_id)
            relevance = (
                model.relevance(model.score(vectors[row], self.models.dense_of(paper.arxiv_id)))
                if model is not None
                else None
            )
            if pair < 0:  # reached only through a followed author
                alert = _author_alert(meta, item, self.store.model_version)
                candidates.append((item, alert.model_copy(update={"relevance": relevance})))
                continue
            if not by_author and relevance is not None and relevance < meta.min_relevance:
                continue
            matches = [
                Match(
                    sentence=item.sentences[e.sentence_index],
                    sentence_index=e.sentence_index,
                    interest=e.interest,
                    score=round(e.score, 6),
                )
                for e in evidence(reach.entries(pair))
            ]
            alert = Alert(
                alert_id=alert_id(sub_id, paper.arxiv_id),
                subscription_id=sub_id,
                arxiv_id=paper.arxiv_id,
                version=paper.version,
                title=paper.title,
                score=round(score, 6),
                matches=matches,
                model_version=self.store.model_version,
                reason=REASON_AUTHOR if by_author else REASON_INTERESTS,
                relevance=relevance,
            )
            candidates.append((item, alert))
        existing = await self._call(
            self.subs.existing_alerts_sync, [a.alert_id for _, a in candidates]
        )
        fresh: list[tuple[IndexedPaper, Alert]] = []
        updates: list[dict[str, Any]] = []
        for item, alert in candidates:
            old = existing.get(alert.alert_id)
            if old is None:
                fresh.append((item, alert))
            elif old.get("digest") != item.digest:
                # A changed version: refresh the stored score and evidence, publish nothing.
                kept = {"created_at": old.get("created_at"), "created_ts": old.get("created_ts")}
                updates.append({**_payload(alert, item.digest), **kept})
        if fresh:
            await self.publish([a for _, a in fresh])
            if self.crash_after_publish:
                log.warning(
                    "ASTRO_CRASH_AT=after_alert_publish: exiting before the alerts are stored"
                )
                os._exit(137)
        await self._call(
            self.subs.put_alerts_sync, [_payload(a, i.digest) for i, a in fresh] + updates
        )
        ALERTS.inc(len(fresh))
        ALERTS_UPDATED.inc(len(updates))
        index = {id(item): row for row, item in enumerate(papers)}
        for item, alert in fresh:
            per_paper[index[id(item)]] += 1
            webhook = metas[alert.subscription_id].webhook
            if webhook:
                self.webhooks.submit(
                    webhook.url, webhook.secret, webhook_body(alert), alert.alert_id
                )
        for n in per_paper:
            ALERTS_PER_PAPER.observe(n)
        if fresh:
            log.info("%d new alerts for %d papers", len(fresh), len(papers))
        return [a for _, a in fresh]

    def _any_interests(self) -> bool:
        return points.has_interests(self.store)

    async def _metas(self, sub_ids: list[str]) -> dict[str, SubscriptionMeta]:
        now = time.monotonic()
        stale = [s for s in sub_ids if s in self._meta and now - self._meta_at[s] > META_TTL_S]
        if stale:  # re-read only what changed: one small field each to tell
            stamps = await self._call(self.subs.stamps_sync, stale)
            for sub_id in stale:
                if stamps.get(sub_id, "") == _stamp(self._meta[sub_id]):
                    self._meta_at[sub_id] = now
        missing = [s for s in sub_ids if s not in self._meta or now - self._meta_at[s] > META_TTL_S]
        if missing:
            found = await self._call(self.subs.meta_sync, missing)
            for sub_id in missing:
                if sub_id not in found:  # deleted meanwhile
                    self._meta.pop(sub_id, None)
                    self._meta_at.pop(sub_id, None)
            for sub_id, meta in found.items():
                old = self._meta.get(sub_id)
                if old is not None and old.interests != meta.interests:
                    self.centroids.forget(sub_id)
                self._meta[sub_id] = meta
                self._meta_at[sub_id] = now
            while len(self._meta) > META_CACHE:
                evicted, _ = self._meta.popitem(last=False)
                self.centroids.forget(evicted)
                self._meta_at.pop(evicted, None)
        for sub_id in sub_ids:
            if sub_id in self._meta:
                self._meta.move_to_end(sub_id)
        return {s: self._meta[s] for s in sub_ids if s in self._meta}

    async def _refresh_authors(self) -> None:
        """Re-read the followed authors of every subscription, at most every META_TTL_S."""
        if time.monotonic() - self._authors_at < META_TTL_S:
            return
        self._authors = await self._call(self.subs.followed_authors_sync)
        self._authors_at = time.monotonic()

    def _followed_by(self, authors: list[str]) -> set[str]:
        """Subscriptions that follow one of these authors (by the cached index)."""
        found: set[str] = set()
        for key in author_keys(authors):
            found |= self._authors.get(key, set())
        return found

    async def _bootstrap(self, skip: set[str]) -> None:
        """Seed the document frequencies from papers indexed before this process started."""

        def scan() -> dict[str, list[str]]:
            docs: dict[str, list[str]] = {}
            offset = None
            read = 0
            while read < BOOTSTRAP_SENTENCES:
                payloads, offset = points.sentence_page(
                    self.store,
                    limit=min(2000, BOOTSTRAP_SENTENCES - read),
                    offset=offset,
                    fields=["arxiv_id", "title", "text"],
                )
                read += len(payloads)
                for p in payloads:
                    arxiv_id = str(p.get("arxiv_id"))
                    if arxiv_id not in skip:
                        docs.setdefault(arxiv_id, [str(p.get("title", ""))]).append(
                            str(p.get("text", ""))
                        )
                if offset is None:
                    break
            return docs

        started = time.perf_counter()
        docs = await self._call(scan)
        observed = []
        for arxiv_id, parts in docs.items():
            text = " ".join(parts)
            terms = term_counts(text)
            self.corpus.add(terms)
            observed.append((arxiv_id, terms, text))
        self.models.observe_all(observed)
        self._bootstrapped = True
        log.info(
            "alert IDF seeded from %d indexed papers in %.1fs",
            len(docs),
            time.perf_counter() - started,
        )

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        """A Qdrant call on the store thread, retried with backoff while Qdrant is down."""
        store = self.store
        return await until_available(
            lambda: store.run(fn, *args), "alerts", max_backoff_s=self.max_backoff_s
        )


def _stamp(meta: SubscriptionMeta) -> str:
    """When the subscription was last written (``SubscriptionStore.stamps_sync``)."""
    return meta.updated_at or meta.created_at


def _author_alert(meta: SubscriptionMeta, item: IndexedPaper, model_version: str) -> Alert:
    """An alert for a followed author's paper that no interest reached: no score, no evidence."""
    paper = item.paper
    return Alert(
        alert_id=alert_id(meta.id, paper.arxiv_id),
        subscription_id=meta.id,
        arxiv_id=paper.arxiv_id,
        version=paper.version,
        title=paper.title,
        score=0.0,
        matches=[],
        model_version=model_version,
        reason=REASON_AUTHOR,
    )


def _payload(alert: Alert, digest: str) -> dict[str, Any]:
    return {
        **alert.model_dump(mode="json"),
        "digest": digest,
        "created_ts": alert.created_at.timestamp(),
    }
