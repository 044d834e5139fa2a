"""Alert-ranking parity of encoder backends: the alerts benchmark's dev split through the real stack.

Issue #13: the int8 backend's alert-ranking nDCG@20 on the alerts benchmark's dev split may be
at most 0.005 below fp32's. For each backend (``--backends``, the first is the reference) a
real broker and worker process run with ``ASTRO_BACKEND=<backend>``: the seed papers are
indexed, the subscriptions created through ``POST /subscriptions`` (threshold 0), the
candidates published, and each ranking read back from ``GET /subscriptions/{id}/alerts
?sort=relevance`` -- exactly :func:`benchmarks.alerts.run_stack`. Same subscriptions, same
candidates, same order for every backend.

Where dense vectors enter alert ranking: the relevance score is the per-subscription lexical
model (TF-IDF); the dense sentence vectors decide *which* (subscription, paper) pairs the
percolation reaches (each new sentence searched into the interest vectors, top
``ASTRO_ALERT_PERCOLATE_LIMIT``, next to the sparse reach) and the alert's evidence. So the
run also records every alert published (all reached pairs, at threshold 0), the top evidence
cosine of each, and the top-10 of ``/search`` for ``--queries`` titles of papers that are not
indexed. ``--sparse-limit 0`` sets ``ASTRO_ALERT_SPARSE_LIMIT=0`` (dense reach only).

A backend named ``torch#2`` runs ``torch`` again: the noise floor of a rerun (micro-batches
form by timing, and the IDF and the per-subscription models see the corpus in that order).

Each backend's raw result is written to ``--out/<backend>[-sparse<N>].json`` and reused when
it exists (``--fresh`` reruns), so backends can be run one at a time and compared later.

    nice -n 10 .venv/bin/python benchmarks/backend_parity.py --backends torch,onnx-int8
    nice -n 10 .venv/bin/python benchmarks/backend_parity.py --backends torch,openvino-bf16
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import random
import shutil
import sys
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.alerts import (  # noqa: E402
    Evaluation,
    add_evaluation_arguments,
    evaluation_from,
    load,
    paired_ci,
    per_subscription,
    read_rankings,
    subscribed_stack,
)

TOLERANCE = 0.005  # issue #13: int8 nDCG may be at most this much below fp32


# pure helpers ------------------------------------------------------------------
def topk_overlap(a: Sequence[str], b: Sequence[str], k: int) -> float:
    """Share of the first ``k`` of ``a`` that are also in the first ``k`` of ``b``."""
    top = set(a[:k])
    if not top and not b[:k]:
        return 1.0
    return len(top & set(b[:k])) / max(1, min(k, max(len(a[:k]), len(b[:k]))))


def pair_agreement(a: set[tuple[int, str]], b: set[tuple[int, str]]) -> dict[str, float]:
    """How two sets of reached (subscription, paper) pairs agree."""
    union = a | b
    return {
        "only_a": float(len(a - b)),
        "only_b": float(len(b - a)),
        "both": float(len(a & b)),
        "jaccard": len(a & b) / len(union) if union else 1.0,
    }


def verdict(diff: float, tolerance: float = TOLERANCE) -> str:
    """``pass`` when the candidate's mean nDCG is at most ``tolerance`` below the reference's."""
    return "pass" if diff >= -tolerance else "FAIL"


# one backend through the stack --------------------------------------------------
def queries_for(ev: Evaluation, rows: list[dict[str, Any]], n: int, seed: int) -> list[str]:
    """Titles of ``n`` papers that are neither seeds nor candidates (not in the index)."""
    indexed = set(ev.candidates) | {x for s in ev.subscriptions for x in s.seeds}
    pool = sorted(r["arxiv_id"] for r in rows if r["arxiv_id"] not in indexed)
    random.Random(seed).shuffle(pool)
    return [" ".join(ev.papers[i]["title"].split()) for i in pool[:n]]


def read_alerts(url: str, topic: str, expect: int, timeout: float = 120.0) -> list[dict[str, Any]]:
    """Every alert on the topic (from the beginning), until ``expect`` arrived."""
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=url, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            deadline = asyncio.get_running_loop().time() + timeout
            while len(out) < expect and asyncio.get_running_loop().time() < deadline:
                batch = await consumer.getmany(timeout_ms=500, max_records=10_000)
                for records in batch.values():
                    out.extend(json.loads(r.value) for r in records if r.value)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(go())


def run_backend(
    ev: Evaluation,
    backend: str,
    queries: list[str],
    workdir: Path,
    k: int,
    sparse_limit: int | None,
) -> dict[str, Any]:
    """Index, subscribe, publish, read back: the raw result of one backend."""
    extra_env = {"ASTRO_BACKEND": backend.split("#")[0]}
    if sparse_limit is not None:
        extra_env["ASTRO_ALERT_SPARSE_LIMIT"] = str(sparse_limit)
    print(f"  [{backend}]", flush=True)
    with subscribed_stack(ev, workdir, prefix="parity", extra_env=extra_env) as (
        worker,
        broker,
        sub_ids,
        timings,
    ):
        rankings = read_rankings(worker, sub_ids, k)
        published = int(worker.metric("astrostream_alerts_total"))
        model_version = worker.get("/stats")[1].get("model_version")
        searches = []
        for q in queries:
            status, body = worker.request("GET", "/search?" + _query(q, 10))
            if status != 200:
                raise RuntimeError(f"GET /search: {status} {body}")
            searches.append([r["arxiv_id"] for r in body["results"]])
        index = {sub_id: n for n, sub_id in enumerate(sub_ids)}
        pairs = {}
        for alert in read_alerts(broker.bootstrap, "parity.alerts", published):
            best = max((m["score"] for m in alert.get("matches") or []), default=None)
            key = f"{index[alert['subscription_id']]}|{alert['arxiv_id']}"
            pairs[key] = [alert.get("relevance"), alert.get("score"), best]
        return {
            "backend": backend,
            "model_version": model_version,
            "sparse_limit": sparse_limit,
            "subscriptions": len(ev.subscriptions),
            "candidates": len(ev.candidates),
            "rankings": rankings,
            "alerts_published": published,
            "pairs": pairs,
            "queries": queries,
            "search": searches,
            "timings": timings,
        }


def _query(text: str, limit: int) -> str:
    from urllib.parse import urlencode

    return urlencode({"q": text, "limit": limit})


# comparison --------------------------------------------------------------------
def compare(ev: Evaluation, runs: list[dict[str, Any]], k: int) -> None:
    ref = runs[0]
    n_pairs = len(ev.subscriptions) * len(ev.candidates)
    ref_n, ref_r = per_subscription(ev, ref["rankings"], k)
    print(f"\n{'backend':22s} nDCG@{k:<3d} Recall@{k:<3d} reached pairs   alerts  candidates s")
    for run in runs:
        n, r = per_subscription(ev, run["rankings"], k)
        print(
            f"{run['backend']:22s} {n.mean():.4f}   {r.mean():.4f}    "
            f"{len(run['pairs']) / n_pairs:6.1%}  {run['alerts_published']:8d}  "
            f"{run['timings']['candidates_s']:6.0f}"
        )
    for run in runs[1:]:
        name = run["backend"]
        n, r = per_subscription(ev, run["rankings"], k)
        diff = float(n.mean() - ref_n.mean())
        lo, hi = paired_ci(n, ref_n)
        rlo, rhi = paired_ci(r, ref_r)
        same = sum(a == b for a, b in zip(run["rankings"], ref["rankings"], strict=True))
        print(
            f"\n{name} - {ref['backend']}: nDCG@{k} {diff:+.4f} (95% CI {lo:+.4f} .. {hi:+.4f}) "
            f"-> {verdict(diff)} (tolerance -{TOLERANCE}); Recall@{k} "
            f"{float(r.mean() - ref_r.mean()):+.4f} (95% CI {rlo:+.4f} .. {rhi:+.4f})"
        )
        print(
            f"  identical top-{k} lists: {same}/{len(ev.subscriptions)}; "
            f"better/level/worse nDCG on {(n > ref_n).sum()}/{(n == ref_n).sum()}/"
            f"{(n < ref_n).sum()} subscriptions"
        )
        a, b = set(ref["pairs"]), set(run["pairs"])
        agree = pair_agreement(
            {_pair(p) for p in a},
            {_pair(p) for p in b},
        )
        print(
            f"  reached pairs: both {agree['both']:.0f}, only {ref['backend']} "
            f"{agree['only_a']:.0f}, only {name} {agree['only_b']:.0f} "
            f"(Jaccard {agree['jaccard']:.4f})"
        )
        common = sorted(a & b)
        rel = [(ref["pairs"][p][0], run["pairs"][p][0]) for p in common]
        same_rel = sum(x == y for x, y in rel)
        dense = np.array(
            [
                (ref["pairs"][p][2], run["pairs"][p][2])
                for p in common
                if ref["pairs"][p][2] is not None and run["pairs"][p][2] is not None
            ],
            dtype=float,
        )
        if len(dense):
            delta = np.abs(dense[:, 0] - dense[:, 1])
            print(
                f"  common pairs with the same relevance: {same_rel}/{len(common)}; top "
                f"evidence cosine |diff| mean {delta.mean():.4f}, p99 "
                f"{np.percentile(delta, 99):.4f}, max {delta.max():.4f}"
            )
        overlaps = [
            topk_overlap(x, y, 10) for x, y in zip(ref["search"], run["search"], strict=True)
        ]
        if overlaps:
            print(
                f"  /search top-10 overlap on {len(overlaps)} titles: mean "
                f"{np.mean(overlaps):.3f}, min {min(overlaps):.1f}, identical "
                f"{sum(o == 1.0 for o in overlaps)}"
            )


def _pair(key: str) -> tuple[int, str]:
    sub, arxiv_id = key.split("|", 1)
    return int(sub), arxiv_id


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument(
        "--backends",
        default="torch,onnx-int8",
        help="ASTRO_BACKEND values, first = reference; NAME#2 reruns NAME",
    )
    add_evaluation_arguments(parser, subscriptions=120, candidates=600, split="dev")
    parser.add_argument("--queries", type=int, default=100, help="/search titles to compare")
    parser.add_argument(
        "--sparse-limit", type=int, help="ASTRO_ALERT_SPARSE_LIMIT (0: dense reach only)"
    )
    parser.add_argument("--out", type=Path, default=Path("/tmp/backend-parity"))
    parser.add_argument("--fresh", action="store_true", help="rerun backends already saved")
    args = parser.parse_args(argv)

    rows = load(args.data)
    ev = evaluation_from(args, rows)
    seeds = {x for s in ev.subscriptions for x in s.seeds}
    print(
        f"{args.split} split: {len(ev.subscriptions)} subscriptions ({len(seeds)} seed papers), "
        f"{len(ev.candidates)} candidates from {args.cutoff} on",
        flush=True,
    )
    queries = queries_for(ev, rows, args.queries, args.seed)
    config = {
        k: getattr(args, k)
        for k in ("subscriptions", "candidates", "split", "cutoff", "max_seeds", "seed", "k")
    }
    args.out.mkdir(parents=True, exist_ok=True)
    runs = []
    for backend in args.backends.split(","):
        suffix = "" if args.sparse_limit is None else f"-sparse{args.sparse_limit}"
        path = args.out / f"{backend}{suffix}.json"
        saved = json.loads(path.read_text()) if path.exists() and not args.fresh else None
        if saved is not None and saved.get("config") == config:
            print(f"  [{backend}] reusing {path}", flush=True)
            runs.append(saved)
            continue
        workdir = Path(tempfile.mkdtemp(prefix=f"parity-{backend}-"))
        try:
            started = time.perf_counter()
            run = run_backend(ev, backend, queries, workdir, args.k, args.sparse_limit)
            run["config"] = config
            run["timings"]["total_s"] = time.perf_counter() - started
        finally:
            shutil.rmtree(workdir, ignore_errors=True)
        path.write_text(json.dumps(run))
        print(f"  [{backend}] {run['timings']['total_s']:.0f}s, saved {path}", flush=True)
        runs.append(run)
    print(f"\nload average {os.getloadavg()[0]:.1f}")
    compare(ev, runs, args.k)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
