"""How every cost grows: encode per backend and batch size, ONNX parity, /search, alert matching.

One run measures, on real astro-ph sentences (``sentences_for_embedding`` of the training
abstracts) and the bundled model:

1. **Encode**: sentences/s (wall) and CPU seconds per 1,000 sentences for each
   ``ASTRO_BACKEND`` (torch fp32, onnx fp32, onnx-int8, openvino fp32, openvino-bf16 where
   the CPU has native bf16) at each batch size (the ONNX backends under their default
   token cap, so batch 64 is ``make run``'s setting). The configs are
   interleaved over ``--rounds`` rounds; the best round is reported (the machine is shared,
   so wall numbers are noisy: CPU seconds are the steadier figure).
2. **Parity** of each ONNX backend with torch fp32 over ``--sentences`` sentences: row cosine
   (min, 1st percentile, mean), and the top-10 overlap of sentence search for ``--queries``
   paper titles (each backend's own query and corpus vectors against torch's).
3. **/search** latency (p50/p95 of ``Reads.search``: encode the query with ``--search-backend``
   (default: ``auto``'s choice),
   then the papers and sentences searches) in local-mode Qdrant (in memory) holding 1k/5k/10k
   papers of ``--sentences-per-paper`` random unit vectors each.
4. **Alert matching** per micro-batch (``AlertMatcher._percolate`` of ``--batch-papers``
   papers' sentences into the interest collection, then ``score_subscription`` of every hit)
   at 10/100/1k/10k subscriptions of 3 interest vectors each.

Writes ``performance.json`` and ``performance.png`` under ``--out``.

    nice -n 10 .venv/bin/python benchmarks/performance.py
    astrostream bench performance --skip-search --skip-alerts
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import json
import os
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from services.core.text import normalise, sentences_for_embedding  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz"
BACKENDS = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
# Where the pipeline runs find the exported ONNX models (a deployment exports once).
BENCH_DATA = ROOT / ".bench" / "data"


def load_texts(path: Path, sentences: int, queries: int) -> tuple[list[str], list[str]]:
    """``sentences`` model texts from the first abstracts, and the titles of the next papers."""
    texts: list[str] = []
    titles: list[str] = []
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as handle:
        for line in handle:
            record = json.loads(line)
            if len(texts) < sentences:
                texts += [m for _, m in sentences_for_embedding(record.get("abstract", ""))]
            elif len(titles) < queries:
                titles.append(normalise(record.get("title", "")))
            else:
                break
    return texts[:sentences], titles


def timed(fn: Any, *args: Any) -> tuple[Any, float, float]:
    wall, cpu = time.perf_counter(), time.process_time()
    out = fn(*args)
    return out, time.perf_counter() - wall, time.process_time() - cpu


def pct(values: list[float], q: float) -> float:
    return float(np.percentile(np.asarray(values), q))


def bench_encode(encoders: dict[str, Any], texts: list[str], batches: list[int], rounds: int):
    rows: dict[tuple[str, int], dict[str, float]] = {}
    for _ in range(rounds):
        for batch in batches:
            for backend, encoder in encoders.items():
                encoder.batch_size = batch
                _, wall, cpu = timed(encoder.encode, texts)
                best = rows.setdefault((backend, batch), {"wall_s": wall, "cpu_s": cpu})
                best["wall_s"] = min(best["wall_s"], wall)
                best["cpu_s"] = min(best["cpu_s"], cpu)
    out = []
    for (backend, batch), r in rows.items():
        out.append(
            {
                "backend": backend,
                "batch": batch,
                "max_tokens": encoders[backend].max_tokens,  # the ONNX default caps tokens too
                "sentences_per_s": len(texts) / r["wall_s"],
                "cpu_s_per_1000": 1000 * r["cpu_s"] / len(texts),
            }
        )
    return out


def bench_parity(encoders: dict[str, Any], texts: list[str], titles: list[str]):
    vectors = {}
    for backend, encoder in encoders.items():
        encoder.batch_size = 32
        vectors[backend] = (encoder.encode(texts), encoder.encode(titles))
    ref_corpus, ref_queries = vectors["torch"]
    ref_top = np.argsort(-(ref_queries @ ref_corpus.T), axis=1)[:, :10]
    out = {}
    for backend, (corpus, queries) in vectors.items():
        if backend == "torch":
            continue
        cosine = (corpus * ref_corpus).sum(axis=1)
        top = np.argsort(-(queries @ corpus.T), axis=1)[:, :10]
        overlap = [len(set(a) & set(b)) / 10 for a, b in zip(top, ref_top, strict=True)]
        out[backend] = {
            "sentences": len(texts),
            "cosine_min": float(cosine.min()),
            "cosine_p1": pct(cosine.tolist(), 1),
            "cosine_mean": float(cosine.mean()),
            "queries": len(titles),
            "top10_overlap_mean": float(np.mean(overlap)),
            "top10_overlap_min": float(np.min(overlap)),
        }
    return out


def unit(rng: np.random.Generator, n: int, dim: int) -> np.ndarray:
    v = rng.standard_normal((n, dim)).astype(np.float32)
    return v / np.linalg.norm(v, axis=1, keepdims=True)


def fill_papers(store: Any, rng: np.random.Generator, start: int, stop: int, per: int) -> None:
    from services.core.ids import paper_point_id

    for lo in range(start, stop, 500):
        hi = min(lo + 500, stop)
        ids = [f"{2500 + i // 100000:04d}.{i % 100000:05d}" for i in range(lo, hi)]
        base = {"categories": ["astro-ph.GA"], "published": "2025-06-01T00:00:00Z", "version": 1}
        store.upsert(
            store.papers,
            [paper_point_id(a) for a in ids],  # what /papers/{id}/similar looks up
            unit(rng, len(ids), store.dim),
            [{**base, "arxiv_id": a, "title": f"paper {a}"} for a in ids],
        )
        sentence_ids, payloads = [], []
        for a in ids:
            for k in range(per):
                sentence_ids.append(str(uuid.uuid5(uuid.NAMESPACE_URL, f"{a}#{k}")))
                payloads.append({**base, "arxiv_id": a, "sentence_index": k, "text": f"s{k}"})
        store.upsert(
            store.sentences, sentence_ids, unit(rng, len(sentence_ids), store.dim), payloads
        )


def bench_search(encoder: Any, sizes: list[int], per: int, titles: list[str]):
    from services.core.settings import Settings
    from services.http.reads import Reads
    from services.store.binding import Binding
    from services.store.vectorstore import VectorStore

    rng = np.random.default_rng(0)
    store = VectorStore(Settings(qdrant_path=Path(":memory:")), encoder.dim, "bench")
    store.ensure_collections()
    reads = Reads(Binding(encoder, store))
    encoder.batch_size = 32
    out, have = [], 0
    for size in sizes:
        fill_papers(store, rng, have, size, per)
        have = size
        latencies, cpus, similar = [], [], []
        for n, title in enumerate(titles):
            wall, cpu = time.perf_counter(), time.process_time()
            asyncio.run(reads.search({"q": title, "limit": "10"}))
            latencies.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
            i = (n * 7919) % size
            wall = time.perf_counter()
            asyncio.run(
                reads.similar(f"{2500 + i // 100000:04d}.{i % 100000:05d}", {"limit": "10"})
            )
            similar.append(time.perf_counter() - wall)
        out.append(
            {
                "papers": size,
                "sentences": size * per,
                "p50_ms": 1000 * pct(latencies, 50),
                "p95_ms": 1000 * pct(latencies, 95),
                "cpu_ms_mean": 1000 * statistics.fmean(cpus),
                "similar_p50_ms": 1000 * pct(similar, 50),
                "similar_p95_ms": 1000 * pct(similar, 95),
            }
        )
    store.close()
    return out


def bench_alerts(dim: int, counts: list[int], papers: int, per: int, repeat: int):
    from services.alerts.matcher import score_subscription
    from services.alerts.percolation import percolate
    from services.core.settings import Settings
    from services.store.vectorstore import VectorStore

    rng = np.random.default_rng(1)
    store = VectorStore(Settings(qdrant_path=Path(":memory:")), dim, "bench")
    store.ensure_collections()

    async def call(fn: Any, *args: Any) -> Any:
        return await store.run(fn, *args)

    batch = [SimpleNamespace(sentence_vectors=unit(rng, per, dim)) for _ in range(papers)]
    out, have = [], 0
    for count in counts:
        for lo in range(have, count, 1000):
            subs = range(lo, min(lo + 1000, count))
            ids = [
                str(uuid.uuid5(uuid.NAMESPACE_URL, f"sub{s}#{k}")) for s in subs for k in range(3)
            ]
            payloads = [
                {"subscription_id": f"sub{s}", "interest": f"i{k}"} for s in subs for k in range(3)
            ]
            store.upsert(store.subscriptions, ids, unit(rng, len(ids), dim), payloads)
        have = count
        walls, cpus, pairs = [], [], 0
        for _ in range(repeat):
            wall, cpu = time.perf_counter(), time.process_time()
            reach = asyncio.run(
                percolate(call, store, [b.sentence_vectors for b in batch], None, 256, 0)
            )
            hits = reach.per_paper(len(batch))
            pairs = 0
            for per_paper in hits:
                for entries in per_paper.values():
                    score_subscription(entries, sentences=per, interest_points=3, lexical=0.0)
                    pairs += 1
            walls.append(time.perf_counter() - wall)
            cpus.append(time.process_time() - cpu)
        out.append(
            {
                "subscriptions": count,
                "interest_vectors": 3 * count,
                "papers": papers,
                "queries": papers * per,
                "scored_pairs": pairs,
                "wall_ms": 1000 * min(walls),
                "cpu_ms": 1000 * min(cpus),
            }
        )
    store.close()
    return out


def read_papers(path: Path, count: int, skip: int = 0) -> list[Any]:
    """``count`` papers of ``path`` after the first ``skip`` (the data set's own order)."""
    from services.core.papers import read_papers_jsonl

    papers = []
    for n, paper in enumerate(read_papers_jsonl(path)):
        if n >= skip + count:
            break
        if n >= skip:
            papers.append(paper)
    return papers


def model_texts(papers: list[Any]) -> list[str]:
    """What the embed stage encodes for ``papers``: each title, then its sentences."""
    texts: list[str] = []
    for paper in papers:
        texts.append(normalise(paper.title))
        texts.extend(m for _, m in sentences_for_embedding(paper.abstract))
    return texts


def bench_bare(
    texts: list[str], model: str, batches: list[int], cache: Path, rounds: int
) -> list[dict[str, Any]]:
    """Bare ``encode`` of ``texts``: torch fp32 at each batch size, the default encoder of
    ``make run`` (``ASTRO_BACKEND``/``ASTRO_BATCH_*`` unset: auto, its batch size and token
    cap), and onnx-int8 at its defaults where auto chose another backend."""
    from services.core.settings import Settings
    from services.models.encoder import Encoder, load_encoder

    configs: list[tuple[str, Any, int | None]] = []
    torch_encoder = Encoder(model, "cpu", 64, 256, backend="torch", cache_dir=cache)
    configs += [("torch", torch_encoder, b) for b in batches]
    default = load_encoder(Settings(model=model, data_dir=BENCH_DATA, device="cpu"))
    configs.append((f"default ({default.backend})", default, None))
    if default.backend != "onnx-int8":
        int8 = load_encoder(
            Settings(model=model, data_dir=BENCH_DATA, device="cpu", backend="onnx-int8")
        )
        configs.append(("onnx-int8 (its defaults)", int8, None))
    for _, encoder, batch in configs:
        if batch:
            encoder.batch_size = batch
        encoder.encode(texts[:32])  # warm-up
    best: dict[tuple[str, int | None], tuple[float, float]] = {}
    for _ in range(rounds):
        for name, encoder, batch in configs:
            if batch:
                encoder.batch_size = batch
            _, wall, cpu = timed(encoder.encode, texts)
            old = best.get((name, batch), (1e18, 1e18))
            best[(name, batch)] = (min(old[0], wall), min(old[1], cpu))
    encoders = {name: encoder for name, encoder, _ in configs}
    rows = []
    for (name, batch), (wall, cpu) in best.items():
        encoder = encoders[name]
        rows.append(
            {
                "encoder": name,
                "batch": batch or encoder.batch_size,
                "max_tokens": None if name == "torch" else encoder.max_tokens,
                "sentences": len(texts),
                "wall_s": wall,
                "cpu_s": cpu,
                "sentences_per_s": len(texts) / wall,
            }
        )
    for encoder in encoders.values():
        encoder.close()
    return rows


def proc_status(pid: int) -> tuple[float, float]:
    """CPU seconds (user + system, all threads) and resident MiB of a process, from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    cpu = (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    rss = 0.0
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            rss = int(line.split()[1]) / 1024
    return cpu, rss


def histogram_quantile(text: str, name: str, q: float) -> float:
    """The ``q`` quantile of a Prometheus histogram in ``text`` (upper bound of its bucket)."""
    buckets = []
    for line in text.splitlines():
        if line.startswith(f"{name}_bucket{{"):
            le = line.split('le="', 1)[1].split('"', 1)[0]
            buckets.append((float(le), float(line.rsplit(" ", 1)[1])))
    buckets.sort()
    total = buckets[-1][1] if buckets else 0.0
    for le, count in buckets:
        if total and count >= q * total:
            return le
    return float("nan")


SUBSCRIPTION_QUERIES = [
    "dark matter halo mass function",
    "exoplanet atmospheres transmission spectroscopy",
    "fast radio bursts localisation",
    "galaxy cluster weak lensing masses",
    "gravitational waves from binary neutron stars",
    "star formation in molecular clouds",
    "active galactic nuclei feedback",
    "cosmic microwave background polarisation",
    "type Ia supernova cosmology",
    "pulsar timing arrays",
]


def run_pipeline(
    papers: list[Any],
    env: dict[str, str],
    timeout: float,
    *,
    rate: float | None = None,
    subscriptions: int = 0,
) -> dict[str, Any]:
    """Publish ``papers`` to a fresh worker with ``make run``'s defaults (plus ``env``): all
    at once, or ``rate`` papers/s; time until every paper is in Qdrant; the worker's stage
    seconds, CPU, RSS, and the publish → indexed lag (alerts are published before a paper's
    point is written, so it bounds publish → alert)."""
    from benchmarks.stack import WorkerProcess, metric_sum
    from services.core.settings import load_settings
    from services.kafka.broker import EmbeddedBroker, free_port
    from services.kafka.publisher import Publisher

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        worker_env = {
            "ASTRO_KAFKA_URL": broker.url,
            "ASTRO_DATA_DIR": f"{tmp}/data",  # Qdrant local mode on disk under it
            "ASTRO_ROLES": "embed,alerts,api",  # make run's, less ingest (arXiv polling)
            "ASTRO_LOG_LEVEL": "warning",
            **env,
        }
        # The export cache of the ONNX backends (once per model): a fresh one would time
        # an export that a deployment does once.
        onnx = BENCH_DATA / "onnx"
        onnx.mkdir(parents=True, exist_ok=True)
        (Path(tmp) / "data").mkdir()
        (Path(tmp) / "data" / "onnx").symlink_to(onnx)
        with WorkerProcess(worker_env, Path(tmp) / "worker.log") as worker:
            settings = load_settings(kafka_url=broker.url)

            for n in range(subscriptions):
                body = {"queries": [SUBSCRIPTION_QUERIES[n % len(SUBSCRIPTION_QUERIES)]]}
                status, answer = worker.request("POST", "/subscriptions", body)
                assert status == 201, answer

            async def publish() -> None:
                async with Publisher(settings) as publisher:
                    if rate is None:
                        await publisher.publish_papers(papers)
                        return
                    start = time.perf_counter()
                    for n, paper in enumerate(papers):
                        await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
                        await publisher.publish_papers([paper])

            cpu0, _ = proc_status(worker.pid)
            started = time.perf_counter()
            asyncio.run(publish())
            worker.wait_for(lambda s: s["papers"] >= len(papers), timeout=timeout)
            wall = time.perf_counter() - started
            cpu1, rss = proc_status(worker.pid)
            _, text = worker.get("/metrics")
    stages = {
        stage: metric_sum(text, "astrostream_stage_seconds_sum", f'stage="{stage}"')
        for stage in ("decode", "encode", "upsert", "match", "total")
    }
    sentences = metric_sum(text, "astrostream_sentences_indexed_total")
    return {
        "papers": len(papers),
        "texts": sentences + len(papers),
        "wall_s": wall,
        "worker_cpu_s": cpu1 - cpu0,
        "papers_per_s": len(papers) / wall,
        "sentences_per_s": (sentences + len(papers)) / wall,
        "stage_seconds": stages,
        "micro_batches": metric_sum(text, "astrostream_batch_papers_count"),
        "publish_rate": rate,
        "subscriptions": subscriptions,
        "lag_p50_s": histogram_quantile(text, "astrostream_end_to_end_lag_seconds", 0.5),
        "lag_p95_s": histogram_quantile(text, "astrostream_end_to_end_lag_seconds", 0.95),
        "worker_rss_mib": rss,
    }


def plot(result: dict[str, Any], path: Path) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = [k for k in ("pipeline", "encode", "search", "alerts") if result.get(k)]
    fig, axes = plt.subplots(1, len(panels), figsize=(5 * len(panels), 4), squeeze=False)
    for ax, key in zip(axes[0], panels, strict=True):
        if key == "pipeline":
            rows = result["pipeline"]["bare"]
            labels = [f"{r['encoder']}, batch {r['batch']}" for r in rows] + [
                "full pipeline (make run)"
            ]
            rates = [r["sentences_per_s"] for r in rows] + [
                result["pipeline"]["run"]["sentences_per_s"]
            ]
            # Horizontal bars: the encoders' names are too long to sit side by side.
            ax.barh(range(len(rates)), rates, color=["C0"] * len(rows) + ["C1"])
            ax.set_yticks(range(len(rates)), labels, fontsize=8)
            ax.invert_yaxis()
            ax.set(xlabel="sentences/s", title="bare encode vs full pipeline")
        elif key == "encode":
            for backend in BACKENDS:
                rows = [r for r in result["encode"] if r["backend"] == backend]
                if rows:
                    ax.plot(
                        [r["batch"] for r in rows],
                        [r["sentences_per_s"] for r in rows],
                        "o-",
                        label=backend,
                    )
            ax.set(xlabel="batch size", ylabel="sentences/s (best round)", title="encode, CPU")
            ax.legend()
        elif key == "search":
            rows = result["search"]
            ax.plot([r["papers"] for r in rows], [r["p50_ms"] for r in rows], "o-", label="p50")
            ax.plot([r["papers"] for r in rows], [r["p95_ms"] for r in rows], "o-", label="p95")
            if rows and "similar_p50_ms" in rows[0]:
                ax.plot(
                    [r["papers"] for r in rows],
                    [r["similar_p50_ms"] for r in rows],
                    "s--",
                    label="similar p50",
                )
            ax.set(
                xlabel="papers indexed", ylabel="ms", title=f"/search ({result['search_backend']})"
            )
            ax.legend()
        else:
            rows = result["alerts"]
            ax.plot([r["subscriptions"] for r in rows], [r["wall_ms"] for r in rows], "o-")
            ax.set(
                xscale="log",
                xlabel="subscriptions",
                ylabel="ms per micro-batch",
                title="alert matching",
            )
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def table(result: dict[str, Any]) -> str:
    lines = []
    if result.get("pipeline"):
        pipe = result["pipeline"]
        run = pipe["run"]
        lines += [
            f"| same {run['texts']:.0f} texts ({run['papers']} papers) | batch | sentences/s | "
            "wall s | CPU s |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| bare {r['encoder']} | {r['batch']}"
            + (f" (≤{r['max_tokens']} tokens)" if r.get("max_tokens") else "")
            + f" | {r['sentences_per_s']:.1f} | {r['wall_s']:.1f} | {r['cpu_s']:.1f} |"
            for r in pipe["bare"]
        ]
        lines.append(
            f"| full pipeline (make run defaults, publish → Qdrant) | | "
            f"{run['sentences_per_s']:.1f} | {run['wall_s']:.1f} | {run['worker_cpu_s']:.1f} |"
        )
        lines += [
            "",
            f"pipeline / best bare torch fp32: **{pipe['ratio_wall']:.2f}x** sentences/s, "
            f"{pipe['ratio_cpu']:.2f}x less CPU",
        ]
    if result.get("latency"):
        lat = result["latency"]
        lines += [
            "",
            f"publish → indexed (≥ publish → alert) at {lat['publish_rate']:.2f} papers/s "
            f"(half the pipeline's rate), {lat['subscriptions']} subscriptions, "
            f"{lat['papers']} papers: p50 ≤ {lat['lag_p50_s']:g} s, p95 ≤ {lat['lag_p95_s']:g} s "
            "(histogram bucket bounds)",
        ]
    if result.get("backfill"):
        b = result["backfill"]
        st = b["stage_seconds"]
        lines += [
            "",
            "| backfill papers | papers/s | sentences/s | wall s | worker CPU s | encode s | "
            "upsert s | match s | micro-batches | worker RSS MiB |",
            "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
            f"| {b['papers']:,} | {b['papers_per_s']:.2f} | {b['sentences_per_s']:.1f} | "
            f"{b['wall_s']:.0f} | {b['worker_cpu_s']:.0f} | {st['encode']:.0f} | "
            f"{st['upsert']:.0f} | {st['match']:.0f} | {b['micro_batches']:.0f} | "
            f"{b['worker_rss_mib']:.0f} |",
        ]
    if result.get("encode"):
        lines += [
            "| backend | batch | sentences/s | CPU s / 1,000 sentences |",
            "|---|---:|---:|---:|",
        ]
        lines += [
            f"| {r['backend']} | {r['batch']}"
            + (f" (≤{r['max_tokens']} tokens)" if r.get("max_tokens") else "")
            + f" | {r['sentences_per_s']:.0f} | {r['cpu_s_per_1000']:.1f} |"
            for r in sorted(
                result["encode"], key=lambda r: (BACKENDS.index(r["backend"]), r["batch"])
            )
        ]
    if result.get("parity"):
        lines += [
            "",
            "| backend vs torch fp32 | cosine min | cosine p1 | cosine mean | top-10 overlap mean (min) |",
            "|---|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {b} | {p['cosine_min']:.4f} | {p['cosine_p1']:.4f} | {p['cosine_mean']:.4f} | "
            f"{p['top10_overlap_mean']:.3f} ({p['top10_overlap_min']:.1f}) |"
            for b, p in result["parity"].items()
        ]
    if result.get("search"):
        lines += [
            "",
            f"| papers ({result['search_backend']}) | sentences | /search p50 ms | p95 ms | "
            "CPU ms | /similar p50 ms | p95 ms |",
            "|---:|---:|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['papers']:,} | {r['sentences']:,} | {r['p50_ms']:.1f} | {r['p95_ms']:.1f} | "
            f"{r['cpu_ms_mean']:.1f} | {r.get('similar_p50_ms', float('nan')):.1f} | "
            f"{r.get('similar_p95_ms', float('nan')):.1f} |"
            for r in result["search"]
        ]
        if len(result["search"]) >= 2:
            a, b = result["search"][-2], result["search"][-1]
            slope = max(0.0, (b["p50_ms"] - a["p50_ms"]) / (b["papers"] - a["papers"]))
            lines.append(
                f"\nlinear extrapolation to 300,000 papers: /search p50 ≈ "
                f"{b['p50_ms'] + slope * (300_000 - b['papers']):,.0f} ms (local mode scans)"
            )
    if result.get("alerts"):
        lines += [
            "",
            "| subscriptions | queries per micro-batch | pairs scored | match ms | CPU ms |",
            "|---:|---:|---:|---:|---:|",
        ]
        lines += [
            f"| {r['subscriptions']:,} | {r['queries']} | {r['scored_pairs']:,} | {r['wall_ms']:.0f} | {r['cpu_ms']:.0f} |"
            for r in result["alerts"]
        ]
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--model", default=os.environ.get("ASTRO_MODEL", "bundled"))
    parser.add_argument("--backends", default=",".join(BACKENDS))
    parser.add_argument("--batches", default="16,32,64")
    parser.add_argument("--sentences", type=int, default=2000, help="parity sample")
    parser.add_argument("--speed-sentences", type=int, default=640, help="per encode timing")
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--queries", type=int, default=200, help="titles: top-10 overlap, /search")
    parser.add_argument("--search-sizes", default="1000,5000,10000")
    parser.add_argument("--search-backend", default="auto", help="auto: make run's choice")
    parser.add_argument("--sentences-per-paper", type=int, default=8)
    parser.add_argument("--subscriptions", default="10,100,1000,10000")
    parser.add_argument("--batch-papers", type=int, default=32)
    parser.add_argument(
        "--pipeline-papers",
        type=int,
        default=300,
        help="papers published at once for bare encode vs full pipeline (0: skip)",
    )
    parser.add_argument(
        "--backfill",
        type=int,
        default=1000,
        help="papers of --data indexed end to end: papers/s, stages, RSS (0: skip)",
    )
    parser.add_argument(
        "--latency-papers",
        type=int,
        default=150,
        help="papers published at half the pipeline's rate, 10 subscriptions (0: skip)",
    )
    parser.add_argument(
        "--quick", action="store_true", help="a smoke run: small sizes, torch and onnx-int8"
    )
    parser.add_argument("--skip-parity", action="store_true")
    parser.add_argument("--skip-search", action="store_true")
    parser.add_argument("--skip-alerts", action="store_true")
    parser.add_argument("--out", type=Path, default=ROOT / ".bench" / "performance")
    args = parser.parse_args()
    if args.quick:
        args.backends, args.batches, args.rounds = "torch,onnx-int8,openvino-bf16", "16,64", 1
        args.sentences, args.speed_sentences, args.queries = 200, 128, 20
        args.search_sizes, args.subscriptions = "200,500", "10,100"
        args.pipeline_papers, args.backfill = min(args.pipeline_papers, 40), 0
        args.latency_papers = min(args.latency_papers, 20)

    from services.models.encoder import Encoder

    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    texts, titles = load_texts(args.data, args.sentences, args.queries)
    from services.models.encoder import pick_backend
    from services.models.onnx_backend import native_bf16

    backends = [b for b in args.backends.split(",") if b]
    if "openvino-bf16" in backends and not native_bf16():
        print("openvino-bf16: skipped, this CPU has no native bf16 (AMX / AVX512-BF16)")
        backends.remove("openvino-bf16")
    args.search_backend = pick_backend(args.search_backend, "cpu")
    cache = Path(tempfile.mkdtemp(prefix="astro-onnx-"))
    encoders = {}
    for backend in backends:
        started = time.perf_counter()
        encoders[backend] = Encoder(args.model, "cpu", 32, 256, backend=backend, cache_dir=cache)
        print(
            f"{backend}: loaded (export included) in {time.perf_counter() - started:.1f}s",
            flush=True,
        )
    import torch

    result: dict[str, Any] = {
        "model": args.model,
        "cpu_count": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "load_avg_start": os.getloadavg(),
        "search_backend": args.search_backend,
    }
    if args.pipeline_papers:
        papers = read_papers(args.data, args.pipeline_papers, skip=5000)
        bare = bench_bare(
            model_texts(papers),
            args.model,
            [int(b) for b in args.batches.split(",")],
            cache,
            args.rounds,
        )
        run = run_pipeline(papers, {"ASTRO_MODEL": args.model}, timeout=7200)
        best = min((r for r in bare if r["encoder"] == "torch"), key=lambda r: r["wall_s"])
        result["pipeline"] = {
            "bare": bare,
            "run": run,
            "ratio_wall": best["wall_s"] / run["wall_s"],
            "ratio_cpu": best["cpu_s"] / run["worker_cpu_s"],
        }
        print(table({"pipeline": result["pipeline"]}), flush=True)
        if args.latency_papers:
            rate = run["papers_per_s"] / 2
            papers = read_papers(args.data, args.latency_papers, skip=8000)
            result["latency"] = run_pipeline(
                papers, {"ASTRO_MODEL": args.model}, timeout=7200, rate=rate, subscriptions=10
            )
            print(table({"latency": result["latency"]}), flush=True)
    if args.backfill:
        # Its own fresh worker and Qdrant: the first papers of the file, whatever the other
        # sections used (skipping 10,000 left 65 of the 10,065 in the shipped data file).
        papers = read_papers(args.data, args.backfill)
        if len(papers) < args.backfill:
            print(f"backfill: the data file holds only {len(papers)} papers", flush=True)
        result["backfill"] = run_pipeline(papers, {"ASTRO_MODEL": args.model}, timeout=36000)
        print(table({"backfill": result["backfill"]}), flush=True)
    speed = texts[: args.speed_sentences]
    result["encode"] = bench_encode(
        encoders, speed, [int(b) for b in args.batches.split(",")], args.rounds
    )
    print(table({"encode": result["encode"]}), flush=True)
    if not args.skip_parity and "torch" in encoders:
        result["parity"] = bench_parity(encoders, texts, titles)
        print(table({"parity": result["parity"]}), flush=True)
    if not args.skip_search:
        encoder = encoders.get(args.search_backend) or next(iter(encoders.values()))
        result["search_backend"] = encoder.backend
        sizes = [int(s) for s in args.search_sizes.split(",")]
        result["search"] = bench_search(encoder, sizes, args.sentences_per_paper, titles)
        print(table({"search": result["search"], "search_backend": encoder.backend}), flush=True)
    if not args.skip_alerts:
        dim = next(iter(encoders.values())).dim
        counts = [int(s) for s in args.subscriptions.split(",")]
        result["alerts"] = bench_alerts(dim, counts, args.batch_papers, args.sentences_per_paper, 2)
        print(table({"alerts": result["alerts"]}), flush=True)
    result["load_avg_end"] = os.getloadavg()
    result["command"] = " ".join(sys.argv)
    args.out.mkdir(parents=True, exist_ok=True)
    (args.out / "performance.json").write_text(json.dumps(result, indent=2))
    plot(result, args.out / "performance.png")
    print(f"\n{table(result)}\n\nwrote {args.out}/performance.json and performance.png")
    for encoder in encoders.values():
        encoder.close()


if __name__ == "__main__":
    main()
