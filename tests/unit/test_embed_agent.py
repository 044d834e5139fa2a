"""The embed agent in-process (Faust's Agent.test_context, no broker): two batches in flight,
acks only after a batch is committed, a bounded stop, and a reported death."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import faust

from services.core.settings import Settings
from services.embed.agent import install_embed_agent
from services.embed.pipeline import Prepared, RawRecord


class GatedPipeline:
    """Stands in for EmbedPipeline: records what the agent asks, commits when a test allows."""

    def __init__(self) -> None:
        self.prepared: list[list[int | None]] = []
        self.earlier: list[asyncio.Future[Any] | None] = []
        self.committed: list[list[int | None]] = []
        self.gates: dict[int, asyncio.Event] = {}
        self.fail_prepare_at: int | None = None

    def gate(self, batch: int) -> asyncio.Event:
        return self.gates.setdefault(batch, asyncio.Event())

    async def prepare(
        self, records: list[RawRecord], *, earlier: asyncio.Future[Any] | None = None
    ) -> Prepared:
        n = len(self.prepared)
        if self.fail_prepare_at == n:
            raise RuntimeError("boom in prepare")
        self.prepared.append([r.offset for r in records])
        self.earlier.append(earlier)
        prepared = Prepared(started=0.0, size=len(records))
        prepared.size = n  # the batch number, for commit
        return prepared

    async def commit(self, prepared: Prepared) -> None:
        await self.gate(prepared.size).wait()
        self.committed.append(self.prepared[prepared.size])


def agent_for(pipeline: GatedPipeline, **kwargs: Any) -> tuple[Any, list[BaseException]]:
    app = faust.App(
        f"test-embed-{time.monotonic_ns()}", broker="kafka://localhost:1", store="memory://"
    )
    settings = Settings(qdrant_path=Path(":memory:"), batch_window_ms=20, take_max_papers=2)
    deaths: list[BaseException] = []

    async def on_death(exc: BaseException) -> None:
        deaths.append(exc)

    agent = install_embed_agent(app, settings, pipeline, on_death=on_death, **kwargs)  # type: ignore[arg-type]
    return agent, deaths


async def until(predicate: Any, timeout: float = 5.0) -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.01)


async def put_all(ctx: Any, n: int) -> list[Any]:
    return [await ctx.put(b"{}", key=b"k", wait=False) for _ in range(n)]


def test_two_batches_in_flight_and_acks_only_after_commit() -> None:
    async def scenario() -> None:
        pipeline = GatedPipeline()
        agent, _ = agent_for(pipeline)
        async with agent.test_context() as ctx:
            events = await put_all(ctx, 2)
            await until(lambda: len(pipeline.prepared) == 1)
            events += await put_all(ctx, 2)
            # batch 1 is prepared while batch 0 is still committing: two in flight
            await until(lambda: len(pipeline.prepared) == 2)
            assert pipeline.earlier[0] is None
            assert pipeline.earlier[1] is not None and not pipeline.earlier[1].done()
            assert not any(e.message.acked for e in events)
            events += await put_all(ctx, 2)
            await asyncio.sleep(0.2)
            # batch 2 waits: the agent awaits batch 0's commit before starting batch 1's
            assert len(pipeline.prepared) == 2 or pipeline.committed == []
            assert not any(e.message.acked for e in events)
            pipeline.gate(0).set()
            await until(lambda: all(e.message.acked for e in events[:2]))
            assert not any(e.message.acked for e in events[2:])
            assert pipeline.committed == [[0, 1]]
            pipeline.gate(1).set()
            await until(lambda: all(e.message.acked for e in events[:4]))
            assert not any(e.message.acked for e in events[4:])
            pipeline.gate(2).set()
            await until(lambda: all(e.message.acked for e in events))
            assert pipeline.committed == [[0, 1], [2, 3], [4, 5]]

    asyncio.run(scenario())


def test_stop_waits_for_the_last_commit() -> None:
    """The last batch in flight is written and acked when the agent stops (not dropped)."""

    async def scenario() -> None:
        pipeline = GatedPipeline()
        agent, _ = agent_for(pipeline, shutdown_grace_s=5.0)
        async with agent.test_context() as ctx:
            events = await put_all(ctx, 2)
            await until(lambda: len(pipeline.prepared) == 1)
            asyncio.get_running_loop().call_later(0.3, pipeline.gate(0).set)
        assert pipeline.committed == [[0, 1]]
        assert all(e.message.acked for e in events)

    asyncio.run(scenario())


def test_stop_is_bounded_when_a_commit_hangs_and_nothing_is_acked() -> None:
    """Qdrant never answers: the agent stops within its grace, leaving the batch unacked."""

    async def scenario() -> None:
        pipeline = GatedPipeline()
        agent, _ = agent_for(pipeline, shutdown_grace_s=0.5)
        t0 = time.monotonic()
        async with agent.test_context() as ctx:
            events = await put_all(ctx, 2)
            await until(lambda: len(pipeline.prepared) == 1)
            t0 = time.monotonic()
        assert time.monotonic() - t0 < 3.0
        assert pipeline.committed == []
        assert not any(e.message.acked for e in events)

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))


def test_a_dying_agent_reports_its_death_and_acks_nothing_it_did_not_write() -> None:
    async def scenario() -> None:
        pipeline = GatedPipeline()
        pipeline.fail_prepare_at = 1
        pipeline.gate(0).set()
        agent, deaths = agent_for(pipeline)
        async with agent.test_context() as ctx:
            events = await put_all(ctx, 2)
            await until(lambda: all(e.message.acked for e in events))
            failing = await put_all(ctx, 1)
            await until(lambda: bool(deaths))
        assert [str(d) for d in deaths] == ["boom in prepare"]
        assert not failing[0].message.acked

    asyncio.run(asyncio.wait_for(scenario(), timeout=20))
