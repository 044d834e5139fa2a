"""Reconcile: what ingest published but Qdrant does not hold (at that version) is published again."""

from __future__ import annotations

import asyncio
import logging
import sqlite3
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from ingest_support import MemorySink
from qdrant_client import QdrantClient

from services.core.ids import paper_point_id
from services.core.schemas import Paper
from services.core.settings import Settings
from services.ingest.reconcile import reconcile
from services.ingest.records import Listing, listing_digest
from services.ingest.state import IngestState, Planned, decide
from services.store.vectorstore import VectorStore

DIM = 4


def publish(state: IngestState, papers: list[Paper]) -> None:
    """What the poller does once the broker acked: plan, then mark published."""
    listings = [Listing(paper=p) for p in papers]
    planned = state.plan(listings)
    assert all(p.decision.publish for p in planned)
    state.mark_published(planned)


def index(store: VectorStore, papers: list[Paper]) -> None:
    """What the embed stage leaves in the papers collection (the fields reconcile reads)."""
    store.upsert(
        store.papers,
        [paper_point_id(p.arxiv_id) for p in papers],
        np.ones((len(papers), DIM), dtype=np.float32),
        [{"arxiv_id": p.arxiv_id, "version": p.version} for p in papers],
    )


@pytest.fixture
def store(settings: Settings) -> Any:
    vs = VectorStore(settings, DIM, "test", client=QdrantClient(":memory:"))
    vs.ensure_collections()
    yield vs
    vs.close()


@pytest.fixture
def papers(records: list[dict[str, Any]]) -> list[Paper]:
    return [Paper.model_validate(r) for r in records]


def test_republishes_papers_missing_from_qdrant_or_held_at_a_lower_version(
    settings: Settings,
    store: VectorStore,
    sink: MemorySink,
    papers: list[Paper],
    caplog: pytest.LogCaptureFixture,
) -> None:
    assert len(papers) >= 6
    indexed, behind, lost = papers[:3], papers[3], papers[4:]
    newer = behind.model_copy(update={"version": behind.version + 1})
    with IngestState.for_settings(settings) as state:
        publish(state, [*indexed, behind, *lost])
        publish(state, [newer])  # v2 acked by the broker, never indexed
        index(store, [*indexed, behind])

        caplog.set_level(logging.INFO, logger="services.ingest.reconcile")
        # page_size 2: several pages, each checked against Qdrant before the next is read
        result = asyncio.run(reconcile(state, store, sink, page_size=2))

    expected = sorted([(newer.arxiv_id, newer.version), *((p.arxiv_id, p.version) for p in lost)])
    assert sorted(sink.keys) == expected
    assert [p.title for p in sink.papers if p.arxiv_id == lost[0].arxiv_id] == [lost[0].title]
    assert (result.checked, result.republished, result.unrecoverable) == (
        len(papers),
        len(expected),
        0,
    )
    assert f"re-published {len(expected)}" in caplog.text


def test_nothing_to_do_when_qdrant_holds_everything(
    settings: Settings, store: VectorStore, sink: MemorySink, papers: list[Paper]
) -> None:
    with IngestState.for_settings(settings) as state:
        publish(state, papers)
        index(store, papers)
        result = asyncio.run(reconcile(state, store, sink, page_size=5))
    assert sink.papers == []
    assert (result.checked, result.republished) == (len(papers), 0)


def test_a_state_written_before_papers_were_kept_is_upgraded_and_counted(
    settings: Settings, store: VectorStore, sink: MemorySink, papers: list[Paper], tmp_path: Path
) -> None:
    path = settings.data_dir / "ingest" / "state.sqlite"
    path.parent.mkdir(parents=True)
    old = sqlite3.connect(path)
    old.executescript(
        "CREATE TABLE papers (arxiv_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
        "digest TEXT NOT NULL, version_date TEXT, published_at TEXT NOT NULL);"
        "INSERT INTO papers VALUES ('2501.00001', 1, 'x', NULL, '2025-01-01');"
    )
    old.commit()
    old.close()
    with IngestState(path) as state:
        publish(state, papers[:1])
        result = asyncio.run(reconcile(state, store, sink))
    assert sink.keys == [(papers[0].arxiv_id, papers[0].version)]
    assert (result.republished, result.unrecoverable) == (1, 1)


def test_a_published_page_keeps_the_paper_at_its_published_version(
    settings: Settings, papers: list[Paper]
) -> None:
    paper = papers[0]
    with IngestState.for_settings(settings) as state:
        listing = Listing(paper=paper)
        digest = listing_digest(paper)
        decision = decide(None, listing, digest)
        bumped = paper.model_copy(update={"version": 3})
        state.mark_published([Planned(listing, bumped, digest, decision)])
        (row,) = state.published_page()
    assert (row.arxiv_id, row.version) == (paper.arxiv_id, 3)
    assert row.paper == bumped
