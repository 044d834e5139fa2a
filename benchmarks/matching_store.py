"""The stores of ``benchmarks/matching.py``: indexed papers and N subscriptions, built
through the product's own code (see that module's docstring)."""

from __future__ import annotations

import collections
import random
import shutil
import time
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

CHUNK = 4096  # interest points per upsert while building


def draw_subscriptions(
    earlier: Sequence[Any], n: int, seed: int, max_seeds: int = 3
) -> list[tuple[str, list[str]]]:
    """``n`` (author, seed arXiv ids): an author of the earlier papers and 1-3 of theirs."""
    rng = random.Random(seed)
    by_author: dict[str, list[str]] = collections.defaultdict(list)
    for p in earlier:
        if len(p.authors) <= 25:
            for author in p.authors:
                by_author[author].append(p.arxiv_id)
    authors = sorted(by_author)
    subs: list[tuple[str, list[str]]] = []
    while len(subs) < n:
        rng.shuffle(authors)
        for author in authors[: n - len(subs)]:
            own = by_author[author]
            subs.append((author, rng.sample(own, min(len(own), rng.randint(1, max_seeds)))))
    return subs


def open_store(path: Path, dim: int, version: str) -> Any:
    from services.core.settings import load_settings
    from services.store.vectorstore import VectorStore

    settings = load_settings(qdrant_path=path, data_dir=path.parent)
    return VectorStore(settings, dim, version)


def index_papers(store: Any, corpus: Any, papers: Sequence[Any]) -> None:
    """The papers' sentence and paper points, as the embed stage writes them."""
    from services.core.ids import content_digest, sentence_point_id
    from services.embed.pipeline import paper_payload, sentence_payload
    from services.embed.points import PaperSource, build_points

    splits = {p.arxiv_id: s for p, s in zip(corpus.papers, corpus.splits, strict=True)}
    for start in range(0, len(papers), 256):
        part = papers[start : start + 256]
        sources = [
            PaperSource(
                p.arxiv_id,
                {
                    **paper_payload(p, corpus.version),
                    "digest": content_digest(p.title, p.abstract),
                    "sentence_count": len(splits[p.arxiv_id]),
                },
                [
                    (
                        sentence_point_id(p.arxiv_id, p.version, i),
                        sentence_payload(p, i, display, corpus.version),
                    )
                    for i, (display, _) in enumerate(splits[p.arxiv_id])
                ],
            )
            for p in part
        ]
        vectors = np.vstack([corpus.vectors[p.arxiv_id] for p in part])
        points = build_points(sources, vectors, corpus.version)
        store.upsert(
            store.sentences, points.sentence_ids, points.sentence_vectors, points.sentence_payloads
        )
        store.upsert(
            store.papers,
            points.paper_ids,
            points.paper_vectors,
            points.paper_payloads,
            points.paper_lexical,
        )


def build_store(
    path: Path, corpus: Any, earlier: Sequence[Any], subs: list[tuple[str, list[str]]]
) -> dict[str, Any]:
    """A fresh store at ``path``: the earlier papers, then the subscriptions."""
    from services.alerts import lexicon
    from services.alerts.subscriptions import (
        SubscriptionMeta,
        SubscriptionRequest,
        SubscriptionStore,
        build_interests,
        new_feed_token,
        resolve_seeds,
    )
    from services.core.clock import utcnow
    from services.store.binding import Binding

    dim = next(iter(corpus.vectors.values())).shape[1]
    base = path.parent.parent / f"papers-{len(earlier)}"  # the indexed papers, built once
    if not (base / "done").exists():
        if base.exists():
            shutil.rmtree(base)
        base.mkdir(parents=True)
        store = open_store(base / "edge", dim, corpus.version)
        store.ensure_collections()
        started = time.perf_counter()
        index_papers(store, corpus, earlier)
        store.close()
        print(f"  indexed {len(earlier):,} papers in {time.perf_counter() - started:.0f} s")
        (base / "done").write_text("")
    if path.exists():
        shutil.rmtree(path)
    shutil.copytree(base / "edge", path)
    (path / ".lock").unlink(missing_ok=True)
    store = open_store(path, dim, corpus.version)
    store.ensure_collections()
    subs_store = SubscriptionStore(Binding(None, store), lexicon.prior("bundled"))  # type: ignore[arg-type]
    subs_store.ensure_sync()
    started = time.perf_counter()
    seeds = resolve_seeds(store, sorted({a for _, own in subs for a in own}))
    empty = np.zeros((0, dim), np.float32)
    ids: list[str] = []
    rows: list[np.ndarray] = []
    payloads: list[dict[str, Any]] = []
    lexical: list[Any] = []
    metas: list[tuple[str, dict[str, Any]]] = []
    points = 0

    def flush() -> None:
        if ids:
            store.upsert(store.subscriptions, ids, np.vstack(rows), payloads, lexical)
            subs_store.meta_table.put_many(metas)
        for part in (ids, rows, payloads, lexical, metas):
            part.clear()

    for n, (author, own) in enumerate(subs):
        sub_id = uuid.uuid5(uuid.NAMESPACE_URL, f"matching:{n}:{author}").hex
        request = SubscriptionRequest(name=author, arxiv_ids=own)
        built = build_interests(sub_id, request, seeds, empty, subs_store.prior)
        meta = SubscriptionMeta(
            id=sub_id,
            created_at=utcnow().isoformat(),
            interests=built.interests,
            points=len(built.ids),
            model_version=store.model_version,
            feed_token=new_feed_token(),
            name=request.name,
            threshold=request.threshold,
            arxiv_ids=request.arxiv_ids,
        )
        ids.extend(built.ids)
        rows.append(built.vectors)
        payloads.extend(built.payloads)
        lexical.extend(built.lexical)
        metas.append((sub_id, meta.payload()))
        points += len(built.ids)
        if len(ids) >= CHUNK:
            flush()
        if (n + 1) % 10_000 == 0:
            print(f"  {n + 1:,} subscriptions, {points:,} interest points", flush=True)
    flush()
    store.client.optimize(store.subscriptions)
    built_s = time.perf_counter() - started
    print(
        f"  {len(subs):,} subscriptions, {points:,} interest points in {built_s:.0f} s",
        flush=True,
    )
    store.close()
    return {"subscriptions_s": built_s, "interest_points": points}
