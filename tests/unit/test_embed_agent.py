"""The embed agent in-process (Faust's Agent.test_context, no broker): two batches in flight,
acks only after a batch is committed, a bounded stop, a reported death; and the publishing
of the alerts the embed stage produces."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import faust
from aiokafka.errors import (
    KafkaConnectionError,
    KafkaError,
    KafkaTimeoutError,
    MessageSizeTooLargeError,
    RequestTimedOutError,
)

from services.core.schemas import Alert, DeadLetter
from services.core.settings import Settings
from services.embed.agent import install_embed_agent
from services.embed.pipeline import Prepared, RawRecord
from services.worker.app import alert_publisher


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


# Publishing alerts (worker/app.py ``alert_publisher``): transient errors back off,
# permanent ones dead-letter the alert and the stream moves on.


def alert(n: int) -> Alert:
    return Alert(
        alert_id=f"a{n}",
        subscription_id=f"s{n}",
        arxiv_id=f"2505.0000{n}",
        title="t",
        score=0.9,
        model_version="m",
    )


class FlakyBroker:
    """``send`` raising the scripted errors in turn for a key, then accepting."""

    def __init__(self, script: dict[bytes, list[BaseException]]) -> None:
        self.script = script
        self.sent: list[bytes] = []
        self.attempts = 0

    async def send(self, key: bytes, value: bytes) -> None:
        self.attempts += 1
        errors = self.script.get(key, [])
        if errors:
            raise errors.pop(0)
        self.sent.append(key)


def publish_with(broker: FlakyBroker) -> tuple[Any, list[DeadLetter]]:
    letters: list[DeadLetter] = []

    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    return alert_publisher(broker.send, dead, "astro.alerts", max_backoff_s=0.01), letters


def test_a_permanent_publish_error_dead_letters_the_alert_and_moves_on() -> None:
    broker = FlakyBroker(
        {
            b"s1": [MessageSizeTooLargeError()],  # never fits: retried forever before
            b"s2": [KafkaError("unknown, not retriable")],
        }
    )
    publish, letters = publish_with(broker)
    asyncio.run(asyncio.wait_for(publish([alert(0), alert(1), alert(2), alert(3)]), timeout=5))
    assert broker.sent == [b"s0", b"s3"]
    assert [(d.stage, d.key, d.source_topic) for d in letters] == [
        ("alerts", "s1", "astro.alerts"),
        ("alerts", "s2", "astro.alerts"),
    ]
    assert "MessageSizeTooLargeError" in letters[0].error and "2505.00001" in letters[0].error
    assert Alert.model_validate_json(letters[0].value).alert_id == "a1"
    assert broker.attempts == 4  # a permanent error is not retried


def test_a_transient_publish_error_is_retried_until_it_passes() -> None:
    broker = FlakyBroker(
        {b"s1": [KafkaConnectionError(), RequestTimedOutError(), KafkaTimeoutError()]}
    )
    publish, letters = publish_with(broker)
    asyncio.run(asyncio.wait_for(publish([alert(0), alert(1)]), timeout=5))
    assert sorted(broker.sent) == [b"s0", b"s1"]
    assert broker.sent.count(b"s0") == 1  # what was published is not published again
    assert letters == []


def test_a_serialization_error_dead_letters_the_alert() -> None:
    async def send(key: bytes, value: bytes) -> None:
        raise TypeError("Object of type X is not JSON serializable")

    letters: list[DeadLetter] = []

    async def dead(letter: DeadLetter) -> None:
        letters.append(letter)

    publish = alert_publisher(send, dead, "astro.alerts", max_backoff_s=0.01)
    asyncio.run(asyncio.wait_for(publish([alert(0)]), timeout=5))
    assert len(letters) == 1 and "TypeError" in letters[0].error
