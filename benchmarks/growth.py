"""Growth curves of the embedded store (Qdrant Edge) from 10k to 1M sentence points.

Issue #20 item 6. Real vectors: every paper of ``astro-ph-train.jsonl.gz`` split, encoded
and turned into points by the product's own functions (``sentences_for_embedding``,
``model_texts``, ``sentence_payload``/``paper_payload``, ``build_points``) with the default
encoder of this machine (``load_encoder``: onnx-int8 on an AVX2 CPU), cached once under
``.bench/growth/``. The last ``--holdout`` papers are never stored: their titles are the
queries (recall, ``/search``), their vectors are "held-out real query vectors".

Corpora larger than the real one are built from it (:func:`synthetic_rows`): point ``i``
past the real ones is the normalised mixture ``normalise(a*v[p] + (1-a)*v[q])`` of two real
sentence vectors ``p``, ``q`` (seeded, ``a`` uniform in [0.55, 0.95]), with the payload of
sentence ``p`` under a new arxiv id (``<real id>.<copy>``) and a new point id. Sentences
stay grouped by (synthetic) paper, and every synthetic paper gets a paper point: the
normalised mean of its sentence vectors, as ``paper_vector`` of the pipeline.

For each size the store is built through ``VectorStore`` (``ensure_collections``, upserts
of 256 points, sentences then papers, as the embed stage) in a child process, then a real
worker (``python -m services.cli worker``, role api, ``ASTRO_QDRANT_PATH`` at the built
folder) is started on it and measured through HTTP: time to ``/ready``, ``/search``,
``/search?category=``, ``/papers/{id}/similar`` p50/p95, its RSS. Recall@10 of the default
(approximate) search against exact search is measured on the sentence collection with the
held-out query vectors in another child.

    .venv/bin/python benchmarks/growth.py embed                       # cache the vectors
    nice -n 5 .venv/bin/python benchmarks/growth.py run --sizes 10000 100000 300000 1000000
    .venv/bin/python benchmarks/growth.py run --sizes 10000 --queries 20   # smoke run
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz"
CACHE = Path(os.environ.get("GROWTH_CACHE") or ROOT / ".bench" / "growth")
BENCH_DATA = ROOT / ".bench" / "data"  # where the encoder exports its ONNX model
HOLDOUT = 200  # papers kept out of every corpus: the queries
BATCH = 256


# pure helpers ------------------------------------------------------------------
def percentiles(samples: Sequence[float]) -> tuple[float, float]:
    """(p50, p95) of ``samples`` in milliseconds (samples in seconds)."""
    if not len(samples):
        return float("nan"), float("nan")
    values = np.asarray(samples, dtype=float) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def recall_at(approx: Sequence[Sequence[Any]], exact: Sequence[Sequence[Any]], k: int) -> float:
    """Mean over queries of |approx top-k ∩ exact top-k| / |exact top-k| (1.0 if none)."""
    scores = []
    for got, want in zip(approx, exact, strict=True):
        truth = set(list(want)[:k])
        if truth:
            scores.append(len(truth & set(list(got)[:k])) / len(truth))
    return float(np.mean(scores)) if scores else 1.0


def normalise_rows(vectors: np.ndarray) -> np.ndarray:
    norms = np.linalg.norm(vectors, axis=1, keepdims=True)
    return (vectors / np.where(norms > 0, norms, 1)).astype(np.float32)


def synthetic_rows(n_real: int, start: int, stop: int, seed: int = 20) -> tuple[np.ndarray, ...]:
    """Sources of synthetic points ``start..stop`` (indices past the ``n_real`` real ones).

    Returns ``(p, q, a)``: point ``i`` is ``normalise(a*v[p] + (1-a)*v[q])``, with the
    payload of real sentence ``p``. ``p`` walks the real sentences in order (so a synthetic
    paper is a copy of a real one, sentence for sentence); ``q`` and ``a`` are drawn from a
    generator seeded by ``seed`` and the copy number, so any range is reproducible alone.
    """
    idx = np.arange(start, stop)
    if len(idx) and idx[0] < n_real:
        raise ValueError("synthetic rows start past the real ones")
    copy = (idx - n_real) // n_real + 1
    p = (idx - n_real) % n_real
    q = np.empty_like(p)
    a = np.empty(len(idx), dtype=np.float32)
    for c in np.unique(copy):
        rng = np.random.default_rng([seed, int(c)])
        qs = rng.integers(0, n_real, n_real)
        As = rng.uniform(0.55, 0.95, n_real).astype(np.float32)
        mask = copy == c
        q[mask] = qs[p[mask]]
        a[mask] = As[p[mask]]
    return p, q, a


def mix(vectors: np.ndarray, p: np.ndarray, q: np.ndarray, a: np.ndarray) -> np.ndarray:
    """The synthetic vectors ``normalise(a*v[p] + (1-a)*v[q])``."""
    return normalise_rows(a[:, None] * vectors[p] + (1 - a)[:, None] * vectors[q])


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    for start in range(0, n, size):
        yield start, min(n, start + size)


def rss_mib(pid: int | str = "self") -> float:
    """Resident set size of a process (Linux), MiB."""
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


def rss_parts_mib(pid: int | str = "self") -> dict[str, float]:
    """RssAnon (the process's own memory) and RssFile (mapped files: page cache the kernel
    can drop, e.g. the on-disk vectors and payloads a search touched), MiB."""
    parts: dict[str, float] = {}
    with open(f"/proc/{pid}/status") as handle:
        for line in handle:
            key = line.split(":")[0]
            if key in ("RssAnon", "RssFile", "VmHWM"):
                parts[key] = int(line.split()[1]) / 1024
    return parts


def folder_mib(path: Path) -> float:
    return sum(f.stat().st_size for f in path.rglob("*") if f.is_file()) / 2**20


# the real corpus ---------------------------------------------------------------
@dataclass
class Corpus:
    """The real sentence and paper points of the file, and the held-out queries."""

    version: str
    sentence_vectors: np.ndarray  # (n, dim) float32, stored papers' sentences
    sentence_ids: list[str]
    sentence_payloads: list[dict[str, Any]]
    paper_of_sentence: np.ndarray  # index of each sentence's paper
    paper_vectors: np.ndarray
    paper_ids: list[str]
    paper_payloads: list[dict[str, Any]]
    paper_lexical: list[Any]  # each paper's sparse term weights (the pipeline's)
    query_vectors: np.ndarray  # held-out papers' title vectors
    query_texts: list[str]  # their titles
    query_sentence_vectors: np.ndarray  # held-out papers' sentence vectors


def _sources(papers: list[Any], splits: list[list[tuple[str, str]]], version: str) -> list[Any]:
    """The embed stage's ``PaperSource`` of each paper (as ``EmbedPipeline._write``)."""
    from services.core.ids import content_digest, sentence_point_id
    from services.embed.pipeline import paper_payload, sentence_payload
    from services.embed.points import PaperSource

    return [
        PaperSource(
            paper.arxiv_id,
            {
                **paper_payload(paper, version),
                "digest": content_digest(paper.title, paper.abstract),
                "sentence_count": len(split),
            },
            [
                (
                    sentence_point_id(paper.arxiv_id, paper.version, i),
                    sentence_payload(paper, i, display, version),
                )
                for i, (display, _) in enumerate(split)
            ],
        )
        for paper, split in zip(papers, splits, strict=True)
    ]


def load_corpus(data: Path = DATA, holdout: int = HOLDOUT, *, embed: bool = True) -> Corpus:
    """Split, encode (once; cached) and build the points of every paper of ``data``."""
    from services.core.papers import read_papers_jsonl
    from services.core.settings import Settings
    from services.core.text import sentences_for_embedding
    from services.embed.pipeline import model_texts
    from services.embed.points import build_points
    from services.models.encoder import backend_version, derive_model_version, pick_backend

    settings = Settings.model_validate({"data_dir": BENCH_DATA, "device": "cpu"})
    backend = pick_backend(settings.backend, "cpu")
    version = backend_version(derive_model_version(settings.model), backend)
    papers = [p for p in read_papers_jsonl(data)]
    splits = [sentences_for_embedding(p.abstract, settings.max_sentences) for p in papers]
    keep = [i for i, s in enumerate(splits) if s]
    papers, splits = [papers[i] for i in keep], [splits[i] for i in keep]
    CACHE.mkdir(parents=True, exist_ok=True)
    cache = CACHE / f"{data.name.split('.')[0]}-{version}.npy"
    texts = model_texts(list(zip(papers, splits, strict=True)))
    if cache.exists():
        vectors = np.load(cache)
    elif not embed:
        raise SystemExit(f"{cache} missing: run `benchmarks/growth.py embed` first")
    else:
        from services.models.encoder import load_encoder

        encoder = load_encoder(settings)
        print(f"encoding {len(texts):,} texts with {encoder.backend} …", flush=True)
        started = time.perf_counter()
        parts = []
        for a, b in batches(len(texts), 4096):
            parts.append(encoder.encode(texts[a:b]))
            print(f"  {b:,}/{len(texts):,} {time.perf_counter() - started:.0f} s", flush=True)
        vectors = np.concatenate(parts).astype(np.float32)
        np.save(cache, vectors)
    if len(vectors) != len(texts):
        raise SystemExit(f"{cache}: {len(vectors)} vectors for {len(texts)} texts; delete it")
    stored, held = len(papers) - holdout, slice(len(papers) - holdout, None)
    sources = _sources(papers[:stored], splits[:stored], version)
    rows = sum(1 + len(s) for s in splits[:stored])
    points = build_points(sources, vectors[:rows], version)
    owner = np.concatenate(
        [np.full(span.stop - span.start, n, dtype=np.int64) for n, span in enumerate(points.spans)]
    )
    # the held-out papers: title rows and sentence rows of the encoder's output
    title_rows: list[int] = []
    sentence_rows: list[int] = []
    row = rows
    for split in splits[held]:
        title_rows.append(row)
        sentence_rows.extend(range(row + 1, row + 1 + len(split)))
        row += 1 + len(split)
    return Corpus(
        version=version,
        sentence_vectors=np.ascontiguousarray(points.sentence_vectors, dtype=np.float32),
        sentence_ids=points.sentence_ids,
        sentence_payloads=points.sentence_payloads,
        paper_of_sentence=owner,
        paper_vectors=np.ascontiguousarray(points.paper_vectors, dtype=np.float32),
        paper_ids=points.paper_ids,
        paper_payloads=points.paper_payloads,
        paper_lexical=points.paper_lexical,
        query_vectors=vectors[title_rows],
        query_texts=[p.title for p in papers[held]],
        query_sentence_vectors=vectors[sentence_rows],
    )


# the corpus of one size -----------------------------------------------------------
def synthetic_id(arxiv_id: str, copy: int) -> str:
    """The arxiv id of the ``copy``-th synthetic copy of a real paper (0: the real one)."""
    return arxiv_id if copy == 0 else f"{arxiv_id}.c{copy}"


def paper_batches(corpus: Corpus, size: int, batch: int = BATCH) -> Iterator[dict[str, Any]]:
    """The first ``size`` sentence points and their papers, in batches of whole papers.

    Each batch holds about ``batch`` sentence points (whole papers, as the embed stage
    writes a micro-batch) and the paper points of the papers it completes; the last paper
    may be cut short by ``size``. Past the real points: :func:`synthetic_rows`.
    """
    from services.core.ids import paper_point_id, sentence_point_id
    from services.embed.points import paper_vector

    n_real = len(corpus.sentence_ids)
    owner = corpus.paper_of_sentence
    start = 0
    while start < size:
        stop = min(size, start + batch)
        # extend to the end of the last paper touched (in the real corpus' cycle)
        while stop < size and owner[stop % n_real] == owner[(stop - 1) % n_real]:
            stop += 1
        idx = np.arange(start, stop)
        real = idx < n_real
        vectors = np.empty((len(idx), corpus.sentence_vectors.shape[1]), dtype=np.float32)
        vectors[real] = corpus.sentence_vectors[idx[real]]
        if (~real).any():
            p, q, a = synthetic_rows(n_real, int(idx[~real][0]), int(idx[-1]) + 1)
            vectors[~real] = mix(corpus.sentence_vectors, p, q, a)
        copies = idx // n_real
        ids, payloads = [], []
        for i, c in zip(idx % n_real, copies, strict=True):
            payload = corpus.sentence_payloads[i]
            if c:
                aid = synthetic_id(payload["arxiv_id"], int(c))
                payload = {**payload, "arxiv_id": aid}
                ids.append(sentence_point_id(aid, payload["version"], payload["sentence_index"]))
            else:
                ids.append(corpus.sentence_ids[i])
            payloads.append(payload)
        paper_ids, paper_payloads, paper_vecs, lexical = [], [], [], []
        keys = owner[idx % n_real] + copies * len(corpus.paper_ids)
        for key in dict.fromkeys(keys.tolist()):
            rows = keys == key
            j, c = key % len(corpus.paper_ids), key // len(corpus.paper_ids)
            payload = corpus.paper_payloads[j]
            if c:
                aid = synthetic_id(payload["arxiv_id"], c)
                paper_ids.append(paper_point_id(aid))
                paper_payloads.append({**payload, "arxiv_id": aid})
                mean = vectors[rows].mean(axis=0)
                paper_vecs.append(mean / max(float(np.linalg.norm(mean)), 1e-12))
            else:
                paper_ids.append(corpus.paper_ids[j])
                paper_payloads.append(payload)
                whole = int(rows.sum()) == int(payload["sentence_count"])
                paper_vecs.append(
                    corpus.paper_vectors[j]
                    if whole
                    else paper_vector(vectors[rows][0], vectors[rows])
                )
            lexical.append(corpus.paper_lexical[j])
        yield {
            "ids": ids,
            "vectors": vectors,
            "payloads": payloads,
            "paper_ids": paper_ids,
            "paper_vectors": np.asarray(paper_vecs, dtype=np.float32),
            "paper_payloads": paper_payloads,
            "lexical": lexical,
        }
        start = stop


# the children ----------------------------------------------------------------------
def _settings(path: Path, **extra: Any) -> Any:
    from services.core.settings import Settings

    return Settings.model_validate(
        {"qdrant_path": path, "data_dir": BENCH_DATA, "device": "cpu", **extra}
    )


def build(path: Path, size: int) -> dict[str, Any]:
    """Build the store of ``size`` sentence points through ``VectorStore``, as the pipeline."""
    import shutil

    from services.store import edge
    from services.store.vectorstore import VectorStore

    corpus = load_corpus(embed=False)
    shutil.rmtree(path, ignore_errors=True)
    optimise: list[float] = []
    real_optimize = edge.EdgeClient._maybe_optimize

    def timed(self: Any, found: Any) -> None:
        started = time.perf_counter()
        before = found.unindexed
        real_optimize(self, found)
        if found.unindexed < before:
            optimise.append(time.perf_counter() - started)

    edge.EdgeClient._maybe_optimize = timed  # type: ignore[method-assign]
    store = VectorStore(_settings(path), corpus.sentence_vectors.shape[1], corpus.version)
    store.ensure_collections()
    started = time.perf_counter()
    papers = 0
    worst = 0.0
    for n, part in enumerate(paper_batches(corpus, size)):
        t0 = time.perf_counter()
        store.upsert(store.sentences, part["ids"], part["vectors"], part["payloads"])
        store.upsert(
            store.papers,
            part["paper_ids"],
            part["paper_vectors"],
            part["paper_payloads"],
            part["lexical"],
        )
        worst = max(worst, time.perf_counter() - t0)
        papers += len(part["paper_ids"])
        if n % 200 == 0:
            done = (n + 1) * BATCH
            print(f"  {done:,} points {time.perf_counter() - started:.0f} s", flush=True)
    elapsed = time.perf_counter() - started
    info = store.client.get_collection(store.sentences)
    out = {
        "size": size,
        "papers": papers,
        "build_s": elapsed,
        "upsert_points_per_s": size / elapsed,
        "optimise_s": sum(optimise),
        "optimise_runs": len(optimise),
        "optimise_max_s": max(optimise, default=0.0),
        "slowest_batch_s": worst,
        "segments": info.segments_count,
        "indexed_vectors": info.indexed_vectors_count,
        "build_rss_mib": rss_mib(),
    }
    store.close()
    out["disk_mib"] = folder_mib(path)
    return out


def recall(path: Path, efs: Sequence[int], queries: int, k: int = 10) -> dict[str, Any]:
    """Open the store (time to first answer), then recall@k of approximate against exact."""
    from qdrant_client import models as qm

    from services.store.vectorstore import PaperFilter, VectorStore

    corpus = load_corpus(embed=False)
    started = time.perf_counter()
    settings = _settings(path)
    store = VectorStore(settings, corpus.sentence_vectors.shape[1], corpus.version)
    qv = corpus.query_vectors[:queries]
    store.search(store.sentences, qv[0].tolist(), 10)
    opened = time.perf_counter() - started
    client = store.client

    def top(vector: np.ndarray, limit: int, params: Any, flt: Any = None) -> list[str]:
        found = client.query_points(
            store.sentences,
            query=vector.tolist(),
            limit=limit,
            with_payload=False,
            search_params=params,
            query_filter=flt,
        )
        return [str(p.id) for p in found.points]

    flt = PaperFilter("astro-ph.GA").qdrant()
    exact = qm.SearchParams(exact=True)
    truth10 = [top(v, k, exact) for v in qv]
    truth100 = [top(v, 100, exact) for v in qv]
    truth_f = [top(v, k, exact, flt) for v in qv]
    out: dict[str, Any] = {"open_first_query_s": opened, "queries": len(qv), "ef": {}}
    for ef in efs:
        params = qm.SearchParams(hnsw_ef=ef)
        timings: list[float] = []
        got10, got100, got_f = [], [], []
        for v in qv:
            t0 = time.perf_counter()
            got10.append(top(v, k, params))
            timings.append(time.perf_counter() - t0)
            got100.append(top(v, 100, params))
            got_f.append(top(v, k, params, flt))
        out["ef"][str(ef)] = {
            "recall@10": recall_at(got10, truth10, k),
            "recall@100 (limit 100)": recall_at(got100, truth100, 100),
            "recall@10 filtered": recall_at(got_f, truth_f, k),
            "search_p50_ms": percentiles(timings)[0],
        }
    # /search's filtered sentence query (limit 100): Qdrant's filter against the
    # over-fetch of unfiltered hits filtered in Python (what local mode needs)
    where = PaperFilter("astro-ph.GA")
    native, overfetch = [], []
    store.search(store.sentences, qv[-1].tolist(), 100, where.qdrant())  # warm-up
    store.over_fetch(store.sentences, qv[-1].tolist(), 100, where)
    for v in qv:
        t0 = time.perf_counter()
        store.search(store.sentences, v.tolist(), 100, where.qdrant())
        native.append(time.perf_counter() - t0)
        t0 = time.perf_counter()
        store.over_fetch(store.sentences, v.tolist(), 100, where)
        overfetch.append(time.perf_counter() - t0)
    out["filtered_native_p50_p95_ms"] = percentiles(native)
    out["filtered_overfetch_p50_p95_ms"] = percentiles(overfetch)
    default = [top(v, k, None) for v in qv]
    out["default_ef"] = settings.qdrant_hnsw_ef
    out["recall@10"] = recall_at(default, truth10, k)
    out["recall@10 filtered"] = recall_at([top(v, k, None, flt) for v in qv], truth_f, k)
    out["recall@100 (limit 100)"] = recall_at([top(v, 100, None) for v in qv], truth100, 100)
    out["rss_mib"] = rss_mib()
    out["rss_parts_mib"] = rss_parts_mib()
    store.close()
    return out


def serve(path: Path, size: int, queries: int, broker_url: str, log: Path) -> dict[str, Any]:
    """A real worker (role api) on the built folder: time to /ready, HTTP latencies, RSS."""
    import urllib.parse

    from benchmarks.stack import WorkerProcess

    corpus = load_corpus(embed=False)
    env = {
        "ASTRO_KAFKA_URL": broker_url,
        "ASTRO_APP_ID": "astro-growth",
        "ASTRO_QDRANT_PATH": str(path),
        "ASTRO_DATA_DIR": str(BENCH_DATA),
        "ASTRO_ROLES": "api",
        "ASTRO_DEVICE": "cpu",
    }
    worker = WorkerProcess(env, log)
    started = time.perf_counter()
    worker.start(ready_timeout=600)
    ready = time.perf_counter() - started
    rss_ready = rss_mib(worker.pid)
    rng = np.random.default_rng(7)
    titles = corpus.query_texts[:queries]
    whole = int(corpus.paper_of_sentence[min(size, len(corpus.sentence_ids)) - 1])  # all in
    stored = [p["arxiv_id"] for p in corpus.paper_payloads[: max(whole, 1)]]
    similar = [stored[i] for i in rng.choice(len(stored), queries, replace=len(stored) < queries)]
    out: dict[str, Any] = {"ready_s": ready, "rss_ready_mib": rss_ready}
    cases = {
        "search": [f"/search?q={urllib.parse.quote(t)}&limit=10" for t in titles],
        "search_category": [
            f"/search?q={urllib.parse.quote(t)}&limit=10&category=astro-ph.GA" for t in titles
        ],
        "similar": [f"/papers/{a}/similar?limit=10" for a in similar],
    }
    try:
        for name, paths in cases.items():
            for warm in paths[:3]:
                worker.get(warm)
            samples = []
            for url in paths:
                t0 = time.perf_counter()
                status, body = worker.get(url)
                samples.append(time.perf_counter() - t0)
                if status != 200:
                    raise RuntimeError(f"{url}: {status} {str(body)[:300]}")
            p50, p95 = percentiles(samples)
            out[name] = {"p50_ms": p50, "p95_ms": p95, "n": len(samples)}
        out["rss_mib"] = rss_mib(worker.pid)
        out["rss_parts_mib"] = rss_parts_mib(worker.pid)
    finally:
        worker.stop()
    return out


def child(command: list[str]) -> dict[str, Any]:
    """Run ``growth.py <command>`` in a fresh process; its last stdout line is JSON."""
    import subprocess

    result = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), *command],
        stdout=subprocess.PIPE,
        text=True,
        cwd=ROOT,
        check=False,
    )
    lines = [line for line in result.stdout.splitlines() if line.startswith("{")]
    if result.returncode != 0 or not lines:
        raise SystemExit(f"growth.py {' '.join(command)} failed ({result.returncode})")
    for line in result.stdout.splitlines():
        if not line.startswith("{"):
            print(line, flush=True)
    return dict(json.loads(lines[-1]))


# the run ---------------------------------------------------------------------------
CONSTRUCTION = (
    "Real points: the {real:,} sentence points (and their {papers:,} paper points) of "
    "astro-ph-train.jsonl.gz without its last {holdout} papers, encoded by the product's "
    "default encoder ({version}). Past those, point i is normalise(a*v[p] + (1-a)*v[q]) of "
    "two real sentence vectors: p runs over the real sentences in order, q and a (uniform "
    "in [0.55, 0.95]) are drawn by a generator seeded per copy; payload of sentence p under "
    "the arxiv id '<real id>.c<copy>' (new point ids); each synthetic paper has a paper "
    "point, the normalised mean of its sentence vectors. Queries: titles (and their vectors) "
    "of the {holdout} held-out papers."
)


def loadavg() -> str:
    return " ".join(Path("/proc/loadavg").read_text().split()[:3])


def run(args: argparse.Namespace) -> None:
    from services.kafka.broker import EmbeddedBroker, free_port

    corpus = load_corpus()
    work = Path(args.work)
    work.mkdir(parents=True, exist_ok=True)
    results: dict[str, Any] = {
        "command": "astrostream bench growth " + " ".join(sys.argv[1:]),
        "started": time.strftime("%Y-%m-%d %H:%M:%S"),
        "machine": f"{os.cpu_count()} CPUs, load average at start {loadavg()}",
        "construction": CONSTRUCTION.format(
            real=len(corpus.sentence_ids),
            papers=len(corpus.paper_ids),
            holdout=HOLDOUT,
            version=corpus.version,
        ),
        "sizes": [],
    }
    out = Path(args.json)
    built: dict[int, Any] = {}  # --reuse: the builds an earlier run of this JSON measured
    if args.reuse and out.exists():
        earlier = json.loads(out.read_text())
        built = {r["size"]: r["build"] for r in earlier.get("sizes", []) if "build" in r}
        results["builds_from"] = earlier.get("started")
    broker = EmbeddedBroker(port=free_port(), log_path=work / "broker.log").start()
    try:
        for size in args.sizes:
            path = work / f"store-{size}"
            print(f"[{size:,}] build (load {loadavg()})", flush=True)
            row: dict[str, Any] = {"size": size, "load_before": loadavg()}
            if not args.reuse or not path.exists():
                row["build"] = child(["build", "--path", str(path), "--size", str(size)])
            elif size in built:
                row["build"] = built[size]
            print(f"[{size:,}] serve (load {loadavg()})", flush=True)
            row["serve"] = child(
                [
                    "serve",
                    "--path",
                    str(path),
                    "--size",
                    str(size),
                    "--queries",
                    str(args.queries),
                    "--broker",
                    broker.url,
                    "--log",
                    str(work / f"worker-{size}.log"),
                ]
            )
            print(f"[{size:,}] recall (load {loadavg()})", flush=True)
            efs = [str(e) for e in args.efs]
            row["recall"] = child(
                ["recall", "--path", str(path), "--queries", str(args.queries), "--efs", *efs]
            )
            row["load_after"] = loadavg()
            results["sizes"].append(row)
            out.write_text(json.dumps(results, indent=2) + "\n")
            print(json.dumps(row, indent=1), flush=True)
            if args.delete:
                import shutil

                shutil.rmtree(path, ignore_errors=True)
    finally:
        broker.stop()
    results["finished"] = time.strftime("%Y-%m-%d %H:%M:%S")
    out.write_text(json.dumps(results, indent=2) + "\n")
    if args.png:
        plot(results, Path(args.png))
    print(table(results))


def table(results: dict[str, Any]) -> str:
    rows = [
        "| sentence points | upsert pts/s | optimise s | disk MiB | /ready s | worker RSS MiB "
        "| /search p50/p95 ms | filtered p50/p95 ms | similar p50/p95 ms | recall@10 |",
        "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for row in results["sizes"]:
        b, s, r = row.get("build", {}), row["serve"], row["recall"]

        def pp(case: dict[str, float]) -> str:
            return f"{case['p50_ms']:.0f} / {case['p95_ms']:.0f}"

        rows.append(
            f"| {row['size']:,} | {b.get('upsert_points_per_s', float('nan')):,.0f} "
            f"| {b.get('optimise_s', float('nan')):,.0f} | {b.get('disk_mib', float('nan')):,.0f} "
            f"| {s['ready_s']:.1f} | {s['rss_mib']:,.0f} | {pp(s['search'])} "
            f"| {pp(s['search_category'])} | {pp(s['similar'])} | {r['recall@10']:.3f} |"
        )
    return "\n".join(rows)


def plot(results: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = results["sizes"]
    sizes = [r["size"] for r in rows]
    fig, axes = plt.subplots(1, 3, figsize=(15, 4.5))
    ax = axes[0]
    for name, label in (
        ("search", "/search"),
        ("search_category", "/search?category="),
        ("similar", "/papers/{id}/similar"),
    ):
        ax.plot(sizes, [r["serve"][name]["p95_ms"] for r in rows], "o-", label=f"{label} p95")
        ax.plot(sizes, [r["serve"][name]["p50_ms"] for r in rows], "x--", label=f"{label} p50")
    ax.axhline(50, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="sentence points", ylabel="ms", title="HTTP latency")
    ax.legend(fontsize=7)
    ax = axes[1]
    ax.plot(sizes, [r["serve"]["rss_mib"] for r in rows], "o-", label="worker RSS MiB")
    ax.plot(
        sizes, [r.get("build", {}).get("disk_mib", np.nan) for r in rows], "s-", label="disk MiB"
    )
    ax.axhline(3072, color="grey", lw=0.8, ls=":")
    ax2 = ax.twinx()
    ax2.plot(sizes, [r["serve"]["ready_s"] for r in rows], "^-", color="C3", label="/ready s")
    ax2.plot(
        sizes,
        [r["recall"]["open_first_query_s"] for r in rows],
        "v--",
        color="C4",
        label="store open + 1st query s",
    )
    ax2.set_ylabel("seconds")
    ax2.set_ylim(bottom=0)
    ax.set(xscale="log", xlabel="sentence points", ylabel="MiB", title="memory, disk, restart")
    ax.legend(fontsize=7, loc="upper left")
    ax2.legend(fontsize=7, loc="lower right")
    ax = axes[2]
    ax.plot(sizes, [r["recall"]["recall@10"] for r in rows], "o-", label="recall@10")
    ax.plot(
        sizes, [r["recall"]["recall@10 filtered"] for r in rows], "x--", label="recall@10 filtered"
    )
    ax.axhline(0.98, color="grey", lw=0.8, ls=":")
    ax.set(xscale="log", xlabel="sentence points", title="recall against exact search")
    ax.legend(fontsize=7)
    fig.suptitle(f"astrostream embedded store (Qdrant Edge) growth, {results['started']}")
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("embed", help="encode the real corpus once (cached under .bench/growth)")
    go = sub.add_parser("run", help="build, serve and measure each size")
    go.add_argument("--sizes", type=int, nargs="+", default=[10_000, 100_000, 300_000, 1_000_000])
    go.add_argument("--queries", type=int, default=100)
    go.add_argument("--efs", type=int, nargs="+", default=[16, 32, 64, 128])
    go.add_argument("--work", default="/work/growth-data", help="where the stores are built")
    go.add_argument("--json", default=str(ROOT / "docs" / "growth.json"))
    go.add_argument("--png", default=str(ROOT / "docs" / "growth.png"))
    go.add_argument("--reuse", action="store_true", help="measure stores already built")
    go.add_argument("--delete", action="store_true", help="delete each store once measured")
    one = sub.add_parser("build")
    one.add_argument("--path", type=Path, required=True)
    one.add_argument("--size", type=int, required=True)
    rec = sub.add_parser("recall")
    rec.add_argument("--path", type=Path, required=True)
    rec.add_argument("--queries", type=int, default=100)
    rec.add_argument("--efs", type=int, nargs="+", default=[16, 32, 64, 128])
    srv = sub.add_parser("serve")
    srv.add_argument("--path", type=Path, required=True)
    srv.add_argument("--size", type=int, required=True)
    srv.add_argument("--queries", type=int, default=100)
    srv.add_argument("--broker", required=True)
    srv.add_argument("--log", type=Path, required=True)
    draw = sub.add_parser("plot", help="draw the PNG and print the table of a run's JSON")
    draw.add_argument("--json", default=str(ROOT / "docs" / "growth.json"))
    draw.add_argument("--png", default=str(ROOT / "docs" / "growth.png"))
    args = parser.parse_args()
    if args.command == "embed":
        corpus = load_corpus()
        print(
            f"{len(corpus.sentence_ids):,} sentence points, {len(corpus.paper_ids):,} papers, "
            f"{len(corpus.query_texts)} held-out queries ({corpus.version})"
        )
    elif args.command == "run":
        run(args)
    elif args.command == "plot":
        results = json.loads(Path(args.json).read_text())
        plot(results, Path(args.png))
        print(table(results))
    elif args.command == "build":
        print(json.dumps(build(args.path, args.size)))
    elif args.command == "recall":
        print(json.dumps(recall(args.path, args.efs, args.queries)))
    elif args.command == "serve":
        print(json.dumps(serve(args.path, args.size, args.queries, args.broker, args.log)))


if __name__ == "__main__":
    main()
