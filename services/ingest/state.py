"""Durable ingest state (SQLite): what was published (dedupe, versions) and per-source cursors.

A paper is marked published only after the broker acknowledged it, so a crash between the two
re-publishes (at-least-once; the embed worker's writes are idempotent) instead of losing it.
"""

from __future__ import annotations

import json
import sqlite3
import threading
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from services.core.clock import utcnow
from services.core.schemas import Paper
from services.core.settings import Settings
from services.ingest.records import Listing, listing_digest

SCHEMA = """
CREATE TABLE IF NOT EXISTS papers (
    arxiv_id     TEXT PRIMARY KEY,
    version      INTEGER NOT NULL,
    digest       TEXT NOT NULL,
    version_date TEXT,
    published_at TEXT NOT NULL,
    paper        TEXT
);
CREATE TABLE IF NOT EXISTS cursors (
    name       TEXT PRIMARY KEY,
    value      TEXT NOT NULL,
    updated_at TEXT NOT NULL
);
"""


@dataclass(frozen=True)
class Seen:
    """What was last published for a paper."""

    version: int
    digest: str
    version_date: str | None = None


@dataclass(frozen=True)
class Published:
    """A published paper as the state holds it (``paper`` is None in a pre-reconcile state)."""

    arxiv_id: str
    version: int
    paper: Paper | None


@dataclass(frozen=True)
class Decision:
    """Whether to publish a listing, under which version, and why (for logs and tests)."""

    publish: bool
    version: int
    reason: str  # new | new-version | changed | duplicate | stale | forced


def decide(seen: Seen | None, listing: Listing, digest: str) -> Decision:
    """The dedupe rule.

    Publish when the paper is unknown, when its version is higher than the published one, or
    when the version is the same but the content digest changed (e.g. a new cross-list).
    For listings without an exact version (OAI-PMH ``arXiv`` format) a ``version_date`` later than
    the stored one means a new version, numbered one above the stored version.
    """
    version = listing.paper.version
    if seen is None:
        return Decision(True, version, "new")
    if not listing.exact_version:
        newer = (
            listing.version_date is not None
            and seen.version_date is not None
            and listing.version_date > seen.version_date
        )
        if newer:
            return Decision(True, max(version, seen.version + 1), "new-version")
        if digest != seen.digest:
            return Decision(True, seen.version, "changed")
        return Decision(False, seen.version, "duplicate")
    if version > seen.version:
        return Decision(True, version, "new-version")
    if version < seen.version:
        return Decision(False, version, "stale")
    if digest != seen.digest:
        return Decision(True, version, "changed")
    return Decision(False, version, "duplicate")


@dataclass(frozen=True)
class Planned:
    """A listing with its decision; ``paper`` carries the version to publish."""

    listing: Listing
    paper: Paper
    digest: str
    decision: Decision


class IngestState:
    """The SQLite state file. Methods are blocking and thread-safe: call them via a thread.

    Args:
        path: the database file (its folder is created).
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(path, check_same_thread=False, timeout=30)
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(SCHEMA)
        columns = {row[1] for row in self._db.execute("PRAGMA table_info(papers)")}
        if "paper" not in columns:  # a state file from before papers were kept (reconcile)
            self._db.execute("ALTER TABLE papers ADD COLUMN paper TEXT")

    @classmethod
    def for_settings(cls, settings: Settings) -> IngestState:
        """The state under ``ASTRO_DATA_DIR``: ``<data_dir>/ingest/state.sqlite``."""
        return cls(settings.data_dir / "ingest" / "state.sqlite")

    def close(self) -> None:
        with self._lock:
            self._db.close()

    def __enter__(self) -> IngestState:
        return self

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def seen(self, arxiv_ids: Iterable[str]) -> dict[str, Seen]:
        ids = list(dict.fromkeys(arxiv_ids))
        found: dict[str, Seen] = {}
        with self._lock:
            for chunk in (ids[i : i + 500] for i in range(0, len(ids), 500)):
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(
                    "SELECT arxiv_id, version, digest, version_date FROM papers "
                    f"WHERE arxiv_id IN ({marks})",
                    chunk,
                )
                for arxiv_id, version, digest, version_date in rows:
                    found[arxiv_id] = Seen(version, digest, version_date)
        return found

    def plan(self, listings: Sequence[Listing], *, force: bool = False) -> list[Planned]:
        """Decide every listing, in order; a paper listed twice is compared with its first listing.

        Args:
            force: publish everything (replay ``--force``), still with the right version.
        """
        known = self.seen(listing.paper.arxiv_id for listing in listings)
        planned: list[Planned] = []
        for listing in listings:
            paper = listing.paper
            digest = listing_digest(paper)
            previous = known.get(paper.arxiv_id)
            decision = decide(previous, listing, digest)
            if force and not decision.publish:
                decision = Decision(True, decision.version, "forced")
            if decision.version != paper.version:
                paper = paper.model_copy(update={"version": decision.version})
            planned.append(Planned(listing, paper, digest, decision))
            if decision.publish:
                known[paper.arxiv_id] = Seen(paper.version, digest, listing.version_date)
        return planned

    def mark_published(self, planned: Iterable[Planned]) -> None:
        """Record papers the broker acknowledged. Never lowers a stored version.

        The paper itself is kept too, so :func:`services.ingest.reconcile.reconcile` can publish
        it again if the broker loses it before it is indexed.
        """
        now = _now()
        rows = [
            (
                p.paper.arxiv_id,
                p.paper.version,
                p.digest,
                p.listing.version_date,
                now,
                p.paper.model_dump_json(),
            )
            for p in planned
        ]
        with self._lock, self._db:
            self._db.executemany(
                "INSERT INTO papers (arxiv_id, version, digest, version_date, published_at, paper) "
                "VALUES (?, ?, ?, ?, ?, ?) ON CONFLICT(arxiv_id) DO UPDATE SET "
                "version = excluded.version, digest = excluded.digest, "
                "version_date = COALESCE(excluded.version_date, papers.version_date), "
                "published_at = excluded.published_at, paper = excluded.paper "
                "WHERE excluded.version >= papers.version",
                rows,
            )

    def cursor(self, name: str) -> dict[str, Any]:
        """The cursor ``name`` (e.g. ``api``, ``oai``, ``api:since=2024-01-01``), ``{}`` if none."""
        with self._lock:
            row = self._db.execute("SELECT value FROM cursors WHERE name = ?", (name,)).fetchone()
        return dict(json.loads(row[0])) if row else {}

    def set_cursor(self, name: str, value: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.execute(
                "INSERT INTO cursors (name, value, updated_at) VALUES (?, ?, ?) "
                "ON CONFLICT(name) DO UPDATE SET value = excluded.value, "
                "updated_at = excluded.updated_at",
                (name, json.dumps(value, sort_keys=True), _now()),
            )

    def published_page(self, after: str = "", limit: int = 500) -> list[Published]:
        """Up to ``limit`` published papers with ``arxiv_id > after``, in arxiv_id order."""
        with self._lock:
            rows = self._db.execute(
                "SELECT arxiv_id, version, paper FROM papers WHERE arxiv_id > ? "
                "ORDER BY arxiv_id LIMIT ?",
                (after, limit),
            ).fetchall()
        return [Published(a, v, Paper.model_validate_json(p) if p else None) for a, v, p in rows]

    def count(self) -> int:
        with self._lock:
            return int(self._db.execute("SELECT COUNT(*) FROM papers").fetchone()[0])


def _now() -> str:
    return utcnow().isoformat(timespec="seconds")
