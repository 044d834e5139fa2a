"""The alert matcher's per-subscription models: a sample of recent papers, fitting, storage.

The pure model is ``services.alerts.model``; this module feeds it and keeps it:

* a sample of recently indexed papers' term counts (the last ``2 * SAMPLE`` papers the
  worker indexed, or found indexed at start), split by a hash of the arXiv id into the
  negatives the models are fit with and the reference sample they are calibrated on;
* the models, stored in a payload-only collection ``<prefix>_subscription_models`` (not
  model-versioned: it depends on terms, not on the dense model), one point per
  subscription, so a restarted worker loads them instead of refitting every subscription;
* refitting, lazily when a subscription is scored: when its fingerprint (interests,
  feedback labels, settings, the dense model) changed, when the IDF grew by ``IDF_REFRESH`` since the fit, or
  when the sample has grown to twice what the model was fit with.

With a dense model (``services.alerts.dense``, weight ``ASTRO_ALERT_DENSE_WEIGHT``) each sample
paper also keeps its whole-paper vector, from the text its term counts come from (title +
sentences); seeds and papers marked relevant are embedded from the indexed sentences, queries
from their text, when a model is fitted.

Methods named ``*_sync`` block: run them on the store thread.
"""

from __future__ import annotations

import logging
import uuid
import zlib
from collections import Counter, deque
from collections.abc import Callable, Mapping, Sequence
from functools import cached_property

import numpy as np
from prometheus_client import Counter as PromCounter

from services.alerts import model as submodel
from services.alerts.dense import StaticModel
from services.alerts.feedback import FeedbackStore
from services.alerts.matcher import CorpusStats, term_counts, tfidf
from services.alerts.records import per_subscription
from services.alerts.subscriptions import SubscriptionMeta
from services.core.ids import NAMESPACE
from services.store.points import sentence_page
from services.store.tables import PayloadTable
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)

SAMPLE = 200  # papers in the negatives and in the reference sample (each); see docs/alerts.md
MIN_SAMPLE = 20  # fewer and a subscription is ranked by its centroid alone (no relevance)
IDF_REFRESH = 0.05  # refit when the corpus grew by 5 % since the fit
MAX_CACHED = 10_000

FITS = PromCounter("astrostream_subscription_model_fits", "Per-subscription ranking models fitted.")
LOADS = PromCounter(
    "astrostream_subscription_model_loads", "Per-subscription ranking models loaded from storage."
)


def model_id(subscription_id: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"subscription-model:{subscription_id}"))


def models_collection(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_subscription_models"


@per_subscription("models")
def delete_stored_sync(store: VectorStore, subscription_id: str) -> None:
    """Forget a deleted subscription's stored model (blocking)."""
    table = PayloadTable(store, models_collection(store))
    if table.exists():
        table.delete([model_id(subscription_id)])


def is_reference(arxiv_id: str) -> bool:
    """Half of the papers calibrate, the other half are negatives (stable across restarts)."""
    return zlib.crc32(arxiv_id.encode()) % 2 == 1


class SubscriptionModels:
    """Fits, stores and caches one :class:`~services.alerts.model.SubscriptionModel` each."""

    def __init__(
        self,
        store: Callable[[], VectorStore],
        feedback: FeedbackStore | None,
        sample: int = SAMPLE,
        dense: StaticModel | None = None,
        dense_weight: float = submodel.DENSE_WEIGHT,
    ) -> None:
        self._store = store  # the live model's store (a rollout moves it)
        self.dense = dense if dense_weight > 0 else None
        self.dense_weight = dense_weight if dense is not None else 0.0
        self.dense_vectors: dict[str, np.ndarray] = {}  # of the papers in ``recent``
        self.feedback = feedback
        self.recent: deque[tuple[str, Counter[str]]] = deque(maxlen=2 * sample)
        self.cache: dict[str, submodel.SubscriptionModel] = {}

    @property
    def store(self) -> VectorStore:
        return self._store()

    @cached_property
    def table(self) -> PayloadTable:
        """The stored models (named when first used: the store may not be there before)."""
        return PayloadTable(self._store, models_collection(self.store))

    @property
    def name(self) -> str:
        return self.table.name

    def observe(self, arxiv_id: str, counts: Counter[str], text: str | None = None) -> None:
        """A paper was indexed: it joins the sample (the oldest one leaves). ``text``: what
        ``counts`` were counted from, for the dense channel."""
        self.observe_all([(arxiv_id, counts, text)])

    def observe_all(self, papers: Sequence[tuple[str, Counter[str], str | None]]) -> None:
        """:meth:`observe` for several papers, their dense vectors in one tokenizer call."""
        for arxiv_id, counts, _ in papers:
            self.recent.append((arxiv_id, counts))
        if self.dense is None:
            return
        texts = {a: text for a, _, text in papers if text is not None}
        if texts:
            self.dense_vectors.update(
                zip(texts, self.dense.papers(list(texts.values())), strict=True)
            )
        if len(self.dense_vectors) > 2 * (self.recent.maxlen or 0):
            kept = {a for a, _ in self.recent}
            self.dense_vectors = {a: v for a, v in self.dense_vectors.items() if a in kept}

    def dense_of(self, arxiv_id: str) -> np.ndarray | None:
        """A sample paper's dense vector (None without a dense channel)."""
        return self.dense_vectors.get(arxiv_id) if self.dense is not None else None

    @property
    def dense_key(self) -> str:
        """The dense channel's part of a model's fingerprint (empty: none)."""
        return f"{self.dense.version}:{self.dense_weight}" if self.dense is not None else ""

    def ensure_sync(self) -> None:
        self.table.ensure()

    def models_sync(
        self,
        metas: Mapping[str, SubscriptionMeta],
        corpus: CorpusStats,
        scoring: frozenset[str] = frozenset(),
    ) -> dict[str, submodel.SubscriptionModel]:
        """The current model of each subscription: cached, stored, or fitted now (and stored).

        ``scoring``: the papers about to be scored, never a negative or reference of a model
        fitted now (they are in the sample already: it is filled as papers are indexed).
        """
        if not metas or len(self.recent) < 2 * MIN_SAMPLE:
            return {}
        self.ensure_sync()
        labels = self._labels(sorted(metas))
        keys = {
            sub_id: submodel.fingerprint(
                [i.terms for i in meta.interests], labels.get(sub_id, {}), dense=self.dense_key
            )
            for sub_id, meta in metas.items()
        }
        chosen: dict[str, submodel.SubscriptionModel] = {}
        missing = [s for s in metas if not self._fresh(self.cache.get(s), keys[s], corpus)]
        if missing:
            for payload in self.table.get_many([model_id(s) for s in missing]):
                loaded = submodel.SubscriptionModel.from_payload(payload)
                sub_id = str(payload.get("subscription_id", ""))
                if loaded is not None and sub_id in keys:
                    LOADS.inc()
                    self.cache[sub_id] = loaded
        refit = [s for s in metas if not self._fresh(self.cache.get(s), keys[s], corpus)]
        if refit:
            self._fit(refit, metas, labels, keys, corpus, scoring)
        while len(self.cache) > MAX_CACHED:
            self.cache.pop(next(iter(self.cache)))
        for sub_id in metas:
            if sub_id in self.cache:
                chosen[sub_id] = self.cache[sub_id]
        return chosen

    def _fresh(
        self, fitted: submodel.SubscriptionModel | None, key: str, corpus: CorpusStats
    ) -> bool:
        return (
            fitted is not None
            and fitted.fingerprint == key
            and corpus.docs <= fitted.corpus_docs * (1 + IDF_REFRESH)
            and 2 * fitted.negatives >= len(self.recent) // 2
        )

    def _labels(self, sub_ids: list[str]) -> dict[str, dict[str, str]]:
        if self.feedback is None:
            return {}
        out: dict[str, dict[str, str]] = {}
        for item in self.feedback.list_sync(sub_ids):
            out.setdefault(item["subscription_id"], {})[item["arxiv_id"]] = item["label"]
        return out

    def _paper_texts(self, arxiv_ids: set[str]) -> dict[str, str]:
        """Indexed papers' text: title and sentences, joined."""
        if not arxiv_ids:
            return {}
        found: dict[str, list[str]] = {}
        payloads, _ = sentence_page(
            self.store,
            limit=100 * len(arxiv_ids),
            fields=["arxiv_id", "title", "text"],
            arxiv_ids=sorted(arxiv_ids),
        )
        for p in payloads:
            found.setdefault(str(p.get("arxiv_id")), [str(p.get("title", ""))]).append(
                str(p.get("text", ""))
            )
        return {a: " ".join(parts) for a, parts in found.items()}

    def _fit(
        self,
        sub_ids: list[str],
        metas: Mapping[str, SubscriptionMeta],
        labels: dict[str, dict[str, str]],
        keys: dict[str, str],
        corpus: CorpusStats,
        scoring: frozenset[str],
    ) -> None:
        vectors = {a: tfidf(c, corpus) for a, c in self.recent}
        sample = submodel.Sample(vectors.values())  # the rows every fit below shares
        wanted = {a for s in sub_ids for a in labels.get(s, {})}
        embed = self._dense_papers(sub_ids, metas, labels)
        # One read of the indexed sentences for what the sample lacks: the labelled papers'
        # terms and the dense channel's seed and relevant papers.
        texts = self._paper_texts((wanted - set(vectors)) | (embed - set(self.dense_vectors)))
        labelled = {
            a: tfidf(term_counts(texts[a]), corpus) for a in wanted - set(vectors) if a in texts
        }
        labelled.update({a: vectors[a] for a in wanted if a in vectors})
        dense = self._dense_interests(sub_ids, metas, labels, embed, texts)
        points = []
        for sub_id in sub_ids:
            meta = metas[sub_id]
            mine = labels.get(sub_id, {})
            skip = set(meta.arxiv_ids) | set(mine) | scoring
            interests = [tfidf(dict(i.terms), corpus) for i in meta.interests]
            interests = [v for v in interests if v] or [{}]
            relevant = [
                labelled[a]
                for a, lab in sorted(mine.items())
                if lab == "relevant" and a in labelled
            ]
            not_relevant = [
                labelled[a]
                for a, lab in sorted(mine.items())
                if lab == "not_relevant" and a in labelled
            ]
            negatives = [v for a, v in vectors.items() if a not in skip and not is_reference(a)]
            reference_ids = [a for a in vectors if a not in skip and is_reference(a)]
            reference = [vectors[a] for a in reference_ids]
            dense_reference = [self.dense_vectors.get(a) for a in reference_ids]
            dense_positives = dense.get(sub_id, [])
            if any(v is None for v in dense_reference):
                dense_positives = []  # a sample paper without its vector: lexical only
            fitted = submodel.fit(
                interests,
                negatives,
                reference,
                relevant=relevant,
                not_relevant=not_relevant,
                key=keys[sub_id],
                corpus_docs=corpus.docs,
                dense_positives=dense_positives,
                dense_reference=[v for v in dense_reference if v is not None],
                dense_weight=self.dense_weight,
                sample=sample,
            )
            FITS.inc()
            self.cache[sub_id] = fitted
            points.append((model_id(sub_id), {"subscription_id": sub_id, **fitted.payload()}))
        self.table.put_many(points)
        log.info("fitted %d subscription models", len(points))

    def _dense_papers(
        self,
        sub_ids: list[str],
        metas: Mapping[str, SubscriptionMeta],
        labels: dict[str, dict[str, str]],
    ) -> set[str]:
        """The papers whose vectors the dense positives need: seeds and papers marked relevant
        (none without a dense channel)."""
        if self.dense is None:
            return set()
        return {
            a
            for s in sub_ids
            for a in [
                *(i.interest for i in metas[s].interests if i.kind != "query"),
                *(a for a, lab in labels.get(s, {}).items() if lab == "relevant"),
            ]
        }

    def _dense_interests(
        self,
        sub_ids: list[str],
        metas: Mapping[str, SubscriptionMeta],
        labels: dict[str, dict[str, str]],
        papers: set[str],
        texts: Mapping[str, str],
    ) -> dict[str, list[np.ndarray]]:
        """Each subscription's dense positives: its queries' and seed papers' vectors and those
        of the papers marked relevant (each counts 1; not-relevant marks are not used here).
        ``papers``: :meth:`_dense_papers`; ``texts``: the indexed text of those not sampled."""
        if self.dense is None:
            return {}
        known = {a: v for a in papers if (v := self.dense_vectors.get(a)) is not None}
        unseen = {a: texts[a] for a in papers - set(known) if a in texts}
        if unseen:
            known.update(zip(unseen, self.dense.papers(list(unseen.values())), strict=True))
        out: dict[str, list[np.ndarray]] = {}
        for sub_id in sub_ids:
            meta = metas[sub_id]
            queries = [i.interest for i in meta.interests if i.kind == "query"]
            vectors = list(self.dense.papers(queries)) if queries else []
            for i in meta.interests:
                if i.kind != "query" and i.interest in known:
                    vectors.append(known[i.interest])
            mine = sorted(labels.get(sub_id, {}).items())
            vectors += [known[a] for a, lab in mine if lab == "relevant" and a in known]
            out[sub_id] = [v for v in vectors if np.any(v)]
        return out
