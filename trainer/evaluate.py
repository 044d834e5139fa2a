"""Information-retrieval evaluation on held-out papers: MRR@10, nDCG@10, Recall@k (numpy)."""

from __future__ import annotations

import hashlib
import json
import logging
import random
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import numpy as np

from services.core.schemas import Paper
from services.core.text import normalise
from trainer.data import Pair, paper_sentences

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

PRIMARY_METRIC = "ndcg@10"
RECALL_AT = (1, 5, 10)
METRICS = ("mrr@10", "ndcg@10", *(f"recall@{k}" for k in RECALL_AT))


@dataclass
class QuerySet:
    """Queries of one task, each with exactly one relevant document.

    Attributes:
        name: the task name, used as the metric prefix (``title/ndcg@10``).
        texts: query texts.
        relevant: index of the relevant document of each query.
        exclude: per query, a corpus entry to ignore (the query itself), or -1.
    """

    name: str
    texts: list[str]
    relevant: list[int]
    exclude: list[int] = field(default_factory=list)


@dataclass
class EvalSet:
    """A corpus of texts grouped into documents, and the query sets searched against it.

    ``corpus_doc`` is non-decreasing: the entries of one document are contiguous, so a
    document's score (the max over its entries, as the search API ranks papers by their best
    sentence) is one ``np.maximum.reduceat``.
    """

    corpus: list[str]
    corpus_doc: list[int]
    tasks: list[QuerySet]
    description: str = ""

    @property
    def n_docs(self) -> int:
        return (self.corpus_doc[-1] + 1) if self.corpus_doc else 0


def paper_eval_set(papers: Sequence[Paper], seed: int = 42) -> EvalSet:
    """Two tasks over the sentences of ``papers`` (documents = papers).

    ``title``: the normalised title finds its paper among the others' sentences (search).
    ``sentence``: one sentence of a paper (seeded choice, removed from the corpus for that
    query) finds the rest of its paper (interests and related papers).
    """
    rng = random.Random(seed)
    corpus: list[str] = []
    corpus_doc: list[int] = []
    titles = QuerySet("title", [], [])
    sentences = QuerySet("sentence", [], [], [])
    doc = 0
    for paper in papers:
        texts = paper_sentences(paper)
        if not texts:
            continue
        start = len(corpus)
        corpus += texts
        corpus_doc += [doc] * len(texts)
        titles.texts.append(normalise(paper.title))
        titles.relevant.append(doc)
        if len(texts) >= 2:
            pick = rng.randrange(len(texts))
            sentences.texts.append(texts[pick])
            sentences.relevant.append(doc)
            sentences.exclude.append(start + pick)
        doc += 1
    titles.exclude = [-1] * len(titles.texts)
    tasks = [t for t in (titles, sentences) if t.texts]
    return EvalSet(corpus, corpus_doc, tasks, f"{doc} held-out papers, {len(corpus)} sentences")


def pair_eval_set(pairs: Sequence[Pair]) -> EvalSet:
    """One task for a pairs file: ``sentence_0`` finds its ``sentence_1`` among the held-out."""
    corpus = [b for _, b in pairs]
    task = QuerySet("pairs", [a for a, _ in pairs], list(range(len(pairs))), [-1] * len(pairs))
    return EvalSet(corpus, list(range(len(pairs))), [task], f"{len(pairs)} held-out pairs")


def fingerprint(eval_set: EvalSet) -> str:
    """A digest of the corpus, documents and queries: equal digests mean comparable metrics."""
    content = [
        eval_set.corpus,
        eval_set.corpus_doc,
        [[t.name, t.texts, t.relevant, t.exclude] for t in eval_set.tasks],
    ]
    return hashlib.sha256(json.dumps(content).encode()).hexdigest()[:16]


def doc_ranks(
    scores: np.ndarray, corpus_doc: Sequence[int], relevant: Sequence[int], exclude: Sequence[int]
) -> np.ndarray:
    """1-based rank of each query's relevant document.

    Args:
        scores: (queries, corpus entries) similarities.
        corpus_doc: document of each corpus entry, non-decreasing.
        relevant: relevant document per query.
        exclude: corpus entry to ignore per query, or -1.
    """
    scores = np.array(scores, dtype=np.float64, copy=True)
    rows = np.arange(len(relevant))
    excluded = np.asarray(exclude, dtype=np.int64)
    mask = excluded >= 0
    scores[rows[mask], excluded[mask]] = -np.inf
    docs = np.asarray(corpus_doc, dtype=np.int64)
    starts = np.flatnonzero(np.r_[True, docs[1:] != docs[:-1]])
    per_doc = np.maximum.reduceat(scores, starts, axis=1)
    target = per_doc[rows, np.asarray(relevant, dtype=np.int64)]
    # Counting documents scoring >= the relevant one (itself included) puts ties against it,
    # so a model that scores everything alike cannot look good.
    return (per_doc >= target[:, None]).sum(axis=1)


def ir_metrics(ranks: np.ndarray, k: int = 10) -> dict[str, float]:
    """MRR@k, nDCG@k and Recall@1/5/10 for one relevant document per query (IDCG = 1)."""
    ranks = np.asarray(ranks, dtype=np.float64)
    if ranks.size == 0:
        return {name: 0.0 for name in METRICS}
    hit = ranks <= k
    out = {
        f"mrr@{k}": float(np.mean(np.where(hit, 1.0 / ranks, 0.0))),
        f"ndcg@{k}": float(np.mean(np.where(hit, 1.0 / np.log2(ranks + 1.0), 0.0))),
    }
    out.update({f"recall@{r}": float(np.mean(ranks <= r)) for r in RECALL_AT})
    return out


def score_tasks(
    corpus_vectors: np.ndarray, query_vectors: dict[str, np.ndarray], eval_set: EvalSet
) -> dict[str, float]:
    """Per-task metrics (``title/ndcg@10``…) and their mean over tasks (``ndcg@10``…)."""
    results: dict[str, float] = {}
    for task in eval_set.tasks:
        scores = query_vectors[task.name] @ corpus_vectors.T
        ranks = doc_ranks(scores, eval_set.corpus_doc, task.relevant, task.exclude)
        results.update({f"{task.name}/{m}": v for m, v in ir_metrics(ranks).items()})
    for metric in METRICS:
        values = [results[f"{t.name}/{metric}"] for t in eval_set.tasks]
        results[metric] = float(np.mean(values)) if values else 0.0
    return results


def evaluate(
    model: SentenceTransformer, eval_set: EvalSet, batch_size: int = 64, label: str = "model"
) -> dict[str, float]:
    """Embed the corpus and queries with ``model`` and score every task.

    Returns:
        Flat metrics: per task and averaged; the primary metric is ``PRIMARY_METRIC``.
    """
    started = time.monotonic()

    def embed(texts: list[str]) -> np.ndarray:
        vectors = model.encode(
            texts,
            batch_size=batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=len(texts) > 2 * batch_size,
        )
        return np.asarray(vectors, dtype=np.float32)

    log.info("evaluating %s on %s", label, eval_set.description)
    corpus_vectors = embed(eval_set.corpus)
    query_vectors = {}
    for task in eval_set.tasks:
        own = np.asarray(task.exclude, dtype=np.int64)
        # Queries taken from the corpus (the sentence task) reuse their corpus vectors.
        if own.size and (own >= 0).all():
            query_vectors[task.name] = corpus_vectors[own]
        else:
            query_vectors[task.name] = embed(task.texts)
    results = score_tasks(corpus_vectors, query_vectors, eval_set)
    log.info(
        "%s: %s in %.0f s",
        label,
        ", ".join(f"{m} {results[m]:.4f}" for m in METRICS),
        time.monotonic() - started,
    )
    return results
