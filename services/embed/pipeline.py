"""The embed stage: raw records → validated papers → sentences → one encode call → Qdrant."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from pydantic import ValidationError

from services.core import metrics
from services.core.errors import BadRecord, DependencyUnavailable, describe_validation_error
from services.core.ids import content_digest, sentence_point_id
from services.core.retry import until_available
from services.core.schemas import DeadLetter, Paper, clip
from services.core.settings import Settings
from services.core.text import normalise, sentences_for_embedding
from services.core.types import TextEncoder
from services.embed.points import PaperSource, build_points, texts_of
from services.embed.points import paper_vector as paper_vector  # benchmarks import it here
from services.store.binding import Binding
from services.store.points import set_paper_fields
from services.store.vectorstore import VectorStore, published_ts

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class RawRecord:
    """One Kafka record as it arrived, before any decoding."""

    topic: str
    partition: int | None
    offset: int | None
    key: bytes | None
    value: bytes | None
    timestamp: float | None = None  # seconds since the epoch (producer or broker time)

    @property
    def where(self) -> str:
        return f"topic={self.topic} partition={self.partition} offset={self.offset}"


@dataclass
class IndexedPaper:
    """A paper with its sentences and vectors, handed to the alert matcher."""

    paper: Paper
    record: RawRecord
    sentences: list[str]
    sentence_vectors: np.ndarray
    paper_vector: np.ndarray
    digest: str
    previous_version: int | None = None


@dataclass
class BatchResult:
    indexed: list[IndexedPaper] = field(default_factory=list)
    skipped: int = 0
    dead: int = 0
    relabelled: int = 0  # metadata rewritten, text unchanged (not re-encoded)
    sentences: int = 0


@dataclass
class Plans:
    """Encoded papers of a batch, waiting to be written."""

    plans: list[tuple[RawRecord, Paper, list[tuple[str, str]], str]]
    vectors: np.ndarray
    existing: dict[str, Any]
    # Papers whose text is indexed as it is but whose metadata (authors, categories…)
    # changed: only their payloads are rewritten, nothing is re-encoded.
    relabel: list[tuple[RawRecord, Paper, dict[str, Any]]] = field(default_factory=list)


@dataclass
class Prepared:
    """A batch between :meth:`EmbedPipeline.prepare` and :meth:`EmbedPipeline.commit`."""

    started: float
    size: int
    result: BatchResult = field(default_factory=BatchResult)
    items: list[tuple[RawRecord, Paper]] = field(default_factory=list)
    plans: Plans | None = None
    failed: bool = False


# Payload fields that come from a paper's metadata rather than from its text.
METADATA_FIELDS = ("title", "authors", "categories", "primary_category", "published")
MAX_JSON_DEPTH = 64


DeadLetterSink = Callable[[DeadLetter], Awaitable[None]]
IndexedHook = Callable[[list[IndexedPaper]], Awaitable[None]]


def decode_record(record: RawRecord, settings: Settings) -> Paper:
    """Validate one raw record into a Paper.

    Raises:
        BadRecord: with a reason a person can act on.
    """
    if not record.value:
        raise BadRecord("empty value: expected a Paper JSON object")
    try:
        text = record.value.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise BadRecord(f"value is not valid UTF-8 (byte {exc.start}: {exc.reason})") from None
    if _nesting(text) > MAX_JSON_DEPTH:
        raise BadRecord(f"value is JSON nested deeper than {MAX_JSON_DEPTH} levels")
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise BadRecord(
            f"value is not JSON: {exc.msg} at line {exc.lineno} column {exc.colno}"
        ) from None
    except RecursionError:
        raise BadRecord("value is JSON nested too deeply to decode") from None
    if not isinstance(data, dict):
        raise BadRecord(f"value is JSON {type(data).__name__}, expected a Paper object")
    try:
        paper = Paper.model_validate(data)
    except ValidationError as exc:
        reasons = "; ".join(describe_validation_error(exc, limit=5))
        raise BadRecord(f"not a valid Paper: {reasons}") from None
    if len(paper.abstract) > settings.max_abstract_chars:
        raise BadRecord(
            f"abstract has {len(paper.abstract)} characters, over the limit of "
            f"{settings.max_abstract_chars} (ASTRO_MAX_ABSTRACT_CHARS)"
        )
    return paper


def _nesting(text: str) -> int:
    """An upper bound of the JSON nesting depth of ``text`` (brackets inside strings count).

    Cheap enough for every record, and it keeps :func:`json.loads` from recursing deep.
    """
    opens = text.count("[") + text.count("{")
    if opens <= MAX_JSON_DEPTH:
        return opens
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > MAX_JSON_DEPTH:
                return deepest
        elif char in "]}":
            depth -= 1
    return deepest


def latest_per_paper(items: Sequence[tuple[RawRecord, Paper]]) -> list[tuple[RawRecord, Paper]]:
    """Keep one record per arxiv_id: the highest version, the latest offset among equals."""
    best: dict[str, tuple[RawRecord, Paper]] = {}
    for record, paper in items:
        seen = best.get(paper.arxiv_id)
        if seen is None or paper.version >= seen[1].version:
            best[paper.arxiv_id] = (record, paper)
    return list(best.values())


def model_texts(papers: Sequence[tuple[Paper, list[tuple[str, str]]]]) -> list[str]:
    """What the encoder sees for papers and their splits: each normalised title, then its
    sentences' model texts (the row order of :func:`~services.embed.points.build_points`)."""
    return texts_of(
        [normalise(paper.title) for paper, _ in papers],
        [[model_text for _, model_text in split] for _, split in papers],
    )


def sentence_payload(paper: Paper, index: int, text: str, model_version: str) -> dict[str, Any]:
    return {
        **paper_payload(paper, model_version),
        "sentence_index": index,
        "text": text,
    }


def paper_payload(paper: Paper, model_version: str) -> dict[str, Any]:
    return {
        "arxiv_id": paper.arxiv_id,
        "version": paper.version,
        "title": paper.title,
        "authors": paper.authors,
        "categories": paper.categories,
        "primary_category": paper.primary_category,
        "published": paper.date,
        "model_version": model_version,
    }


def metadata_of(payload: dict[str, Any]) -> dict[str, Any]:
    return {name: payload.get(name) for name in METADATA_FIELDS}


class EmbedPipeline:
    """Turns micro-batches of raw records into Qdrant points; idempotent and retrying.

    Args:
        settings: configuration.
        binding: the model and collections new papers go to (a rollout swaps it).
        dead_letter: awaited for each bad record; must return once the broker has it.
        on_indexed: awaited with the batch's new papers *before* their paper points are
            written, so a crash in between re-runs it (the alert matcher lives here).
    """

    def __init__(
        self,
        settings: Settings,
        binding: Binding,
        dead_letter: DeadLetterSink,
        on_indexed: IndexedHook | None = None,
    ) -> None:
        self.settings = settings
        self.binding = binding
        self.dead_letter = dead_letter
        self.on_indexed = on_indexed
        self.max_backoff_s = 30.0
        self._committing: set[str] = set()
        self._speculate = True  # encode while looking up (see _plan)

    @property
    def encoder(self) -> TextEncoder:
        return self.binding.encoder

    @property
    def store(self) -> VectorStore:
        return self.binding.store

    async def process(self, records: Sequence[RawRecord]) -> BatchResult:
        """Index a micro-batch. Returns only when every good record is in Qdrant."""
        return await self.commit(await self.prepare(records))

    async def prepare(
        self, records: Sequence[RawRecord], *, earlier: asyncio.Future[Any] | None = None
    ) -> Prepared:
        """First half of a batch: decode, dead-letter, look up, split and encode.

        Args:
            records: the micro-batch.
            earlier: the previous batch's commit, still running. If this batch touches
                one of its papers, wait for it, so the version lookup sees its writes.
        """
        started = time.perf_counter()
        prepared = Prepared(started=started, size=len(records))
        metrics.PAPERS_RECEIVED.inc(len(records))
        good: list[tuple[RawRecord, Paper]] = []
        for record in records:
            try:
                good.append((record, decode_record(record, self.settings)))
            except BadRecord as exc:
                await self._dead(record, "decode", exc.reason, prepared.result)
            except Exception as exc:  # whatever one record does, it must not stop the stream
                log.exception("decoding failed unexpectedly %s", record.where)
                metrics.ERRORS.labels("decode", type(exc).__name__).inc()
                await self._dead(record, "decode", describe(exc), prepared.result)
        metrics.STAGE_SECONDS.labels("decode").observe(time.perf_counter() - started)
        todo = latest_per_paper(good)
        prepared.result.skipped += len(good) - len(todo)
        metrics.PAPERS_SKIPPED.labels("superseded").inc(len(good) - len(todo))
        ids = {paper.arxiv_id for _, paper in todo}
        if earlier is not None and not earlier.done() and ids & self._committing:
            await asyncio.wait([earlier])
        prepared.items = todo
        if todo:
            try:
                busy = earlier is not None and not earlier.done()
                prepared.plans = await self._plan(todo, prepared.result, early=busy)
            except (DependencyUnavailable, asyncio.CancelledError):
                raise
            except Exception:
                log.exception(
                    "preparing a batch of %d failed; will go paper by paper (%s…)",
                    len(todo),
                    todo[0][0].where,
                )
                prepared.failed = True
        self._committing = ids
        return prepared

    async def commit(self, prepared: Prepared) -> BatchResult:
        """Second half: write to Qdrant, run the hook, write paper points, count."""
        result = prepared.result
        if prepared.plans is not None and not prepared.failed:
            try:
                await self._write(prepared.plans, result)
            except (DependencyUnavailable, asyncio.CancelledError):
                raise
            except Exception:
                log.exception(
                    "writing a batch of %d failed; retrying paper by paper (%s…)",
                    len(prepared.items),
                    prepared.items[0][0].where,
                )
                prepared.failed = True
        if prepared.failed:
            # One poison record must not block the partition nor sink the batch:
            # redo the batch paper by paper, dead-lettering whichever still fails.
            for item in prepared.items:
                try:
                    plans = await self._plan([item], result)
                    if plans is not None:
                        await self._write(plans, result)
                except (DependencyUnavailable, asyncio.CancelledError):
                    raise
                except Exception as exc:
                    metrics.ERRORS.labels("embed", type(exc).__name__).inc()
                    log.exception("embedding failed %s", item[0].where)
                    await self._dead(item[0], "embed", describe(exc), result)
        metrics.BATCH_PAPERS.observe(prepared.size)
        metrics.STAGE_SECONDS.labels("total").observe(time.perf_counter() - prepared.started)
        return result

    async def _plan(
        self, items: list[tuple[RawRecord, Paper]], result: BatchResult, *, early: bool = False
    ) -> Plans | None:
        """Skip stale and unchanged papers, split the rest and encode every text in one call.

        ``early``: the previous batch is being written. Its writes hold the Qdrant thread,
        so this batch's lookup waits behind them while the encoder would sit idle: in a
        stream of new papers (the last batch skipped none), the encode then starts before
        the lookup, on every paper of the batch. The lookup still decides what is written;
        the vectors of papers it skips are dropped. A batch that skipped papers (a replay,
        redeliveries) turns this off until a batch skips none again, so a replay costs at
        most one batch of encodes.
        """
        store = self.store
        splits = {
            id(paper): sentences_for_embedding(paper.abstract, self.settings.max_sentences)
            for _, paper in items
        }
        encoding: asyncio.Future[np.ndarray] | None = None
        early_rows: dict[int, slice] = {}
        t0 = time.perf_counter()
        if early and self._speculate and len(items) > 1:
            row = 0
            split_papers = []
            for _, paper in items:
                split = splits[id(paper)]
                if split:
                    early_rows[id(paper)] = slice(row, row + 1 + len(split))
                    row += 1 + len(split)
                    split_papers.append((paper, split))
            if split_papers:
                encoding = asyncio.ensure_future(self.encoder.aencode(model_texts(split_papers)))
        try:
            if encoding is not None:
                await asyncio.sleep(0)  # the encode is on its thread before the lookup queues
            existing = await self.retry(
                "lookup", items[0][0], store.papers_by_id, [p.arxiv_id for _, p in items]
            )
            return await self._decide(items, result, existing, splits, encoding, early_rows, t0)
        finally:
            if encoding is not None and not encoding.done():
                encoding.cancel()
            elif encoding is not None and not encoding.cancelled():
                encoding.exception()  # an unused early encode's error is not a loose end

    async def _decide(
        self,
        items: list[tuple[RawRecord, Paper]],
        result: BatchResult,
        existing: dict[str, Any],
        splits: dict[int, list[tuple[str, str]]],
        early: asyncio.Future[np.ndarray] | None,
        early_rows: dict[int, slice],
        t0: float,
    ) -> Plans | None:
        store = self.store
        plans: list[tuple[RawRecord, Paper, list[tuple[str, str]], str]] = []
        relabel: list[tuple[RawRecord, Paper, dict[str, Any]]] = []
        skipped = 0
        for record, paper in items:
            digest = content_digest(paper.title, paper.abstract)
            old = existing.get(paper.arxiv_id)
            old_payload = old.payload if old is not None and old.payload else {}
            old_version = int(old_payload.get("version", 0))
            if old_version > paper.version:
                metrics.PAPERS_SKIPPED.labels("stale").inc()
                result.skipped += 1
                skipped += 1
                log.info(
                    "skip stale v%d of %s (v%d indexed) %s",
                    paper.version,
                    paper.arxiv_id,
                    old_version,
                    record.where,
                )
                continue
            if old_version == paper.version and old_payload.get("digest") == digest:
                skipped += 1
                new_payload = paper_payload(paper, store.model_version)
                if metadata_of(old_payload) != metadata_of(new_payload):
                    relabel.append((record, paper, new_payload))
                    continue
                metrics.PAPERS_SKIPPED.labels("duplicate").inc()
                result.skipped += 1
                continue
            sentences = splits[id(paper)]
            if not sentences:
                await self._dead(record, "split", "abstract has no sentences to embed", result)
                continue
            plans.append((record, paper, sentences, digest))
        if len(items) > 1:
            self._speculate = skipped == 0
        if not plans and not relabel:
            return None
        vectors = np.zeros((0, self.encoder.dim), dtype=np.float32)
        if plans:
            if early is not None:
                encoded = await early
                rows = [early_rows[id(paper)] for _, paper, _, _ in plans]
                vectors = np.concatenate([encoded[r] for r in rows])
                texts = sum(r.stop - r.start for r in rows)
            else:
                batch = model_texts([(paper, sentences) for _, paper, sentences, _ in plans])
                t0 = time.perf_counter()
                vectors = await self.encoder.aencode(batch)
                texts = len(batch)
            metrics.STAGE_SECONDS.labels("encode").observe(time.perf_counter() - t0)
            metrics.BATCH_SENTENCES.observe(texts)
        return Plans(plans, vectors, existing, relabel)

    async def _write(self, planned: Plans, result: BatchResult) -> None:
        store = self.store
        version = store.model_version
        for record, paper, payload in planned.relabel:
            await self.retry("upsert", record, relabel_paper, store, paper.arxiv_id, payload)
            metrics.PAPERS_SKIPPED.labels("metadata").inc()
            result.relabelled += 1
            log.info("metadata of %s v%d updated %s", paper.arxiv_id, paper.version, record.where)
        if not planned.plans:
            return
        sources = [
            PaperSource(
                paper.arxiv_id,
                {
                    **paper_payload(paper, version),
                    "digest": digest,
                    "sentence_count": len(sentences),
                },
                [
                    (
                        sentence_point_id(paper.arxiv_id, paper.version, index),
                        sentence_payload(paper, index, display, version),
                    )
                    for index, (display, _) in enumerate(sentences)
                ],
            )
            for _, paper, sentences, digest in planned.plans
        ]
        points = build_points(sources, planned.vectors, version)
        indexed: list[IndexedPaper] = []
        for n, (record, paper, sentences, digest) in enumerate(planned.plans):
            old = planned.existing.get(paper.arxiv_id)
            old_payload = (old.payload or {}) if old is not None else {}
            indexed.append(
                IndexedPaper(
                    paper=paper,
                    record=record,
                    sentences=[d for d, _ in sentences],
                    sentence_vectors=points.sentences_of(n),
                    paper_vector=points.paper_vectors[n],
                    digest=digest,
                    previous_version=old_payload.get("version"),
                )
            )

        t0 = time.perf_counter()
        where = planned.plans[0][0]
        await self.retry(
            "upsert",
            where,
            store.upsert,
            store.sentences,
            points.sentence_ids,
            points.sentence_vectors,
            points.sentence_payloads,
        )
        for item in indexed:
            if item.previous_version is not None:
                await self.retry(
                    "upsert",
                    item.record,
                    store.delete_stale_sentences,
                    item.paper.arxiv_id,
                    item.paper.version,
                    len(item.sentences),
                )
        metrics.STAGE_SECONDS.labels("upsert").observe(time.perf_counter() - t0)

        if self.on_indexed is not None:
            t0 = time.perf_counter()
            await self.on_indexed(indexed)
            metrics.STAGE_SECONDS.labels("match").observe(time.perf_counter() - t0)

        # Paper points last: their digest marks the paper done, so a crash before this
        # line re-does sentences and alerts (idempotently) instead of skipping them.
        await self.retry(
            "upsert",
            where,
            store.upsert,
            store.papers,
            points.paper_ids,
            points.paper_vectors,
            points.paper_payloads,
            points.paper_lexical,
        )

        now = time.time()
        for item in indexed:
            if item.record.timestamp:
                metrics.END_TO_END_LAG.observe(max(0.0, now - item.record.timestamp))
        metrics.PAPERS_INDEXED.inc(len(indexed))
        metrics.SENTENCES_INDEXED.inc(len(points.sentence_ids))
        metrics.LAST_BATCH.set(now)
        result.indexed.extend(indexed)
        result.sentences += len(points.sentence_ids)

    async def retry(self, stage: str, where: RawRecord, fn: Callable[..., Any], *args: Any) -> Any:
        """Call a Qdrant operation until it succeeds, backing off while Qdrant is down."""
        store = self.store
        return await until_available(
            lambda: store.run(fn, *args), stage, where.where, max_backoff_s=self.max_backoff_s
        )

    async def _dead(self, record: RawRecord, stage: str, reason: str, result: BatchResult) -> None:
        log.warning("dead-letter (%s) %s: %s", stage, record.where, reason)
        letter = DeadLetter.from_raw(
            stage=stage,
            error=reason,
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            key=record.key,
            value=record.value,
        )
        await self.dead_letter(letter)
        metrics.DEADLETTERS.labels(stage).inc()
        result.dead += 1


def describe(exc: BaseException) -> str:
    """``Type: message`` of an unexpected error, bounded for a dead letter."""
    return clip(f"{type(exc).__name__}: {exc}", 500)


def relabel_paper(store: VectorStore, arxiv_id: str, payload: dict[str, Any]) -> None:
    """Rewrite the metadata of a paper's sentence points, then of its paper point (blocking).

    The text, vectors, digest and model version stay; the paper point goes last, as it
    marks the paper done.
    """
    fields = {name: payload[name] for name in METADATA_FIELDS}
    fields["published_ts"] = published_ts(fields["published"])  # None: matched on published
    set_paper_fields(store, arxiv_id, fields)
