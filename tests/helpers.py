"""Helpers for tests that talk to the real broker (import as ``from helpers import ...``)."""

from __future__ import annotations

import asyncio
import json
from typing import Any


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


def paper_bytes(record: dict[str, Any]) -> tuple[bytes, bytes]:
    return record["arxiv_id"].encode(), json.dumps(record).encode()
