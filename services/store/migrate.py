"""Copy every collection of one Qdrant store into another, resumably, verified by counts.

``astrostream migrate --to URL`` moves the embedded store to a Qdrant server; on first start,
``services.store.local_mode`` moves a qdrant-client local-mode folder (releases before Qdrant
Edge) into the Edge store. Both are :func:`copy_store`, written against the part of
qdrant-client's ``QdrantClient`` API that every engine here offers (:class:`StoreClient`), so
any source and destination pair works.

A migration recreates each collection with the source's vector parameters (dense size and
distance, named or unnamed; sparse vectors with their modifier; none for payload-only
tables) and payload indexes, copies the points page by page (scroll → upsert with
``wait=True``, idempotent by id), then the aliases, and compares exact counts. A progress
file records each collection's next scroll offset after every page, so a rerun of an
interrupted migration goes on where it stopped.
"""

from __future__ import annotations

import json
import logging
import os
import time
import warnings
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import httpx
from pydantic import SecretStr
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.core.errors import AstrostreamError, VectorStoreUnavailable
from services.core.settings import Settings
from services.store.vectorstore import KEYWORD_FIELDS, open_client

log = logging.getLogger(__name__)

PAGE_SIZE = 256
REPORT_EVERY_S = 2.0

# Local mode keeps no record of payload indexes (its ``payload_schema`` is always empty), so
# a store written by it says nothing of the indexes the product created. These are the ones
# its ensure functions create, by collection name (``<prefix>`` + suffix); a unit test runs
# those functions and checks this table against what they asked for.
TABLE_INDEXES: dict[str, dict[str, qm.PayloadSchemaType]] = {
    "_read": {"subscription_id": qm.PayloadSchemaType.KEYWORD},
    "_feedback": {"subscription_id": qm.PayloadSchemaType.KEYWORD},
    "_alerts": {
        "subscription_id": qm.PayloadSchemaType.KEYWORD,
        "score": qm.PayloadSchemaType.FLOAT,
        "created_ts": qm.PayloadSchemaType.FLOAT,
        "relevance": qm.PayloadSchemaType.FLOAT,
    },
}
DATE_INDEXES = {
    "published": qm.PayloadSchemaType.DATETIME,
    "published_ts": qm.PayloadSchemaType.FLOAT,
}


class StoreClient(Protocol):
    """The part of ``qdrant_client.QdrantClient`` a migration uses (``EdgeClient`` has it too)."""

    def get_collections(self) -> qm.CollectionsResponse: ...
    def get_collection(self, collection_name: str) -> qm.CollectionInfo: ...
    def collection_exists(self, collection_name: str) -> bool: ...
    def create_collection(
        self, collection_name: str, vectors_config: Any = ..., sparse_vectors_config: Any = ...
    ) -> bool: ...
    def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any = ...
    ) -> Any: ...
    def get_aliases(self) -> qm.CollectionsAliasesResponse: ...
    def update_collection_aliases(self, change_aliases_operations: Any) -> bool: ...
    def scroll(
        self,
        collection_name: str,
        *,
        limit: int = ...,
        offset: Any = ...,
        with_payload: bool = ...,
        with_vectors: bool = ...,
    ) -> tuple[list[qm.Record], Any]: ...
    def upsert(
        self, collection_name: str, points: list[qm.PointStruct], wait: bool = ...
    ) -> Any: ...
    def count(self, collection_name: str, *, exact: bool = ...) -> qm.CountResult: ...
    def close(self) -> None: ...


class MigrationError(AstrostreamError):
    """A migration cannot go on or did not end equal; ``collection`` names the one at fault."""

    def __init__(self, message: str, collection: str | None = None) -> None:
        super().__init__(message)
        self.collection = collection


@dataclass(frozen=True)
class Layout:
    """What a collection is made of, as the source reports it."""

    vectors: Any  # VectorParams (unnamed), {name: VectorParams}, or {} (payload only)
    sparse: dict[str, qm.SparseVectorParams]
    indexes: dict[str, Any]  # field → PayloadSchemaType or its params

    def shape(self) -> tuple[dict[str, tuple[int, str]], dict[str, str | None]]:
        """The part two collections must share to hold each other's points."""
        named = self.vectors if isinstance(self.vectors, Mapping) else {"": self.vectors}
        dense = {name: (int(p.size), str(p.distance)) for name, p in named.items()}
        sparse = {
            name: (str(p.modifier) if p.modifier else None) for name, p in self.sparse.items()
        }
        return dense, sparse

    def describe(self) -> str:
        dense, sparse = self.shape()
        parts = [f"{n or 'unnamed'} {size}-dim {dist}" for n, (size, dist) in dense.items()]
        parts += [f"sparse {n}" + (f" ({m})" if m else "") for n, m in sparse.items()]
        return ", ".join(parts) or "payload only"


def known_indexes(name: str, prefix: str) -> dict[str, Any]:
    """The payload indexes astrostream creates on collection ``name`` of ``prefix``."""
    for kind, fields in KEYWORD_FIELDS.items():
        if name.startswith(f"{prefix}_{kind}__"):
            keywords = dict.fromkeys(fields, qm.PayloadSchemaType.KEYWORD)
            return keywords if kind == "subscriptions" else {**keywords, **DATE_INDEXES}
    for suffix, indexes in TABLE_INDEXES.items():
        if name == f"{prefix}{suffix}":
            return dict(indexes)
    return {}


def layout_of(client: StoreClient, name: str, prefix: str | None = None) -> Layout:
    """``name``'s layout; with ``prefix``, plus the indexes astrostream creates on it."""
    info = client.get_collection(name)
    indexes: dict[str, Any] = known_indexes(name, prefix) if prefix else {}
    for field_name, index in (info.payload_schema or {}).items():
        indexes[field_name] = index.params or index.data_type
    params = info.config.params
    return Layout(params.vectors or {}, dict(params.sparse_vectors or {}), indexes)


@dataclass
class Progress:
    """Each collection's next scroll offset, saved after every page (``path`` None: memory)."""

    path: Path | None
    destination: str
    collections: dict[str, dict[str, Any]] = field(default_factory=dict)

    @classmethod
    def load(cls, path: Path | None, destination: str) -> Progress:
        """The progress of an earlier run to ``destination``; empty for another destination."""
        if path is None or not path.is_file():
            return cls(path, destination)
        try:
            saved = json.loads(path.read_text())
        except ValueError:
            log.warning("%s is not JSON; starting the migration from the beginning", path)
            return cls(path, destination)
        if saved.get("destination") != destination:
            return cls(path, destination)
        return cls(path, destination, dict(saved.get("collections") or {}))

    def of(self, name: str) -> dict[str, Any]:
        return self.collections.setdefault(name, {"offset": None, "copied": 0, "done": False})

    def save(self) -> None:
        if self.path is None:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(f"{self.path.name}.tmp")
        body = {"destination": self.destination, "collections": self.collections}
        tmp.write_text(json.dumps(body, indent=1))
        os.replace(tmp, self.path)  # a crash leaves the previous complete file

    def remove(self) -> None:
        if self.path is not None:
            self.path.unlink(missing_ok=True)


@dataclass(frozen=True)
class Summary:
    """What a finished migration copied: points per collection, aliases, seconds."""

    counts: dict[str, int]
    aliases: dict[str, str]
    copied: int  # points written by this run (a resumed run skips what was done)
    seconds: float

    @property
    def points(self) -> int:
        return sum(self.counts.values())


Report = Callable[[str], None]
OnPage = Callable[[str, int], None]  # collection, points copied so far (tests interrupt here)


@contextmanager
def answering(where: str) -> Iterator[None]:
    """Turn a store that stops answering into one line saying that a rerun resumes."""
    try:
        yield
    except (ResponseHandlingException, httpx.TransportError, ConnectionError, TimeoutError) as exc:
        raise VectorStoreUnavailable(
            f"{where} stopped answering ({exc}); rerun the same command to resume", 2.0
        ) from exc
    except UnexpectedResponse as exc:
        if exc.status_code in (401, 403):
            raise MigrationError(
                f"{where} refused the request ({exc.status_code}): give its API key with "
                "--api-key or ASTRO_QDRANT_API_KEY"
            ) from None
        raise MigrationError(f"{where} answered {exc.status_code}: {exc.content!r}") from exc


def copy_store(
    source: StoreClient,
    destination: StoreClient,
    *,
    prefix: str | None = None,
    progress_path: Path | None = None,
    destination_name: str = "destination",
    page_size: int = PAGE_SIZE,
    report: Report = log.info,
    on_page: OnPage | None = None,
) -> Summary:
    """Copy every collection, its points and indexes, then the aliases, and verify the counts.

    Args:
        source: the store to read; nothing else may write to it meanwhile.
        destination: the store to fill. Its collections of the same names must have the
            source's vector layout (a rerun finds its own); others are left alone.
        prefix: ``ASTRO_COLLECTION_PREFIX``: add the indexes astrostream creates on its
            collections, which a local-mode source does not report.
        progress_path: where each collection's progress is saved; removed once verified.
        destination_name: names the destination in the messages and the progress file.
        page_size: points per scroll page and upsert.
        report: receives progress lines.
        on_page: called after each page is saved.

    Raises:
        MigrationError: a destination collection has another layout, or counts differ.
        VectorStoreUnavailable: the destination stopped answering (a rerun resumes).
    """
    started = time.perf_counter()
    with answering("the source store"):
        names = sorted(c.name for c in source.get_collections().collections)
        layouts = {name: layout_of(source, name, prefix) for name in names}
        source_aliases = {a.alias_name: a.collection_name for a in source.get_aliases().aliases}
    with answering(destination_name):
        check_destination(destination, layouts)
    progress = Progress.load(progress_path, destination_name)
    copied = 0
    for name in names:
        with answering(destination_name):
            copied += copy_collection(
                source, destination, name, layouts[name], progress, page_size, report, on_page
            )
    with answering(destination_name):
        copy_aliases(destination, source_aliases)
        counts = verify(source, destination, names, source_aliases, destination_name)
    progress.remove()
    summary = Summary(counts, source_aliases, copied, time.perf_counter() - started)
    rate = summary.copied / summary.seconds if summary.seconds > 0 else 0.0
    report(
        f"migrated {len(counts)} collections, {summary.points:,} points and "
        f"{len(source_aliases)} aliases to {destination_name} in {summary.seconds:.1f} s "
        f"({summary.copied:,} points copied by this run, {rate:,.0f} points/s); counts verified"
    )
    return summary


def check_destination(destination: StoreClient, layouts: Mapping[str, Layout]) -> None:
    """Refuse, before writing anything, a destination collection that cannot take the points."""
    existing = {c.name for c in destination.get_collections().collections}
    for name in sorted(existing & set(layouts)):
        have = layout_of(destination, name)
        if have.shape() != layouts[name].shape():
            raise MigrationError(
                f"the destination already has a collection {name} with another layout "
                f"({have.describe()}; the source's is {layouts[name].describe()}): nothing was "
                "copied. Delete or rename that collection there, or migrate to another server",
                collection=name,
            )


def create_like(destination: StoreClient, name: str, layout: Layout) -> None:
    """Create ``name`` with the layout's vectors (if missing) and every index it lacks."""
    if not destination.collection_exists(name):
        destination.create_collection(
            name, vectors_config=layout.vectors, sparse_vectors_config=layout.sparse or None
        )
    have = destination.get_collection(name).payload_schema or {}
    with warnings.catch_warnings():  # local mode: "Payload indexes have no effect"
        warnings.simplefilter("ignore", UserWarning)
        for field_name, schema in layout.indexes.items():
            if field_name not in have:
                destination.create_payload_index(name, field_name, field_schema=schema)


def copy_collection(
    source: StoreClient,
    destination: StoreClient,
    name: str,
    layout: Layout,
    progress: Progress,
    page_size: int,
    report: Report,
    on_page: OnPage | None,
) -> int:
    """Copy one collection's points from where the progress says; returns how many."""
    total = int(source.count(name, exact=True).count)
    state = progress.of(name)
    if state["done"] and destination.collection_exists(name):
        if int(destination.count(name, exact=True).count) == total:
            report(f"{name}: {total:,} points, copied by an earlier run")
            return 0
        state.update(offset=None, copied=0, done=False)  # changed since: copy it again
    if not destination.collection_exists(name):
        state.update(offset=None, copied=0, done=False)  # the progress is of a deleted copy
    create_like(destination, name, layout)
    if state["offset"] is not None:
        report(f"{name}: resuming after {state['copied']:,} of {total:,} points")
    copied, last = 0, time.monotonic()
    while not state["done"]:
        records, next_offset = source.scroll(
            name, limit=page_size, offset=state["offset"], with_payload=True, with_vectors=True
        )
        if records:
            destination.upsert(name, points=[point_of(r) for r in records], wait=True)
        copied += len(records)
        state.update(
            offset=offset_of(next_offset),
            copied=state["copied"] + len(records),
            done=next_offset is None,
        )
        progress.save()
        if on_page is not None:
            on_page(name, state["copied"])
        if state["done"] or time.monotonic() - last >= REPORT_EVERY_S:
            report(f"{name}: {state['copied']:,}/{total:,} points")
            last = time.monotonic()
    return copied


def point_of(record: qm.Record) -> qm.PointStruct:
    """The point to upsert for a record read with its vectors (none: a payload-only table)."""
    vector: Any = record.vector or {}
    return qm.PointStruct(id=record.id, vector=vector, payload=record.payload or {})


def offset_of(offset: Any) -> int | str | None:
    """A scroll offset as JSON holds it (point ids are unsigned integers or UUIDs)."""
    return offset if offset is None or isinstance(offset, int) else str(offset)


def copy_aliases(destination: StoreClient, aliases: Mapping[str, str]) -> None:
    """Point every alias of the source at the same collection, in one atomic request."""
    current = {a.alias_name: a.collection_name for a in destination.get_aliases().aliases}
    ops: list[qm.AliasOperations] = []
    for alias, collection in sorted(aliases.items()):
        if current.get(alias) == collection:
            continue
        if alias in current:
            ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
        ops.append(
            qm.CreateAliasOperation(
                create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias)
            )
        )
    if ops:
        destination.update_collection_aliases(change_aliases_operations=ops)


def verify(
    source: StoreClient,
    destination: StoreClient,
    names: list[str],
    aliases: Mapping[str, str],
    destination_name: str,
) -> dict[str, int]:
    """Exact counts per collection, equal on both sides, and the aliases; else MigrationError."""
    counts: dict[str, int] = {}
    problems: list[str] = []
    for name in names:
        want = int(source.count(name, exact=True).count)
        have = int(destination.count(name, exact=True).count)
        counts[name] = want
        if have != want:
            problems.append(f"{name} has {have:,} points there, {want:,} here")
    found = {a.alias_name: a.collection_name for a in destination.get_aliases().aliases}
    problems += [
        f"alias {alias} points to {found.get(alias)}, not {target}"
        for alias, target in sorted(aliases.items())
        if found.get(alias) != target
    ]
    if problems:
        raise MigrationError(
            f"{destination_name} does not hold what the source holds: {'; '.join(problems)}. "
            "Did something else write to either store? Rerun to copy again",
            collection=names[0] if len(problems) == 1 and names else None,
        )
    return counts


def open_server(settings: Settings, url: str, api_key: str | None = None) -> StoreClient:
    """A client of the Qdrant server at ``url`` (``api_key`` or ``ASTRO_QDRANT_API_KEY``).

    Raises:
        VectorStoreUnavailable: nothing accepts a connection there (see ``wait_for_qdrant``).
    """
    key = SecretStr(api_key) if api_key else settings.qdrant_api_key
    return open_client(settings.model_copy(update={"qdrant_url": url, "qdrant_api_key": key}))
