"""The embed stage without a broker: in-memory Qdrant, a deterministic fake encoder."""

from __future__ import annotations

import asyncio
import hashlib
import json
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from services.core.errors import BadRecord, VectorStoreUnavailable
from services.core.schemas import DeadLetter, Paper
from services.core.settings import Settings
from services.core.text import sentences_for_embedding
from services.embed.pipeline import EmbedPipeline, RawRecord, decode_record, latest_per_paper
from services.store.binding import Binding
from services.store.vectorstore import VectorStore

DIM = 16


class FakeEncoder:
    """Deterministic unit vectors from a hash of the text (no model, same text ⇒ same vector)."""

    dim = DIM

    def __init__(self) -> None:
        self.calls: list[int] = []

    async def aencode(self, texts: list[str]) -> np.ndarray:
        self.calls.append(len(texts))
        rows = []
        for text in texts:
            seed = int.from_bytes(hashlib.sha256(text.encode()).digest()[:4], "little")
            v = np.random.default_rng(seed).standard_normal(DIM).astype(np.float32)
            rows.append(v / np.linalg.norm(v))
        return np.vstack(rows)


class FlakyStore(VectorStore):
    """A real in-memory store whose first ``failures`` calls report Qdrant as down."""

    def __init__(self, *args: Any, failures: int = 0, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.failures = failures

    async def run(self, fn: Any, *args: Any, **kwargs: Any) -> Any:
        if self.failures > 0:
            self.failures -= 1
            raise VectorStoreUnavailable("Qdrant unreachable: connection refused", 0.01)
        return await super().run(fn, *args, **kwargs)


def make(failures: int = 0, **overrides: Any) -> tuple[EmbedPipeline, FlakyStore, list[DeadLetter]]:
    settings = Settings(qdrant_path=Path(":memory:"), **overrides)
    store = FlakyStore(settings, DIM, "fake-v1", failures=failures)
    store.ensure_collections()
    letters: list[DeadLetter] = []

    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    pipeline = EmbedPipeline(settings, Binding(FakeEncoder(), store), dead)
    pipeline.max_backoff_s = 0.02
    return pipeline, store, letters


def rec(value: bytes | dict[str, Any], offset: int = 0, key: bytes | None = b"k") -> RawRecord:
    raw = value if isinstance(value, bytes) else json.dumps(value).encode()
    return RawRecord("astro.papers", 0, offset, key, raw, 1.0)


def run(pipeline: EmbedPipeline, records: list[RawRecord]) -> Any:
    return asyncio.run(pipeline.process(records))


@pytest.fixture(scope="module")
def records(sample_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    return sample_records[:12]


def test_batch_is_indexed_with_one_encode_call(records: list[dict[str, Any]]) -> None:
    pipeline, store, letters = make()
    result = run(pipeline, [rec(r, i) for i, r in enumerate(records)])
    want = sum(len(sentences_for_embedding(r["abstract"])) for r in records)
    assert (result.sentences, len(result.indexed), letters) == (want, len(records), [])
    assert pipeline.encoder.calls == [want + len(records)]  # sentences + titles, one call
    assert store.count(store.sentences) == want
    assert store.count(store.papers) == len(records)


def test_redelivery_is_skipped_and_writes_nothing_new(records: list[dict[str, Any]]) -> None:
    pipeline, store, _ = make()
    run(pipeline, [rec(r) for r in records])
    result = run(pipeline, [rec(r) for r in records])
    assert (result.skipped, result.indexed) == (len(records), [])
    assert len(pipeline.encoder.calls) == 1


def test_new_version_replaces_sentences_and_old_version_is_ignored(
    records: list[dict[str, Any]],
) -> None:
    pipeline, store, _ = make()
    v1 = records[0]
    n1 = len(sentences_for_embedding(v1["abstract"]))
    run(pipeline, [rec(v1)])
    shorter = {**v1, "version": 2, "abstract": "We measure the Hubble constant. It is 70."}
    run(pipeline, [rec(shorter)])
    points = store.sentences_of(v1["arxiv_id"])
    assert [p.payload["version"] for p in points] == [2, 2]
    assert n1 > 2
    result = run(pipeline, [rec(v1)])  # a late v1 must not come back
    assert result.skipped == 1
    assert store.count(store.sentences) == 2


def test_latest_version_in_a_batch_wins(records: list[dict[str, Any]]) -> None:
    v1 = Paper.model_validate(records[0])
    v3 = v1.model_copy(update={"version": 3})
    r1, r2 = rec(records[0], 1), rec(records[0], 2)
    assert latest_per_paper([(r1, v3), (r2, v1)]) == [(r1, v3)]


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "empty value"),
        (b"\xc3\x28", "not valid UTF-8"),
        (b"[1, 2]", "JSON list"),
        (b"{", "not JSON"),
        (b'{"arxiv_id": "12345", "title": "t", "abstract": "a"}', "not an arXiv id"),
        (b'{"arxiv_id": "2501.00001", "title": "t", "abstract": "a", "version": 0}', "version"),
    ],
)
def test_decode_reasons(value: bytes, reason: str) -> None:
    with pytest.raises(BadRecord, match=reason):
        decode_record(rec(value), Settings())


def test_bad_records_are_dead_lettered_and_good_ones_indexed(records: list[dict[str, Any]]) -> None:
    pipeline, store, letters = make(max_abstract_chars=5000)
    long = {**records[1], "abstract": "x " * 3000}
    batch = [rec(b"nope", 0), rec(records[0], 1), rec(long, 2, key=None)]
    result = run(pipeline, batch)
    assert result.dead == 2 and len(result.indexed) == 1
    assert [letter.offset for letter in letters] == [0, 2]
    assert "ASTRO_MAX_ABSTRACT_CHARS" in letters[1].error
    assert letters[1].key is None and letters[0].source_topic == "astro.papers"


def test_qdrant_outage_is_retried_until_it_recovers(records: list[dict[str, Any]]) -> None:
    pipeline, store, letters = make(failures=3)
    result = run(pipeline, [rec(records[0])])
    assert len(result.indexed) == 1 and letters == []
    assert store.count(store.papers) == 1


def test_poison_paper_is_isolated_from_its_batch(
    records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    pipeline, store, letters = make()
    poison = records[2]["arxiv_id"]
    real = pipeline.encoder.aencode

    async def picky(texts: list[str]) -> np.ndarray:
        if any(records[2]["title"][:30] in t for t in texts):
            raise ValueError("tokenizer exploded")
        return await real(texts)

    monkeypatch.setattr(pipeline.encoder, "aencode", picky)
    result = run(pipeline, [rec(r, i) for i, r in enumerate(records[:4])])
    assert len(result.indexed) == 3
    assert [(letter.offset, letter.stage) for letter in letters] == [(2, "embed")]
    assert "tokenizer exploded" in letters[0].error
    assert poison not in store.papers_by_id([r["arxiv_id"] for r in records[:4]])


def test_no_record_stops_the_batch(
    records: list[dict[str, Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    """Nested JSON, a 600 KB arxiv_id, an error nobody expected: each is dead-lettered with a
    bounded reason, and the good records around them are indexed."""
    pipeline, store, letters = make()
    nested = b"[" * 200_000 + b"]" * 200_000
    nested_in_object = b'{"arxiv_id": ' + b"[" * 5000 + b"]" * 5000 + b"}"
    long_id = {**records[3], "arxiv_id": "9" * 600_000}
    batch = [
        rec(records[0], 0),
        rec(nested, 1),
        rec(records[1], 2),
        rec(nested_in_object, 3),
        rec(long_id, 4),
        rec(records[2], 5),
    ]
    result = run(pipeline, batch)
    assert len(result.indexed) == 3 and result.dead == 3
    assert [letter.offset for letter in letters] == [1, 3, 4]
    assert "nested" in letters[0].error and "nested" in letters[1].error
    assert "not an arXiv id" in letters[2].error
    assert all(len(letter.error) <= 2100 for letter in letters)
    assert all(len(letter.model_dump_json()) < 1_000_000 for letter in letters)
    assert letters[2].truncated and letters[2].value_bytes == len(batch[4].value or b"")

    # A bug anywhere in decoding: the record is dead-lettered, not the agent crashed.
    def explode(record: RawRecord, settings: Settings) -> Paper:
        raise RecursionError("maximum recursion depth exceeded")

    monkeypatch.setattr("services.embed.pipeline.decode_record", explode)
    result = run(pipeline, [rec(records[4], 6)])
    assert result.dead == 1 and letters[-1].offset == 6
    assert "RecursionError" in letters[-1].error


def test_dead_letter_of_a_huge_value_fits_the_producer(records: list[dict[str, Any]]) -> None:
    pipeline, _, letters = make()
    huge = json.dumps({**records[0], "abstract": "Stars shine. " * 400_000}).encode()
    assert len(huge) > 5_000_000
    binary = b"\xff" * 3_000_000
    result = run(pipeline, [rec(huge, 0), rec(binary, 1)])
    assert result.dead == 2
    for letter, raw in zip(letters, [huge, binary], strict=True):
        assert len(letter.model_dump_json().encode()) < 1_000_000
        assert (letter.truncated, letter.value_bytes) == (True, len(raw))
    assert huge.decode().startswith(letters[0].value)
    assert letters[1].value_encoding == "base64"


def test_metadata_change_updates_payloads_without_re_encoding(
    records: list[dict[str, Any]],
) -> None:
    """A cross-list (same version and text, new categories and authors) reaches Qdrant."""
    pipeline, store, _ = make()
    paper = records[0]
    run(pipeline, [rec(paper)])
    crosslisted = {
        **paper,
        "categories": [*paper["categories"], "physics.data-an"],
        "authors": [*paper["authors"], "A. Newcomer"],
    }
    result = run(pipeline, [rec(crosslisted)])
    assert result.relabelled == 1 and result.indexed == []
    assert len(pipeline.encoder.calls) == 1  # nothing re-encoded
    point = store.papers_by_id([paper["arxiv_id"]])[paper["arxiv_id"]]
    assert point.payload is not None
    assert point.payload["categories"] == crosslisted["categories"]
    assert point.payload["authors"] == crosslisted["authors"]
    sentences = store.sentences_of(paper["arxiv_id"])
    assert len(sentences) == len(sentences_for_embedding(paper["abstract"]))
    for point in sentences:
        assert point.payload is not None
        assert point.payload["categories"] == crosslisted["categories"]
        assert point.payload["authors"] == crosslisted["authors"]
        assert "text" in point.payload and "sentence_index" in point.payload
    # and once relabelled, a redelivery is a plain duplicate again
    assert run(pipeline, [rec(crosslisted)]).skipped == 1


def test_while_a_batch_is_written_the_next_is_encoded_before_its_lookup(
    records: list[dict[str, Any]],
) -> None:
    """With the previous batch's commit in flight (it holds the Qdrant thread), the encode
    starts before the lookup; the lookup still decides: a duplicate's vectors are dropped,
    and a batch that skipped papers turns the early encode off for the next one."""
    pipeline, store, _ = make()
    run(pipeline, [rec(r, i) for i, r in enumerate(records[:4])])
    order: list[str] = []
    encoder = pipeline.encoder
    encode, lookup = encoder.aencode, store.papers_by_id

    async def traced_encode(texts: list[str]) -> np.ndarray:
        order.append("encode")
        return await encode(texts)

    def traced_lookup(ids: list[str]) -> Any:
        order.append("lookup")
        return lookup(ids)

    encoder.aencode = traced_encode  # type: ignore[method-assign]
    store.papers_by_id = traced_lookup  # type: ignore[method-assign]

    async def scenario() -> None:
        writing = asyncio.get_running_loop().create_future()  # a commit that is in flight
        steps = [
            (records[4:8], ["encode", "lookup"], 0),
            (records[:2] + records[8:10], ["encode", "lookup"], 2),  # two already indexed
            (records[10:12], ["lookup", "encode"], 0),  # after skips: lookup first again
        ]
        for batch, expected, skipped in steps:
            order.clear()
            prepared = await pipeline.prepare([rec(r) for r in batch], earlier=writing)
            assert order == expected
            result = await pipeline.commit(prepared)
            assert (result.skipped, len(result.indexed)) == (skipped, len(batch) - skipped)
            for item in result.indexed:  # each paper's own vectors, whatever was dropped
                texts = [m for _, m in sentences_for_embedding(item.paper.abstract)]
                assert np.allclose(item.sentence_vectors, await FakeEncoder().aencode(texts))
        writing.cancel()

    asyncio.run(scenario())
    assert store.count(store.papers) == 12
