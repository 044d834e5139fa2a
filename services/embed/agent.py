"""The embed stage's Faust agent: micro-batches from the papers topic, two in flight, acked after Qdrant."""

from __future__ import annotations

import asyncio
from typing import Any

import faust

from services.core.settings import Settings
from services.embed.pipeline import EmbedPipeline, Prepared, RawRecord


def raw_record(event: Any) -> RawRecord:
    """The Kafka record behind a Faust event, before any decoding."""
    message = event.message
    return RawRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp=message.timestamp,
    )


def install_embed_agent(app: faust.App, settings: Settings, pipeline: EmbedPipeline) -> Any:
    """Register the ``embed`` agent on the papers topic; returns the agent.

    Each micro-batch is acknowledged only after Qdrant acknowledged its writes, so the
    committed offset never passes a paper that is not indexed.
    """
    papers = app.topic(
        settings.topic_papers,
        key_serializer="raw",
        value_serializer="raw",
        partitions=settings.topic_partitions,
    )

    @app.agent(papers, name="embed")
    async def embed(stream: faust.StreamT[Any]) -> None:
        window = settings.batch_window_ms / 1000
        batches = stream.noack_take(  # type: ignore[attr-defined]
            settings.take_max_papers, within=window
        )
        committing: asyncio.Future[None] | None = None

        async def commit(prepared: Prepared, events: list[Any]) -> None:
            await pipeline.commit(prepared)
            for event in events:  # acked only once Qdrant has acknowledged the batch
                await stream.ack(event)

        # Two batches in flight: batch N+1 is decoded and encoded while batch N is
        # written to Qdrant (the encoder and Qdrant each have their own thread).
        try:
            async for events in batches:
                records = [raw_record(event) for event in events]
                prepared = await pipeline.prepare(records, earlier=committing)
                if committing is not None:
                    await committing
                committing = asyncio.ensure_future(commit(prepared, list(events)))
        finally:
            if committing is not None:
                # The last batch's writes and acks: their errors must surface, not vanish.
                await committing

    return embed
