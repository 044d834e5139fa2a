"""Web page render times (p50/p95) at 10k papers and 100 subscriptions: home, alerts, search.

Qdrant runs in memory in this process and is filled directly (no broker, no model): real
metadata from ``tests/data/papers-1k.jsonl.gz`` repeated under fresh arXiv ids, random
unit vectors for papers and sentences, and stored alerts with evidence for every
subscription. The pages are served by the real web app (``services.web``) on a local aiohttp
server and fetched over HTTP, so a number is what a browser waits for, minus the network.

    nice -n 10 .venv/bin/python -m benchmarks.web                # 10k papers, 100 subscriptions
    .venv/bin/python -m benchmarks.web --papers 2000 --rounds 20   # quicker
"""

from __future__ import annotations

import argparse
import asyncio
import gzip
import hashlib
import json
import statistics
import sys
import tempfile
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import numpy as np
from aiohttp import ClientSession, web
from aiohttp.test_utils import TestServer

from services.alerts.feedback import FeedbackStore
from services.alerts.lifecycle import SubscriptionService
from services.alerts.owners import mint_secret, owner_id
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionStore
from services.core.ids import alert_id, paper_point_id, sentence_point_id
from services.core.settings import load_settings
from services.core.text import sentences_for_embedding
from services.http.reads import Reads
from services.http.views import web_application_options
from services.store.binding import Binding
from services.store.vectorstore import VectorStore
from services.web.pages import Pages, register_web
from services.web.security import OWNER_COOKIE

DATA = Path(__file__).resolve().parent.parent / "tests" / "data"
DIM = 384


class HashEncoder:
    """Deterministic unit vectors from a hash of the text (no model)."""

    name = "hash"
    device = "cpu"

    def __init__(self, dim: int = DIM) -> None:
        self.dim = dim

    def vector(self, text: str) -> np.ndarray:
        seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:8], "little")
        v = np.random.default_rng(seed).standard_normal(self.dim).astype(np.float32)
        return v / np.linalg.norm(v)

    async def aencode(self, texts: list[str]) -> np.ndarray:
        return np.stack([self.vector(t) for t in texts]) if texts else np.zeros((0, self.dim))

    def close(self) -> None:
        pass


def load_records(path: Path = DATA / "papers-1k.jsonl.gz") -> list[dict[str, Any]]:
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt") as lines:
        return [json.loads(line) for line in lines if line.strip()]


def index_papers(
    store: VectorStore, encoder: HashEncoder, records: Iterable[dict[str, Any]]
) -> int:
    """Write paper and sentence points as the embed stage would (vectors from ``encoder``)."""
    papers: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    sentences: list[tuple[str, np.ndarray, dict[str, Any]]] = []
    for r in records:
        version = int(r.get("version", 1))
        payload = {
            "arxiv_id": r["arxiv_id"],
            "version": version,
            "title": r["title"],
            "authors": r.get("authors", []),
            "categories": r.get("categories", []),
            "primary_category": (r.get("categories") or [None])[0],
            "published": r.get("published") or r.get("announced"),
            "model_version": store.model_version,
        }
        texts = [shown for shown, _ in sentences_for_embedding(r["abstract"], 8)]
        for i, text in enumerate(texts):
            sentences.append(
                (
                    sentence_point_id(r["arxiv_id"], version, i),
                    encoder.vector(text),
                    {**payload, "sentence_index": i, "text": text},
                )
            )
        papers.append((paper_point_id(r["arxiv_id"]), encoder.vector(r["title"]), payload))
    for collection, rows in ((store.papers, papers), (store.sentences, sentences)):
        for start in range(0, len(rows), 2000):
            chunk = rows[start : start + 2000]
            store.upsert(
                collection,
                [c[0] for c in chunk],
                np.stack([c[1] for c in chunk]),
                [c[2] for c in chunk],
            )
    return len(papers)


def many_records(base: list[dict[str, Any]], count: int) -> list[dict[str, Any]]:
    """``count`` papers: ``base`` as is, then its metadata again under new ids."""
    out = list(base[:count])
    n = 0
    while len(out) < count:
        r = base[n % len(base)]
        out.append({**r, "arxiv_id": f"2701.{10000 + n:05d}"})
        n += 1
    return out


def alert_payloads(
    sub_id: str, interests: list[str], papers: list[dict[str, Any]], rng: np.random.Generator
) -> list[dict[str, Any]]:
    out = []
    for rank, r in enumerate(papers):
        sentences = [s for s, _ in sentences_for_embedding(r["abstract"], 3)] or [r["title"]]
        created = time.time() - rank * 3600
        out.append(
            {
                "alert_id": alert_id(sub_id, r["arxiv_id"]),
                "subscription_id": sub_id,
                "arxiv_id": r["arxiv_id"],
                "version": 1,
                "title": r["title"],
                "score": float(rng.uniform(0.05, 0.6)),
                "relevance": float(rng.uniform(0.8, 1.0)),
                "matches": [
                    {
                        "sentence": s,
                        "sentence_index": i,
                        "interest": interests[i % len(interests)],
                        "score": float(rng.uniform(0.3, 0.8)),
                    }
                    for i, s in enumerate(sentences[:2])
                ],
                "model_version": "bench",
                "created_at": time.strftime("%Y-%m-%dT%H:%M:%S+00:00", time.gmtime(created)),
                "digest": "x",
                "created_ts": created,
            }
        )
    return out


class Site:
    """The web app over an in-memory Qdrant, for this benchmark and the unit tests."""

    def __init__(self, folder: Path, dim: int = DIM) -> None:
        settings = load_settings(qdrant_path=":memory:", data_dir=folder)
        self.store = VectorStore(settings, dim, "bench")
        self.store.ensure_collections()
        self.encoder = HashEncoder(dim)
        binding = Binding(self.encoder, self.store)
        self.subs = SubscriptionStore(binding)
        self.subs.ensure_sync()
        self.service = SubscriptionService(self.subs)
        self.feedback = FeedbackStore(binding)
        self.feedback.ensure_sync()
        self.app = web.Application(**web_application_options())

        async def ready() -> dict[str, str]:
            return {}

        self.pages: Pages = register_web(
            self.app,
            service=self.service,
            feedback=self.feedback,
            reads=Reads(binding),
            readiness=ready,
            data_dir=folder,
            allow_private=False,
            roles=frozenset({"api", "embed", "alerts"}),
        )

    async def subscribe(self, secret: str, body: dict[str, Any]) -> dict[str, Any]:
        return await self.service.create(parse_request(body), False, owner=owner_id(secret))


def percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    p95 = ordered[min(len(ordered) - 1, round(0.95 * (len(ordered) - 1)))]
    return statistics.median(ordered), p95


async def run(papers: int, subscriptions: int, alerts: int, rounds: int) -> dict[str, Any]:
    rng = np.random.default_rng(7)
    records = many_records(load_records(), papers)
    with tempfile.TemporaryDirectory() as folder:
        site = Site(Path(folder))
        started = time.perf_counter()
        index_papers(site.store, site.encoder, records)
        print(f"indexed {len(records)} papers in {time.perf_counter() - started:.0f} s", flush=True)
        owners = [mint_secret() for _ in range(max(1, subscriptions // 10))]
        first: dict[str, Any] = {}
        for n in range(subscriptions):
            secret = owners[n % len(owners)]
            # Seed papers on each owner's first subscription only: resolving them scans the
            # sentences, which local mode does in Python (slow to build, not what is measured).
            seeds = (
                [records[int(i)]["arxiv_id"] for i in rng.choice(len(records), 2, replace=False)]
                if secret not in first
                else []
            )
            sub = await site.subscribe(
                secret, {"name": f"bench {n}", "queries": [f"topic {n}"], "arxiv_ids": seeds}
            )
            chosen = [records[int(i)] for i in rng.choice(len(records), alerts, replace=False)]
            payloads = alert_payloads(sub["id"], [f"topic {n}", *seeds], chosen, rng)
            await site.store.run(site.subs.put_alerts_sync, payloads)
            first.setdefault(secret, sub)
            if (n + 1) % 10 == 0:
                print(
                    f"{n + 1} subscriptions with their alerts, {time.perf_counter() - started:.0f} s",
                    flush=True,
                )
        built = time.perf_counter() - started
        secret = owners[0]
        sub_id = first[secret]["id"]
        pages = {
            "home": "/",
            "alerts (score)": f"/app/subscriptions/{sub_id}?sort=score",
            "alerts (newest)": f"/app/subscriptions/{sub_id}?sort=time&page=2",
            "search": "/app/search?q=star+formation+in+molecular+clouds",
            "search (category)": "/app/search?q=dark+matter+halo&category=astro-ph.GA",
            "search (since)": "/app/search?q=dark+matter+halo&since=2025-01-01",
            "status": "/app/status",
        }
        # Local mode evaluates a date range in Python on every point: a few requests suffice.
        slow = {"search (since)": 3}
        print(
            f"web pages at {papers} papers, {subscriptions} subscriptions, {alerts} alerts each "
            f"(built in {built:.0f} s):",
            flush=True,
        )
        server = TestServer(site.app, host="127.0.0.1")
        await server.start_server()
        times: dict[str, list[float]] = {name: [] for name in pages}
        try:
            async with ClientSession(cookies={OWNER_COOKIE: secret}) as http:
                for name, path in pages.items():
                    for n in range(slow.get(name, rounds) + 2):
                        t0 = time.perf_counter()
                        async with http.get(server.make_url(path)) as response:
                            body = await response.text()
                        elapsed = time.perf_counter() - t0
                        assert response.status == 200, (path, response.status, body[:300])
                        if n >= 2:  # the first two warm caches
                            times[name].append(elapsed * 1000)
                    p50, p95 = percentiles(times[name])
                    print(
                        f"  {name:<20} p50 {p50:7.1f} ms   p95 {p95:7.1f} ms"
                        f"   ({len(times[name])} requests)",
                        flush=True,
                    )
        finally:
            await server.close()
            site.store.close()
    result: dict[str, Any] = {}
    for name, samples in times.items():
        p50, p95 = percentiles(samples)
        result[name] = {"p50_ms": round(p50, 1), "p95_ms": round(p95, 1), "n": len(samples)}
    return result


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=10_000)
    parser.add_argument("--subscriptions", type=int, default=100)
    parser.add_argument("--alerts", type=int, default=60, help="stored alerts per subscription")
    parser.add_argument("--rounds", type=int, default=20)
    args = parser.parse_args(argv)
    asyncio.run(run(args.papers, args.subscriptions, args.alerts, args.rounds))
    return 0


if __name__ == "__main__":
    sys.exit(main())
