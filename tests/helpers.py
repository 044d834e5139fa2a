"""Helpers for tests that talk to the real broker (import as ``from helpers import ...``)."""

from __future__ import annotations

import asyncio
import itertools
import json
import threading
import uuid
from typing import Any

from fakes.fake_arxiv import FakeArxiv
from fakes.fake_pages import FakePaper

_ids = itertools.count()


def unique(prefix: str) -> str:
    return f"{prefix}-{next(_ids)}-{uuid.uuid4().hex[:6]}"


def isolated_env(broker_url: str, folder: Any, name: str, **overrides: str) -> dict[str, str]:
    """ASTRO_* variables of a stack of its own: consumer group, topics, Qdrant and data folder."""
    return {
        "ASTRO_KAFKA_URL": broker_url,
        "ASTRO_APP_ID": f"astro-{name}",
        "ASTRO_TOPIC_PAPERS": f"{name}.papers",
        "ASTRO_TOPIC_ALERTS": f"{name}.alerts",
        "ASTRO_TOPIC_DEADLETTER": f"{name}.deadletter",
        "ASTRO_TOPIC_MODELS": f"{name}.models",
        "ASTRO_QDRANT_PATH": str(folder / "qdrant"),
        "ASTRO_DATA_DIR": str(folder / "data"),
        "ASTRO_ROLES": "embed,alerts,api",
        "ASTRO_BATCH_WINDOW_MS": "100",
        # The operator token: WorkerProcess.request sends it unless told not to (auth=False).
        "ASTRO_API_TOKEN": f"operator-{name}-token",
        # The tests check the stream's semantics and name the torch collections; the int8
        # default (auto on CPU) is covered by tests/unit/test_backends.py and the benchmark.
        "ASTRO_BACKEND": "torch",
        **overrides,
    }


def produce(bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes]]) -> None:
    """Produce raw (key, value) messages with aiokafka and wait for the broker's acks."""
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all")
        await producer.start()
        try:
            futures = [await producer.send(topic, value=v, key=k) for k, v in messages]
            await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(go())


def consume_all(bootstrap: str, topic: str, expect: int, timeout: float = 30.0) -> list[Any]:
    """Read a topic from the beginning until ``expect`` records arrived (or the timeout)."""
    from aiokafka import AIOKafkaConsumer

    async def go() -> list[Any]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        out: list[Any] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + timeout
            while len(out) < expect and loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=500)
                for records in batch.values():
                    out.extend(records)
        finally:
            await consumer.stop()
        return out

    return asyncio.run(go())


def expected_sentences(records: list[dict[str, Any]]) -> int:
    """Sentence points the embed stage writes for these raw paper records."""
    from services.core.text import sentences_for_embedding

    return sum(len(sentences_for_embedding(r["abstract"])) for r in records)


def paper_bytes(record: dict[str, Any]) -> tuple[bytes, bytes]:
    return record["arxiv_id"].encode(), json.dumps(record).encode()


class ServedArxiv:
    """A FakeArxiv on its own thread and loop, for tests that run the command as a process."""

    def __init__(self, papers: list[FakePaper]) -> None:
        self.fake = FakeArxiv(papers)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)

    def __enter__(self) -> FakeArxiv:
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.fake.start(), self.loop).result(10)
        return self.fake

    def call(self, function: Any, *args: Any) -> Any:
        """Run ``function(*args)`` on the server's loop (the fake is not thread-safe)."""

        async def run() -> Any:
            return function(*args)

        return asyncio.run_coroutine_threadsafe(run(), self.loop).result(10)

    def __exit__(self, *exc: object) -> None:
        asyncio.run_coroutine_threadsafe(self.fake.stop(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


AUTHORED_TOPICS = ["pulsar timing", "galaxy cluster lensing", "exoplanet transit", "dust grain"]


def authored_papers() -> list[dict[str, object]]:
    """40 authors, one per group, each with four papers on one of four topics (two before
    the alerts benchmark's 2025-12-01 cut-off, two after): a tiny evaluation for it."""
    out = []
    for a in range(40):
        topic = AUTHORED_TOPICS[a % len(AUTHORED_TOPICS)]
        for n, day in enumerate(["2025-10-01", "2025-11-01", "2025-12-05", "2026-01-10"]):
            out.append(
                {
                    "arxiv_id": f"2510.{a:03d}{n}",
                    "version": 1,
                    "announced": day,
                    "title": f"{topic} study {n} by group {a}",
                    "abstract": f"We study {topic} with method{a} and survey{a}. It works well.",
                    "authors": [f"Author {a}"],
                    "categories": ["astro-ph.GA"],
                }
            )
    return out


def records_naming(client: Any, ids: list[str]) -> dict[str, dict[str, int]]:
    """Per id, the collections that hold points naming it, and how many points each.

    Every collection of the store, whatever its name (not a hand-kept list), every point: an
    id names a point when its hex or dashed form is the point's id or occurs anywhere in its
    payload. ``client`` is a QdrantClient or the embedded engine's client.
    """
    forms = {i: {uuid.UUID(i).hex, str(uuid.UUID(i))} for i in ids}
    found: dict[str, dict[str, int]] = {i: {} for i in ids}
    for collection in client.get_collections().collections:
        name = collection.name
        offset = None
        while True:
            page, offset = client.scroll(
                name, limit=256, offset=offset, with_payload=True, with_vectors=False
            )
            for point in page:
                text = f"{point.id} {json.dumps(point.payload, sort_keys=True)}"
                for i, names in forms.items():
                    if any(form in text for form in names):
                        found[i][name] = found[i].get(name, 0) + 1
            if offset is None:
                break
    return found
