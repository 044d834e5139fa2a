"""Alert matching at scale: CPU per paper, wall time and reach, 10 to 100,000 subscriptions.

Issue #20 items 5 and 6. A store on the embedded default (Qdrant Edge) is built through the
product's own code: the earlier papers of ``astro-ph-train.jsonl.gz`` indexed as the embed
stage writes them (``build_points``), then ``N`` subscriptions whose interest points are made
by ``subscriptions.build_interests`` from seeds read back by ``resolve_seeds`` (as
``POST /subscriptions`` does) and whose metadata is what ``SubscriptionStore.create`` stores.
Each subscription follows an author of the earlier papers (≤ 25 authors) with 1-3 of that
author's papers as seeds; past the number of such authors, authors are drawn again with
another pick of seeds. Defaults: threshold 0.05, no filters.

Then a burst of the latest ``--burst`` papers (arXiv's daily announcement is ~150) goes
through ``AlertMatcher.match`` in the embed stage's micro-batches, timed in process CPU
(every thread: the Edge engine's too) and wall time. Reach = the share of the
(paper, subscription) pairs that a full scan scores at or above the subscription's threshold
(every subscription scored with the product's own vectorised lexical score at the same IDF,
seed papers excluded as the matcher excludes them) that the matcher alerted.

Vectors: real sentence vectors of the default encoder of this machine. The growth
benchmark's cache (``.bench/growth/<data>-<version>.npy``, every paper's title and sentence
rows) is used when present (here or in a sibling worktree); otherwise the needed papers are
encoded once and kept in ``.bench/matching/``. Stores are kept under ``--root`` (one folder
per size, reused by the next run while the parameters match).

    nice -n 5 .venv/bin/python benchmarks/matching.py --subscriptions 10 1000 10000 100000
    .venv/bin/python benchmarks/matching.py --subscriptions 1000 --burst 64     # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import resource
import sys
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from benchmarks.matching_store import build_store, draw_subscriptions, open_store  # noqa: E402

DATA = ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz"
CACHE = ROOT / ".bench" / "matching"
GROWTH_CACHES = [ROOT / ".bench" / "growth", ROOT.parent / "wt-growth" / ".bench" / "growth"]
BENCH_DATA = ROOT / ".bench" / "data"  # where the encoder exports its ONNX model
MICRO_BATCH = 32  # the embed stage's micro-batch (ASTRO_BATCH_SIZE)
FORMAT = 1  # bump when what a built store holds changes


@dataclass
class Corpus:
    """Every paper with sentences, in announcement order, and its vectors."""

    version: str
    papers: list[Any]  # services.core.schemas.Paper
    splits: list[list[tuple[str, str]]]  # (display, model text) per sentence
    vectors: dict[str, np.ndarray]  # arxiv id -> title row then sentence rows


def load_corpus(data: Path, limit: int | None = None) -> Corpus:
    """Papers split as the embed stage splits them, in announcement order, with their vectors.

    ``limit``: only the latest papers (a quick run without the growth benchmark's cache).
    """
    from services.core.papers import read_papers_jsonl
    from services.core.settings import Settings
    from services.core.text import sentences_for_embedding
    from services.embed.pipeline import model_texts
    from services.models.encoder import backend_version, derive_model_version, pick_backend

    settings = Settings(data_dir=BENCH_DATA, device="cpu")
    version = backend_version(
        derive_model_version(settings.model), pick_backend(settings.backend, "cpu")
    )
    papers = list(read_papers_jsonl(data))
    splits = [sentences_for_embedding(p.abstract, settings.max_sentences) for p in papers]
    keep = [i for i, s in enumerate(splits) if s]
    papers, splits = [papers[i] for i in keep], [splits[i] for i in keep]
    sizes = [1 + len(s) for s in splits]
    vectors: dict[str, np.ndarray] = {}
    name = f"{data.name.split('.')[0]}-{version}"
    for folder in GROWTH_CACHES:
        path = folder / f"{name}.npy"
        if path.exists():
            rows = np.load(path, mmap_mode="r")
            if len(rows) == sum(sizes):
                offsets = np.r_[0, np.cumsum(sizes)]
                vectors = {
                    p.arxiv_id: np.asarray(rows[offsets[i] : offsets[i + 1]], dtype=np.float32)
                    for i, p in enumerate(papers)
                }
                print(f"vectors: {path}", flush=True)
                break
    order = sorted(range(len(papers)), key=lambda i: (papers[i].date or "", papers[i].arxiv_id))
    if limit:
        order = order[-limit:]
    papers, splits = [papers[i] for i in order], [splits[i] for i in order]
    if not vectors:
        own = CACHE / f"{name}.npz"
        if own.exists():
            with np.load(own) as saved:
                vectors = {k: saved[k] for k in saved.files}
        todo = [i for i, p in enumerate(papers) if p.arxiv_id not in vectors]
        if todo:
            from services.models.encoder import load_encoder

            encoder = load_encoder(settings)
            texts = model_texts([(papers[i], splits[i]) for i in todo])
            print(f"encoding {len(texts):,} texts with {encoder.backend} …", flush=True)
            encoded = encoder.encode(texts).astype(np.float32)
            row = 0
            for i in todo:
                n = 1 + len(splits[i])
                vectors[papers[i].arxiv_id] = encoded[row : row + n]
                row += n
            CACHE.mkdir(parents=True, exist_ok=True)
            np.savez(own, **vectors)
    return Corpus(version, papers, splits, vectors)


def indexed(corpus: Corpus, papers: Sequence[Any]) -> list[Any]:
    """The embed stage's ``IndexedPaper`` of each paper (what the matcher is handed)."""
    from services.core.ids import content_digest
    from services.embed.pipeline import IndexedPaper, RawRecord
    from services.embed.points import paper_vector

    splits = {p.arxiv_id: s for p, s in zip(corpus.papers, corpus.splits, strict=True)}
    out = []
    for p in papers:
        rows = corpus.vectors[p.arxiv_id]
        out.append(
            IndexedPaper(
                paper=p,
                record=RawRecord("astro.papers", 0, 0, b"", b""),
                sentences=[d for d, _ in splits[p.arxiv_id]],
                sentence_vectors=rows[1:],
                paper_vector=paper_vector(rows[0], rows[1:]),
                digest=content_digest(p.title, p.abstract),
            )
        )
    return out


class FullScan:
    """Every subscription scored against papers, exactly, with the product's scoring.

    The default score (``ASTRO_ALERT_LEXICAL_WEIGHT`` 1) is the lexical TF-IDF cosine of the
    paper and the subscription's centroid: :mod:`services.alerts.scoring` at the matcher's
    IDF of the moment, for all subscriptions; seed papers excluded as the matcher excludes
    them. The interests' term counts are numbered once; the IDF is applied per call.
    """

    def __init__(self, metas: dict[str, Any]) -> None:
        from services.alerts import scoring

        self.ids = list(metas)
        self.seeds = [set(metas[s].arxiv_ids) for s in self.ids]
        self.lexicon = scoring.Lexicon()
        interests = [[dict(i.terms) for i in metas[s].interests] for s in self.ids]
        self.owner = np.repeat(np.arange(len(interests)), [len(x) for x in interests])
        self.tf = self.lexicon.counts([c for x in interests for c in x])

    def above(self, corpus: Any, items: Sequence[Any], threshold: float) -> set[tuple[str, str]]:
        """(arXiv id, subscription id) of every pair scored at or above ``threshold``."""
        from services.alerts.matcher import term_counts

        centres = self.lexicon.centroids(self.tf, self.owner, len(self.ids), corpus)
        counts = [term_counts(" ".join([it.paper.title, *it.sentences])) for it in items]
        papers = self.lexicon.tfidf(self.lexicon.counts(counts), corpus)
        scores = (self.lexicon.widen(papers) @ self.lexicon.widen(centres).T).toarray()
        found = set()
        for row, col in zip(*np.nonzero(scores >= threshold), strict=True):
            arxiv_id = items[row].paper.arxiv_id
            if arxiv_id not in self.seeds[col]:
                found.add((arxiv_id, self.ids[col]))
        return found


async def burst(
    store: Any, items: list[Any], batch: int, settings: Any, cold: bool
) -> dict[str, Any]:
    """Match ``items`` in micro-batches as the embed stage hands them over; time and reach.

    ``cold``: no subscription model stored yet (each one that alerts is fitted, as after a
    deployment or an IDF refresh); otherwise those of the previous pass are loaded.
    """
    from services.alerts import lexicon
    from services.alerts.feedback import FeedbackStore
    from services.alerts.hook import AlertMatcher
    from services.alerts.ranking import models_collection
    from services.alerts.request import DEFAULT_THRESHOLD
    from services.alerts.subscriptions import SubscriptionStore
    from services.alerts.webhooks import WebhookSender
    from services.store.binding import Binding
    from services.store.models import Filter, matching
    from services.store.tables import PayloadTable

    binding = Binding(None, store)  # type: ignore[arg-type]
    prior = lexicon.prior(settings.alert_df_table)
    subs = SubscriptionStore(binding, prior)
    feedback = FeedbackStore(binding)
    await store.run(feedback.ensure_sync)
    # The burst's alerts of an earlier run would not be published again: clear them.
    burst_ids = [it.paper.arxiv_id for it in items]
    await store.run(subs.alerts_table.delete_where, matching(arxiv_id=burst_ids))
    models = PayloadTable(store, models_collection(store))
    if cold and await store.run(models.exists):
        await store.run(models.delete_where, Filter(must=[]))
    published: list[Any] = []

    async def publish(alerts: list[Any]) -> None:
        published.extend(alerts)

    matcher = AlertMatcher(
        subs,
        publish,
        WebhookSender(),
        aggregation=settings.alert_aggregation,
        lexical_weight=settings.alert_lexical_weight,
        prior=prior,
        percolate_limit=settings.alert_percolate_limit,
        sparse_limit=settings.alert_sparse_limit,
        feedback=feedback,
        dense_weight=settings.alert_dense_weight,
        lexical_margin=settings.alert_lexical_margin,
    )
    started = time.perf_counter()
    await matcher._bootstrap({it.paper.arxiv_id for it in items})  # as the first match does
    boot_s = time.perf_counter() - started
    scan = FullScan(await store.run(lambda: {m.id: m for m in _all_metas(subs)}))
    wanted: set[tuple[str, str]] = set()
    cpu: list[float] = []
    wall: list[float] = []
    for start in range(0, len(items), batch):
        part = items[start : start + batch]
        c0, w0 = time.process_time(), time.perf_counter()
        await matcher.match(part)
        cpu.append(time.process_time() - c0)
        wall.append(time.perf_counter() - w0)
        wanted |= scan.above(matcher.corpus, part, DEFAULT_THRESHOLD)
    got = {(a.arxiv_id, a.subscription_id) for a in published}
    return {
        "papers": len(items),
        "bootstrap_s": boot_s,
        "cpu_s": cpu,
        "wall_s": wall,
        "alerts": len(published),
        "full_scan_pairs": len(wanted),
        "reached": len(got & wanted),
        "reach": len(got & wanted) / max(1, len(wanted)),
        "alerts_not_in_scan": len(got - wanted),
    }


def _all_metas(subs: Any) -> list[Any]:
    from services.alerts.subscriptions import SubscriptionMeta

    return [SubscriptionMeta.model_validate(p) for p in subs.meta_table.scan() if p]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--subscriptions", type=int, nargs="+", default=[10, 1000, 10_000])
    parser.add_argument("--burst", type=int, default=150, help="latest papers matched at once")
    parser.add_argument("--batch", type=int, default=MICRO_BATCH, help="papers per match call")
    parser.add_argument("--papers", type=int, help="only the latest papers (quick, no cache)")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--data", type=Path, default=DATA)
    parser.add_argument("--root", type=Path, default=Path("/work/match-data"))
    parser.add_argument("--rebuild", action="store_true", help="build the stores again")
    parser.add_argument("--build-only", action="store_true", help="build the stores, match nothing")
    parser.add_argument("--out", type=Path, help="write the results here as JSON")
    parser.add_argument(
        "--passes",
        nargs="+",
        choices=["cold", "warm"],
        default=["cold", "warm"],
        help="cold: no stored subscription model (each alerting one is fitted); warm: stored",
    )
    parser.add_argument("--profile", type=Path, help="cProfile the bursts into this file")
    args = parser.parse_args(argv)
    from services.core.settings import load_settings

    settings = load_settings()
    corpus = load_corpus(args.data, args.papers)
    earlier, later = corpus.papers[: -args.burst], corpus.papers[-args.burst :]
    items = indexed(corpus, later)
    print(
        f"{len(earlier):,} earlier papers, burst of {len(later)} "
        f"({later[0].date} .. {later[-1].date}); load {os.getloadavg()[0]:.1f}",
        flush=True,
    )
    results = []
    for n in args.subscriptions:
        path = args.root / f"subs-{n}"
        key = {"format": FORMAT, "n": n, "seed": args.seed, "earlier": len(earlier)}
        marker = path / "bench.json"
        built = json.loads(marker.read_text()) if marker.exists() else {}
        if args.rebuild or built.get("key") != key:
            print(f"building {n:,} subscriptions in {path}", flush=True)
            subs = draw_subscriptions(earlier, n, args.seed)
            built = {"key": key, **build_store(path / "edge", corpus, earlier, subs)}
            marker.write_text(json.dumps(built))
        if args.build_only:
            continue
        store = open_store(
            path / "edge", next(iter(corpus.vectors.values())).shape[1], corpus.version
        )
        for name in args.passes:
            if args.profile:
                import cProfile

                async def inline(fn: Any, *a: Any, **k: Any) -> Any:
                    return fn(*a, **k)  # the store thread's work, seen by the profiler

                store.run = inline
                profiler = cProfile.Profile()
                profiler.enable()
            result = asyncio.run(burst(store, items, args.batch, settings, name == "cold"))
            if args.profile:
                profiler.disable()
                profiler.dump_stats(str(args.profile.with_suffix(f".{n}.{name}.prof")))
            row = {
                "subscriptions": n,
                "pass": name,
                "interest_points": built.get("interest_points"),
                "cpu_ms_per_paper": round(1000 * sum(result["cpu_s"]) / result["papers"], 1),
                "wall_ms_per_paper": round(1000 * sum(result["wall_s"]) / result["papers"], 1),
                "burst_wall_s": round(sum(result["wall_s"]), 2),
                "max_batch_wall_s": round(max(result["wall_s"]), 2),
                "reach": round(result["reach"], 4),
                "full_scan_pairs": result["full_scan_pairs"],
                "alerts": result["alerts"],
                "alerts_not_in_scan": result["alerts_not_in_scan"],
                "bootstrap_s": round(result["bootstrap_s"], 2),
                "load": round(os.getloadavg()[0], 1),
                "maxrss_mib": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss // 1024,
            }
            results.append(row)
            print(json.dumps(row), flush=True)
        store.close()
    print(
        "\n| subscriptions | pass | interest points | CPU ms/paper | wall ms/paper "
        "| burst wall s | reach | pairs above threshold | load |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|")
    for r in results:
        print(
            f"| {r['subscriptions']:,} | {r['pass']} | {r['interest_points'] or 0:,} "
            f"| {r['cpu_ms_per_paper']} | {r['wall_ms_per_paper']} | {r['burst_wall_s']} "
            f"| {r['reach']} | {r['full_scan_pairs']:,} | {r['load']} |"
        )
    if args.out:
        args.out.write_text(json.dumps(results, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
