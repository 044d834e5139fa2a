"""Model rollout: re-embed the corpus into a new versioned collection, then switch the aliases."""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from typing import Any

from prometheus_client import Counter, Gauge

from services.core import metrics
from services.core.ids import NAMESPACE
from services.core.schemas import ModelUpdate
from services.core.settings import Settings
from services.core.text import normalise
from services.embed.points import PaperSource, build_points, texts_of
from services.models.encoder import (
    Encoder,
    backend_version,
    derive_model_version,
    load_encoder,
    pick_backend,
    pick_device,
)
from services.store import models as qm
from services.store.binding import Binding
from services.store.points import interest_page, lexical_of
from services.store.tables import PayloadTable
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)

ROLLOUT_PAPERS = Gauge("astrostream_rollout_papers_done", "Papers re-embedded by the rollout.")
ROLLOUT_TOTAL = Gauge("astrostream_rollout_papers_target", "Papers the rollout has to re-embed.")
ROLLOUT_ACTIVE = Gauge("astrostream_rollout_active", "1 while a model rollout runs.")
ROLLOUTS = Counter("astrostream_rollouts", "Finished model rollouts.", ["outcome"])

PAGE = 32


def registry_name(store: VectorStore) -> str:
    return f"{store.settings.collection_prefix}_models"


def collection_tag(update: ModelUpdate, backend: str = "torch") -> str:
    """The version tag of the update's collections: what a worker started with
    ``ASTRO_MODEL=<update.path>`` and the same ``ASTRO_BACKEND`` derives (the trainer's
    ``<name>-<version>`` directory, plus the backend's suffix)."""
    return backend_version(derive_model_version(update.path), backend)


def register_model(store: VectorStore, update: ModelUpdate, tag: str) -> None:
    """Remember where a version's model lives, so every worker can load it (payload only)."""
    table = PayloadTable(store, registry_name(store))
    table.ensure()
    table.put(registry_id(tag), {**update.model_dump(mode="json"), "rolled_out_at": time.time()})


def model_path(store: VectorStore, version: str) -> str | None:
    table = PayloadTable(store, registry_name(store))
    if not table.exists():
        return None
    found = table.get(registry_id(version))
    return str(found["path"]) if found else None


def registry_id(version: str) -> str:
    return str(uuid.uuid5(NAMESPACE, f"model:{version}"))


def version_of(collection: str | None) -> str | None:
    """``astro_papers__minilm-v2`` → ``minilm-v2``."""
    return collection.split("__", 1)[1] if collection and "__" in collection else None


class Rollout:
    """Moves a running worker to a new model without a gap in search.

    1. Load the new model; create its physical collections (aliases untouched).
    2. Re-embed every paper from the Qdrant payloads (titles and sentence texts) into them.
    3. Swap the worker's embed pipeline to the new model, so new papers land there too.
    4. Catch up on papers indexed in the old collections meanwhile; re-embed subscriptions.
    5. Switch all aliases in one request; point the API at the new collections.

    Search keeps answering from the old collections until step 5.

    Args:
        settings: device, batch size and sequence length of the new encoder.
        serving: what the API, subscriptions and alerts read (swapped in step 5).
        indexing: what the embed stage writes with (swapped in step 3).
    """

    def __init__(self, settings: Settings, serving: Binding, indexing: Binding) -> None:
        self.settings = settings
        self.serving = serving
        self.indexing = indexing
        self.lock = asyncio.Lock()
        # New models run on the same backend as the live one, so their tags agree.
        self.backend = pick_backend(settings.backend, pick_device(settings.device))

    async def run(self, update: ModelUpdate) -> bool:
        """Roll out ``update``; False when it is already the current version."""
        async with self.lock:
            old = self.serving.store
            tag = collection_tag(update, self.backend)
            if tag == old.model_version:
                log.info("model %s is already live", tag)
                return False
            ROLLOUT_ACTIVE.set(1)
            started = time.perf_counter()
            try:
                settings = self.settings
                encoder = await asyncio.to_thread(load_encoder, settings, update.path)
                new = old.sibling(tag, encoder.dim)
                await new.run(new.ensure_collections, set_alias=False)
                await new.run(register_model, new, update, tag)
                total = await old.run(old.count, old.papers)
                ROLLOUT_TOTAL.set(total)
                ROLLOUT_PAPERS.set(0)
                log.info(
                    "rollout to %s: re-embedding %d papers from %s",
                    tag,
                    total,
                    old.papers,
                )
                await self.copy(old, new, encoder)
                self.indexing.swap(encoder, new)
                await self.copy(old, new, encoder)
                await self.copy_subscriptions(old, new, encoder)
                await new.run(
                    new.switch_aliases,
                    {kind: new.physical(kind) for kind in ("sentences", "papers", "subscriptions")},
                )
                previous = self.serving.swap(encoder, new)
                metrics.describe_model(encoder, tag)
                if previous is not encoder:
                    previous.close()
                ROLLOUTS.labels("done").inc()
                log.info("rollout to %s done in %.1fs", tag, time.perf_counter() - started)
                return True
            except Exception:
                ROLLOUTS.labels("failed").inc()
                raise
            finally:
                ROLLOUT_ACTIVE.set(0)

    async def copy(self, old: VectorStore, new: VectorStore, encoder: Encoder) -> None:
        """Re-embed the papers of ``old`` that ``new`` lacks (or holds another text of).

        Skipping what is there makes a second pass cheap, a crashed rollout resumable and
        a follower worker's rollout (see ``follow_alias``) nearly free.
        """
        offset: Any = None
        while True:
            page, offset = await old.run(old.scroll_papers, offset, PAGE)
            papers = {str(r.payload["arxiv_id"]): r.payload for r in page if r.payload}
            if papers:
                have = await new.run(new.papers_by_id, list(papers))
                papers = {
                    a: p
                    for a, p in papers.items()
                    if a not in have or (have[a].payload or {}).get("digest") != p.get("digest")
                }
            if papers:
                await self.reembed(old, new, encoder, papers)
            if offset is None:
                return

    async def copy_subscriptions(
        self, old: VectorStore, new: VectorStore, encoder: Encoder
    ) -> None:
        """Re-embed every interest point (its payload keeps the text it came from).

        The sparse term vectors do not depend on the model: they are carried over as they are.
        """
        offset: Any = None
        carry = await old.run(old.has_lexical, "subscriptions")
        while True:
            page, offset = await old.run(interest_page, old, offset, 256, lexical=carry)
            if page:
                texts = [normalise(str((r.payload or {}).get("text", ""))) for r in page]
                vectors = await encoder.aencode(texts)
                await new.run(
                    new.upsert,
                    new.subscriptions,
                    [str(r.id) for r in page],
                    vectors,
                    [r.payload or {} for r in page],
                    [lexical_of(r) for r in page],
                )
            if offset is None:
                return

    async def reembed(
        self,
        old: VectorStore,
        new: VectorStore,
        encoder: Encoder,
        papers: dict[str, dict[str, Any]],
    ) -> None:
        records = await old.run(old.sentences_of_many, list(papers), with_vectors=False)
        by_paper: dict[str, list[qm.Record]] = {a: [] for a in papers}
        for record in records:
            by_paper[str((record.payload or {})["arxiv_id"])].append(record)
        sources = [
            PaperSource(
                aid,
                payload,
                [(str(r.id), r.payload or {}) for r in by_paper[aid]],
            )
            for aid, payload in papers.items()
        ]
        texts = texts_of(
            [normalise(str(payload.get("title", ""))) for payload in papers.values()],
            [
                [normalise(str((r.payload or {}).get("text", ""))) for r in by_paper[aid]]
                for aid in papers
            ],
        )
        vectors = await encoder.aencode(texts)
        points = build_points(sources, vectors, new.model_version)
        await new.run(
            new.upsert,
            new.sentences,
            points.sentence_ids,
            points.sentence_vectors,
            points.sentence_payloads,
        )
        await new.run(
            new.upsert,
            new.papers,
            points.paper_ids,
            points.paper_vectors,
            points.paper_payloads,
            points.paper_lexical,
        )
        ROLLOUT_PAPERS.inc(len(papers))
