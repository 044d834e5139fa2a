"""Qdrant access: versioned collections behind aliases, payload indexes, idempotent upserts."""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import socket
import time
import warnings
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any, TypeVar
from urllib.parse import urlsplit

import httpx
import numpy as np
from qdrant_client import QdrantClient
from qdrant_client import models as qm
from qdrant_client.http.exceptions import ResponseHandlingException, UnexpectedResponse

from services.core.errors import ConfigError, VectorStoreUnavailable
from services.core.ids import paper_point_id, sentence_point_id
from services.core.settings import Settings
from services.store.indexing import index_options, vectors_on_disk

log = logging.getLogger(__name__)
T = TypeVar("T")

KINDS = ("sentences", "papers", "subscriptions")
KEYWORD_FIELDS = {
    "sentences": ("arxiv_id", "categories"),
    "papers": ("arxiv_id", "categories"),
    "subscriptions": ("subscription_id",),
}
# The named sparse vector of term weights (``services.core.lexical``) next to the unnamed
# dense one. Papers: unit sublinear tf, Qdrant applies the IDF of the collection (so any
# client can query it with plain term counts); subscriptions: the TF-IDF centroid of the
# interests, matched by a new paper's TF-IDF vector (the alerts' own IDF, no modifier).
LEXICAL = "lexical"
SPARSE_MODIFIERS: dict[str, qm.Modifier | None] = {
    "papers": qm.Modifier.IDF,
    "subscriptions": None,
}
Sparse = tuple[list[int], list[float]]


def sparse_vector(pair: Sparse) -> qm.SparseVector:
    indices, values = pair
    return qm.SparseVector(indices=list(indices), values=list(values))


def dense_of(record: qm.Record | qm.ScoredPoint) -> list[float] | None:
    """The unnamed dense vector of a point read ``with_vectors``, whatever else it holds."""
    vector = record.vector
    if isinstance(vector, dict):
        dense = vector.get("")
        return dense if isinstance(dense, list) else None  # type: ignore[return-value]
    return vector  # type: ignore[return-value]


@dataclass(frozen=True)
class Hit:
    id: str
    score: float
    payload: dict[str, Any]


QDRANT_PORT = 6333  # what qdrant-client assumes when the URL names none


def wait_for_qdrant(settings: Settings) -> None:
    """Return once ``ASTRO_QDRANT_URL`` accepts a TCP connection; retry until the timeout.

    Without this, an unreachable server surfaces a minute later as qdrant-client's long
    traceback. Local mode (no URL) returns at once.

    Raises:
        VectorStoreUnavailable: one line naming the address, after
            ``ASTRO_QDRANT_CONNECT_TIMEOUT_S``.
    """
    url = settings.qdrant_url
    if not url:
        return
    parts = urlsplit(url if "://" in url else f"http://{url}")
    try:
        host, port = parts.hostname or "", parts.port or QDRANT_PORT
    except ValueError as exc:  # a port that is not a number
        raise ConfigError(f"ASTRO_QDRANT_URL={url}: {exc}") from None
    timeout = settings.qdrant_connect_timeout_s
    deadline = time.monotonic() + timeout
    while True:
        left = deadline - time.monotonic()
        try:
            socket.create_connection((host, port), timeout=max(0.1, min(left, 5.0))).close()
            return
        except OSError as exc:
            problem = str(exc) or type(exc).__name__
        if time.monotonic() + 0.5 >= deadline:
            raise VectorStoreUnavailable(
                f"Qdrant at {host}:{port} (ASTRO_QDRANT_URL={url}) did not accept a connection "
                f"within {timeout:g} s ({problem}); start it, fix the URL, or unset "
                "ASTRO_QDRANT_URL for local mode",
                retry_after_s=timeout,
            )
        time.sleep(0.5)


def open_client(settings: Settings) -> QdrantClient:
    """A Qdrant client for ``ASTRO_QDRANT_URL``, else the embedded engine under ``ASTRO_QDRANT_PATH``.

    The embedded engine is Qdrant Edge (:class:`~services.store.edge.EdgeClient`, the
    QdrantClient methods the store uses) unless ``ASTRO_QDRANT_ENGINE=local`` asks for
    qdrant-client's local mode.

    Raises:
        ConfigError: when the local folder is already used by another process.
        VectorStoreUnavailable: the server does not answer (see :func:`wait_for_qdrant`).
    """
    if settings.qdrant_url:
        wait_for_qdrant(settings)
        key = settings.qdrant_api_key.get_secret_value() if settings.qdrant_api_key else None
        return QdrantClient(
            url=settings.qdrant_url, api_key=key, timeout=int(settings.qdrant_timeout)
        )
    if settings.qdrant_engine == "edge":
        return open_edge_store(settings)  # type: ignore[return-value]
    if str(settings.qdrant_path) == ":memory:":
        return QdrantClient(":memory:")
    settings.qdrant_path.mkdir(parents=True, exist_ok=True)
    try:
        return QdrantClient(path=str(settings.qdrant_path))
    except RuntimeError as exc:  # portalocker: "Storage folder ... is already accessed by another"
        raise ConfigError(
            f"ASTRO_QDRANT_PATH={settings.qdrant_path}: {exc}. Local mode allows one process; "
            "stop the other one, or run a Qdrant server and set ASTRO_QDRANT_URL"
        ) from None


def open_edge_store(settings: Settings) -> Any:
    """The Edge store of ``settings``, after moving an earlier release's local-mode store into it.

    Releases before Qdrant Edge kept the embedded store in qdrant-client's local mode under
    ``<ASTRO_DATA_DIR>/qdrant``; the first start on such a data folder copies it into
    ``<ASTRO_DATA_DIR>/edge`` (verified by counts) and keeps the old folder, renamed.

    Raises:
        ConfigError: ``ASTRO_QDRANT_PATH`` names a local-mode folder (the message says how to
            keep it or move it), or the old store cannot be moved.
    """
    from services.store.edge import open_edge
    from services.store.local_mode import is_local_mode_folder, migrate_local_folder
    from services.store.migrate import MigrationError

    path, ef = settings.qdrant_path, settings.qdrant_hnsw_ef
    if str(path) == ":memory:":
        return open_edge(path, ef)
    if is_local_mode_folder(path):
        raise ConfigError(
            f"ASTRO_QDRANT_PATH={path} holds a qdrant-client local-mode store of an earlier "
            "release: keep using it with ASTRO_QDRANT_ENGINE=local, or move it to "
            f"{settings.data_dir / 'qdrant'} and unset ASTRO_QDRANT_PATH, and the next start "
            f"copies it into the Edge store {settings.data_dir / 'edge'}"
        )
    old = settings.data_dir / "qdrant"
    if "qdrant_path" not in settings.model_fields_set and is_local_mode_folder(old):
        try:
            moved = migrate_local_folder(
                old, path, lambda p: open_edge(p, ef), prefix=settings.collection_prefix
            )
        except MigrationError as exc:
            raise ConfigError(f"moving the local-mode store {old} into {path}: {exc}") from None
        if moved is not None:
            log.warning(
                "moved the local-mode store %s into the Edge store %s (kept as %s)",
                old,
                path,
                moved,
            )
    return open_edge(path, ef)


def tune_local_storage(client: QdrantClient, done: set[int]) -> None:
    """Local mode on disk: put each collection's SQLite file in WAL mode, synchronous=NORMAL.

    qdrant-client commits every point in a transaction of its own; with SQLite's defaults
    (rollback journal, synchronous=FULL) each is an fsync, ~1-1.5 ms per point on an idle
    disk and tens of ms on a busy one, more than the int8 encode of its sentence. In WAL
    mode a commit appends to the log and fsyncs only at checkpoints: a write Qdrant has
    acknowledged survives a crash of the worker (the log is in the OS's hands), though the
    last commits may be lost if the machine itself loses power. ``done`` holds the ids of
    the connections already tuned. Servers and ``:memory:`` have no such file.
    """
    collections = getattr(getattr(client, "_client", None), "collections", None)
    if not isinstance(collections, dict):
        return
    for collection in collections.values():
        connection = getattr(getattr(collection, "storage", None), "storage", None)
        if connection is None or id(connection) in done:
            continue
        connection.execute("PRAGMA journal_mode=WAL")
        connection.execute("PRAGMA synchronous=NORMAL")
        done.add(id(connection))


def published_ts(published: Any) -> float | None:
    """Epoch seconds of an ISO ``published`` date or datetime, as Qdrant reads it (naive = UTC).

    ``None`` when there is no date or it does not parse. Stored as the ``published_ts``
    payload next to ``published``: a float range is cheap to evaluate everywhere, where a
    ``DatetimeRange`` makes local mode parse every point's date on every query.
    """
    if not isinstance(published, str) or not published:
        return None
    try:
        when = dt.datetime.fromisoformat(published)
    except ValueError:
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return when.timestamp()


@dataclass(frozen=True)
class PaperFilter:
    """The optional ``category``, ``since`` (ISO date) and excluded paper of a paper search.

    :meth:`qdrant` is the payload filter; :meth:`accepts` is the same test on one payload,
    in Python. Points written before ``published_ts`` existed are matched on ``published``.
    """

    category: str | None = None
    since: str | None = None
    exclude_arxiv_id: str | None = None

    def __bool__(self) -> bool:
        return bool(self.category or self.since or self.exclude_arxiv_id)

    @property
    def since_ts(self) -> float | None:
        return published_ts(self.since) if self.since else None

    def qdrant(self) -> qm.Filter | None:
        must: list[qm.Condition] = []
        if self.category:
            must.append(
                qm.FieldCondition(key="categories", match=qm.MatchValue(value=self.category))
            )
        if self.since:
            start = dt.datetime.fromisoformat(self.since)
            legacy = qm.Filter(
                must=[
                    qm.IsEmptyCondition(is_empty=qm.PayloadField(key="published_ts")),
                    qm.FieldCondition(key="published", range=qm.DatetimeRange(gte=start)),
                ]
            )
            must.append(
                qm.Filter(
                    should=[
                        qm.FieldCondition(key="published_ts", range=qm.Range(gte=self.since_ts)),
                        legacy,
                    ]
                )
            )
        must_not: list[qm.Condition] = []
        if self.exclude_arxiv_id:
            must_not.append(
                qm.FieldCondition(key="arxiv_id", match=qm.MatchValue(value=self.exclude_arxiv_id))
            )
        return qm.Filter(must=must, must_not=must_not) if must or must_not else None

    def accepts(self, payload: dict[str, Any]) -> bool:
        if self.exclude_arxiv_id and payload.get("arxiv_id") == self.exclude_arxiv_id:
            return False
        if self.category:
            found = payload.get("categories")
            if self.category not in (found if isinstance(found, list) else [found]):
                return False
        if self.since:
            since_ts = self.since_ts
            assert since_ts is not None
            ts = payload.get("published_ts")
            if ts is None:
                ts = published_ts(payload.get("published"))
            if isinstance(ts, bool) or not isinstance(ts, int | float) or ts < since_ts:
                return False
        return True


def category_since_filter(
    category: str | None = None, since: str | None = None, exclude_arxiv_id: str | None = None
) -> qm.Filter | None:
    """Payload filter for the optional ``category`` and ``since`` (ISO date) query parameters."""
    return PaperFilter(category, since, exclude_arxiv_id).qdrant()


# Over-fetch factors of a filtered search before it asks Qdrant to filter (see search_where).
OVERFETCH = (4, 16)
MAX_OVERFETCH = 2048


def with_ts(payload: dict[str, Any]) -> dict[str, Any]:
    """``payload`` plus ``published_ts`` when it has a readable ``published`` date."""
    if "published_ts" in payload or "published" not in payload:
        return payload
    ts = published_ts(payload["published"])
    return payload if ts is None else {**payload, "published_ts": ts}


class VectorStore:
    """The three collections of one model version.

    Physical collections are ``<prefix>_<kind>__<model_version>``; the aliases
    ``<prefix>_<kind>`` are what downstream tools query, switched by a rollout.
    Every call is blocking; use :meth:`run` from async code (one I/O thread,
    which also keeps local mode single-threaded).
    """

    def __init__(
        self,
        settings: Settings,
        dim: int,
        model_version: str,
        *,
        client: QdrantClient | None = None,
        executor: ThreadPoolExecutor | None = None,
    ) -> None:
        self.settings = settings
        self.dim = dim
        self.model_version = model_version
        self.client = client or open_client(settings)
        # Local mode ignores payload indexes (a server uses them); creating them keeps both
        # code paths identical, so silence local mode's reminder.
        warnings.filterwarnings("ignore", message="Payload indexes have no effect")
        self._executor = executor or ThreadPoolExecutor(max_workers=1, thread_name_prefix="qdrant")
        self._tuned: set[int] = set()
        self._lexical: dict[str, bool] = {}  # physical collection → has the sparse vector

    def sibling(self, model_version: str, dim: int) -> VectorStore:
        """The store of another model version on the same client and I/O thread.

        (Local mode allows one client per folder, so a rollout must share it.)
        """
        return VectorStore(
            self.settings, dim, model_version, client=self.client, executor=self._executor
        )

    # names ---------------------------------------------------------------
    def alias(self, kind: str) -> str:
        return f"{self.settings.collection_prefix}_{kind}"

    def physical(self, kind: str) -> str:
        return f"{self.alias(kind)}__{self.model_version}"

    @property
    def sentences(self) -> str:
        return self.physical("sentences")

    @property
    def papers(self) -> str:
        return self.physical("papers")

    @property
    def subscriptions(self) -> str:
        return self.physical("subscriptions")

    # lifecycle -------------------------------------------------------------
    async def run(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        """Run a blocking call on the Qdrant thread, mapping outages to VectorStoreUnavailable."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, lambda: self.guard(fn, *args, **kwargs))

    def guard(self, fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
        try:
            return fn(*args, **kwargs)
        except (
            ResponseHandlingException,
            httpx.TransportError,
            ConnectionError,
            TimeoutError,
        ) as exc:
            raise VectorStoreUnavailable(f"Qdrant unreachable: {exc}", retry_after_s=1.0) from exc
        except UnexpectedResponse as exc:
            if (exc.status_code is not None and exc.status_code >= 500) or exc.status_code == 429:
                raise VectorStoreUnavailable(
                    f"Qdrant answered {exc.status_code}", retry_after_s=2.0
                ) from exc
            raise

    def close(self) -> None:
        self._executor.shutdown(wait=True)
        self.client.close()

    def ensure_collections(self, *, set_alias: bool = True) -> None:
        """Create the physical collections (idempotent) and their aliases where missing.

        Raises:
            ConfigError: ``ASTRO_QDRANT_URL`` answers HTTP, but not as Qdrant does.
        """
        try:
            collections = self.client.get_collections().collections
        except UnexpectedResponse as exc:
            if exc.status_code not in (404, 405):
                raise
            raise ConfigError(
                f"ASTRO_QDRANT_URL={self.settings.qdrant_url} answered {exc.status_code} to "
                "GET /collections: is it a Qdrant server (REST port, usually 6333)?"
            ) from None
        existing = {c.name for c in collections}
        aliases = self.aliases()
        for kind in KINDS:
            name = self.physical(kind)
            if name not in existing:
                self.client.create_collection(
                    name,
                    vectors_config=qm.VectorParams(
                        size=self.dim, distance=qm.Distance.COSINE, on_disk=vectors_on_disk(kind)
                    ),
                    sparse_vectors_config=(
                        {LEXICAL: qm.SparseVectorParams(modifier=SPARSE_MODIFIERS[kind])}
                        if kind in SPARSE_MODIFIERS
                        else None
                    ),
                    **index_options(kind),
                )
                for field in KEYWORD_FIELDS[kind]:
                    self.client.create_payload_index(name, field, qm.PayloadSchemaType.KEYWORD)
                if kind != "subscriptions":
                    self.client.create_payload_index(
                        name, "published", qm.PayloadSchemaType.DATETIME
                    )
                    self.client.create_payload_index(
                        name, "published_ts", qm.PayloadSchemaType.FLOAT
                    )
                log.info("created collection %s (dim %d, cosine)", name, self.dim)
            else:
                have = self.collection_dim(name)
                if have != self.dim:
                    raise ConfigError(
                        f"collection {name} holds {have}-dim vectors but the model gives {self.dim}; "
                        "set ASTRO_MODEL_VERSION to a new tag for this model"
                    )
                if kind in SPARSE_MODIFIERS:
                    self.has_lexical(kind)  # logs once when it lacks the sparse vector
                if kind != "subscriptions" and "published_ts" not in (
                    self.client.get_collection(name).payload_schema or {}
                ):  # collections from before published_ts existed
                    self.client.create_payload_index(
                        name, "published_ts", qm.PayloadSchemaType.FLOAT
                    )
            alias = self.alias(kind)
            if set_alias and alias not in aliases:
                self.switch_aliases({kind: name})
            elif set_alias and aliases.get(alias) not in (None, name):
                log.warning(
                    "alias %s points to %s; this worker uses %s until a rollout switches it",
                    alias,
                    aliases[alias],
                    name,
                )

    def has_lexical(self, kind: str) -> bool:
        """Whether this version's ``kind`` collection has the ``lexical`` sparse vector.

        Collections created before it existed do not: they keep working dense-only (logged
        once); a rollout to a new model version creates collections that have it.
        """
        name = self.physical(kind)
        known = self._lexical.get(name)
        if known is None:
            sparse = self.client.get_collection(name).config.params.sparse_vectors or {}
            known = self._lexical[name] = LEXICAL in sparse
            if not known and kind in SPARSE_MODIFIERS:
                log.warning(
                    "collection %s has no %r sparse vector (created by an older version): "
                    "lexical percolation and hybrid search are off for it until a rollout "
                    "creates new collections",
                    name,
                    LEXICAL,
                )
        return known

    def collection_dim(self, name: str) -> int:
        params = self.client.get_collection(name).config.params.vectors
        assert isinstance(params, qm.VectorParams)
        return int(params.size)

    def aliases(self) -> dict[str, str]:
        return {a.alias_name: a.collection_name for a in self.client.get_aliases().aliases}

    def switch_aliases(self, targets: dict[str, str]) -> None:
        """Point each ``kind``'s alias at a physical collection, all in one atomic request."""
        current = self.aliases()
        ops: list[qm.AliasOperations] = []
        for kind, collection in targets.items():
            alias = self.alias(kind)
            if alias in current:
                ops.append(qm.DeleteAliasOperation(delete_alias=qm.DeleteAlias(alias_name=alias)))
            ops.append(
                qm.CreateAliasOperation(
                    create_alias=qm.CreateAlias(collection_name=collection, alias_name=alias)
                )
            )
        self.client.update_collection_aliases(change_aliases_operations=ops)

    # writes ----------------------------------------------------------------
    def upsert(
        self,
        collection: str,
        ids: Sequence[str],
        vectors: np.ndarray,
        payloads: Sequence[dict[str, Any]],
        lexical: Sequence[Sparse | None] | None = None,
    ) -> None:
        """Upsert and wait until Qdrant has applied the write (offsets are committed after).

        ``lexical``: each point's sparse term weights (None: none), written only where the
        collection (``papers`` or ``subscriptions`` of this version) has the sparse vector.
        """
        if not ids:
            return
        tune_local_storage(self.client, self._tuned)
        kind = next((k for k in SPARSE_MODIFIERS if collection == self.physical(k)), None)
        if lexical is not None and kind is not None and self.has_lexical(kind):
            points = [
                qm.PointStruct(
                    id=point_id,
                    vector={"": dense, **({LEXICAL: sparse_vector(sp)} if sp and sp[0] else {})},
                    payload=with_ts(payload),
                )
                for point_id, dense, payload, sp in zip(
                    ids, vectors.tolist(), payloads, lexical, strict=True
                )
            ]
            self.client.upsert(collection, points=points, wait=True)
            return
        self.client.upsert(
            collection,
            points=qm.Batch(
                ids=list(ids), vectors=vectors.tolist(), payloads=[with_ts(p) for p in payloads]
            ),
            wait=True,
        )

    def delete_stale_sentences(self, arxiv_id: str, version: int, count: int) -> None:
        """Remove a paper's sentences that are not ``version``'s first ``count`` sentences."""
        keep = qm.Filter(
            must=[
                qm.FieldCondition(key="version", match=qm.MatchValue(value=version)),
                qm.FieldCondition(key="sentence_index", range=qm.Range(lt=count)),
            ]
        )
        self.client.delete(
            self.sentences,
            points_selector=qm.FilterSelector(
                filter=qm.Filter(
                    must=[qm.FieldCondition(key="arxiv_id", match=qm.MatchValue(value=arxiv_id))],
                    must_not=[keep],
                )
            ),
            wait=True,
        )

    # reads -----------------------------------------------------------------
    def papers_by_id(
        self, arxiv_ids: Sequence[str], *, with_vectors: bool = False
    ) -> dict[str, qm.Record]:
        if not arxiv_ids:
            return {}
        records = self.client.retrieve(
            self.papers,
            ids=[paper_point_id(a) for a in arxiv_ids],
            with_payload=True,
            with_vectors=with_vectors,
        )
        if with_vectors:  # the dense vector only, as before the sparse one existed
            records = [r.model_copy(update={"vector": dense_of(r)}) for r in records]
        return {str(r.payload["arxiv_id"]): r for r in records if r.payload}

    def sentences_of(self, arxiv_id: str, *, with_vectors: bool = True) -> list[qm.Record]:
        """A paper's sentence points, in order: by id where its paper point says how many.

        The paper point is written last and names the version and ``sentence_count`` its
        sentences have, so their ids are known; retrieving them spares a filtered scroll,
        which local mode evaluates in Python on every sentence of every paper.
        """
        paper = self.papers_by_id([arxiv_id]).get(arxiv_id)
        payload = paper.payload or {} if paper is not None else {}
        version, count = payload.get("version"), payload.get("sentence_count")
        if isinstance(version, int) and isinstance(count, int):
            ids = [sentence_point_id(arxiv_id, version, i) for i in range(count)]
            records = self.client.retrieve(
                self.sentences, ids=ids, with_payload=True, with_vectors=with_vectors
            )
            if len(records) == count:
                return sorted(
                    records, key=lambda r: int((r.payload or {}).get("sentence_index", 0))
                )
        return self.sentences_of_many([arxiv_id], with_vectors=with_vectors)

    def sentences_of_many(
        self, arxiv_ids: Sequence[str], *, with_vectors: bool = True
    ) -> list[qm.Record]:
        """Every sentence point of these papers, in (paper, sentence_index) order."""
        flt = qm.Filter(
            must=[qm.FieldCondition(key="arxiv_id", match=qm.MatchAny(any=list(arxiv_ids)))]
        )
        records: list[qm.Record] = []
        offset: Any = None
        while True:
            page, offset = self.client.scroll(
                self.sentences,
                scroll_filter=flt,
                limit=1024,
                offset=offset,
                with_payload=True,
                with_vectors=with_vectors,
            )
            records.extend(page)
            if offset is None:
                break
        order = {a: i for i, a in enumerate(arxiv_ids)}
        return sorted(
            records,
            key=lambda r: (
                order.get(str((r.payload or {}).get("arxiv_id")), 0),
                int((r.payload or {}).get("sentence_index", 0)),
            ),
        )

    def scroll_papers(self, offset: Any = None, limit: int = 64) -> tuple[list[qm.Record], Any]:
        """One page of paper points (payloads only) and the offset of the next page."""
        return self.client.scroll(
            self.papers,
            limit=limit,
            offset=offset,
            with_payload=True,
            with_vectors=False,
        )

    def search(
        self,
        collection: str,
        vector: Sequence[float],
        limit: int,
        query_filter: qm.Filter | None = None,
        score_threshold: float | None = None,
    ) -> list[Hit]:
        response = self.client.query_points(
            collection,
            query=list(vector),
            query_filter=query_filter,
            limit=limit,
            with_payload=True,
            score_threshold=score_threshold,
        )
        return [Hit(str(p.id), float(p.score), p.payload or {}) for p in response.points]

    def search_where(
        self, collection: str, vector: Sequence[float], limit: int, where: PaperFilter
    ) -> list[Hit]:
        """The ``limit`` best points that ``where`` accepts: :meth:`search` with its filter.

        First without a filter, over-fetching and filtering the hits in Python: local mode
        evaluates a payload filter in Python on every point of the collection (seconds at
        10k papers), whereas an unfiltered search is one matrix product. When too few of
        the over-fetched hits pass (a selective filter), Qdrant filters. Exact where the
        search is (local mode): a filtered ranking is the unfiltered one with the rejected
        points left out. A server pays at most two cheap unfiltered queries more.
        """
        if not where:
            return self.search(collection, vector, limit)
        if getattr(self.client, "filters_natively", False):
            # Edge filters through its payload indexes (docs/performance.md, "Growth":
            # over-fetching 400 then 1,600 hits costs it more than it saves)
            return self.search(collection, vector, limit, where.qdrant())
        return self.over_fetch(collection, vector, limit, where)

    def over_fetch(
        self, collection: str, vector: Sequence[float], limit: int, where: PaperFilter
    ) -> list[Hit]:
        """:meth:`search_where` as local mode runs it: unfiltered x4, x16, then filtered."""
        fetched = 0
        for factor in OVERFETCH:
            fetch = min(limit * factor, max(limit, MAX_OVERFETCH))
            if fetch <= fetched:
                break
            fetched = fetch
            hits = self.search(collection, vector, fetch)
            kept = [h for h in hits if where.accepts(h.payload)]
            if len(kept) >= limit or len(hits) < fetch:
                return kept[:limit]
        return self.search(collection, vector, limit, where.qdrant())

    def count(self, collection: str, query_filter: qm.Filter | None = None) -> int:
        return int(self.client.count(collection, count_filter=query_filter, exact=True).count)

    def ping(self) -> None:
        self.client.get_collections()
