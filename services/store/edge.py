"""Qdrant Edge (``qdrant-edge-py``) behind the QdrantClient methods ``services/store`` uses.

The embedded engine: Qdrant's own segments, payload indexes, HNSW and quantization, in the
worker's process. :class:`EdgeClient` answers the subset of ``QdrantClient`` that the store
calls, with the same arguments and the same ``qdrant_client.models`` results, so one
``VectorStore`` runs on a server (qdrant-client, production) or embedded (this module); the
congruence suite (tests/unit/store/test_congruence.py) runs every operation on both.

Layout of the folder (``ASTRO_QDRANT_PATH``)::

    <root>/.lock                     one process at a time (flock), as local mode
    <root>/aliases.json              {alias: collection}, replaced atomically
    <root>/collections/<name>/       one Edge shard per collection
    <root>/collections/<name>.json   the collection's creation parameters

Edge has no aliases and no collection registry: both are ours. An alias switch writes a new
``aliases.json`` next to the old one and renames it over it (atomic on POSIX), so a reader
sees the old pointer or the new one, never a mix. Edge shards hold no vectorless points:
a payload-only collection (``vectors_config={}``) is a shard with one unused sparse vector.
"""

from __future__ import annotations

import fcntl
import json
import logging
import os
import shutil
import tempfile
import threading
import time
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import qdrant_edge as qe
from qdrant_client.http import models as qm

from services.core.errors import ConfigError
from services.store.edge_models import (
    DISTANCES,
    PAYLOAD_ONLY,
    SCHEMA_NAMES,
    SCHEMAS,
    client_record,
    client_scored,
    edge_filter,
    edge_params,
    edge_query,
    edge_vector,
    payload_selector,
    point_id,
)

log = logging.getLogger(__name__)

# Unindexed points (written since the last optimisation) that trigger one; below it a
# segment is searched exactly, which is as fast as HNSW at that size.
OPTIMIZE_AFTER = 20_000
# The largest segment the optimiser builds, in points of the collection's dense vector.
# ``shard.optimize()`` holds the GIL (qdrant-edge-py 0.9.0): the whole worker, HTTP
# included, waits while it runs. Without a cap every optimisation merges all segments
# into one and rebuilds its HNSW, so its stall grows with the collection (60k random
# points: 100, 160, 220 s for the 1st, 2nd, 3rd 20k); with the cap an optimisation indexes
# the new points and merges small segments up to the cap, and no more. 200k points: 5
# segments at 1M points, 18 at all of astro-ph (docs/performance.md, "Growth").
SEGMENT_POINTS = 200_000
# Segments the merge optimiser keeps before merging the smallest. Its automatic value
# merges everything into one segment at each optimisation (20k random points in 5k steps:
# 0.9, 0.9, 1.1, 1.1 s, growing; with 8: 0.7 s each), i.e. re-indexes the collection up to
# the cap every time.
SEGMENTS = 8


class _Collection:
    """One shard and the parameters it was created with."""

    def __init__(self, shard: Any, params: dict[str, Any]) -> None:
        self.shard = shard
        self.params = params
        self.unindexed = 0  # points written since the last optimisation

    @property
    def vectors(self) -> Any:
        raw = self.params.get("vectors")
        if raw is None:
            return {}
        if "size" in raw:
            return qm.VectorParams.model_validate(raw)
        return {name: qm.VectorParams.model_validate(v) for name, v in raw.items()}

    @property
    def sparse(self) -> dict[str, qm.SparseVectorParams] | None:
        raw = self.params.get("sparse") or {}
        return {name: qm.SparseVectorParams.model_validate(v) for name, v in raw.items()} or None


class EdgeClient:
    """The QdrantClient methods of ``services/store``, on Qdrant Edge shards in one folder.

    Not thread-safe by itself: ``VectorStore`` calls it from its one I/O thread.

    Args:
        path: the folder; ``":memory:"`` makes a temporary one, removed on :meth:`close`.
        hnsw_ef: the search-time beam of HNSW segments when a query names none.
        optimize_after: unindexed points that trigger building the index (0: never).
    """

    filters_natively = True  # a payload filter is an index lookup, not a Python loop

    def __init__(
        self, path: str | Path, *, hnsw_ef: int | None = None, optimize_after: int = OPTIMIZE_AFTER
    ) -> None:
        self._temporary = str(path) == ":memory:"
        self.root = Path(tempfile.mkdtemp(prefix="astro-edge-")) if self._temporary else Path(path)
        (self.root / "collections").mkdir(parents=True, exist_ok=True)
        self.hnsw_ef = hnsw_ef
        self.optimize_after = optimize_after
        self._lock_file = open(self.root / ".lock", "a+")  # noqa: SIM115 - held until close
        try:
            fcntl.flock(self._lock_file, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            self._lock_file.close()
            raise RuntimeError(
                f"Storage folder {self.root} is already accessed by another process"
            ) from None
        self._open: dict[str, _Collection] = {}
        self._guard = threading.RLock()

    # registry ------------------------------------------------------------------------
    def _dir(self, name: str) -> Path:
        if not name or "/" in name or name.startswith("."):
            raise ValueError(f"bad collection name {name!r}")
        return self.root / "collections" / name

    def _aliases(self) -> dict[str, str]:
        try:
            return dict(json.loads((self.root / "aliases.json").read_text()))
        except FileNotFoundError:
            return {}

    def _resolve(self, name: str) -> str:
        return self._aliases().get(name, name)

    def _get(self, name: str) -> _Collection:
        name = self._resolve(name)
        with self._guard:
            found = self._open.get(name)
            if found is not None:
                return found
            folder = self._dir(name)
            meta = folder.with_suffix(".json")
            if not meta.exists():
                raise ValueError(f"Collection {name} not found")
            found = self._open[name] = _Collection(
                qe.EdgeShard.load(str(folder)), json.loads(meta.read_text())
            )
            return found

    def collection_exists(self, collection_name: str) -> bool:
        return self._dir(collection_name).with_suffix(".json").exists()

    def get_collections(self) -> qm.CollectionsResponse:
        names = sorted(p.stem for p in (self.root / "collections").glob("*.json"))
        return qm.CollectionsResponse(collections=[qm.CollectionDescription(name=n) for n in names])

    def create_collection(
        self,
        collection_name: str,
        vectors_config: Any = None,
        sparse_vectors_config: dict[str, qm.SparseVectorParams] | None = None,
        hnsw_config: qm.HnswConfigDiff | None = None,
        quantization_config: Any = None,
        optimizers_config: qm.OptimizersConfigDiff | None = None,
        on_disk_payload: bool | None = None,
        **_: Any,
    ) -> bool:
        folder = self._dir(collection_name)
        meta = folder.with_suffix(".json")
        if meta.exists():
            raise ValueError(f"Collection {collection_name} already exists")
        shutil.rmtree(folder, ignore_errors=True)  # a creation interrupted before its meta
        params: dict[str, Any] = {"created_at": time.time()}
        dense: Any
        if isinstance(vectors_config, qm.VectorParams):
            params["vectors"] = vectors_config.model_dump(mode="json", exclude_none=True)
            dense = {"": self._vector_params(vectors_config)}
        else:
            vectors_config = vectors_config or {}
            params["vectors"] = {
                n: v.model_dump(mode="json", exclude_none=True) for n, v in vectors_config.items()
            }
            dense = {n: self._vector_params(v) for n, v in vectors_config.items()}
        sparse = {
            name: qe.EdgeSparseVectorParams(
                modifier=qe.Modifier.Idf if p.modifier == qm.Modifier.IDF else None
            )
            for name, p in (sparse_vectors_config or {}).items()
        }
        params["sparse"] = {
            n: p.model_dump(mode="json", exclude_none=True)
            for n, p in (sparse_vectors_config or {}).items()
        }
        if not dense and not sparse:
            sparse = {PAYLOAD_ONLY: qe.EdgeSparseVectorParams()}
        hnsw = (
            qe.HnswIndexConfig(
                m=16 if hnsw_config.m is None else hnsw_config.m,
                ef_construct=hnsw_config.ef_construct or 100,
                full_scan_threshold=hnsw_config.full_scan_threshold or 10_000,
                on_disk=hnsw_config.on_disk,
                payload_m=hnsw_config.payload_m,
            )
            if hnsw_config is not None
            else None
        )
        if hnsw_config is not None:
            params["hnsw"] = hnsw_config.model_dump(mode="json", exclude_none=True)
        quant = None
        if isinstance(quantization_config, qm.ScalarQuantization):
            scalar = quantization_config.scalar
            quant = qe.ScalarQuantizationConfig(
                type=qe.ScalarType.Int8, quantile=scalar.quantile, always_ram=scalar.always_ram
            )
            params["quantization"] = quantization_config.model_dump(mode="json", exclude_none=True)
        if optimizers_config is not None:
            params["optimizers"] = optimizers_config.model_dump(mode="json", exclude_none=True)
        if on_disk_payload is not None:
            params["on_disk_payload"] = on_disk_payload
        config = qe.EdgeConfig(
            vectors=dense or None,
            sparse_vectors=sparse or None,
            hnsw_config=hnsw,
            quantization_config=quant,
            optimizers=self._optimizers(optimizers_config, vectors_config),
            on_disk_payload=on_disk_payload,
        )
        shard = qe.EdgeShard.create(str(folder), config)
        self._write_json(meta, params)
        with self._guard:
            self._open[collection_name] = _Collection(shard, params)
        return True

    @staticmethod
    def _vector_params(params: qm.VectorParams) -> Any:
        return qe.EdgeVectorParams(
            size=int(params.size), distance=DISTANCES[params.distance], on_disk=params.on_disk
        )

    @staticmethod
    def _optimizers(asked: qm.OptimizersConfigDiff | None, vectors: Any) -> Any:
        """The shard's optimiser: what was asked, segments capped at ``SEGMENT_POINTS``."""
        asked = asked or qm.OptimizersConfigDiff()
        size = 0
        if isinstance(vectors, qm.VectorParams):
            size = int(vectors.size)
        elif vectors:
            size = sum(int(v.size) for v in vectors.values())
        cap = asked.max_segment_size
        if cap is None and size:
            cap = SEGMENT_POINTS * size * 4 // 1024  # KB of float32 vectors
        return qe.EdgeOptimizersConfig(
            deleted_threshold=asked.deleted_threshold,
            vacuum_min_vector_number=asked.vacuum_min_vector_number,
            default_segment_number=asked.default_segment_number or SEGMENTS,
            max_segment_size=cap,
            indexing_threshold=asked.indexing_threshold,
        )

    def delete_collection(self, collection_name: str, **_: Any) -> bool:
        with self._guard:
            found = self._open.pop(collection_name, None)
            if found is not None:
                found.shard.close()
            folder = self._dir(collection_name)
            existed = folder.with_suffix(".json").exists()
            folder.with_suffix(".json").unlink(missing_ok=True)
            shutil.rmtree(folder, ignore_errors=True)
            return existed

    def get_collection(self, collection_name: str) -> qm.CollectionInfo:
        found = self._get(collection_name)
        info = found.shard.info()
        schema = {
            key: qm.PayloadIndexInfo(
                data_type=SCHEMA_NAMES[str(index.data_type).rsplit(".", 1)[-1].lower()],
                points=int(index.points or 0),
            )
            for key, index in (info.payload_schema or {}).items()
        }
        return qm.CollectionInfo(
            status=qm.CollectionStatus.GREEN,
            optimizer_status=qm.OptimizersStatusOneOf.OK,
            indexed_vectors_count=int(info.indexed_vectors_count or 0),
            points_count=int(info.points_count or 0),
            segments_count=int(info.segments_count or 0),
            payload_schema=schema,
            config=qm.CollectionConfig(
                params=qm.CollectionParams(
                    vectors=found.vectors,
                    sparse_vectors=found.sparse,
                    on_disk_payload=found.params.get("on_disk_payload"),
                ),
                hnsw_config=qm.HnswConfig(
                    m=16, ef_construct=100, full_scan_threshold=10_000
                ).model_copy(update=found.params.get("hnsw", {})),
                optimizer_config=qm.OptimizersConfig(
                    deleted_threshold=0.2,
                    vacuum_min_vector_number=1000,
                    default_segment_number=0,
                    flush_interval_sec=5,
                ).model_copy(update=found.params.get("optimizers", {})),
                quantization_config=qm.ScalarQuantization.model_validate(
                    found.params["quantization"]
                )
                if "quantization" in found.params
                else None,
            ),
        )

    def create_payload_index(
        self, collection_name: str, field_name: str, field_schema: Any = None, **_: Any
    ) -> qm.UpdateResult:
        if not isinstance(field_schema, qm.PayloadSchemaType):
            field_schema = qm.PayloadSchemaType(field_schema)
        self._get(collection_name).shard.update(
            qe.UpdateOperation.create_field_index(field_name, SCHEMAS[field_schema])
        )
        return qm.UpdateResult(operation_id=0, status=qm.UpdateStatus.COMPLETED)

    # aliases ---------------------------------------------------------------------------
    def get_aliases(self) -> qm.CollectionsAliasesResponse:
        return qm.CollectionsAliasesResponse(
            aliases=[
                qm.AliasDescription(alias_name=a, collection_name=c)
                for a, c in sorted(self._aliases().items())
            ]
        )

    def update_collection_aliases(self, change_aliases_operations: Sequence[Any], **_: Any) -> bool:
        """Apply every operation to a copy, then replace the pointer file in one rename."""
        aliases = self._aliases()
        for op in change_aliases_operations:
            if isinstance(op, qm.DeleteAliasOperation):
                aliases.pop(op.delete_alias.alias_name, None)
            elif isinstance(op, qm.CreateAliasOperation):
                target = op.create_alias.collection_name
                if not self.collection_exists(target):
                    raise ValueError(f"Collection {target} not found")
                aliases[op.create_alias.alias_name] = target
            elif isinstance(op, qm.RenameAliasOperation):
                old, new = op.rename_alias.old_alias_name, op.rename_alias.new_alias_name
                aliases[new] = aliases.pop(old)
            else:
                raise NotImplementedError(f"Edge engine: alias operation {type(op).__name__}")
        self._write_json(self.root / "aliases.json", aliases)
        return True

    @staticmethod
    def _write_json(path: Path, value: Any) -> None:
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        with open(tmp, "w") as handle:
            json.dump(value, handle, sort_keys=True)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
        fd = os.open(path.parent, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)

    # writes ----------------------------------------------------------------------------
    def upsert(
        self, collection_name: str, points: Any, wait: bool = True, **_: Any
    ) -> qm.UpdateResult:
        found = self._get(collection_name)
        if isinstance(points, qm.Batch):
            vectors: Iterable[Any] = points.vectors  # type: ignore[assignment]
            payloads: list[Any] = (
                list(points.payloads) if points.payloads else [None] * len(points.ids)
            )
            edge_points = [
                qe.Point(point_id(i), edge_vector(v), p)
                for i, v, p in zip(points.ids, vectors, payloads, strict=True)
            ]
        else:
            edge_points = [
                qe.Point(point_id(p.id), edge_vector(p.vector), p.payload) for p in points
            ]
        if edge_points:
            found.shard.update(qe.UpdateOperation.upsert_points(edge_points))
            found.unindexed += len(edge_points)
            self._maybe_optimize(found)
        return qm.UpdateResult(operation_id=0, status=qm.UpdateStatus.COMPLETED)

    def _maybe_optimize(self, found: _Collection) -> None:
        """Merge segments and build HNSW once enough points arrived unindexed."""
        if self.optimize_after and found.unindexed >= self.optimize_after:
            started = time.monotonic()
            self._optimize(found)
            log.info("edge: optimised a collection in %.1f s", time.monotonic() - started)

    @staticmethod
    def _optimize(found: _Collection) -> None:
        """``optimize()``, then ``flush()``: until a flush the replaced segments stay on disk,
        and a crash before it loads them again as live segments (a 300k-point build killed
        after 15 optimisations reopened with 38 segments holding 1.09M points, 3.5 GB); the
        flush also truncates the WAL, which a restart replays (554 MB there, 60 s to load)."""
        found.shard.optimize()
        found.shard.flush()
        found.unindexed = 0

    def optimize(self, collection_name: str) -> None:
        self._optimize(self._get(collection_name))

    def delete(
        self, collection_name: str, points_selector: Any, wait: bool = True, **_: Any
    ) -> qm.UpdateResult:
        shard = self._get(collection_name).shard
        if isinstance(points_selector, qm.FilterSelector):
            shard.update(
                qe.UpdateOperation.delete_points_by_filter(edge_filter(points_selector.filter))
            )
        elif isinstance(points_selector, qm.Filter):
            shard.update(qe.UpdateOperation.delete_points_by_filter(edge_filter(points_selector)))
        else:
            ids = (
                points_selector.points
                if isinstance(points_selector, qm.PointIdsList)
                else points_selector
            )
            if ids:
                shard.update(qe.UpdateOperation.delete_points([point_id(i) for i in ids]))
        return qm.UpdateResult(operation_id=0, status=qm.UpdateStatus.COMPLETED)

    def set_payload(
        self,
        collection_name: str,
        payload: dict[str, Any],
        points: Any,
        key: str | None = None,
        wait: bool = True,
        **_: Any,
    ) -> qm.UpdateResult:
        shard = self._get(collection_name).shard
        if isinstance(points, qm.FilterSelector):
            points = points.filter
        if isinstance(points, qm.Filter):
            shard.update(
                qe.UpdateOperation.set_payload_by_filter(edge_filter(points), payload, key=key)
            )
        else:
            ids = points.points if isinstance(points, qm.PointIdsList) else points
            shard.update(
                qe.UpdateOperation.set_payload([point_id(i) for i in ids], payload, key=key)
            )
        return qm.UpdateResult(operation_id=0, status=qm.UpdateStatus.COMPLETED)

    # reads -----------------------------------------------------------------------------
    def retrieve(
        self,
        collection_name: str,
        ids: Sequence[Any],
        with_payload: Any = True,
        with_vectors: bool = False,
        **_: Any,
    ) -> list[qm.Record]:
        if not ids:
            return []
        found = self._get(collection_name).shard.retrieve(
            [point_id(i) for i in ids], payload_selector(with_payload), bool(with_vectors)
        )
        return [client_record(r, bool(with_vectors)) for r in found]

    def scroll(
        self,
        collection_name: str,
        scroll_filter: qm.Filter | None = None,
        limit: int = 10,
        order_by: Any = None,
        offset: Any = None,
        with_payload: Any = True,
        with_vectors: bool = False,
        **_: Any,
    ) -> tuple[list[qm.Record], Any]:
        order = None
        if order_by is not None:
            if isinstance(order_by, str):
                order_by = qm.OrderBy(key=order_by)
            direction = (
                qe.Direction.Desc if order_by.direction == qm.Direction.DESC else qe.Direction.Asc
            )
            order = qe.OrderBy(order_by.key, direction=direction)
        records, next_offset = self._get(collection_name).shard.scroll(
            qe.ScrollRequest(
                offset=point_id(offset) if offset is not None else None,
                limit=limit,
                filter=edge_filter(scroll_filter),
                with_payload=payload_selector(with_payload),
                with_vector=bool(with_vectors),
                order_by=order,
            )
        )
        if order is not None:
            next_offset = None  # as Qdrant: an ordered scroll has no next page offset
        elif next_offset is not None and not isinstance(next_offset, int):
            next_offset = str(next_offset)
        return [client_record(r, bool(with_vectors)) for r in records], next_offset

    def _request(
        self,
        query: Any,
        using: str | None,
        query_filter: qm.Filter | None,
        limit: int,
        with_payload: Any,
        with_vectors: bool,
        score_threshold: float | None,
        prefetch: Any,
        search_params: qm.SearchParams | None,
        offset: int | None = None,
    ) -> Any:
        prefetches = None
        if prefetch:
            items = prefetch if isinstance(prefetch, list) else [prefetch]
            prefetches = [
                qe.Prefetch(
                    limit=p.limit or 10,
                    query=edge_query(p.query, p.using),
                    filter=edge_filter(p.filter),
                    params=edge_params(p.params, self.hnsw_ef),
                    score_threshold=p.score_threshold,
                )
                for p in items
            ]
        return qe.QueryRequest(
            limit=limit,
            offset=offset,
            query=edge_query(query, using) if query is not None else None,
            prefetches=prefetches,
            with_vector=bool(with_vectors),
            with_payload=payload_selector(with_payload),
            filter=edge_filter(query_filter),
            score_threshold=score_threshold,
            params=edge_params(search_params, self.hnsw_ef),
        )

    def query_points(
        self,
        collection_name: str,
        query: Any = None,
        using: str | None = None,
        prefetch: Any = None,
        query_filter: qm.Filter | None = None,
        search_params: qm.SearchParams | None = None,
        limit: int = 10,
        offset: int | None = None,
        with_payload: Any = True,
        with_vectors: bool = False,
        score_threshold: float | None = None,
        **_: Any,
    ) -> qm.QueryResponse:
        request = self._request(
            query,
            using,
            query_filter,
            limit,
            with_payload,
            with_vectors,
            score_threshold,
            prefetch,
            search_params,
            offset,
        )
        found = self._get(collection_name).shard.query(request)
        return qm.QueryResponse(points=[client_scored(p, bool(with_vectors)) for p in found])

    def _batch(self, requests: Sequence[qm.QueryRequest], with_vectors: bool | None) -> list[Any]:
        """Edge's requests for a batch; ``with_vectors`` None: as each request asks."""
        return [
            self._request(
                r.query,
                r.using,
                r.filter,
                r.limit or 10,
                r.with_payload,
                bool(r.with_vector) if with_vectors is None else with_vectors,
                r.score_threshold,
                r.prefetch,
                r.params,
                r.offset,
            )
            for r in requests
        ]

    def query_batch_points(
        self, collection_name: str, requests: Sequence[qm.QueryRequest], **_: Any
    ) -> list[qm.QueryResponse]:
        if not requests:
            return []
        edge_requests = self._batch(requests, with_vectors=None)
        answers = self._get(collection_name).shard.query_batch(qe.QueryBatchRequest(edge_requests))
        return [
            qm.QueryResponse(points=[client_scored(p, bool(r.with_vector)) for p in answer])
            for r, answer in zip(requests, answers, strict=True)
        ]

    def query_batch_hits(
        self, collection_name: str, requests: Sequence[qm.QueryRequest]
    ) -> list[list[tuple[float, dict[str, Any]]]]:
        """:meth:`query_batch_points` as bare (score, payload) pairs: no object per hit."""
        if not requests:
            return []
        edge_requests = self._batch(requests, with_vectors=False)
        answers = self._get(collection_name).shard.query_batch(qe.QueryBatchRequest(edge_requests))
        return [[(float(p.score), p.payload or {}) for p in answer] for answer in answers]

    def count(
        self,
        collection_name: str,
        count_filter: qm.Filter | None = None,
        exact: bool = True,
        **_: Any,
    ) -> qm.CountResult:
        counted = self._get(collection_name).shard.count(
            qe.CountRequest(exact=True, filter=edge_filter(count_filter))
        )
        return qm.CountResult(count=int(counted))

    # lifecycle -------------------------------------------------------------------------
    def flush(self) -> None:
        with self._guard:
            for found in self._open.values():
                found.shard.flush()

    def close(self, **_: Any) -> None:
        with self._guard:
            for found in self._open.values():
                try:
                    found.shard.flush()
                    found.shard.close()
                except Exception as exc:  # closing the others matters more
                    log.warning("edge: closing a shard failed: %s", exc)
            self._open.clear()
            if not self._lock_file.closed:
                fcntl.flock(self._lock_file, fcntl.LOCK_UN)
                self._lock_file.close()
        if self._temporary:
            shutil.rmtree(self.root, ignore_errors=True)


def open_edge(path: Path, hnsw_ef: int | None = None) -> EdgeClient:
    """An :class:`EdgeClient` on ``path``, with the store's error for a folder in use."""
    try:
        return EdgeClient(path, hnsw_ef=hnsw_ef)
    except RuntimeError as exc:
        raise ConfigError(
            f"ASTRO_QDRANT_PATH={path}: {exc}. The embedded engine allows one process; "
            "stop the other one, or run a Qdrant server and set ASTRO_QDRANT_URL"
        ) from None
