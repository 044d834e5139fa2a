"""Lexical reach of percolation at scale: does a paper reach every subscription it matches?

Percolation decides which subscriptions a new paper is scored against; the rest are never
scored. This builds many subscriptions from real papers, percolates later papers exactly as
the alert hook does (``services.alerts.percolation.percolate``, Qdrant in memory) and compares the
(subscription, paper) pairs it returns with those a full scan scores at or above the
subscription's threshold (the default score: the lexical TF-IDF cosine).

Data: ``shared/data/astro-ph/astro-ph-train.jsonl.gz``. Candidates are the latest
``--candidates`` papers; every subscription is an author of earlier papers (≤ 25 authors)
with 1-3 of their earlier papers as seeds. To keep it fast on a CPU each seed contributes
one dense interest vector, its title's (the worker stores one per sentence: a harder case
for dense reach, not an easier one); its terms are those of its whole title and abstract,
as in the worker. Candidates are embedded sentence by
sentence as the worker does. The model is the bundled MiniLM (``ASTRO_MODEL`` overrides).

Reported: reach of dense-only percolation (``ASTRO_ALERT_PERCOLATE_LIMIT``), of dense +
sparse (``ASTRO_ALERT_SPARSE_LIMIT`` values), of the sparse search alone, and of the
alternative sparse weighting (unit sublinear tf with Qdrant's IDF modifier computed over
the subscriptions), plus the percolation time per paper.

    nice -n 10 .venv/bin/python benchmarks/reach.py                      # 10,000 x 300
    .venv/bin/python benchmarks/reach.py --subscriptions 2000 --candidates 100   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import collections
import gzip
import json
import os
import random
import sys
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
from qdrant_client import models as qm
from scipy import sparse as sp

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.alerts import lexicon, matcher, percolation  # noqa: E402
from services.alerts.request import DEFAULT_THRESHOLD  # noqa: E402
from services.alerts.subscriptions import Interest, SubscriptionStore  # noqa: E402
from services.core.ids import interest_point_id  # noqa: E402
from services.core.lexical import sparse, sublinear_tf, term_counts  # noqa: E402
from services.core.settings import load_settings  # noqa: E402
from services.core.text import normalise, sentences_for_embedding  # noqa: E402
from services.store.binding import Binding  # noqa: E402
from services.store.vectorstore import LEXICAL, VectorStore, sparse_vector  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz"
BATCH = 32  # papers per percolation call (the embed stage's micro-batch)


def load(path: Path) -> list[dict[str, Any]]:
    with gzip.open(path, "rt") as fh:
        papers = [json.loads(line) for line in fh]
    return sorted(papers, key=lambda p: (p["announced"], p["arxiv_id"]))


def build(
    papers: list[dict[str, Any]], n_subs: int, n_candidates: int, seed: int
) -> tuple[list[dict[str, Any]], list[tuple[str, list[dict[str, Any]]]]]:
    """Candidates (the latest papers) and subscriptions (author, 1-3 earlier seed papers)."""
    rng = random.Random(seed)
    candidates = papers[-n_candidates:]
    earlier = [p for p in papers[:-n_candidates] if len(p["authors"]) <= 25]
    by_author: dict[str, list[dict[str, Any]]] = collections.defaultdict(list)
    for p in earlier:
        for author in p["authors"]:
            by_author[author].append(p)
    authors = sorted(by_author)
    rng.shuffle(authors)
    subs = []
    for author in authors[:n_subs]:
        own = by_author[author]
        subs.append((author, rng.sample(own, min(len(own), rng.randint(1, 3)))))
    return candidates, subs


def encode(encoder: Any, texts: list[str], cache: Path) -> np.ndarray:
    """Encode ``texts``, reusing the vectors ``cache`` holds for the same model."""
    known: dict[str, np.ndarray] = {}
    if cache.exists():
        with np.load(cache, allow_pickle=False) as saved:
            known = dict(zip(saved["texts"].tolist(), saved["vectors"], strict=True))
    todo = sorted(set(texts) - set(known))
    if todo:
        known.update(zip(todo, encoder.encode(todo), strict=True))
        cache.parent.mkdir(parents=True, exist_ok=True)
        np.savez(cache, texts=np.array(list(known)), vectors=np.vstack(list(known.values())))
    return np.vstack([known[t] for t in texts])


def unit_rows(matrix: sp.csr_matrix) -> sp.csr_matrix:
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    norms[norms == 0] = 1.0
    return sp.diags(1.0 / norms) @ matrix


VOCAB: dict[str, int] = {}


def rows_of(vectors: list[dict[str, float]]) -> sp.csr_matrix:
    """Term-weight dicts as the rows of one sparse matrix (one shared vocabulary)."""
    data: list[float] = []
    cols: list[int] = []
    ptr = [0]
    for vector in vectors:
        for term, weight in vector.items():
            cols.append(VOCAB.setdefault(term, len(VOCAB)))
            data.append(weight)
        ptr.append(len(cols))
    return sp.csr_matrix((data, cols, ptr), shape=(len(vectors), 1 << 24))


def full_scan(
    paper_counts: list[collections.Counter[str]],
    interests: list[list[Interest]],
    corpus: matcher.CorpusStats,
) -> np.ndarray:
    """Lexical score of every (paper, subscription) pair, as ``matcher`` computes it."""
    papers = rows_of([matcher.tfidf(c, corpus) for c in paper_counts])
    centres = rows_of(
        [
            matcher.centroid([matcher.tfidf(dict(i.terms), corpus) for i in subs])
            for subs in interests
        ]
    )
    return np.asarray((papers @ centres.T).todense())


async def percolate(
    store: VectorStore,
    prior: matcher.CorpusStats,
    corpus: matcher.CorpusStats,
    items: list[Any],
    counts: list[collections.Counter[str]],
    dense_limit: int,
    sparse_limit: int,
) -> tuple[set[tuple[int, str]], float]:
    del prior  # the IDF is the corpus's

    async def call(fn: Any, *args: Any) -> Any:
        return await store.run(fn, *args)

    reached: set[tuple[int, str]] = set()
    started = time.perf_counter()
    for start in range(0, len(items), BATCH):
        part = items[start : start + BATCH]
        found = await percolation.percolate(
            call,
            store,
            [it.sentence_vectors for it in part],
            [matcher.tfidf(c, corpus) for c in counts[start : start + BATCH]],
            dense_limit,
            sparse_limit,
        )
        for row, per in enumerate(found.per_paper(len(part))):
            reached.update((start + row, sub_id) for sub_id in per)
    return reached, time.perf_counter() - started


def exact_sparse(scores: np.ndarray, sub_ids: list[str], limit: int) -> set[tuple[int, str]]:
    """The top ``limit`` subscriptions per paper by sparse score (> 0).

    Qdrant scores sparse vectors exactly (an inverted index, no approximation), so this is
    what its sparse search returns, up to ties; computed here because local mode scores
    sparse vectors in Python (minutes per thousand queries against 10,000 subscriptions).
    """
    top = np.argsort(-scores, axis=1)[:, :limit]
    return {(r, sub_ids[c]) for r, row in enumerate(top) for c in row if scores[r, c] > 0}


def sparse_only(
    store: VectorStore, collection: str, queries: list[qm.SparseVector], limit: int
) -> set[tuple[int, str]]:
    reached: set[tuple[int, str]] = set()
    for start in range(0, len(queries), 64):
        requests = [
            qm.QueryRequest(query=q, using=LEXICAL, limit=limit, with_payload=["subscription_id"])
            for q in queries[start : start + 64]
        ]
        for row, answer in enumerate(store.client.query_batch_points(collection, requests)):
            reached.update(
                (start + row, str((p.payload or {})["subscription_id"])) for p in answer.points
            )
    return reached


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, default=10_000)
    parser.add_argument("--candidates", type=int, default=300)
    parser.add_argument("--threshold", type=float, default=DEFAULT_THRESHOLD)
    parser.add_argument("--dense-limit", type=int, default=256)
    parser.add_argument("--sparse-limits", default="250,500,1000")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument(
        "--cache",
        type=Path,
        default=ROOT / "data" / "bench" / "reach-vectors.npz",
        help="vectors of texts already encoded (reruns skip the encoder)",
    )
    parser.add_argument("--timed", type=int, default=32, help="papers timed through the hook")
    parser.add_argument("--timed-limits", default="1000", help="sparse limits timed")
    args = parser.parse_args(argv)
    from services.models.encoder import Encoder

    papers = load(args.data)
    candidates, subs = build(papers, args.subscriptions, args.candidates, args.seed)
    seeds = {p["arxiv_id"]: p for _, own in subs for p in own}
    print(
        f"{len(subs)} subscriptions ({sum(len(o) for _, o in subs)} seed picks, "
        f"{len(seeds)} distinct seed papers), {len(candidates)} candidates "
        f"({candidates[0]['announced']} .. {candidates[-1]['announced']})",
        flush=True,
    )

    encoder = Encoder(os.environ.get("ASTRO_MODEL", "bundled"), "cpu", 32, 256)
    started = time.perf_counter()
    seed_ids = sorted(seeds)
    seed_texts = [normalise(seeds[a]["title"]) for a in seed_ids]
    cand_sentences = [sentences_for_embedding(p["abstract"]) for p in candidates]
    cand_texts = [m for s in cand_sentences for _, m in s]
    encoded = encode(encoder, seed_texts + cand_texts, args.cache)
    print(
        f"encoded {len(seed_texts)} seed and {len(cand_texts)} candidate texts in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )
    seed_vectors: dict[str, list[tuple[str, np.ndarray]]] = {}
    for row, a in enumerate(seed_ids):
        seed_vectors[a] = [(seeds[a]["title"], encoded[row])]

    prior = lexicon.prior("bundled") or matcher.CorpusStats()
    store = VectorStore(load_settings(qdrant_path=":memory:"), encoder.dim, "reach")
    store.ensure_collections()
    subs_store = SubscriptionStore(Binding(encoder, store), prior)
    interests: list[list[Interest]] = []
    sub_ids: list[str] = []
    started = time.perf_counter()
    for n, (author, own) in enumerate(subs):
        sub_id = uuid.uuid5(uuid.NAMESPACE_URL, f"reach:{author}").hex
        sub_ids.append(sub_id)
        mine = [
            Interest(
                interest=p["arxiv_id"],
                kind="paper",
                terms=sorted(term_counts(" ".join([p["title"], p["abstract"]])).items()),
            )
            for p in own
        ]
        interests.append(mine)
        points = [
            (i, p["arxiv_id"], t, v)
            for i, p in enumerate(own)
            for t, v in seed_vectors[p["arxiv_id"]]
        ]
        payloads = [
            {
                "subscription_id": sub_id,
                "interest": label,
                "interest_index": index,
                "kind": "sentence",
                "text": text,
                "threshold": args.threshold,
                "categories": [],
                "points": len(points),
            }
            for index, label, text, _ in points
        ]
        store.upsert(
            store.subscriptions,
            [interest_point_id(sub_id, k) for k in range(len(points))],
            np.vstack([v for *_, v in points]),
            payloads,
            [subs_store.lexical_vector(mine)] + [None] * (len(points) - 1),
        )
        if (n + 1) % 2000 == 0:
            print(f"  {n + 1} subscriptions stored", flush=True)
    print(
        f"stored {store.count(store.subscriptions)} interest points in "
        f"{time.perf_counter() - started:.0f} s",
        flush=True,
    )

    corpus = prior.copy()
    counts = []
    items = []
    row = len(seed_texts)
    for p, sentences in zip(candidates, cand_sentences, strict=True):
        texts = [d for d, _ in sentences]
        c = term_counts(" ".join([p["title"], *texts]))
        corpus.add(c)
        counts.append(c)
        items.append(
            SimpleNamespace(
                paper=SimpleNamespace(title=p["title"]),
                sentences=texts,
                sentence_vectors=encoded[row : row + len(texts)],
            )
        )
        row += len(texts)

    scores = full_scan(counts, interests, corpus)
    above = {(r, sub_ids[c]) for r, c in zip(*np.nonzero(scores >= args.threshold), strict=True)}
    own_later = {
        (r, sub_ids[c])
        for c, (author, _) in enumerate(subs)
        for r, p in enumerate(candidates)
        if author in p["authors"]
    }
    relevant = above & own_later
    per_paper = np.bincount([r for r, _ in above], minlength=len(candidates))
    print(
        f"full scan: {len(above)} pairs at or above {args.threshold} "
        f"(per paper: median {np.median(per_paper):.0f}, max {per_paper.max()}); "
        f"{len(own_later)} (author, own later paper) pairs, {len(relevant)} of them above",
        flush=True,
    )

    def share(reached: set[tuple[int, str]], wanted: set[tuple[int, str]]) -> str:
        return f"{len(reached & wanted) / max(1, len(wanted)):.4f}"

    print("\n| percolation | reach (above threshold) | reach (own later papers above) |")
    print("|---|---|---|")
    dense, seconds = asyncio.run(
        percolate(store, prior, corpus, items, counts, args.dense_limit, 0)
    )
    dense_ms = 1000 * seconds / len(items)
    print(
        f"| dense only, {args.dense_limit}/sentence | {share(dense, above)} | {share(dense, relevant)} |"
    )
    tfidf_queries = [sparse_vector(sparse(matcher.tfidf(c, corpus))) for c in counts]
    # Sparse scores of every pair, as the two weightings store and query them.
    kept = (
        rows_of([matcher.tfidf(c, corpus) for c in counts])
        @ rows_of(
            [
                matcher.centroid([matcher.tfidf(dict(i.terms), prior) for i in mine])
                for mine in interests
            ]
        ).T
    )
    tf = []
    for mine in interests:
        merged: collections.Counter[str] = collections.Counter()
        for interest in mine:
            merged.update(sublinear_tf(dict(interest.terms)))
        tf.append(matcher.centroid([merged]))
    subs_tf = rows_of(tf).tocsc()
    n_t = np.asarray((subs_tf > 0).sum(axis=0)).ravel()
    idf = np.log(1 + (subs_tf.shape[0] - n_t + 0.5) / (n_t + 0.5))  # Qdrant's IDF modifier
    alt_scores = rows_of([sublinear_tf(c) for c in counts]) @ sp.diags(idf) @ subs_tf.T
    kept_dense, alt_dense = np.asarray(kept.todense()), np.asarray(alt_scores.todense())
    limits = [int(x) for x in args.sparse_limits.split(",")]
    for limit in limits:
        only = exact_sparse(kept_dense, sub_ids, limit)
        alt_only = exact_sparse(alt_dense, sub_ids, limit)
        # The hook's hybrid percolation returns exactly the union (checked below).
        print(
            f"| **dense + sparse {limit}** | **{share(dense | only, above)}** "
            f"| {share(dense | only, relevant)} |"
        )
        print(
            f"| sparse {limit} alone (TF-IDF centroid, kept) | {share(only, above)} | {share(only, relevant)} |"
        )
        print(
            f"| sparse {limit} alone (sublinear tf, IDF modifier) | {share(alt_only, above)} "
            f"| {share(alt_only, relevant)} |",
            flush=True,
        )

    timed = items[: args.timed]
    print(f"\npercolation time per paper (Qdrant local mode, in memory, {len(timed)} papers):")
    print(f"  dense only: {dense_ms:.0f} ms")
    for limit in [int(x) for x in args.timed_limits.split(",")]:
        hybrid, seconds = asyncio.run(
            percolate(store, prior, corpus, timed, counts[: len(timed)], args.dense_limit, limit)
        )
        expected = {
            pair
            for pair in dense
            | sparse_only(store, store.subscriptions, tfidf_queries[: len(timed)], limit)
            if pair[0] < len(timed)
        }
        assert hybrid == expected, "the hook's hybrid percolation is not the union"
        print(f"  dense + sparse {limit}: {1000 * seconds / len(timed):.0f} ms", flush=True)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
