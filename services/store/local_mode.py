"""Local-mode folders of earlier releases: open one, and move it into the Edge store on first start.

Releases before Qdrant Edge kept the embedded store in qdrant-client's local mode under
``ASTRO_QDRANT_PATH`` (``data/qdrant``: ``meta.json`` and ``collection/<name>/storage.sqlite``).
:func:`migrate_local_folder` copies such a folder into the Edge store with
:func:`~services.store.migrate.copy_store` and keeps it, renamed, so no user loses data.
"""

from __future__ import annotations

import datetime as dt
import logging
from collections.abc import Callable
from contextlib import suppress
from pathlib import Path

from qdrant_client import QdrantClient

from services.store.migrate import MigrationError, OnPage, Report, StoreClient, copy_store

log = logging.getLogger(__name__)

LOCAL_MODE_META = "meta.json"
PROGRESS_FILE = "migrate-to-edge.json"  # inside the old folder, which moves with it at the end


def is_local_mode_folder(path: Path) -> bool:
    """Whether ``path`` holds a qdrant-client local-mode store (``meta.json`` + ``collection/``)."""
    return (path / LOCAL_MODE_META).is_file()


def open_local_mode(path: Path) -> StoreClient:
    """A qdrant-client local-mode client on ``path``, or one line when another process has it."""
    try:
        return QdrantClient(path=str(path))
    except RuntimeError as exc:  # portalocker: "... is already accessed by another instance"
        raise MigrationError(
            f"the store at {path} is open in another process ({exc}); stop it "
            "(a running `astrostream up` or worker) and start again"
        ) from None


def migrate_local_folder(
    local_path: Path,
    edge_path: Path,
    open_edge: Callable[[Path], StoreClient],
    *,
    prefix: str | None = None,
    open_local: Callable[[Path], StoreClient] = open_local_mode,
    report: Report = log.info,
    on_page: OnPage | None = None,
    now: Callable[[], dt.datetime] = dt.datetime.now,
) -> Path | None:
    """Move a local-mode store of an earlier release into the (new) Edge store, keeping it.

    Runs when ``local_path`` holds a local-mode store and the Edge store has no collection or
    holds an interrupted migration from it (the progress file in ``local_path`` says so).
    Afterwards the old folder is renamed ``<name>.migrated-<timestamp>``, never deleted.

    Args:
        local_path: ``ASTRO_QDRANT_PATH`` of the earlier release (``data/qdrant``).
        edge_path: the Edge store's folder.
        open_edge: opens the Edge store (``EdgeClient``); it is closed before this returns.

    Returns:
        Where the old folder went, or None when there was nothing to migrate.

    Raises:
        MigrationError: both folders hold a store (the message says what to move aside), the
            old one is open in another process, or the copy does not verify.
    """
    if not is_local_mode_folder(local_path):
        return None
    progress_path = local_path / PROGRESS_FILE
    source = open_local(local_path)
    try:
        edge_path.mkdir(parents=True, exist_ok=True)
        destination = open_edge(edge_path)
        try:
            if destination.get_collections().collections and not progress_path.is_file():
                raise MigrationError(
                    f"{local_path} holds a store of an earlier release (qdrant-client local "
                    f"mode) and {edge_path} an Edge store already, so nothing was moved. To keep "
                    f"the Edge store, rename {local_path} (e.g. `mv {local_path} "
                    f"{local_path}.old`); to migrate the old one instead, rename {edge_path} and "
                    "start again"
                )
            report(f"moving the local-mode store {local_path} into the Edge store {edge_path}")
            summary = copy_store(
                source,
                destination,
                prefix=prefix,
                progress_path=progress_path,
                destination_name=f"the Edge store {edge_path}",
                report=report,
                on_page=on_page,
            )
        finally:
            destination.close()
    finally:
        with suppress(Exception):  # the lock must go even when the copy failed
            source.close()
    kept = local_path.with_name(f"{local_path.name}.migrated-{now():%Y%m%d-%H%M%S}")
    local_path.rename(kept)
    report(
        f"{local_path} is now in {edge_path} ({len(summary.counts)} collections, "
        f"{summary.points:,} points); the old folder is kept as {kept}: delete it once "
        "you no longer need it"
    )
    return kept
