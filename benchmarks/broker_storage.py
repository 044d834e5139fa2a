"""Throughput of the embedded broker on memory vs PostgreSQL storage: produce N papers, read them back.

    python -m benchmarks.broker_storage [--papers 2000] [--runs 3]

Prints, per storage and run, the seconds until every paper was acknowledged and until every
paper was consumed back, and papers/s for each. Storage that this machine cannot run (PostgreSQL
not installed, or a Tansu build without its engine) is reported with the reason.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import shutil
import tempfile
import time
import uuid
from pathlib import Path

from aiokafka import AIOKafkaConsumer

from services.core.schemas import Paper
from services.core.settings import Settings
from services.kafka.broker import MEMORY, EmbeddedBroker, free_port, storage_supported
from services.kafka.postgres import PostgresCluster, PostgresError, postgres_bin_dir
from services.kafka.publisher import Publisher

SAMPLE = Path(__file__).resolve().parents[1] / "tests" / "data" / "papers-sample.jsonl"


def papers(count: int) -> list[Paper]:
    base = [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]
    out = []
    for i in range(count):
        record = dict(base[i % len(base)])
        record["arxiv_id"] = f"2601.{i:05d}"
        out.append(Paper.model_validate(record))
    return out


async def produce_and_consume(bootstrap: str, batch: list[Paper]) -> tuple[float, float]:
    settings = Settings(kafka_url=bootstrap, topic_papers=f"bench-{uuid.uuid4().hex[:8]}")
    start = time.perf_counter()
    async with Publisher(settings) as publisher:
        await publisher.publish_papers(batch)
    acked = time.perf_counter() - start
    consumer = AIOKafkaConsumer(
        settings.topic_papers, bootstrap_servers=bootstrap, auto_offset_reset="earliest"
    )
    start = time.perf_counter()
    await consumer.start()
    got = 0
    try:
        while got < len(batch) and time.perf_counter() - start < 120:
            for records in (await consumer.getmany(timeout_ms=500)).values():
                got += len(records)
    finally:
        await consumer.stop()
    if got < len(batch):
        raise RuntimeError(f"consumed {got} of {len(batch)} papers in 120 s")
    return acked, time.perf_counter() - start


def measure(name: str, storage: str, batch: list[Paper], runs: int) -> None:
    port = free_port()
    with EmbeddedBroker(port, storage=storage) as broker:
        for run in range(1, runs + 1):
            acked, consumed = asyncio.run(produce_and_consume(broker.bootstrap, batch))
            n = len(batch)
            print(
                f"{name:<9} run {run}: {n} papers acked in {acked:6.2f} s ({n / acked:8.0f}/s), "
                f"consumed in {consumed:6.2f} s ({n / consumed:8.0f}/s)",
                flush=True,
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--papers", type=int, default=2000)
    parser.add_argument("--runs", type=int, default=3)
    args = parser.parse_args()
    batch = papers(args.papers)
    size = sum(len(p.model_dump_json()) for p in batch) / len(batch)
    print(f"{len(batch)} papers of {size:.0f} bytes (JSON) on average", flush=True)
    measure("memory", MEMORY, batch, args.runs)

    if postgres_bin_dir() is None:
        print("postgres  unavailable: PostgreSQL is not installed")
        return
    reason = storage_supported("postgres://probe@127.0.0.1:1/probe")
    if reason:
        print(f"postgres  unavailable: {reason}")
        return
    root = Path(tempfile.mkdtemp(prefix="astro-bench-pg-"))
    root.chmod(0o755)  # as root the cluster runs as 'postgres'
    cluster = PostgresCluster(root / "postgres")
    try:
        cluster.start()
        measure("postgres", cluster.url, batch, args.runs)
    except PostgresError as exc:
        print(f"postgres  unavailable: {exc}")
    finally:
        cluster.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
