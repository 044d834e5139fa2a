"""Publish again what ingest published but Qdrant does not hold: nothing queued is lost on restart.

Ingest marks a paper published once the broker acknowledged it. A broker that loses its topics
(the embedded Tansu on memory storage, stopped before the embed stage caught up) would lose those
papers for good; on start, the ingest role compares its state with the papers collection, page by
page, and re-publishes each paper that is missing there or held at a lower version. Writes
downstream are idempotent, so a paper still queued in a durable broker is only embedded twice.
"""

from __future__ import annotations

import asyncio
import logging
from dataclasses import dataclass

from services.core.schemas import Paper
from services.ingest.sources import PaperSink
from services.ingest.state import IngestState
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)

PAGE_SIZE = 500


@dataclass
class Reconciled:
    checked: int = 0
    republished: int = 0
    unrecoverable: int = 0  # missing, but the state predates stored papers


async def reconcile(
    state: IngestState, store: VectorStore, sink: PaperSink, *, page_size: int = PAGE_SIZE
) -> Reconciled:
    """Re-publish every paper of ``state`` that ``store``'s papers collection lacks (at that version).

    Reads the state and Qdrant ``page_size`` papers at a time, publishing each page's missing ones
    before reading the next, so memory stays bounded whatever the state's size.
    """
    result = Reconciled()
    after = ""
    while True:
        page = await asyncio.to_thread(state.published_page, after, page_size)
        if not page:
            break
        after = page[-1].arxiv_id
        result.checked += len(page)
        held = await store.run(store.papers_by_id, [p.arxiv_id for p in page])
        missing: list[Paper] = []
        for published in page:
            record = held.get(published.arxiv_id)
            payload = record.payload if record is not None else None
            if payload and int(payload.get("version", 0)) >= published.version:
                continue
            if published.paper is None:
                result.unrecoverable += 1
            else:
                missing.append(published.paper)
        if missing:
            result.republished += await sink.publish_papers(missing)
    if result.republished or result.unrecoverable:
        log.warning(
            "ingest reconcile: %d of %d published papers were not in Qdrant (%s): re-published %d%s",
            result.republished + result.unrecoverable,
            result.checked,
            store.papers,
            result.republished,
            f"; {result.unrecoverable} cannot be (state written before papers were kept)"
            if result.unrecoverable
            else "",
        )
    else:
        log.info(
            "ingest reconcile: all %d published papers are in Qdrant (%s)",
            result.checked,
            store.papers,
        )
    return result
