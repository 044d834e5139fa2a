"""HTTP API handlers (search, similar, stats, health, readiness), independent of the web framework."""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.errors import AstrostreamError, NotFound
from services.schemas import split_arxiv_id
from services.text import normalise
from services.vectorstore import Hit, VectorStore, category_since_filter

log = logging.getLogger(__name__)

MAX_QUERY_CHARS = 2000
MAX_LIMIT = 100
EVIDENCE_PER_PAPER = 3


class ApiError(AstrostreamError):
    """A request error with its HTTP status; the message is shown to the client."""

    def __init__(self, status: int, message: str) -> None:
        super().__init__(message)
        self.status = status
        self.message = message


def int_param(query: Mapping[str, str], name: str, default: int, lo: int, hi: int) -> int:
    raw = query.get(name)
    if raw is None or raw == "":
        return default
    try:
        value = int(raw)
    except ValueError:
        raise ApiError(400, f"{name} must be an integer, got {raw!r}") from None
    if not lo <= value <= hi:
        raise ApiError(400, f"{name} must be between {lo} and {hi}, got {value}")
    return value


def date_param(query: Mapping[str, str], name: str) -> str | None:
    raw = query.get(name)
    if not raw:
        return None
    try:
        return (
            dt.date.fromisoformat(raw[:10]).isoformat()
            if len(raw) <= 10
            else (dt.datetime.fromisoformat(raw).isoformat())
        )
    except ValueError:
        raise ApiError(400, f"{name} must be an ISO date like 2025-04-17, got {raw!r}") from None


def bare_id(arxiv_id: str) -> str:
    """The arXiv id of a path without its version; 400 when it is not an arXiv id."""
    try:
        return split_arxiv_id(arxiv_id)[0]
    except ValueError as exc:
        raise ApiError(400, str(exc)) from None


def filters(query: Mapping[str, str]) -> dict[str, str | None]:
    category = (query.get("category") or "").strip() or None
    if category is not None and len(category) > 64:
        raise ApiError(400, "category is too long (max 64 characters)")
    return {"category": category, "since": date_param(query, "since")}


@dataclass(frozen=True)
class Ranked:
    arxiv_id: str
    title: str
    score: float
    payload: dict[str, Any]
    sentences: list[tuple[str, float]]


def merge_hits(paper_hits: list[Hit], sentence_hits: list[Hit], limit: int) -> list[Ranked]:
    """Rank papers by max(paper-vector score, best sentence score), keeping sentence evidence."""
    best: dict[str, float] = {}
    payloads: dict[str, dict[str, Any]] = {}
    evidence: dict[str, list[tuple[str, float]]] = {}
    for hit in paper_hits:
        aid = str(hit.payload.get("arxiv_id"))
        best[aid] = max(best.get(aid, -1.0), hit.score)
        payloads[aid] = hit.payload
    for hit in sentence_hits:
        aid = str(hit.payload.get("arxiv_id"))
        best[aid] = max(best.get(aid, -1.0), hit.score)
        payloads.setdefault(aid, hit.payload)
        found = evidence.setdefault(aid, [])
        if len(found) < EVIDENCE_PER_PAPER:
            found.append((str(hit.payload.get("text", "")), hit.score))
    order = sorted(best, key=lambda a: best[a], reverse=True)[:limit]
    return [
        Ranked(a, str(payloads[a].get("title", "")), best[a], payloads[a], evidence.get(a, []))
        for a in order
    ]


def render(ranked: list[Ranked]) -> dict[str, Any]:
    return {
        "results": [
            {
                "arxiv_id": r.arxiv_id,
                "version": r.payload.get("version"),
                "title": r.title,
                "score": round(r.score, 6),
                "categories": r.payload.get("categories", []),
                "published": r.payload.get("published"),
                "sentences": [{"text": t, "score": round(s, 6)} for t, s in r.sentences],
            }
            for r in ranked
        ]
    }


class Api:
    """The read side of the HTTP API; write endpoints (subscriptions) live with the alerts."""

    def __init__(self, store: VectorStore, encoder: Any) -> None:
        self.store = store
        self.encoder = encoder

    async def rank(
        self,
        vector: np.ndarray,
        limit: int,
        category: str | None,
        since: str | None,
        exclude: str | None = None,
    ) -> list[Ranked]:
        store = self.store
        flt = category_since_filter(category, since, exclude)
        papers = await store.run(store.search, store.papers, vector.tolist(), limit * 3, flt)
        sentences = await store.run(store.search, store.sentences, vector.tolist(), limit * 10, flt)
        return merge_hits(papers, sentences, limit)

    async def search(self, query: Mapping[str, str]) -> dict[str, Any]:
        text = (query.get("q") or "").strip()
        if not text:
            raise ApiError(400, "q is required: the text to search for")
        if len(text) > MAX_QUERY_CHARS:
            raise ApiError(400, f"q is too long ({len(text)} characters, max {MAX_QUERY_CHARS})")
        limit = int_param(query, "limit", 10, 1, MAX_LIMIT)
        vector = (await self.encoder.aencode([normalise(text)]))[0]
        return render(await self.rank(vector, limit, **filters(query)))

    async def similar(self, arxiv_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        bare = bare_id(arxiv_id)
        limit = int_param(query, "limit", 10, 1, MAX_LIMIT)
        store = self.store
        found = await store.run(store.papers_by_id, [bare], with_vectors=True)
        record = found.get(bare)
        if record is None or record.vector is None:
            raise NotFound(f"paper {bare} is not indexed")
        vector = np.asarray(record.vector, dtype=np.float32)
        return render(await self.rank(vector, limit, exclude=bare, **filters(query)))

    async def paper(self, arxiv_id: str) -> dict[str, Any]:
        """An indexed paper's payload and its sentences, in order."""
        bare = bare_id(arxiv_id)
        store = self.store
        record = (await store.run(store.papers_by_id, [bare])).get(bare)
        if record is None:
            raise NotFound(f"paper {bare} is not indexed")
        sentences = await store.run(store.sentences_of, bare, with_vectors=False)
        return {
            **(record.payload or {}),
            "sentences": [
                {
                    "sentence_index": (r.payload or {}).get("sentence_index"),
                    "version": (r.payload or {}).get("version"),
                    "text": (r.payload or {}).get("text"),
                }
                for r in sentences
            ],
        }

    async def stats(self, subscriptions: int | None = None) -> dict[str, Any]:
        store = self.store
        aliases = await store.run(store.aliases)
        papers = await store.run(store.count, store.papers)
        sentences = await store.run(store.count, store.sentences)
        if subscriptions is None:
            # Subscriptions, not their interest vectors (one subscription has several).
            from services.subscriptions import count_subscriptions

            subscriptions = await store.run(count_subscriptions, store)
        return {
            "papers": papers,
            "sentences": sentences,
            "subscriptions": subscriptions,
            "model_version": store.model_version,
            "collections": {
                "aliases": aliases,
                "sentences": store.sentences,
                "papers": store.papers,
                "subscriptions": store.subscriptions,
            },
        }
