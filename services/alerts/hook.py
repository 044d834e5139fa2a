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
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any, TypeVar

import numpy as np
from prometheus_client import Counter, Gauge, Histogram
from scipy import sparse

from services.alerts import dense as static_dense
from services.alerts import percolation, scoring
from services.alerts.feedback import FeedbackStore
from services.alerts.filters import (
    REASON_AUTHOR,
    REASON_INTERESTS,
    author_key,
    author_keys,
    passes_cross_lists,
    passes_terms,
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
IDF_REFRESH = 0.05  # recompute a subscription's TF-IDF centroid when the corpus grew by 5 %
MAX_ALERTS_LIMIT = 500
MAX_TERMS = 5_000_000  # terms numbered for the vectorised lexical score before a fresh start

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
    ) -> None:
        self.subs = subs
        self.feedback = feedback
        self.publish = publish
        self.webhooks = webhooks
        self.aggregation = aggregation
        self.lexical_weight = lexical_weight
        self.percolate_limit = percolate_limit
        self.sparse_limit = sparse_limit  # subscriptions reached lexically per paper (0: off)
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
        self.lexicon = scoring.Lexicon()
        self._lexical: dict[str, tuple[int, np.ndarray, np.ndarray]] = {}
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
        reach = await percolation.percolate(
            self._call,
            self.store,
            [item.sentence_vectors for item in papers],
            vectors,
            self.percolate_limit,
            self.sparse_limit,
        )
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
        pairs = self._pairs(papers, reach, followed, metas, muted)
        scored = self._score(papers, reach, pairs, metas, counts)
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

    def _pairs(
        self,
        papers: list[IndexedPaper],
        reach: percolation.Reach,
        followed: list[set[str]],
        metas: Mapping[str, SubscriptionMeta],
        muted: Mapping[str, Any],
    ) -> list[tuple[int, str, int, bool]]:
        """The (paper row, subscription, pair in ``reach`` or -1, by a followed author) to
        score, in the order reached: filters, seed papers and muted papers left out."""
        out: list[tuple[int, str, int, bool]] = []
        order: list[list[tuple[str, int]]] = [[] for _ in papers]
        for k, (row, col) in enumerate(
            zip(reach.pair_rows.tolist(), reach.pair_subs.tolist(), strict=True)
        ):
            order[row].append((reach.sub_ids[col], k))
        for row, item in enumerate(papers):
            paper = item.paper
            keys = author_keys(paper.authors)
            listed = order[row]
            seen = {sub_id for sub_id, _ in listed}
            listed += [(sub_id, -1) for sub_id in followed[row] if sub_id not in seen]
            for sub_id, pair in listed:
                meta = metas.get(sub_id)
                if meta is None or paper.arxiv_id in meta.arxiv_ids:
                    continue  # being created or deleted, or one of its own seed papers
                if paper.arxiv_id in muted.get(sub_id, ()):
                    continue  # its reader said: not relevant
                by_author = bool(meta.authors) and bool(
                    {author_key(a) for a in meta.authors} & keys
                )
                if _filtered(meta) and not _passes_filters(meta, item, by_author):
                    continue
                out.append((row, sub_id, pair, by_author))
        return out

    def _score(
        self,
        papers: list[IndexedPaper],
        reach: percolation.Reach,
        pairs: list[tuple[int, str, int, bool]],
        metas: Mapping[str, SubscriptionMeta],
        counts: Sequence[Mapping[str, int]],
    ) -> list[tuple[int, str, int, bool, float]]:
        """The pairs that alert, with their score: every pair scored at once (the dense
        aggregate of its hits fused with the lexical cosine), kept at or above the
        subscription's threshold, or always for a followed author."""
        hit = [(row, sub_id, pair) for row, sub_id, pair, _ in pairs if pair >= 0]
        if not hit:
            return [(r, s, p, a, 0.0) for r, s, p, a in pairs if p < 0]
        rows = np.fromiter((r for r, _, _ in hit), np.int64, len(hit))
        index = np.fromiter((p for _, _, p in hit), np.int64, len(hit))
        subs = sorted({s for _, s, _ in hit})
        column = {s: c for c, s in enumerate(subs)}
        cols = np.fromiter((column[s] for _, s, _ in hit), np.int64, len(hit))
        lexical = scoring.pair_cosines(
            self.lexicon.tfidf(self.lexicon.counts(counts), self.corpus),
            self._centres([metas[s] for s in subs]),
            rows,
            cols,
        )
        totals = np.diff(np.r_[reach.starts, len(reach.scores)])  # each pair's hits
        points = np.fromiter((metas[s].points for s in subs), np.int64, len(subs))[cols]
        sentences = np.fromiter((len(p.sentences) for p in papers), np.int64, len(papers))
        totals[index] = sentences[rows] * np.where(points > 0, points, totals[index])
        dense = scoring.aggregate_groups(reach.scores, reach.starts, totals, self.aggregation)
        dense = dense[index]
        weight = LEXICAL_WEIGHT if self.lexical_weight is None else self.lexical_weight
        score = (1.0 - weight) * dense + weight * lexical
        thresholds = np.fromiter((metas[s].threshold for s in subs), np.float64, len(subs))
        passed = (score >= thresholds[cols]).tolist()
        scores = iter(zip(passed, score.tolist(), strict=True))
        out = []
        for row, sub_id, pair, by_author in pairs:
            if pair < 0:
                out.append((row, sub_id, pair, by_author, 0.0))
                continue
            ok, value = next(scores)
            if ok or by_author:  # a followed author's paper always alerts
                out.append((row, sub_id, pair, by_author, value))
        return out

    def _centres(self, metas: Sequence[SubscriptionMeta]) -> sparse.csr_matrix:
        """The subscriptions' TF-IDF centroids as rows, recomputed as the IDF drifts."""
        if len(self.lexicon.terms) > MAX_TERMS:  # a long-lived worker: start the numbering anew
            self.lexicon, self._lexical = scoring.Lexicon(), {}
        docs = self.corpus.docs
        stale = [
            m
            for m in metas
            if (cached := self._lexical.get(m.id)) is None or docs > cached[0] * (1 + IDF_REFRESH)
        ]
        if stale:
            interests = [dict(i.terms) for m in stale for i in m.interests]
            owner = np.repeat(np.arange(len(stale)), [len(m.interests) for m in stale])
            tf = self.lexicon.counts(interests)
            fresh = self.lexicon.centroids(tf, owner, len(stale), self.corpus)
            for n, meta in enumerate(stale):
                span = slice(fresh.indptr[n], fresh.indptr[n + 1])
                self._lexical[meta.id] = (docs, fresh.indices[span], fresh.data[span])
        rows = [self._lexical[m.id] for m in metas]
        lengths = np.fromiter((len(r[1]) for r in rows), np.int64, len(rows))
        return sparse.csr_matrix(
            (
                np.concatenate([r[2] for r in rows]) if rows else np.zeros(0),
                np.concatenate([r[1] for r in rows]) if rows else np.zeros(0, np.int64),
                np.r_[0, np.cumsum(lengths)],
            ),
            shape=(len(rows), self.lexicon.width),
        )

    async def _metas(self, sub_ids: list[str]) -> dict[str, SubscriptionMeta]:
        now = time.monotonic()
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
                    self._lexical.pop(sub_id, None)
                self._meta[sub_id] = meta
                self._meta_at[sub_id] = now
            while len(self._meta) > META_CACHE:
                evicted, _ = self._meta.popitem(last=False)
                self._lexical.pop(evicted, None)
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


def _filtered(meta: SubscriptionMeta) -> bool:
    """Whether any filter can leave a paper out (without one, all pass)."""
    return bool(meta.categories or meta.include_terms or meta.exclude_terms)


def _passes_filters(meta: SubscriptionMeta, item: IndexedPaper, by_author: bool) -> bool:
    """Exclude terms always apply; categories, cross-lists and include terms unless followed."""
    paper = item.paper
    text = f"{paper.title}\n{paper.abstract}"
    if by_author:
        return passes_terms(text, (), meta.exclude_terms)
    if meta.categories and not set(meta.categories) & set(paper.categories):
        return False
    if not passes_cross_lists(paper.categories, meta.categories, meta.cross_lists):
        return False
    return passes_terms(text, meta.include_terms, meta.exclude_terms)


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
