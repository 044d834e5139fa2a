"""Related-work alert quality on real authorship, through the real API, against baselines.

Relevance comes from authorship: an author with papers on both sides of a cut-off date
subscribes with their earlier papers (seed arXiv ids); their later papers are relevant.
The candidates are those later papers plus random later papers. A real broker and worker
index the seeds, the subscriptions are created through ``POST /subscriptions`` with
threshold 0, the candidates are published, and each ranking is read back from
``GET /subscriptions/{id}/alerts?sort=relevance&limit=K`` (the per-subscription model).

The same subscriptions and candidates are ranked by the previous default (TF-IDF cosine to
the centroid of the seeds), arxiv-sanity-lite's exemplar SVM with its own vectoriser, a
TF-IDF baseline (arxiv-sanity's vectoriser, cosine to the centroid of the seed abstracts)
and a whole-abstract embedding baseline (the same model, one vector per abstract, mean of
the seeds), each against ours with a paired bootstrap CI, also on the subscriptions with
at most 5 seeds. An offline ablation, embedding the same texts the same way, compares
scoring variants. ``--offline`` runs the same pure model code as the service without the
stack (minutes instead of hours; ``--embeddings`` adds the whole-abstract baseline);
``--calibration`` shows what each relevance level keeps; ``--feedback-curve`` simulates a
reader who labels the top 5 alerts of each of 4 weeks and reports nDCG@20 of the later
weeks with 0, 5, 10 and 20 labels; ``--fit-cost`` only times the model fit.

Authors are halved by a hash of their name: tune anything on ``--split dev``, report
``--split test`` (the default). Qdrant runs in memory in the worker (local mode on disk
pays ~10 ms per stored alert, and threshold 0 stores one per subscription and candidate).

    nice -n 10 .venv/bin/python benchmarks/alerts.py       # 100 subscriptions, 400 papers
    .venv/bin/python benchmarks/alerts.py --offline --subscriptions 400 --candidates 1200 \
        --max-seeds 10 --embeddings --calibration --feedback-curve
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import contextlib
import gzip
import itertools
import json
import math
import os
import random
import re
import shutil
import sys
import tempfile
import time
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
from scipy import sparse

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.alerts import lexicon, matcher, model  # noqa: E402
from services.core.text import normalise  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz"
# scikit-learn's English stop words are not at hand: arxiv-sanity's list is close to this one.
SANITY_STOP = matcher.STOP_WORDS | frozenset(
    """
    across afterwards almost alone along already although always among amongst another anyhow
    anyone anything anyway anywhere around back became become becomes becoming beforehand
    behind beside besides beyond bill bottom call cannot co con couldnt cry de describe detail
    done due eg eight eleven else elsewhere empty enough etc even ever every everyone
    everything everywhere except fifteen fify fill find fire first five former formerly forty
    found four front full get give go hence hereafter hereby herein hereupon hundred ie inc
    indeed interest keep last latter latterly least less ltd made many meanwhile mill mine
    moreover mostly move name namely neither never nevertheless next nine nobody none noone
    nothing nowhere often one onto others otherwise part perhaps please put rather re see seem
    seemed seeming seems serious several show side sincere six sixty somehow someone something
    sometime sometimes somewhere still system take ten thence thereafter thereby therefore
    therein thereupon thick thin third though three throughout thru together top toward
    towards twelve twenty two un whatever whence whenever whereafter whereas whereby wherein
    whereupon wherever whither whoever whole whose yet
    """.split()  # noqa: SIM905
)


@dataclass(frozen=True)
class Subscription:
    author: str
    seeds: list[str]
    relevant: set[str]


@dataclass(frozen=True)
class Evaluation:
    papers: dict[str, dict[str, Any]]
    subscriptions: list[Subscription]
    candidates: list[str]


def load(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt", encoding="utf-8") as handle:
        return [json.loads(line) for line in handle if line.strip()]


def build_evaluation(
    rows: list[dict[str, Any]],
    *,
    subscriptions: int,
    candidates: int,
    cutoff: str,
    max_authors: int,
    max_seeds: int,
    max_relevant: int,
    seed: int,
    split: str = "test",
) -> Evaluation:
    """Authors with >= 3 papers, some before ``cutoff`` (seeds) and some after (relevant).

    ``split`` halves the authors by a hash of their name: tune on ``dev``, report ``test``.
    """
    parity = {"test": 0, "dev": 1}[split]
    papers = {r["arxiv_id"]: r for r in rows}
    by_author: dict[str, list[str]] = collections.defaultdict(list)
    for r in rows:
        if len(r["authors"]) <= max_authors:  # big collaborations say little about interests
            for author in r["authors"]:
                if zlib.crc32(author.encode()) % 2 == parity:
                    by_author[author].append(r["arxiv_id"])
    rng = random.Random(seed)
    names = sorted(a for a, ids in by_author.items() if len(ids) >= 3)
    rng.shuffle(names)
    chosen: list[Subscription] = []
    seen: set[tuple[str, ...]] = set()
    for author in names:
        ids = sorted(by_author[author], key=lambda i: (papers[i]["announced"], i))
        before = [i for i in ids if papers[i]["announced"] < cutoff][-max_seeds:]
        after = [i for i in ids if papers[i]["announced"] >= cutoff][:max_relevant]
        if not before or not after or tuple(before) in seen:
            continue  # co-authors of the same papers would be the same subscription
        seen.add(tuple(before))
        chosen.append(Subscription(author, before, set(after)))
        if len(chosen) >= subscriptions:
            break
    relevant = sorted({i for s in chosen for i in s.relevant})
    pool = [
        r["arxiv_id"] for r in rows if r["announced"] >= cutoff and r["arxiv_id"] not in relevant
    ]
    rng.shuffle(pool)
    picked = relevant + pool[: max(0, candidates - len(relevant))]
    return Evaluation(papers, chosen, sorted(picked))


# metrics ---------------------------------------------------------------------
def ndcg(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    dcg = sum(1 / math.log2(r + 2) for r, a in enumerate(ranking[:k]) if a in relevant)
    ideal = sum(1 / math.log2(r + 2) for r in range(min(k, len(relevant))))
    return dcg / ideal if ideal else 0.0


def recall(ranking: Sequence[str], relevant: set[str], k: int) -> float:
    return len(set(ranking[:k]) & relevant) / len(relevant) if relevant else 0.0


def per_subscription(
    ev: Evaluation, rankings: list[list[str]], k: int
) -> tuple[np.ndarray, np.ndarray]:
    n = [ndcg(r, s.relevant, k) for r, s in zip(rankings, ev.subscriptions, strict=True)]
    c = [recall(r, s.relevant, k) for r, s in zip(rankings, ev.subscriptions, strict=True)]
    return np.array(n), np.array(c)


def paired_ci(a: np.ndarray, b: np.ndarray, seed: int = 0, n: int = 2000) -> tuple[float, float]:
    """95 % bootstrap interval of mean(a - b) over subscriptions."""
    rng = np.random.default_rng(seed)
    diff = a - b
    means = [diff[rng.integers(0, len(diff), len(diff))].mean() for _ in range(n)]
    return float(np.percentile(means, 2.5)), float(np.percentile(means, 97.5))


def rank_by(ev: Evaluation, score: Callable[[Subscription, str], float]) -> list[list[str]]:
    return [sorted(ev.candidates, key=lambda c, s=s: (-score(s, c), c)) for s in ev.subscriptions]


SMALL = 5  # seeds of a "small" subscription
RESERVOIR = 200  # papers in the negative sample and in the reference sample (each)


# baselines -------------------------------------------------------------------
def text_of(paper: dict[str, Any]) -> str:
    return f"{paper['title']} {paper['abstract']}"


def tfidf_baseline(ev: Evaluation, corpus: list[dict[str, Any]]) -> list[list[str]]:
    """arxiv-sanity's vectoriser (1-2 grams, sublinear tf, l2, min_df 5, max_df 0.1, 20k
    features, English stop words) fitted on the whole file; cosine to the seeds' centroid."""
    token = re.compile(r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b")

    def grams(text: str) -> list[str]:
        words = [w for w in token.findall(text.lower()) if w not in SANITY_STOP]
        return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]

    docs = [grams(text_of(p)) for p in corpus]
    df: collections.Counter[str] = collections.Counter()
    for d in docs:
        df.update(set(d))
    n_docs = len(docs)
    kept = [t for t, c in df.items() if 5 <= c <= 0.1 * n_docs]
    kept = sorted(kept, key=lambda t: (-df[t], t))[:20_000]
    vocab = {t: i for i, t in enumerate(kept)}
    idf = np.array([math.log((1 + n_docs) / (1 + df[t])) + 1 for t in kept])

    def vector(paper: dict[str, Any]) -> sparse.csr_matrix:
        counts = collections.Counter(t for t in grams(text_of(paper)) if t in vocab)
        cols = [vocab[t] for t in counts]
        vals = np.array([(1 + math.log(c)) for c in counts.values()]) * idf[cols]
        row = sparse.csr_matrix((vals, ([0] * len(cols), cols)), shape=(1, len(vocab)))
        norm = math.sqrt(float(row.multiply(row).sum()))
        return row / norm if norm else row

    cand = sparse.vstack([vector(ev.papers[c]) for c in ev.candidates]).tocsr()
    rankings = []
    for s in ev.subscriptions:
        centre = sparse.vstack([vector(ev.papers[x]) for x in s.seeds]).mean(axis=0)
        scores = np.asarray(cand @ np.asarray(centre).T).ravel()
        order = np.lexsort((np.array(ev.candidates), -scores))
        rankings.append([ev.candidates[i] for i in order])
    return rankings


def embedding_baseline(ev: Evaluation, encoder: Any) -> list[list[str]]:
    """One vector per whole abstract (title + abstract, truncated by the model), mean of seeds."""
    ids = sorted({x for s in ev.subscriptions for x in s.seeds} | set(ev.candidates))
    encoded = encoder.encode([normalise(text_of(ev.papers[i])) for i in ids])
    vectors = dict(zip(ids, encoded, strict=True))
    cand = np.vstack([vectors[c] for c in ev.candidates])
    rankings = []
    for s in ev.subscriptions:
        centre = np.mean([vectors[x] for x in s.seeds], axis=0)
        scores = cand @ centre
        order = np.lexsort((np.array(ev.candidates), -scores))
        rankings.append([ev.candidates[i] for i in order])
    return rankings


# the real stack ----------------------------------------------------------------
@contextlib.contextmanager
def subscribed_stack(
    ev: Evaluation, workdir: Path, *, prefix: str = "bench", extra_env: dict[str, str] | None = None
) -> Iterator[tuple[Any, Any, list[str], dict[str, float]]]:
    """A broker and a worker with the seeds indexed, one subscription per author (threshold 0,
    through the API) and the candidates indexed and matched.

    Yields ``(worker, broker, subscription ids, timings)``; the stack stops on exit. Topics
    are ``<prefix>.papers`` / ``.alerts`` / ``.deadletter``; ``extra_env`` adds settings
    (e.g. ``ASTRO_BACKEND``).
    """
    from benchmarks.stack import WorkerProcess
    from services.core.schemas import Paper
    from services.core.settings import load_settings
    from services.kafka.broker import EmbeddedBroker, free_port
    from services.kafka.publisher import Publisher

    seeds = sorted({x for s in ev.subscriptions for x in s.seeds})
    broker = EmbeddedBroker(port=free_port(), log_path=workdir / "broker.log").start()
    env = {
        "ASTRO_KAFKA_URL": broker.url,
        "ASTRO_APP_ID": f"{prefix}-alerts",
        "ASTRO_TOPIC_PAPERS": f"{prefix}.papers",
        "ASTRO_TOPIC_ALERTS": f"{prefix}.alerts",
        "ASTRO_TOPIC_DEADLETTER": f"{prefix}.deadletter",
        # In memory: local mode on disk pays ~10 ms per stored alert, and threshold 0 stores
        # one alert per (subscription, candidate). Every code path is the same.
        "ASTRO_QDRANT_PATH": ":memory:",
        "ASTRO_DATA_DIR": str(workdir / "data"),
        "ASTRO_ROLES": "embed,alerts,api",
        "ASTRO_BATCH_WINDOW_MS": "200",
        **(extra_env or {}),
    }
    settings = load_settings(kafka_url=broker.url, topic_papers=f"{prefix}.papers")

    def publish(ids: list[str]) -> None:
        async def go() -> None:
            async with Publisher(settings) as publisher:
                await publisher.publish_papers([Paper.model_validate(ev.papers[i]) for i in ids])

        asyncio.run(go())

    worker = WorkerProcess(env, workdir / "worker.log")
    timings: dict[str, float] = {}
    try:
        t0 = time.perf_counter()
        worker.start(ready_timeout=600)
        timings["start_s"] = time.perf_counter() - t0
        t0 = time.perf_counter()
        publish(seeds)
        worker.wait_for(lambda b: b["papers"] >= len(seeds), timeout=1800)
        timings["seeds_s"] = time.perf_counter() - t0
        print(f"  indexed {len(seeds)} seed papers in {timings['seeds_s']:.0f}s", flush=True)
        sub_ids = []
        for s in ev.subscriptions:
            status, body = worker.request(
                "POST", "/subscriptions", {"name": s.author, "arxiv_ids": s.seeds, "threshold": 0}
            )
            if status != 201:
                raise RuntimeError(f"POST /subscriptions: {status} {body}")
            sub_ids.append(body["id"])
        t0 = time.perf_counter()
        publish(ev.candidates)
        total = len(seeds) + len(ev.candidates)
        worker.wait_for(lambda b: b["papers"] >= total, timeout=3600)
        timings["candidates_s"] = time.perf_counter() - t0
        print(
            f"  indexed and matched {len(ev.candidates)} candidates in "
            f"{timings['candidates_s']:.0f}s",
            flush=True,
        )
        yield worker, broker, sub_ids, timings
    finally:
        worker.stop()
        broker.stop()


def read_rankings(worker: Any, sub_ids: list[str], k: int) -> list[list[str]]:
    """Each subscription's top ``k`` alerts by relevance, through the API."""
    rankings = []
    for sub_id in sub_ids:
        status, body = worker.get(f"/subscriptions/{sub_id}/alerts?sort=relevance&limit={k}")
        if status != 200:
            raise RuntimeError(f"GET alerts: {status} {body}")
        rankings.append([a["arxiv_id"] for a in body["alerts"]])
    return rankings


def run_stack(ev: Evaluation, workdir: Path, k: int) -> tuple[list[list[str]], float]:
    """Index seeds, subscribe through the API (threshold 0), publish candidates, read alerts;
    returns the rankings and the match time per micro-batch."""
    with subscribed_stack(ev, workdir) as (worker, _, sub_ids, _):
        rankings = read_rankings(worker, sub_ids, k)
        batches = worker.metric("astrostream_match_seconds_count")
        per_batch = worker.metric("astrostream_match_seconds_sum") / max(1.0, batches)
        return rankings, per_batch


def add_evaluation_arguments(
    parser: argparse.ArgumentParser, *, subscriptions: int, candidates: int, split: str
) -> None:
    """The options :func:`evaluation_from` reads (and ``--k``), with each driver's sizes."""
    parser.add_argument("--data", type=Path, default=DATA, help="astro-ph JSONL(.gz) with authors")
    parser.add_argument("--subscriptions", type=int, default=subscriptions)
    parser.add_argument("--candidates", type=int, default=candidates)
    parser.add_argument(
        "--split", choices=("test", "dev"), default=split, help="half of the authors to use"
    )
    parser.add_argument("--cutoff", default="2025-12-01", help="seeds before, relevant on/after")
    parser.add_argument("--max-authors", type=int, default=25, help="skip papers with more authors")
    parser.add_argument("--max-seeds", type=int, default=3, help="latest seed papers per author")
    parser.add_argument("--max-relevant", type=int, default=10)
    parser.add_argument("--k", type=int, default=20)
    parser.add_argument("--seed", type=int, default=42)


def evaluation_from(
    args: argparse.Namespace, rows: list[dict[str, Any]] | None = None
) -> Evaluation:
    """The evaluation the common command-line options describe (``--data``, ``--split``, …)."""
    return build_evaluation(
        load(args.data) if rows is None else rows,
        subscriptions=args.subscriptions,
        candidates=args.candidates,
        cutoff=args.cutoff,
        max_authors=args.max_authors,
        max_seeds=args.max_seeds,
        max_relevant=args.max_relevant,
        seed=args.seed,
        split=args.split,
    )


# offline scoring -----------------------------------------------------------------------
def default_prior() -> matcher.CorpusStats | None:
    return lexicon.prior(os.environ.get("ASTRO_ALERT_DF_TABLE", "bundled"))


def lexical_scorer(
    ev: Evaluation, prior: matcher.CorpusStats | None
) -> Callable[[Subscription, str], float]:
    """The matcher's lexical score: the text the worker keeps (title + its sentences), IDF
    from ``prior`` plus every paper involved, cosine to the centroid of the seeds."""
    vectors = Lexical(ev, prior, []).vectors
    centres = {
        tuple(s.seeds): matcher.centroid([vectors[x] for x in s.seeds]) for s in ev.subscriptions
    }
    return lambda s, c: matcher.cosine(vectors[c], centres[tuple(s.seeds)])


class Lexical:
    """The matcher's TF-IDF vectors of every paper involved, as dicts and as one CSR matrix."""

    def __init__(self, ev: Evaluation, prior: matcher.CorpusStats | None, extra: list[str]) -> None:
        from services.core.text import sentences_for_embedding

        ids = sorted(
            {x for s in ev.subscriptions for x in s.seeds} | set(ev.candidates) | set(extra)
        )
        counts = {
            i: matcher.term_counts(
                " ".join(
                    [ev.papers[i]["title"]]
                    + [d for d, _ in sentences_for_embedding(ev.papers[i]["abstract"])]
                )
            )
            for i in ids
        }
        corpus = prior.copy() if prior is not None else matcher.CorpusStats()
        for c in counts.values():
            corpus.add(c)
        self.docs = corpus.docs
        self.vectors = {i: matcher.tfidf(counts[i], corpus) for i in ids}
        # One matrix of every vector, built once: the fits take their rows from it, as the
        # worker's fits share the recent papers' rows; its columns are the vocabulary.
        self.sample = model.Sample(self.vectors.values())
        self.vocab = self.sample.vocab

    def matrix(self, ids: Sequence[str]) -> sparse.csr_matrix:
        if not self.vocab:  # no terms at all (the sample keeps one empty column)
            return sparse.csr_matrix((len(ids), 0))
        rows = [self.sample.rows[id(self.vectors[i])] for i in ids]
        x = self.sample.x[np.asarray(rows, dtype=np.int64)]
        x.sort_indices()
        return x

    def dense(self, weights: dict[str, float]) -> np.ndarray:
        out = np.zeros(len(self.vocab))
        for t, w in weights.items():
            if t in self.vocab:
                out[self.vocab[t]] = w
        return out


def reservoir(ev: Evaluation, cutoff: str, size: int, seed: int) -> tuple[list[str], list[str]]:
    """The hook's sample of recent papers before the cut-off: (negatives, reference), disjoint."""
    seeds = {x for s in ev.subscriptions for x in s.seeds}
    recent = sorted(
        (p for p in ev.papers.values() if p["announced"] < cutoff and p["arxiv_id"] not in seeds),
        key=lambda p: (p["announced"], p["arxiv_id"]),
    )[-4 * size :]
    ids = [p["arxiv_id"] for p in recent]
    random.Random(seed).shuffle(ids)
    return sorted(ids[:size]), sorted(ids[size : 2 * size])


@dataclass
class Dense:
    """Whole-paper vectors of the worker's shipped static model (``services.alerts.dense``),
    from the text the static channel was measured on, and the channel's weight."""

    vectors: dict[str, np.ndarray]
    weight: float

    @classmethod
    def of(cls, ev: Evaluation, ids: Sequence[str], weight: float) -> Dense:
        from services.alerts.dense import shipped

        ids = sorted(set(ids))
        rows = shipped().papers([text_of(ev.papers[i]) for i in ids])
        return cls(dict(zip(ids, rows, strict=True)), weight)

    def matrix(self, ids: Sequence[str]) -> np.ndarray:
        if not ids:  # e.g. a simulated week without candidates
            return np.zeros((0, len(next(iter(self.vectors.values())))), dtype=np.float32)
        return np.stack([self.vectors[i] for i in ids])


def fit_and_score(
    lex: Lexical,
    cand: sparse.csr_matrix,
    positives: Sequence[str],
    negatives: Sequence[str],
    reference: Sequence[str],
    *,
    dense: Dense | None = None,
    cand_ids: Sequence[str] = (),
    **options: Any,
) -> tuple[np.ndarray, Any]:
    """:func:`fit_model` (``options``: its ``mix``, ``c``, ``extra_pos``, ``extra_neg``), then
    every row of ``cand`` scored in a few products. With ``dense`` (the shipped static model's
    vectors) the model has the worker's dense channel at ``dense.weight``; ``cand_ids`` are
    then the ids of ``cand``'s rows."""
    fitted = fit_model(lex, positives, negatives, reference, dense=dense, **options)
    return score_all(fitted, lex, cand, dense, cand_ids), fitted


def fit_model(
    lex: Lexical,
    positives: Sequence[str],
    negatives: Sequence[str],
    reference: Sequence[str],
    *,
    mix: float,
    c: float,
    extra_pos: Sequence[str] = (),
    extra_neg: Sequence[str] = (),
    dense: Dense | None = None,
) -> Any:
    """``services.alerts.model.fit`` as the service calls it, from paper ids (labelled papers
    leave the negative and reference samples)."""
    labelled = {*positives, *extra_pos, *extra_neg}
    kept_reference = [x for x in reference if x not in labelled]
    channel: dict[str, Any] = {}
    if dense is not None and dense.weight > 0:
        channel = {
            "dense_positives": [dense.vectors[x] for x in [*positives, *extra_pos]],
            "dense_reference": [dense.vectors[x] for x in kept_reference],
            "dense_weight": dense.weight,
        }
    return model.fit(
        [lex.vectors[x] for x in positives],
        [lex.vectors[x] for x in negatives if x not in labelled],
        [lex.vectors[x] for x in kept_reference],
        relevant=[lex.vectors[x] for x in extra_pos],
        not_relevant=[lex.vectors[x] for x in extra_neg],
        mix=mix,
        c=c,
        sample=lex.sample,
        **channel,
    )


def score_all(
    fitted: Any,
    lex: Lexical,
    cand: sparse.csr_matrix,
    dense: Dense | None = None,
    cand_ids: Sequence[str] = (),
) -> np.ndarray:
    """``SubscriptionModel.score`` of every row of ``cand``, in a few products."""
    margin = cand @ lex.dense(fitted.weights) + fitted.bias
    cos = cand @ lex.dense(fitted.centre)
    (mm, ms), (cm, cs) = fitted.margin_stats, fitted.cosine_stats
    scores = fitted.mix * (margin - mm) / ms + (1 - fitted.mix) * (cos - cm) / cs
    if dense is not None and fitted.dense_centre is not None and fitted.dense_weight:
        w, (lm, ls), (dm, ds) = fitted.dense_weight, fitted.lexical_stats, fitted.dense_stats
        dense_cos = dense.matrix(cand_ids) @ fitted.dense_centre
        scores = (1 - w) * (scores - lm) / ls + w * (dense_cos - dm) / ds
    return np.asarray(scores)


def fit_cost(
    ev: Evaluation,
    lex: Lexical,
    negatives: list[str],
    reference: list[str],
    *,
    mix: float,
    c: float,
) -> None:
    """Print the milliseconds a model fit takes as the worker fits it (a batch's fits share
    one matrix of the sample's rows) and with that matrix built in each fit, and how many of
    the two models are identical (all should be). Runs in this process only (timings)."""
    subs = ev.subscriptions
    started = time.perf_counter()
    sample = model.Sample([lex.vectors[x] for x in [*negatives, *reference]])
    build_ms = (time.perf_counter() - started) * 1e3
    shared, alone, same = [], [], 0
    for s in subs:
        args = (
            [lex.vectors[x] for x in s.seeds],
            [lex.vectors[x] for x in negatives],
            [lex.vectors[x] for x in reference],
        )
        t0 = time.perf_counter()
        a = model.fit(*args, mix=mix, c=c, sample=sample)
        t1 = time.perf_counter()
        b = model.fit(*args, mix=mix, c=c)
        t2 = time.perf_counter()
        shared.append((t1 - t0) * 1e3)
        alone.append((t2 - t1) * 1e3)
        same += (a.weights, a.bias, a.reference) == (b.weights, b.bias, b.reference)
    print(
        f"model fit ({len(subs)} subscriptions, {len(negatives)} negatives, {len(reference)}"
        f" reference): {np.median(shared):.1f} ms median, {np.percentile(shared, 90):.1f} ms"
        f" p90 with the batch's shared sample matrix (built once in {build_ms:.0f} ms);"
        f" {np.median(alone):.1f} / {np.percentile(alone, 90):.1f} ms building it in each"
        f" fit; identical models {same}/{len(subs)}"
    )


def calibration(
    ev: Evaluation, lex: Lexical, negatives: list[str], reference: list[str], mix: float, c: float
) -> None:
    """How ``relevance`` separates: the share of relevant and of other candidates at or
    above each level (what a ``min_relevance`` keeps and lets through)."""
    cand = lex.matrix(ev.candidates)
    rel: list[float] = []
    other: list[float] = []
    for s in ev.subscriptions:
        scores, fitted = fit_and_score(lex, cand, s.seeds, negatives, reference, mix=mix, c=c)
        for i, score in zip(ev.candidates, scores, strict=True):
            (rel if i in s.relevant else other).append(fitted.relevance(float(score)))
    r, o = np.array(rel), np.array(other)
    print("\ncalibrated relevance: share of candidates at or above each level")
    for level in (0.8, 0.9, 0.95, 0.98, 0.99, 0.995):
        print(
            f"  >= {level:5.3f}: relevant {np.mean(r >= level):.3f}, other {np.mean(o >= level):.4f}"
            f" ({1000 * np.mean(o >= level):.1f} per 1000 unrelated papers)"
        )


def rank_scores(candidates: list[str], scores: np.ndarray) -> list[str]:
    order = np.lexsort((np.array(candidates), -scores))
    return [candidates[i] for i in order]


_TASK: list[Callable[[Any], Any]] = []


def _run_task(item: Any) -> Any:
    return _TASK[0](item)


def each(fn: Callable[[Any], Any], items: Sequence[Any], jobs: int = 1) -> list[Any]:
    """``[fn(x) for x in items]``, in ``jobs`` forked processes when that is more than one
    (each subscription's fits are independent; ``fn`` may be a closure: the children inherit
    it). Results keep the order of ``items``."""
    if jobs <= 1 or len(items) < 2:
        return [fn(x) for x in items]
    import multiprocessing

    _TASK[:] = [fn]
    try:
        with multiprocessing.get_context("fork").Pool(min(jobs, len(items))) as pool:
            return pool.map(_run_task, items, chunksize=max(1, len(items) // (8 * jobs)))
    finally:
        _TASK.clear()


def model_rankings(
    ev: Evaluation,
    lex: Lexical,
    negatives: list[str],
    reference: list[str],
    mix: float,
    c: float,
    dense: Dense | None = None,
    jobs: int = 1,
) -> list[list[str]]:
    cand = lex.matrix(ev.candidates)

    def one(s: Subscription) -> list[str]:
        scores, _ = fit_and_score(
            lex,
            cand,
            s.seeds,
            negatives,
            reference,
            mix=mix,
            c=c,
            dense=dense,
            cand_ids=ev.candidates,
        )
        return rank_scores(ev.candidates, scores)

    return each(one, ev.subscriptions, jobs)


def sanity_svm(ev: Evaluation, corpus: list[dict[str, Any]], jobs: int = 1) -> list[list[str]]:
    """arxiv-sanity-lite's exemplar SVM with its own vectoriser (compute.py / serve.py):
    TfidfVectorizer(english stop words, 1-2 grams, 20k features, min_df 5, max_df 0.1,
    sublinear tf, l2) fit on the corpus; per user a LinearSVC(C 0.1, balanced classes) with
    the user's papers as positives and every other paper of the database (here the seeds of
    all subscriptions and the candidates) as negatives. Title + abstract, no author names."""
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.svm import LinearSVC

    vectoriser = TfidfVectorizer(
        input="content",
        encoding="utf-8",
        decode_error="replace",
        strip_accents="unicode",
        lowercase=True,
        analyzer="word",
        stop_words="english",
        token_pattern=r"(?u)\b[a-zA-Z_][a-zA-Z0-9_]+\b",
        ngram_range=(1, 2),
        max_features=20000,
        norm="l2",
        use_idf=True,
        smooth_idf=True,
        sublinear_tf=True,
        max_df=0.1 if len(corpus) >= 1000 else 1.0,  # a tiny test corpus has no such terms
        min_df=5 if len(corpus) >= 1000 else 1,
    )
    vectoriser.fit([text_of(p) for p in corpus])
    db = sorted({x for s in ev.subscriptions for x in s.seeds} | set(ev.candidates))
    x = vectoriser.transform([text_of(ev.papers[i]) for i in db])
    row = {i: n for n, i in enumerate(db)}
    cand_rows = [row[c] for c in ev.candidates]

    def one(s: Subscription) -> list[str]:
        y = np.zeros(len(db))
        y[[row[i] for i in s.seeds]] = 1
        clf = LinearSVC(
            class_weight="balanced", verbose=False, max_iter=10000, tol=1e-6, C=0.1, random_state=0
        )
        clf.fit(x, y)
        return rank_scores(ev.candidates, clf.decision_function(x)[cand_rows])

    return each(one, ev.subscriptions, jobs)


def feedback_curve(
    ev: Evaluation,
    lex: Lexical,
    negatives: list[str],
    reference: list[str],
    *,
    cutoff: str,
    mix: float,
    c: float,
    k: int,
    per_week: int = 5,
    weeks: int = 4,
    dense: Dense | None = None,
    jobs: int = 1,
) -> dict[int, np.ndarray]:
    """A reader who, after each simulated week, labels the top ``per_week`` alerts of that
    week by ground truth (relevant → positive, else negative). nDCG@k on the candidates of
    the weeks after the labelling weeks, with the labels of the first 0, 1, 2, .. weeks."""
    from datetime import date

    start = date.fromisoformat(cutoff)

    def week(i: str) -> int:
        return (date.fromisoformat(ev.papers[i]["announced"][:10]) - start).days // 7

    later = [i for i in ev.candidates if week(i) >= weeks]
    by_week = [[i for i in ev.candidates if week(i) == w] for w in range(weeks)]
    mats = [lex.matrix(ids) for ids in by_week]
    later_m = lex.matrix(later)
    checkpoints = {0: 0, 1: per_week, 2: 2 * per_week, 4: 4 * per_week}

    def one(s: Subscription) -> list[float] | None:
        target = s.relevant & set(later)
        if not target:
            return None
        points: list[float] = []
        pos: list[str] = []
        neg: list[str] = []
        for w in range(weeks + 1):
            # one fit per week: it ranks the later weeks (at a checkpoint) and this week
            fitted = fit_model(
                lex,
                s.seeds,
                negatives,
                reference,
                mix=mix,
                c=c,
                extra_pos=pos,
                extra_neg=neg,
                dense=dense,
            )
            if w in checkpoints:
                scores = score_all(fitted, lex, later_m, dense, later)
                points.append(ndcg(rank_scores(later, scores), target, k))
            if w == weeks:
                break
            scores = score_all(fitted, lex, mats[w], dense, by_week[w])
            for i in rank_scores(by_week[w], scores)[:per_week]:
                (pos if i in s.relevant else neg).append(i)
        return points

    rows = [r for r in each(one, ev.subscriptions, jobs) if r is not None]
    return {
        n: np.array([r[j] for r in rows], dtype=float) for j, n in enumerate(checkpoints.values())
    }


def ablation(ev: Evaluation, encoder: Any) -> dict[str, list[list[str]]]:
    """Scoring variants on full sentence matrices, embedded here exactly as the worker does."""
    from services.core.text import sentences_for_embedding
    from services.embed.pipeline import paper_vector

    ids = sorted({x for s in ev.subscriptions for x in s.seeds} | set(ev.candidates))
    texts_of = {i: sentences_for_embedding(ev.papers[i]["abstract"]) for i in ids}
    flat = [
        t for i in ids for t in [normalise(ev.papers[i]["title"])] + [m for _, m in texts_of[i]]
    ]
    encoded = encoder.encode(flat)
    sentences: dict[str, np.ndarray] = {}
    paper_vectors: dict[str, np.ndarray] = {}
    row = 0
    for i in ids:
        n = len(texts_of[i])
        sentences[i] = encoded[row + 1 : row + 1 + n]
        paper_vectors[i] = paper_vector(encoded[row], sentences[i])
        row += 1 + n
    blocks = {tuple(s.seeds): np.vstack([sentences[x] for x in s.seeds]) for s in ev.subscriptions}

    def dense(method: str) -> Callable[[Subscription, str], float]:
        return lambda s, c: matcher.aggregate(sentences[c] @ blocks[tuple(s.seeds)].T, method)

    lexical = lexical_scorer(ev, default_prior())
    lse = dense("lse")

    def fused(weight: float) -> Callable[[Subscription, str], float]:
        return lambda s, c: matcher.fuse(lse(s, c), lexical(s, c), weight)

    variants: dict[str, Callable[[Subscription, str], float]] = {
        "dense max": dense("max"),
        f"dense mean of top-{matcher.TOP_K}": dense("topk"),
        f"dense lse (tau {matcher.LSE_TAU})": lse,
        "paper vector vs seed paper vectors (max)": lambda s, c: max(
            float(paper_vectors[c] @ paper_vectors[x]) for x in s.seeds
        ),
        "lexical, IDF from the stream only": lexical_scorer(ev, None),
        f"lexical, prior + stream IDF (default, weight {matcher.LEXICAL_WEIGHT})": lexical,
        "0.2 lse + 0.8 lexical": fused(0.8),
        "0.05 lse + 0.95 lexical": fused(0.95),
    }
    return {name: rank_by(ev, fn) for name, fn in variants.items()}


def report(ev: Evaluation, results: dict[str, list[list[str]]], k: int) -> None:
    """:func:`compare` on all subscriptions, then on the small ones (few seeds)."""
    compare(ev, results, k)
    small = [n for n, s in enumerate(ev.subscriptions) if len(s.seeds) <= SMALL]
    if 0 < len(small) < len(ev.subscriptions):
        print(f"\nsmall subscriptions (<= {SMALL} seeds): {len(small)}")
        sub_ev = Evaluation(ev.papers, [ev.subscriptions[n] for n in small], ev.candidates)
        compare(sub_ev, {m: [r[n] for n in small] for m, r in results.items()}, k)


def compare(ev: Evaluation, results: dict[str, list[list[str]]], k: int) -> None:
    """nDCG@k / Recall@k of each ranking; the first one against the others, with 95 % CIs."""
    scores = {name: per_subscription(ev, r, k) for name, r in results.items()}
    print(f"\n{'method':46s} nDCG@{k:<3d} Recall@{k}")
    for name, (n, r) in scores.items():
        print(f"{name:46s} {n.mean():.4f}   {r.mean():.4f}")
    (ours, (ours_n, ours_r)), *others = scores.items()
    for base, (base_n, base_r) in others:
        lo, hi = paired_ci(ours_n, base_n)
        print(
            f"  ours - {base}: nDCG {ours_n.mean() - base_n.mean():+.4f} "
            f"(95% CI {lo:+.4f} .. {hi:+.4f}), recall {ours_r.mean() - base_r.mean():+.4f}; "
            f"better/level/worse on {(ours_n > base_n).sum()}/{(ours_n == base_n).sum()}/"
            f"{(ours_n < base_n).sum()} subscriptions"
        )


_LEXICAL: list[tuple[Evaluation, Lexical]] = []


def offline_lexical(ev: Evaluation, args: argparse.Namespace) -> Lexical:
    """The vectors of one evaluation (built once per run)."""
    if not _LEXICAL or _LEXICAL[0][0] is not ev:
        negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
        _LEXICAL[:] = [(ev, Lexical(ev, default_prior(), negatives + reference))]
    return _LEXICAL[0][1]


def offline_dense(ev: Evaluation, args: argparse.Namespace) -> Dense:
    """The shipped static model's vectors of every paper of the evaluation and samples."""
    negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
    seeds = [x for s in ev.subscriptions for x in s.seeds]
    return Dense.of(ev, [*seeds, *ev.candidates, *negatives, *reference], args.dense_weight)


def offline_results(
    ev: Evaluation, rows: list[dict[str, Any]], args: argparse.Namespace
) -> dict[str, list[list[str]]]:
    lex = offline_lexical(ev, args)
    negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
    results = {}
    if args.dense_weight > 0:
        dense = offline_dense(ev, args)
        results[
            f"default: SVM {args.mix} + centroid (C {args.c}) + static dense {args.dense_weight}"
        ] = model_rankings(ev, lex, negatives, reference, args.mix, args.c, dense, args.jobs)
    results |= {
        f"SVM {args.mix} + centroid (C {args.c}), no dense channel": model_rankings(
            ev, lex, negatives, reference, args.mix, args.c, jobs=args.jobs
        ),
        "centroid (the previous default)": model_rankings(
            ev, lex, negatives, reference, 0.0, args.c, jobs=args.jobs
        ),
        "arxiv-sanity-lite exemplar SVM": sanity_svm(ev, rows, args.jobs),
        "TF-IDF centroid (arxiv-sanity vectoriser)": tfidf_baseline(ev, rows),
    }
    if args.embeddings:
        from services.models.encoder import Encoder

        encoder = Encoder(os.environ.get("ASTRO_MODEL", "bundled"), "cpu", 32, 256)
        results["whole-abstract embedding"] = embedding_baseline(ev, encoder)
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    add_evaluation_arguments(parser, subscriptions=100, candidates=400, split="test")
    parser.add_argument("--workdir", type=Path, help="keep the stack's data here (default: temp)")
    parser.add_argument("--no-ablation", action="store_true", help="skip the offline ablation")
    parser.add_argument("--mix", type=float, default=model.MIX, help="share of the SVM margin")
    parser.add_argument("--c", type=float, default=model.C, help="the model's SVM C")
    parser.add_argument(
        "--dense-weight",
        type=float,
        default=model.DENSE_WEIGHT,
        help="offline: the static dense channel's weight in the default (0: lexical only)",
    )
    parser.add_argument(
        "--reservoir", type=int, default=RESERVOIR, help="negatives (and reference) sample size"
    )
    parser.add_argument("--calibration", action="store_true", help="relevance levels")
    parser.add_argument("--feedback-curve", action="store_true", help="simulate a labelling reader")
    parser.add_argument(
        "--fit-cost",
        action="store_true",
        help="only time the model fit (with and without the shared sample matrix)",
    )
    parser.add_argument(
        "--jobs",
        type=int,
        default=len(os.sched_getaffinity(0)),
        help="processes for the per-subscription fits (default: the CPUs this process may use)",
    )
    parser.add_argument(
        "--embeddings", action="store_true", help="offline: add whole-abstract embeddings"
    )
    parser.add_argument(
        "--offline",
        action="store_true",
        help="no stack: the default score (pure code) against the baselines",
    )
    args = parser.parse_args(argv)

    started = time.perf_counter()
    rows = load(args.data)
    ev = evaluation_from(args, rows)
    seeds = {x for s in ev.subscriptions for x in s.seeds}
    relevant = [len(s.relevant) for s in ev.subscriptions]
    print(
        f"{len(ev.subscriptions)} subscriptions ({len(seeds)} seed papers, "
        f"{np.mean(relevant):.1f} relevant each), {len(ev.candidates)} candidates "
        f"from {args.cutoff} on",
        flush=True,
    )
    k = args.k
    if args.fit_cost:
        negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
        lex = offline_lexical(ev, args)
        fit_cost(ev, lex, negatives, reference, mix=args.mix, c=args.c)
        return 0
    if args.offline:
        # The default score without the stack: many more subscriptions in minutes (no
        # percolation cut-off, which the API run includes).
        results = offline_results(ev, rows, args)
        report(ev, results, k)
        if args.calibration:
            lex = offline_lexical(ev, args)
            negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
            calibration(ev, lex, negatives, reference, args.mix, args.c)
        if args.feedback_curve:
            lex = offline_lexical(ev, args)
            negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
            curve = feedback_curve(
                ev,
                lex,
                negatives,
                reference,
                cutoff=args.cutoff,
                mix=args.mix,
                c=args.c,
                k=k,
                dense=offline_dense(ev, args) if args.dense_weight > 0 else None,
                jobs=args.jobs,
            )
            print(f"\nfeedback curve: nDCG@{k} of the weeks after 4 labelling weeks")
            base = curve[0]
            for labels, values in curve.items():
                lo, hi = paired_ci(values, base)
                print(
                    f"  {labels:2d} labels: {values.mean():.4f} ({len(values)} subscriptions;"
                    f" vs 0 labels {values.mean() - base.mean():+.4f}, 95% CI {lo:+.4f} .. {hi:+.4f})"
                )
        print(f"\ntotal {time.perf_counter() - started:.0f}s")
        return 0
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="bench-alerts-"))
    workdir.mkdir(parents=True, exist_ok=True)
    try:
        ours, match_s = run_stack(ev, workdir, args.k)
        tfidf = tfidf_baseline(ev, rows)
        from services.models.encoder import Encoder

        # The same model as the worker (ASTRO_MODEL, default the bundled one).
        encoder = Encoder(os.environ.get("ASTRO_MODEL", "bundled"), "cpu", 32, 256)
        whole = embedding_baseline(ev, encoder)
        extra = {} if args.no_ablation else ablation(ev, encoder)
    finally:
        if args.workdir is None:
            shutil.rmtree(workdir, ignore_errors=True)

    lex = offline_lexical(ev, args)
    negatives, reference = reservoir(ev, args.cutoff, args.reservoir, args.seed)
    results = {
        "astrostream alerts (API, sort=relevance)": ours,
        "centroid (the previous default), offline": model_rankings(
            ev, lex, negatives, reference, 0.0, args.c, jobs=args.jobs
        ),
        "arxiv-sanity-lite exemplar SVM": sanity_svm(ev, rows, args.jobs),
        "TF-IDF baseline (arxiv-sanity)": tfidf,
        "whole-abstract embedding": whole,
    }
    report(ev, results, k)
    if extra:
        print("\noffline ablation (full sentence matrices, no percolation cut-off)")
        print(f"{'variant':46s} nDCG@{k:<3d} Recall@{k}")
        for name, rankings in extra.items():
            n, r = per_subscription(ev, rankings, k)
            print(f"{name:46s} {n.mean():.4f}   {r.mean():.4f}")
    print(
        f"\nmatch time per micro-batch {match_s * 1000:.0f} ms; total {time.perf_counter() - started:.0f}s"
    )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
