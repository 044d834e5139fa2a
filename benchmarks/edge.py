"""qdrant-edge-py (Qdrant's embedded engine) against qdrant-client local mode on disk.

Issue #13 asks whether the embedded store should move from qdrant-client's local mode (pure
Python: every point in memory, a SQLite file per collection, brute-force numpy search,
payload filters evaluated in Python) to ``qdrant-edge-py`` (the Qdrant engine in-process:
segments, payload indexes, HNSW after ``optimize()``). Both are measured on the same points:
the ``sentences`` collection as ``services/store/vectorstore.py`` makes it (unnamed 384-d
cosine vector, the pipeline's sentence payload with real astro-ph titles, authors,
categories and sentences, keyword indexes on ``arxiv_id`` and ``categories``, a float index
on ``published_ts``), upserted in batches of ``--batch`` points. The vectors are seeded
random unit vectors (embedding 80,000 sentences takes minutes on this box; brute-force cost
does not depend on the values, HNSW finds random vectors harder than real ones); queries
are stored vectors plus noise.

Each (engine, size) is built in a child process of its own (RSS is that process's), then
opened again in another child (open time, first query). ``--capabilities`` checks, on a
small store, every Qdrant feature ``VectorStore`` and the alert hook use.

    nice -n 10 .venv/bin/python benchmarks/edge.py                       # 8k, 40k, 80k points
    .venv/bin/python benchmarks/edge.py --sizes 2000 --queries 20        # smoke run
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA = ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz"
DIM = 384
LIMIT = 100  # /search asks the sentences collection for limit * 10 hits
CATEGORY = "astro-ph.GA"  # the keyword filter (about a fifth of astro-ph)


# pure helpers ------------------------------------------------------------------
def percentiles(samples: list[float]) -> tuple[float, float]:
    """(p50, p95) of ``samples`` in milliseconds (samples in seconds)."""
    if not samples:
        return float("nan"), float("nan")
    values = np.asarray(samples, dtype=float) * 1000
    return float(np.percentile(values, 50)), float(np.percentile(values, 95))


def unit_vectors(n: int, dim: int, seed: int) -> np.ndarray:
    """``n`` seeded random unit vectors (float32)."""
    rng = np.random.default_rng(seed)
    vectors = rng.standard_normal((n, dim)).astype(np.float32)
    return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def batches(n: int, size: int) -> Iterator[tuple[int, int]]:
    """(start, stop) of consecutive batches of ``size`` covering ``range(n)``."""
    for start in range(0, n, size):
        yield start, min(n, start + size)


def rss_mib() -> float:
    """This process's resident set size now (Linux), MiB."""
    with open("/proc/self/status") as handle:
        for line in handle:
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    return float("nan")


# the points --------------------------------------------------------------------
def sentence_payloads(n: int, data: Path) -> list[dict[str, Any]]:
    """The pipeline's sentence payloads (``sentence_payload`` + ``published_ts``) of real papers."""
    from services.core.text import sentences_for_embedding
    from services.store.vectorstore import published_ts

    out: list[dict[str, Any]] = []
    with gzip.open(data, "rt", encoding="utf-8") as handle:
        for line in handle:
            paper = json.loads(line)
            published = paper.get("published") or paper.get("announced")
            base = {
                "arxiv_id": paper["arxiv_id"],
                "version": 1,
                "title": paper["title"],
                "authors": paper["authors"],
                "categories": paper.get("categories") or [],
                "primary_category": (paper.get("categories") or ["astro-ph"])[0],
                "published": published,
                "model_version": "all-MiniLM-L6-v2-onnx-int8",
                "published_ts": published_ts(published),
            }
            for index, text in enumerate(sentences_for_embedding(paper["abstract"])):
                out.append({**base, "sentence_index": index, "text": text})
                if len(out) >= n:
                    return out
    raise SystemExit(f"{data} holds fewer than {n} sentences")


def point_ids(n: int) -> list[str]:
    return [str(uuid.uuid5(uuid.NAMESPACE_URL, f"sentence-{i}")) for i in range(n)]


# the two engines ---------------------------------------------------------------
class Local:
    """qdrant-client local mode on disk, as ``services.store.vectorstore`` uses it."""

    name = "local"

    def __init__(self, path: Path) -> None:
        from qdrant_client import QdrantClient

        self.client = QdrantClient(path=str(path))
        self._tuned: set[int] = set()

    def create(self) -> None:
        from qdrant_client import models as qm

        self.client.create_collection(
            "sentences", vectors_config=qm.VectorParams(size=DIM, distance=qm.Distance.COSINE)
        )
        for field in ("arxiv_id", "categories"):
            self.client.create_payload_index("sentences", field, qm.PayloadSchemaType.KEYWORD)
        self.client.create_payload_index("sentences", "published_ts", qm.PayloadSchemaType.FLOAT)

    def upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        from qdrant_client import models as qm

        from services.store.vectorstore import tune_local_storage

        tune_local_storage(self.client, self._tuned)
        self.client.upsert(
            "sentences",
            points=qm.Batch(ids=ids, vectors=vectors.tolist(), payloads=payloads),
            wait=True,
        )

    def search(self, vector: np.ndarray, category: str | None = None) -> list[str]:
        from qdrant_client import models as qm

        where = (
            qm.Filter(
                must=[qm.FieldCondition(key="categories", match=qm.MatchValue(value=category))]
            )
            if category
            else None
        )
        response = self.client.query_points(
            "sentences", query=vector.tolist(), query_filter=where, limit=LIMIT, with_payload=True
        )
        return [str(p.id) for p in response.points]

    def count(self) -> int:
        return int(self.client.count("sentences", exact=True).count)

    def optimize(self) -> None:
        pass

    def close(self) -> None:
        self.client.close()


class Edge:
    """qdrant-edge-py: one ``EdgeShard`` (a collection) in a folder of its own."""

    name = "edge"

    def __init__(self, path: Path) -> None:
        self.path = path
        self.shard: Any = None
        if (path / "sentences").exists():
            from qdrant_edge import EdgeShard

            self.shard = EdgeShard.load(str(path / "sentences"))

    def create(self) -> None:
        from qdrant_edge import (
            Distance,
            EdgeConfig,
            EdgeShard,
            EdgeVectorParams,
            PayloadSchemaType,
            UpdateOperation,
        )

        config = EdgeConfig(vectors=EdgeVectorParams(size=DIM, distance=Distance.Cosine))
        self.shard = EdgeShard.create(str(self.path / "sentences"), config)
        for field in ("arxiv_id", "categories"):
            self.shard.update(UpdateOperation.create_field_index(field, PayloadSchemaType.Keyword))
        self.shard.update(
            UpdateOperation.create_field_index("published_ts", PayloadSchemaType.Float)
        )

    def upsert(self, ids: list[str], vectors: np.ndarray, payloads: list[dict[str, Any]]) -> None:
        from qdrant_edge import Point, UpdateOperation

        points = [Point(i, v, p) for i, v, p in zip(ids, vectors.tolist(), payloads, strict=True)]
        self.shard.update(UpdateOperation.upsert_points(points))

    def search(self, vector: np.ndarray, category: str | None = None) -> list[str]:
        from qdrant_edge import FieldCondition, Filter, MatchValue, Query, QueryRequest

        where = (
            Filter(must=[FieldCondition(key="categories", match=MatchValue(category))])
            if category
            else None
        )
        found = self.shard.query(
            QueryRequest(
                limit=LIMIT, query=Query.Nearest(vector.tolist()), filter=where, with_payload=True
            )
        )
        return [str(p.id) for p in found]

    def count(self) -> int:
        from qdrant_edge import CountRequest

        return int(self.shard.count(CountRequest(exact=True)))

    def optimize(self) -> None:
        self.shard.optimize()

    def close(self) -> None:
        self.shard.flush()
        self.shard.close()


ENGINES: dict[str, Callable[[Path], Local | Edge]] = {"local": Local, "edge": Edge}


# children ----------------------------------------------------------------------
def timed_searches(
    store: Local | Edge, queries: np.ndarray, category: str | None
) -> tuple[list[float], list[list[str]]]:
    times, results = [], []
    for q in queries:
        t0 = time.perf_counter()
        results.append(store.search(q, category))
        times.append(time.perf_counter() - t0)
    return times, results


def queries_for(vectors: np.ndarray, n: int, seed: int) -> np.ndarray:
    """Stored vectors plus noise: each query has real near neighbours."""
    rng = np.random.default_rng(seed + 1)
    picked = vectors[rng.integers(0, len(vectors), n)]
    noisy = picked + 0.05 * rng.standard_normal(picked.shape).astype(np.float32)
    return noisy / np.linalg.norm(noisy, axis=1, keepdims=True)


def child_build(args: argparse.Namespace) -> dict[str, Any]:
    n = args.size
    payloads = sentence_payloads(n, args.data)
    vectors = unit_vectors(n, DIM, args.seed)
    ids = point_ids(n)
    queries = queries_for(vectors, args.queries, args.seed)
    import qdrant_client  # noqa: F401  (the data's RSS, not the libraries')
    import qdrant_edge  # noqa: F401

    rss_before = rss_mib()
    store = ENGINES[args.engine](args.path)
    store.create()
    t0 = time.perf_counter()
    for start, stop in batches(n, args.batch):
        store.upsert(ids[start:stop], vectors[start:stop], payloads[start:stop])
    upsert_s = time.perf_counter() - t0
    assert store.count() == n, (store.count(), n)
    out: dict[str, Any] = {
        "upsert_s": upsert_s,
        "points_per_s": n / upsert_s,
        "rss_mib": rss_mib(),
        "rss_data_mib": rss_mib() - rss_before,
    }
    times, plain = timed_searches(store, queries, None)
    out["search_ms"] = percentiles(times)
    times, _ = timed_searches(store, queries, CATEGORY)
    out["filtered_ms"] = percentiles(times)
    if args.engine == "edge" and args.optimize:
        t0 = time.perf_counter()
        store.optimize()
        out["optimize_s"] = time.perf_counter() - t0
        times, indexed = timed_searches(store, queries, None)
        out["hnsw_search_ms"] = percentiles(times)
        out["hnsw_recall_at_100"] = float(
            np.mean(
                [len(set(a) & set(b)) / max(1, len(b)) for a, b in zip(indexed, plain, strict=True)]
            )
        )
        times, _ = timed_searches(store, queries, CATEGORY)
        out["hnsw_filtered_ms"] = percentiles(times)
        out["rss_mib_optimized"] = rss_mib()
    # Exactness check across engines: the top ids of the first queries (plain search).
    out["top_ids"] = [r[:10] for r in plain[:20]]
    t0 = time.perf_counter()
    store.close()
    out["close_s"] = time.perf_counter() - t0
    return out


def child_open(args: argparse.Namespace) -> dict[str, Any]:
    vectors = unit_vectors(args.size, DIM, args.seed)
    queries = queries_for(vectors, 20, args.seed)
    import qdrant_client  # noqa: F401  (imports are not part of opening a store)
    import qdrant_edge  # noqa: F401

    rss_before = rss_mib()
    t0 = time.perf_counter()
    store = ENGINES[args.engine](args.path)
    n = store.count()
    open_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    store.search(queries[0])
    first = time.perf_counter() - t0
    times, _ = timed_searches(store, queries[1:], None)
    out = {
        "open_s": open_s,
        "points": n,
        "first_query_ms": first * 1000,
        "reopened_search_ms": percentiles(times),
        "rss_open_mib": rss_mib(),
        "rss_open_data_mib": rss_mib() - rss_before,
    }
    store.close()
    return out


# capabilities ------------------------------------------------------------------
def edge_capabilities(folder: Path) -> dict[str, str]:
    """Every Qdrant feature VectorStore and the alert hook use, tried on a small edge shard."""
    import qdrant_edge as qe

    checks: dict[str, str] = {}
    rng = np.random.default_rng(0)

    def vec() -> list[float]:
        v = rng.standard_normal(DIM)
        return (v / np.linalg.norm(v)).tolist()

    def attempt(name: str, fn: Callable[[], Any]) -> Any:
        try:
            result = fn()
        except Exception as exc:  # a missing feature is the answer, not a failure
            checks[name] = f"no ({type(exc).__name__}: {str(exc)[:80]})"
            return None
        checks[name] = "yes"
        return result

    config = qe.EdgeConfig(
        vectors={"": qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)},
        sparse_vectors={"lexical": qe.EdgeSparseVectorParams(modifier=qe.Modifier.Idf)},
    )
    shard = attempt(
        "unnamed dense + named sparse (IDF modifier)",
        lambda: qe.EdgeShard.create(str(folder / "papers"), config),
    )
    if shard is None:
        return checks
    ids = point_ids(50)
    points = [
        qe.Point(
            ids[i],
            {"": vec(), "lexical": qe.SparseVector(indices=[i % 7, 100 + i], values=[1.0, 0.5])},
            {
                "arxiv_id": f"2601.{i:05d}",
                "categories": ["astro-ph.GA" if i % 2 else "astro-ph.SR"],
                "published": f"2026-01-{1 + i % 28:02d}T00:00:00Z",
                "published_ts": 1_767_225_600.0 + 86_400 * (i % 28),
                "version": 1,
                "sentence_index": i % 5,
            },
        )
        for i in range(50)
    ]
    attempt(
        "upsert points with both vectors",
        lambda: shard.update(qe.UpdateOperation.upsert_points(points)),
    )
    for field, kind in (
        ("arxiv_id", qe.PayloadSchemaType.Keyword),
        ("categories", qe.PayloadSchemaType.Keyword),
        ("published", qe.PayloadSchemaType.Datetime),
        ("published_ts", qe.PayloadSchemaType.Float),
    ):
        attempt(
            f"payload index {kind}",
            lambda f=field, k=kind: shard.update(qe.UpdateOperation.create_field_index(f, k)),
        )
    attempt(
        "sparse search (IDF)",
        lambda: shard.query(
            qe.QueryRequest(
                limit=5,
                query=qe.Query.Nearest(qe.SparseVector(indices=[3], values=[1.0]), using="lexical"),
            )
        ),
    )
    hybrid = attempt(
        "prefetch dense + sparse, RRF fusion",
        lambda: shard.query(
            qe.QueryRequest(
                limit=5,
                prefetches=[
                    qe.Prefetch(limit=20, query=qe.Query.Nearest(vec())),
                    qe.Prefetch(
                        limit=20,
                        query=qe.Query.Nearest(
                            qe.SparseVector(indices=[3], values=[1.0]), using="lexical"
                        ),
                    ),
                ],
                query=qe.Fusion.Rrf(k=60),
                with_payload=True,
            )
        ),
    )
    if hybrid is not None and not hybrid:
        checks["prefetch dense + sparse, RRF fusion"] = "no (empty answer)"
    attempt(
        "query_batch (percolation)",
        lambda: shard.query_batch(
            qe.QueryBatchRequest([qe.QueryRequest(limit=3, query=qe.Query.Nearest(vec()))] * 4)
        ),
    )
    keyword = qe.Filter(
        must=[qe.FieldCondition(key="categories", match=qe.MatchValue("astro-ph.GA"))]
    )
    ranged = qe.Filter(
        must=[
            qe.FieldCondition(
                key="published_ts", range=qe.RangeFloat(gte=1_767_225_600.0 + 86_400 * 10)
            ),
            qe.FieldCondition(key="sentence_index", range=qe.RangeFloat(lt=3)),
        ]
    )
    dated = qe.Filter(
        must=[
            qe.FieldCondition(key="published", range=qe.RangeDateTime(gte="2026-01-15T00:00:00Z"))
        ]
    )

    def count(where: Any) -> int:
        return int(shard.count(qe.CountRequest(exact=True, filter=where)))

    attempt("filter: keyword match", lambda: _expect(count(keyword), 25))
    attempt("filter: float range", lambda: _expect(count(ranged) > 0, True))
    attempt("filter: datetime range", lambda: _expect(count(dated) > 0, True))
    attempt(
        "filtered vector search",
        lambda: shard.query(
            qe.QueryRequest(limit=5, query=qe.Query.Nearest(vec()), filter=keyword)
        ),
    )
    attempt(
        "scroll with filter + offset",
        lambda: shard.scroll(qe.ScrollRequest(limit=10, filter=keyword, with_payload=True)),
    )
    attempt(
        "scroll order_by a payload field",
        lambda: shard.scroll(
            qe.ScrollRequest(
                limit=10, order_by=qe.OrderBy("published_ts", direction=qe.Direction.Desc)
            )
        ),
    )
    attempt(
        "retrieve by id with vectors",
        lambda: _expect(len(shard.retrieve(ids[:3], with_payload=True, with_vector=True)), 3),
    )
    attempt(
        "set_payload",
        lambda: shard.update(qe.UpdateOperation.set_payload(ids[:2], {"digest": "x"})),
    )
    attempt(
        "delete by filter",
        lambda: (
            shard.update(qe.UpdateOperation.delete_points_by_filter(keyword)),
            _expect(count(None), 25),
        ),
    )
    attempt(
        "several collections (one shard per folder, open together)",
        lambda: qe.EdgeShard.create(
            str(folder / "subscriptions"),
            qe.EdgeConfig(vectors=qe.EdgeVectorParams(size=DIM, distance=qe.Distance.Cosine)),
        ).close(),
    )
    checks["collection aliases (atomic switch)"] = (
        "no (no alias API: a shard is one folder; a rollout would need our own pointer file)"
        if not any("alias" in n.lower() for n in dir(qe))
        else "yes"
    )
    checks["collection listing / get_collection config"] = (
        "partly (EdgeShard.info(): points, segments, payload schema; no collection registry)"
    )
    shard.close()
    attempt(
        "reopen (load) after close",
        lambda: _expect(qe.EdgeShard.load(str(folder / "papers")).count(qe.CountRequest()), 25),
    )
    return checks


def _expect(got: Any, want: Any) -> Any:
    if got != want:
        raise AssertionError(f"got {got!r}, expected {want!r}")
    return got


# the parent --------------------------------------------------------------------
def run_child(args: argparse.Namespace, mode: str, engine: str, size: int, path: Path) -> Any:
    cmd = [
        sys.executable,
        str(Path(__file__).resolve()),
        "--child",
        mode,
        "--engine",
        engine,
        "--size",
        str(size),
        "--path",
        str(path),
        "--queries",
        str(args.queries),
        "--batch",
        str(args.batch),
        "--seed",
        str(args.seed),
        "--data",
        str(args.data),
    ] + (["--optimize"] if args.optimize else [])
    done = subprocess.run(cmd, capture_output=True, text=True, check=False, cwd=ROOT)
    if done.returncode != 0:
        raise RuntimeError(f"{mode} {engine} {size}: {done.stderr[-2000:]}")
    return json.loads(done.stdout.strip().splitlines()[-1])


def fmt(pair: Any) -> str:
    return f"{pair[0]:.1f} / {pair[1]:.1f}" if pair else "-"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--sizes", default="8000,40000,80000", help="points (sentences)")
    parser.add_argument("--engines", default="local,edge")
    parser.add_argument("--queries", type=int, default=200)
    parser.add_argument("--batch", type=int, default=256, help="points per upsert")
    parser.add_argument("--seed", type=int, default=7)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--dir", type=Path, help="where the stores go (default: temp, removed)")
    parser.add_argument(
        "--optimize",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="edge: also optimize() (HNSW) and search again",
    )
    parser.add_argument("--no-capabilities", action="store_true")
    parser.add_argument("--child", choices=("build", "open"), help=argparse.SUPPRESS)
    parser.add_argument("--engine", help=argparse.SUPPRESS)
    parser.add_argument("--size", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--path", type=Path, help=argparse.SUPPRESS)
    args = parser.parse_args(argv)

    if args.child:
        fn = child_build if args.child == "build" else child_open
        print(json.dumps(fn(args)))
        return 0

    from importlib.metadata import version

    import qdrant_client
    import qdrant_edge  # noqa: F401

    print(
        f"qdrant-client {qdrant_client.__version__ if hasattr(qdrant_client, '__version__') else version('qdrant-client')}, "
        f"qdrant-edge-py {version('qdrant-edge-py')}; {os.cpu_count()} CPUs, load average "
        f"{os.getloadavg()[0]:.1f}; random unit vectors dim {DIM}, real sentence payloads",
        flush=True,
    )
    base = args.dir or Path(tempfile.mkdtemp(prefix="edge-bench-"))
    results: dict[str, dict[int, dict[str, Any]]] = {}
    try:
        for size in [int(s) for s in args.sizes.split(",")]:
            for engine in args.engines.split(","):
                path = base / f"{engine}-{size}"
                shutil.rmtree(path, ignore_errors=True)
                path.mkdir(parents=True)
                built = run_child(args, "build", engine, size, path)
                opened = run_child(args, "open", engine, size, path)
                results.setdefault(engine, {})[size] = {**built, **opened}
                print(
                    f"  {engine} {size}: {json.dumps({**built, **opened, 'top_ids': '…'})}",
                    flush=True,
                )
                shutil.rmtree(path, ignore_errors=True)
        if not args.no_capabilities:
            folder = base / "capabilities"
            shutil.rmtree(folder, ignore_errors=True)
            folder.mkdir(parents=True)
            checks = edge_capabilities(folder)
    finally:
        if args.dir is None:
            shutil.rmtree(base, ignore_errors=True)

    print(
        "\n| engine | points | upsert points/s | search p50/p95 ms | filtered p50/p95 ms "
        "| after optimize(): search / filtered p50/p95 ms | RSS MiB (data) | open s | first query ms |"
    )
    print("|---|---:|---:|---:|---:|---:|---:|---:|---:|")
    for engine, per in results.items():
        for size, r in per.items():
            hnsw = (
                f"{fmt(r['hnsw_search_ms'])} / {fmt(r['hnsw_filtered_ms'])} "
                f"(optimize {r['optimize_s']:.1f} s, recall@100 {r['hnsw_recall_at_100']:.3f})"
                if "hnsw_search_ms" in r
                else "-"
            )
            print(
                f"| {engine} | {size:,} | {r['points_per_s']:,.0f} | {fmt(r['search_ms'])} "
                f"| {fmt(r['filtered_ms'])} | {hnsw} | {r['rss_mib']:.0f} ({r['rss_data_mib']:.0f}) "
                f"| {r['open_s']:.2f} | {r['first_query_ms']:.1f} |"
            )
    if "local" in results and "edge" in results:
        for size in results["local"]:
            if size in results["edge"]:
                a, b = results["local"][size]["top_ids"], results["edge"][size]["top_ids"]
                same = np.mean(
                    [len(set(x) & set(y)) / max(1, len(x)) for x, y in zip(a, b, strict=True)]
                )
                print(f"top-10 agreement local vs edge (plain search) at {size:,}: {same:.3f}")
    if not args.no_capabilities:
        print("\n| VectorStore needs | qdrant-edge-py 0.9.0 |\n|---|---|")
        for name, answer in checks.items():
            print(f"| {name} | {answer} |")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
