"""Producing papers (and other JSON messages) to Kafka with aiokafka, outside a Faust worker."""

from __future__ import annotations

import asyncio
import json
import logging
from collections.abc import Iterable
from types import TracebackType
from typing import Any

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from pydantic import BaseModel

from services.core.errors import DependencyUnavailable
from services.core.schemas import Paper
from services.core.settings import Settings

log = logging.getLogger(__name__)


def encode_json(message: BaseModel | dict[str, Any]) -> bytes:
    if isinstance(message, BaseModel):
        return message.model_dump_json(exclude_none=True).encode()
    return json.dumps(message, default=str).encode()


class Publisher:
    """An aiokafka producer with JSON helpers. ``acks=all``; no idempotence (Tansu lacks it)."""

    def __init__(self, settings: Settings, *, connect_timeout: float = 30.0) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self._producer: AIOKafkaProducer | None = None

    async def start(self) -> Publisher:
        producer = AIOKafkaProducer(
            bootstrap_servers=self.settings.bootstrap_servers,
            acks="all",
            linger_ms=5,
            max_batch_size=1 << 20,
            max_request_size=8 << 20,
            request_timeout_ms=30_000,
        )
        deadline = asyncio.get_running_loop().time() + self.connect_timeout
        while True:
            try:
                await producer.start()
                break
            except KafkaError as exc:
                if asyncio.get_running_loop().time() > deadline:
                    await producer.stop()
                    raise DependencyUnavailable(
                        f"cannot reach Kafka at {self.settings.bootstrap_servers}: {exc}; "
                        "is `astrostream up` running, or ASTRO_KAFKA_URL set?"
                    ) from exc
                await asyncio.sleep(0.5)
        self._producer = producer
        return self

    async def stop(self) -> None:
        if self._producer is not None:
            await self._producer.stop()
            self._producer = None

    async def __aenter__(self) -> Publisher:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.stop()

    @property
    def producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            raise RuntimeError("Publisher.start() was not awaited")
        return self._producer

    async def send(self, topic: str, key: str | bytes | None, value: bytes) -> asyncio.Future[Any]:
        """Queue one message; await the returned future for the broker's acknowledgement."""
        key_bytes = key.encode() if isinstance(key, str) else key
        return await self.producer.send(topic, value=value, key=key_bytes)

    async def publish_papers(self, papers: Iterable[Paper]) -> int:
        """Send papers keyed by arxiv_id (one paper's versions stay ordered) and wait for acks."""
        pending: list[asyncio.Future[Any]] = []
        count = 0
        for paper in papers:
            pending.append(
                await self.send(self.settings.topic_papers, paper.arxiv_id, encode_json(paper))
            )
            count += 1
            if len(pending) >= 1000:
                await asyncio.gather(*pending)
                pending.clear()
        await asyncio.gather(*pending)
        return count
