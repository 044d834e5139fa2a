"""The read side of the HTTP API (search, similar, paper, stats), independent of the web framework."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from services.alerts.subscriptions import count_subscriptions
from services.core.errors import InvalidRequest, NotFound
from services.core.text import normalise
from services.http.params import bare_id, filters, int_param
from services.models.encoder import resolve_model
from services.store.binding import Binding
from services.store.vectorstore import Hit, PaperFilter

log = logging.getLogger(__name__)

EVIDENCE_PER_PAPER = 3


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


MAX_QUERY_CHARS = 2000
MAX_LIMIT = 100


class Reads:
    """Search, similar papers, a paper, stats: everything the API reads from Qdrant.

    Args:
        binding: the serving model and its collections (a rollout swaps it).
    """

    def __init__(self, binding: Binding) -> None:
        self.binding = binding

    async def rank(
        self,
        vector: np.ndarray,
        limit: int,
        category: str | None,
        since: str | None,
        exclude: str | None = None,
    ) -> list[Ranked]:
        store = self.binding.store
        where = PaperFilter(category, since, exclude)
        query = vector.tolist()
        papers = await store.run(store.search_where, store.papers, query, limit * 3, where)
        sentences = await store.run(store.search_where, store.sentences, query, limit * 10, where)
        return merge_hits(papers, sentences, limit)

    async def search(self, query: Mapping[str, str]) -> dict[str, Any]:
        text = (query.get("q") or "").strip()
        if not text:
            raise InvalidRequest("q is required: the text to search for")
        if len(text) > MAX_QUERY_CHARS:
            raise InvalidRequest(f"q is too long ({len(text)} characters, max {MAX_QUERY_CHARS})")
        limit = int_param(query, "limit", 10, 1, MAX_LIMIT)
        checked = filters(query)  # refused before the (slow) encode
        vector = (await self.binding.encoder.aencode([normalise(text)]))[0]
        return render(await self.rank(vector, limit, **checked))

    async def similar(self, arxiv_id: str, query: Mapping[str, str]) -> dict[str, Any]:
        bare = bare_id(arxiv_id)
        limit = int_param(query, "limit", 10, 1, MAX_LIMIT)
        checked = filters(query)
        store = self.binding.store
        found = await store.run(store.papers_by_id, [bare], with_vectors=True)
        record = found.get(bare)
        if record is None or record.vector is None:
            raise NotFound(f"paper {bare} is not indexed")
        vector = np.asarray(record.vector, dtype=np.float32)
        return render(await self.rank(vector, limit, exclude=bare, **checked))

    async def paper(self, arxiv_id: str) -> dict[str, Any]:
        """An indexed paper's payload and its sentences, in order."""
        bare = bare_id(arxiv_id)
        store = self.binding.store
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
        store = self.binding.store
        aliases = await store.run(store.aliases)
        papers = await store.run(store.count, store.papers)
        sentences = await store.run(store.count, store.sentences)
        if subscriptions is None:
            # Subscriptions, not their interest vectors (one subscription has several).
            subscriptions = await store.run(count_subscriptions, store)
        return {
            "papers": papers,
            "sentences": sentences,
            "subscriptions": subscriptions,
            "model_version": store.model_version,
            # What a downstream tool loads to embed its queries: SentenceTransformer(model_path).
            "model": self.binding.encoder.name,
            "model_path": resolve_model(self.binding.encoder.name),
            "collections": {
                "aliases": aliases,
                "sentences": store.sentences,
                "papers": store.papers,
                "subscriptions": store.subscriptions,
            },
        }
