"""Copying a whole store to another (services.store.migrate) on real qdrant-client stores.

The source is a local-mode folder written by today's product code; local mode, the API a
server answers, stands in for the destination (no Qdrant server runs here).
"""

from __future__ import annotations

import datetime as dt
import json
from pathlib import Path
from typing import Any

import pytest
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from store_support import RecordingClient, assert_same_folders, assert_same_store, snapshot

from services.store.local_mode import migrate_local_folder, open_local_mode
from services.store.migrate import MigrationError, copy_store, known_indexes

Indexes = dict[str, dict[str, Any]]


class Interrupted(Exception):
    """Stands for a migration killed mid-way."""


def stop_after(pages: int) -> Any:
    seen = []

    def on_page(name: str, copied: int) -> None:
        seen.append(name)
        if len(seen) == pages:
            raise Interrupted(name)

    return on_page


def test_a_store_of_todays_release_is_copied_with_nothing_lost(
    release_folder: Path, release_store: tuple[Path, Indexes], tmp_path: Path
) -> None:
    source = QdrantClient(path=str(release_folder))
    destination = RecordingClient(path=str(tmp_path / "server"))
    lines: list[str] = []
    try:
        summary = copy_store(source, destination, prefix="astro", page_size=16, report=lines.append)
        want, got = snapshot(source), snapshot(destination)
    finally:
        source.close()
        destination.close()
    assert_same_store(want, got)
    counts = {name: len(c["points"]) for name, c in want["collections"].items()}
    assert summary.counts == counts and summary.copied == sum(counts.values())
    assert counts["astro_sentences__fake-v1"] > 50 and counts["astro_papers__fake-v1"] == 8
    # the papers' sparse vectors went along, with the IDF modifier of their collection
    papers = got["collections"]["astro_papers__fake-v1"]
    assert papers["sparse"]["lexical"].modifier == qm.Modifier.IDF
    assert all(set(vector) == {"", "lexical"} for _, vector in papers["points"].values())
    # payload-only tables stay payload-only
    assert got["collections"]["astro_read"]["vectors"] == {}
    assert got["aliases"] == {
        f"astro_{kind}": f"astro_{kind}__fake-v1"
        for kind in ("sentences", "papers", "subscriptions")
    }
    # local mode reports no indexes: the product's own ones are recreated all the same
    assert destination.indexes == release_store[1]
    assert "astro_sentences__fake-v1: 71/71 points" in lines
    assert lines[-1].startswith("migrated 10 collections, 96 points and 3 aliases")


def test_known_indexes_are_what_the_product_creates(release_store: tuple[Path, Indexes]) -> None:
    created = release_store[1]
    assert created, "the product created no index"
    for name, indexes in created.items():
        assert known_indexes(name, "astro") == indexes, name
    assert known_indexes("astro_digests", "astro") == {}
    assert known_indexes("other_read", "astro") == {}


def test_an_interrupted_migration_resumes_and_ends_equal(
    release_folder: Path, tmp_path: Path
) -> None:
    progress = tmp_path / "progress.json"
    source = QdrantClient(path=str(release_folder))
    destination = QdrantClient(path=str(tmp_path / "server"))
    try:
        with pytest.raises(Interrupted):  # in the sentences, after 3 pages of 16
            copy_store(
                source,
                destination,
                progress_path=progress,
                destination_name="server",
                page_size=16,
                on_page=stop_after(8),
                report=lambda line: None,
            )
        saved = json.loads(progress.read_text())
        sentences = saved["collections"]["astro_sentences__fake-v1"]
        assert saved["destination"] == "server"
        assert (sentences["copied"], sentences["done"]) == (48, False)
        assert sentences["offset"] is not None
        lines: list[str] = []
        summary = copy_store(
            source,
            destination,
            progress_path=progress,
            destination_name="server",
            page_size=16,
            report=lines.append,
        )
        want, got = snapshot(source), snapshot(destination)
    finally:
        source.close()
        destination.close()
    assert_same_store(want, got)
    assert "astro_sentences__fake-v1: resuming after 48 of 71 points" in lines
    assert "astro_papers__fake-v1: 8 points, copied by an earlier run" in lines
    total = sum(summary.counts.values())
    assert summary.copied == total - 48 - 8 - 2  # sentences' first pages, papers, feedback, read
    assert not progress.exists()


def test_a_destination_collection_of_another_layout_is_refused(
    release_folder: Path, tmp_path: Path
) -> None:
    destination = QdrantClient(path=str(tmp_path / "server"))
    source = QdrantClient(path=str(release_folder))
    try:
        destination.create_collection(
            "astro_papers__fake-v1",
            vectors_config=qm.VectorParams(size=768, distance=qm.Distance.COSINE),
        )
        with pytest.raises(MigrationError) as err:
            copy_store(source, destination, report=lambda line: None)
        names = [c.name for c in destination.get_collections().collections]
    finally:
        source.close()
        destination.close()
    message = str(err.value)
    assert err.value.collection == "astro_papers__fake-v1"
    assert "collection astro_papers__fake-v1 with another layout" in message
    assert "unnamed 768-dim Cosine" in message and "sparse lexical (idf)" in message
    assert "nothing was copied" in message
    assert names == ["astro_papers__fake-v1"]


def test_a_destination_holding_other_points_fails_verification(
    release_folder: Path, tmp_path: Path
) -> None:
    destination = QdrantClient(path=str(tmp_path / "server"))
    source = QdrantClient(path=str(release_folder))
    try:
        destination.create_collection("astro_read", vectors_config={})
        destination.upsert("astro_read", [qm.PointStruct(id=1, vector={}, payload={})])
        with pytest.raises(MigrationError) as err:
            copy_store(source, destination, destination_name="server", report=lambda line: None)
    finally:
        source.close()
        destination.close()
    assert "astro_read has 2 points there, 1 here" in str(err.value)


def test_a_store_open_in_another_process_is_one_clear_error(release_folder: Path) -> None:
    holder = QdrantClient(path=str(release_folder))  # a lock is per open file, as a worker's
    try:
        with pytest.raises(MigrationError) as err:
            open_local_mode(release_folder)
    finally:
        holder.close()
    assert "open in another process" in str(err.value) and "astrostream up" in str(err.value)


# first start of the Edge release on a local-mode folder -------------------------------------
# Local mode stands in for Edge here: the migration uses only the API both have.
def open_stand_in(path: Path) -> QdrantClient:
    return QdrantClient(path=str(path))


def at_noon() -> dt.datetime:
    return dt.datetime(2026, 3, 1, 12, 0, 0)


def test_first_start_moves_the_old_folder_into_the_new_store(
    release_folder: Path, release_store: tuple[Path, Indexes]
) -> None:
    edge = release_folder.parent / "edge"
    kept = migrate_local_folder(
        release_folder, edge, open_stand_in, prefix="astro", report=lambda line: None, now=at_noon
    )
    assert kept == release_folder.parent / "qdrant.migrated-20260301-120000"
    assert not release_folder.exists() and kept.is_dir()
    assert_same_folders(kept, edge)
    assert not (kept / "migrate-to-edge.json").exists()
    # the next start finds nothing to do
    assert migrate_local_folder(release_folder, edge, open_stand_in) is None


def test_an_interrupted_first_start_finishes_on_the_next(
    release_folder: Path, release_store: tuple[Path, Indexes]
) -> None:
    edge = release_folder.parent / "edge"
    with pytest.raises(Interrupted):
        migrate_local_folder(
            release_folder, edge, open_stand_in, report=lambda line: None, on_page=stop_after(2)
        )
    assert release_folder.is_dir() and any(edge.iterdir())
    kept = migrate_local_folder(release_folder, edge, open_stand_in, report=lambda line: None)
    assert kept is not None
    assert_same_folders(kept, edge)


def test_first_start_with_both_stores_moves_nothing_and_says_what_to_run(
    release_folder: Path,
) -> None:
    edge = release_folder.parent / "edge"
    store = open_stand_in(edge)  # the new release's store, which holds data already
    store.create_collection("astro_read", vectors_config={})
    store.close()
    with pytest.raises(MigrationError) as err:
        migrate_local_folder(release_folder, edge, open_stand_in)
    message = str(err.value)
    assert f"mv {release_folder} {release_folder}.old" in message
    assert f"rename {edge} and start again" in message
    assert (release_folder / "meta.json").is_file()


def test_the_first_start_on_an_old_data_folder_moves_it_into_edge(release_folder: Path) -> None:
    """The product's own start (default settings: the Edge engine) on a data folder of today's
    release: everything is in the Edge store afterwards, and the old folder is kept."""
    from services.core.settings import load_settings
    from services.store.edge import EdgeClient
    from services.store.vectorstore import open_client

    data = release_folder.parent
    want = snapshot(QdrantClient(path=str(release_folder)))
    settings = load_settings(data_dir=data)
    assert settings.qdrant_engine == "edge" and settings.qdrant_path == data / "edge"
    client = open_client(settings)
    try:
        assert isinstance(client, EdgeClient)
        assert_same_store(want, snapshot(client))
    finally:
        client.close()
    assert not release_folder.exists()
    assert [p.name.startswith("qdrant.migrated-") for p in data.iterdir() if p.name != "edge"] == [
        True
    ]


def test_an_explicit_path_to_a_local_mode_folder_says_how_to_keep_it(
    release_folder: Path,
) -> None:
    from services.core.errors import ConfigError
    from services.core.settings import load_settings
    from services.store.vectorstore import open_client

    settings = load_settings(qdrant_path=str(release_folder))
    with pytest.raises(ConfigError, match="ASTRO_QDRANT_ENGINE=local"):
        open_client(settings)
    local = open_client(load_settings(qdrant_path=str(release_folder), qdrant_engine="local"))
    try:
        assert local.get_collections().collections
    finally:
        local.close()
