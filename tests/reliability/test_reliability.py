"""The reliability suite (``make reliability``): kills, poison records and a lost worker, on real parts.

Each test starts the real Tansu broker and real worker processes, does something a
production stream will one day do to us, and counts: papers and sentence points in Qdrant,
alerts stored and published, dead letters. Each writes one JSON line of results to
``$ASTRO_RELIABILITY_RESULTS`` (default ``.bench/reliability.jsonl``); docs/reliability.md
holds the table of a run.
"""

from __future__ import annotations

import asyncio
import gzip
import json
import random
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import consume_all, expected_sentences, isolated_env, paper_bytes, produce, unique
from qdrant_client import QdrantClient

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.reliability

DATA = Path(__file__).resolve().parents[1] / "data" / "papers-1k.jsonl.gz"
ROOT = Path(__file__).resolve().parents[2]


def load_1k() -> list[dict[str, Any]]:
    """1,000 real astro-ph papers (arXiv metadata, CC0), a fixed sample of the shared set."""
    with gzip.open(DATA, "rt") as f:
        return [json.loads(line) for line in f if line.strip()]


def record(result: dict[str, Any]) -> None:
    import os

    path = Path(os.environ.get("ASTRO_RELIABILITY_RESULTS", ROOT / ".bench" / "reliability.jsonl"))
    path.parent.mkdir(parents=True, exist_ok=True)
    with path.open("a") as f:
        f.write(json.dumps({"at": time.strftime("%Y-%m-%dT%H:%M:%S"), **result}) + "\n")
    print("\nRESULT", json.dumps(result))


def qdrant_counts(folder: Path) -> dict[str, Any]:
    """Papers, sentence points and stored alerts of a stopped worker's local Qdrant."""
    client = QdrantClient(path=str(folder))
    try:
        aliases = {a.alias_name: a.collection_name for a in client.get_aliases().aliases}

        def ids(name: str) -> list[str]:
            out: list[str] = []
            offset = None
            while True:
                page, offset = client.scroll(name, limit=2000, offset=offset, with_payload=False)
                out.extend(str(p.id) for p in page)
                if offset is None:
                    return out

        papers = ids(aliases["astro_papers"])
        sentences = ids(aliases["astro_sentences"])
        alerts = ids("astro_alerts") if client.collection_exists("astro_alerts") else []
        return {"papers": papers, "sentences": sentences, "alerts": alerts}
    finally:
        client.close()


def test_sigkill_at_random_points_loses_and_duplicates_nothing(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    """1,000 papers, 3 subscriptions (every paper alerts), 6 SIGKILLs at random moments,
    one of them between an alert's publish and its store."""
    records = load_1k()
    env = isolated_env(
        broker.url,
        tmp_path,
        unique("kills"),
        ASTRO_ROLES="embed,alerts,api",
        ASTRO_TAKE_MAX_PAPERS="16",
    )
    rng = random.Random(20261201)
    logs = tmp_path / "logs"
    first = WorkerProcess(env, logs / "w0.log").start()
    subs = []
    for query in ("dark matter halos", "exoplanet atmospheres", "gamma-ray bursts"):
        status, body = first.request(
            "POST", "/subscriptions", {"name": query, "queries": [query], "threshold": 0}
        )
        assert status == 201, body
        subs.append(body["id"])
    produce(broker.bootstrap, env["ASTRO_TOPIC_PAPERS"], [paper_bytes(r) for r in records])
    kills = 0
    worker = first
    progress: list[int] = []
    try:
        for round_ in range(6):
            if round_ == 3:
                # This worker exits right after the broker acked a micro-batch's alerts and
                # before they are stored: the next worker re-matches those papers.
                worker.stop()
                worker = WorkerProcess(
                    {**env, "ASTRO_CRASH_AT": "after_alert_publish"}, logs / "crash.log"
                ).start()
                deadline = time.monotonic() + 120
                while worker.proc is not None and worker.proc.poll() is None:
                    assert time.monotonic() < deadline, "the crash point was never reached"
                    time.sleep(0.2)
                kills += 1
            else:
                time.sleep(rng.uniform(2.0, 12.0))
                progress.append(worker.get("/stats")[1]["papers"])
                worker.kill()
                worker.stop()
                kills += 1
            worker = WorkerProcess(env, logs / f"w{round_ + 1}.log").start()
        want = expected_sentences(records)
        done = worker.wait_for(lambda s: s["papers"] == len(records), timeout=1800)
        done = worker.wait_for(lambda s: s["sentences"] >= want, timeout=60)
        time.sleep(2)  # the last micro-batch's alerts are stored before its paper points
    finally:
        worker.stop()
    assert progress and max(progress) < len(records), "every kill came after the stream ended"
    stored = qdrant_counts(Path(env["ASTRO_QDRANT_PATH"]))
    published = consume_all(broker.bootstrap, env["ASTRO_TOPIC_ALERTS"], expect=10**9, timeout=20)
    alert_ids = [json.loads(r.value)["alert_id"] for r in published]
    pairs = {
        (json.loads(r.value)["subscription_id"], json.loads(r.value)["arxiv_id"]) for r in published
    }
    result = {
        "test": "sigkill",
        "papers": len(records),
        "kills": kills,
        "indexed_papers": len(stored["papers"]),
        "sentence_points": len(stored["sentences"]),
        "expected_sentence_points": want,
        "alerts_stored": len(stored["alerts"]),
        "alert_records_published": len(alert_ids),
        "distinct_alerts_published": len(set(alert_ids)),
        "subscription_paper_pairs": len(pairs),
    }
    record(result)
    assert done["papers"] == len(records) == len(set(stored["papers"]))
    assert len(stored["sentences"]) == want  # 0 lost, 0 duplicated, no stale version left
    # Every (subscription, paper) alerted once: one stored alert, one id on the topic.
    assert len(stored["alerts"]) == len(set(stored["alerts"])) == len(set(alert_ids)) == len(pairs)
    assert set(stored["alerts"]) == set(alert_ids)


BAD_KINDS = [
    "tombstone",
    "empty",
    "not-utf8",
    "not-json",
    "json-array",
    "json-number",
    "json-string",
    "nested-array",
    "nested-object",
    "missing-title",
    "missing-abstract",
    "bad-arxiv-id",
    "huge-arxiv-id",
    "version-zero",
    "authors-not-list",
    "categories-number",
    "empty-abstract",
    "punctuation-abstract",
    "long-abstract",
    "null-fields",
]


def bad_record(kind: str, i: int, template: dict[str, Any]) -> tuple[bytes | None, bytes | None]:
    """One malformed record of ``kind`` (its key is unique, so each is counted once)."""
    key = f"bad-{i}".encode()
    good = {**template, "arxiv_id": f"2601.{90000 + i % 9999:05d}"}
    value: bytes | None
    match kind:
        case "tombstone":
            value = None
        case "empty":
            value = b""
        case "not-utf8":
            value = b"\xff\xfe" + json.dumps(good).encode()
        case "not-json":
            value = b"{arxiv_id: 2601.00001"
        case "json-array":
            value = b"[1, 2, 3]"
        case "json-number":
            value = b"42"
        case "json-string":
            value = b'"a paper"'
        case "nested-array":
            value = b"[" * 200_000 + b"]" * 200_000
        case "nested-object":
            value = b'{"a":' * 50_000 + b"1" + b"}" * 50_000
        case "missing-title":
            value = json.dumps({k: v for k, v in good.items() if k != "title"}).encode()
        case "missing-abstract":
            value = json.dumps({k: v for k, v in good.items() if k != "abstract"}).encode()
        case "bad-arxiv-id":
            value = json.dumps({**good, "arxiv_id": "not/an id"}).encode()
        case "huge-arxiv-id":
            value = json.dumps({**good, "arxiv_id": "9" * 600_000}).encode()
        case "version-zero":
            value = json.dumps({**good, "version": 0}).encode()
        case "authors-not-list":
            value = json.dumps({**good, "authors": 7}).encode()
        case "categories-number":
            value = json.dumps({**good, "categories": 3.5}).encode()
        case "empty-abstract":
            value = json.dumps({**good, "abstract": ""}).encode()
        case "punctuation-abstract":
            value = json.dumps({**good, "abstract": ". . . ; ;"}).encode()
        case "long-abstract":
            value = json.dumps({**good, "abstract": "Stars form. " * 100_000}).encode()
        case _:
            value = json.dumps({**good, "title": None, "abstract": None}).encode()
    return key, value


def produce_large(
    bootstrap: str, topic: str, messages: list[tuple[bytes | None, bytes | None]]
) -> None:
    """Like ``helpers.produce``, with room for multi-megabyte values."""
    from aiokafka import AIOKafkaProducer

    async def go() -> None:
        producer = AIOKafkaProducer(
            bootstrap_servers=bootstrap, acks="all", max_request_size=8 * 1024**2
        )
        await producer.start()
        try:
            for start in range(0, len(messages), 500):
                futures = [
                    await producer.send(topic, key=k, value=v)
                    for k, v in messages[start : start + 500]
                ]
                await asyncio.gather(*futures)
        finally:
            await producer.stop()

    asyncio.run(go())


def test_fuzz_bad_records_never_stop_the_stream(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """5,000 malformed records of 20 kinds interleaved with 200 real papers, one worker."""
    records = load_1k()[:200]
    env = isolated_env(broker.url, tmp_path, unique("fuzz"), ASTRO_ROLES="embed,api")
    rng = random.Random(5000)
    bad = [bad_record(BAD_KINDS[i % len(BAD_KINDS)], i, records[i % 200]) for i in range(5000)]
    stream: list[tuple[bytes | None, bytes | None]] = [*bad, *(paper_bytes(r) for r in records)]
    rng.shuffle(stream)
    with WorkerProcess(env, tmp_path / "worker.log") as worker:
        pid = worker.pid
        started = time.monotonic()
        produce_large(broker.bootstrap, env["ASTRO_TOPIC_PAPERS"], stream)
        want = expected_sentences(records)
        done = worker.wait_for(
            lambda s: s["papers"] == len(records) and s["sentences"] >= want, timeout=1200
        )
        letters = consume_all(
            broker.bootstrap, env["ASTRO_TOPIC_DEADLETTER"], expect=len(bad), timeout=120
        )
        elapsed = time.monotonic() - started
        assert worker.proc is not None and worker.proc.poll() is None and worker.pid == pid
        ready, _ = worker.get("/ready")
    reasons = [json.loads(r.value) for r in letters]
    result = {
        "test": "fuzz",
        "bad_records": len(bad),
        "kinds": len(BAD_KINDS),
        "good_papers": len(records),
        "indexed_papers": done["papers"],
        "dead_letters": len(letters),
        "distinct_dead_letter_keys": len({r.key for r in letters}),
        "worker_restarts": 0,
        "ready_after": ready,
        "seconds": round(elapsed, 1),
        "longest_reason": max(len(r["error"]) for r in reasons),
    }
    record(result)
    assert done["papers"] == len(records)
    assert done["sentences"] == want
    assert len(letters) == len(bad)
    assert all(r["error"] and r["offset"] is not None for r in reasons)
    assert ready == 200


def test_a_killed_worker_hands_its_partitions_on(broker: EmbeddedBroker, tmp_path: Path) -> None:
    """Two workers in one consumer group, each with its own local Qdrant; one is SIGKILLed."""
    records = load_1k()[200:600]
    name = unique("pair")
    base = isolated_env(broker.url, tmp_path, name, ASTRO_ROLES="embed,api")
    env_a = {**base, "ASTRO_QDRANT_PATH": str(tmp_path / "qdrant-a")}
    env_b = {**base, "ASTRO_QDRANT_PATH": str(tmp_path / "qdrant-b")}
    a = WorkerProcess(env_a, tmp_path / "a.log").start()
    b = WorkerProcess(env_b, tmp_path / "b.log").start()
    try:
        produce(broker.bootstrap, base["ASTRO_TOPIC_PAPERS"], [paper_bytes(r) for r in records])
        a.wait_for(lambda s: s["papers"] >= 40, timeout=600)
        a.kill()
        a.stop()
        held_a = set(qdrant_counts(Path(env_a["ASTRO_QDRANT_PATH"]))["papers"])
        b.wait_for(lambda s: s["papers"] >= len(records) - len(held_a), timeout=1200)
        settled = b.get("/stats")[1]["papers"]
        while True:  # until B has nothing left to do
            time.sleep(5)
            now = b.get("/stats")[1]["papers"]
            if now == settled:
                break
            settled = now
    finally:
        b.stop()
        a.stop()
    held_b = set(qdrant_counts(Path(env_b["ASTRO_QDRANT_PATH"]))["papers"])
    result = {
        "test": "two-workers",
        "papers": len(records),
        "indexed_by_killed": len(held_a),
        "indexed_by_survivor": len(held_b),
        "union": len(held_a | held_b),
        "indexed_by_both": len(held_a & held_b),
    }
    record(result)
    assert len(held_a | held_b) == len(records)  # Kafka handed every partition on
    assert 0 < len(held_a) < len(records)
    # Only the killed worker's uncommitted batches (≤ 2 in flight per worker) run twice.
    assert len(held_a & held_b) <= 2 * int(base.get("ASTRO_TAKE_MAX_PAPERS", "32"))
