"""The embed stage's Faust agent: micro-batches from the papers topic, two in flight, acked after Qdrant."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import Any

import faust

from services.core.settings import Settings
from services.embed.pipeline import EmbedPipeline, Prepared, RawRecord

log = logging.getLogger(__name__)

# How long a stopping agent may finish the batch it is writing (SIGTERM) before that is
# cancelled; what is unfinished then is not acked, so it is redelivered.
SHUTDOWN_GRACE_S = 15.0

AgentDeath = Callable[[BaseException], Awaitable[None]]


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


def _where(events: list[Any]) -> str:
    if not events:
        return "no records"
    first, last = raw_record(events[0]), raw_record(events[-1])
    return f"{first.where}..{last.offset}"


async def _finish(
    committing: asyncio.Future[None], leaving: BaseException | None, grace_s: float
) -> None:
    """Settle the last batch's commit as the agent leaves; ``leaving`` is why (None when
    the stream ended).

    Faust stops an agent by ending its stream and then cancelling it at once; the commit
    in flight gets ``grace_s`` to finish all the same (cancellations meanwhile are held
    off), then is cancelled: its records are not acked, so they are redelivered. Its error
    surfaces, unless another error is already on its way out, which it must not mask.
    """
    loop = asyncio.get_running_loop()
    deadline = loop.time() + grace_s
    cancelled = isinstance(leaving, asyncio.CancelledError)
    while not committing.done() and (left := deadline - loop.time()) > 0:
        try:
            await asyncio.wait([committing], timeout=left)
        except asyncio.CancelledError:
            cancelled = True  # a stop: the grace still applies
    if not committing.done():
        log.warning(
            "the batch in flight was not written within %.0fs of the stop; "
            "its records stay unacked and will be redelivered",
            grace_s,
        )
        committing.cancel()
        await asyncio.wait([committing], timeout=1.0)
    elif not committing.cancelled() and committing.exception() is not None:
        error = committing.exception()
        if leaving is None and not cancelled:
            raise error  # type: ignore[misc]
        log.error("the last batch's commit failed: %s: %s", type(error).__name__, error)
    if cancelled and leaving is None:
        raise asyncio.CancelledError()


def install_embed_agent(
    app: faust.App,
    settings: Settings,
    pipeline: EmbedPipeline,
    *,
    on_death: AgentDeath | None = None,
    shutdown_grace_s: float = SHUTDOWN_GRACE_S,
) -> Any:
    """Register the ``embed`` agent on the papers topic; returns the agent.

    Each micro-batch is acknowledged only after Qdrant acknowledged its writes, so the
    committed offset never passes a paper that is not indexed. A stopping agent finishes
    what is in flight for at most ``shutdown_grace_s``, then is cancelled without acking.

    Args:
        on_death: awaited with the error when the agent dies (no single record can cause
            that; a dead-letter topic that refuses writes can). The worker reports it and
            exits rather than restarting on the same offset forever.
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
        events: list[Any] = []

        async def commit(prepared: Prepared, events: list[Any]) -> None:
            await pipeline.commit(prepared)
            for event in events:  # acked only once Qdrant has acknowledged the batch
                await stream.ack(event)

        # Two batches in flight: batch N+1 is decoded and encoded while batch N is
        # written to Qdrant (the encoder and Qdrant each have their own thread).
        try:
            async for batch in batches:
                events = list(batch)
                records = [raw_record(event) for event in events]
                prepared = await pipeline.prepare(records, earlier=committing)
                if committing is not None:
                    # Shielded: a stop lets the commit finish (within the grace).
                    await asyncio.shield(committing)
                committing = asyncio.ensure_future(commit(prepared, events))
        except BaseException as exc:
            if committing is not None:
                await _finish(committing, exc, shutdown_grace_s)
            if not isinstance(exc, asyncio.CancelledError):
                log.critical(
                    "embed agent died at %s: %s: %s",
                    _where(events),
                    type(exc).__name__,
                    exc,
                    exc_info=True,
                )
                if on_death is not None:
                    await on_death(exc)
            raise
        else:
            if committing is not None:
                await _finish(committing, None, shutdown_grace_s)

    return embed
