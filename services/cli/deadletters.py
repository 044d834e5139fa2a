"""``astrostream deadletters``: list the dead-letter topic, re-publish records once fixed.

The topic is read with its own consumer and no consumer group (manual assignment from the
beginning of every partition), so reading it never moves anybody's offsets. Reading stops
at the end offsets, and then once a poll returns nothing: on Tansu the end offsets answer
low (the start of the last batch + 1), so the last batch would otherwise be missed.
"""

from __future__ import annotations

import asyncio
import base64
import json
from dataclasses import dataclass
from typing import Any

import click

from services.cli.common import settings_or_exit
from services.core.errors import AstrostreamError
from services.core.logs import setup_logging
from services.core.schemas import DeadLetter
from services.core.settings import Settings

IDLE_POLL_MS = 1000
READ_TIMEOUT_S = 60.0


@dataclass(frozen=True)
class Entry:
    """One record of the dead-letter topic: where it sits there, and the letter (or why not)."""

    partition: int
    offset: int
    letter: DeadLetter | None
    problem: str | None = None

    def original_value(self) -> bytes:
        assert self.letter is not None
        if self.letter.value_encoding == "base64":
            return base64.b64decode(self.letter.value)
        return self.letter.value.encode("utf-8")

    def as_json(self) -> dict[str, Any]:
        if self.letter is None:
            return {"partition": self.partition, "offset": self.offset, "problem": self.problem}
        return {
            "deadletter_partition": self.partition,
            "deadletter_offset": self.offset,
            **self.letter.model_dump(mode="json"),
        }

    def line(self) -> str:
        where = f"{self.partition}:{self.offset}"
        if self.letter is None:
            return f"{where}  (not a DeadLetter: {self.problem})"
        letter = self.letter
        origin = f"{letter.source_topic}[{letter.partition}]@{letter.offset}"
        return f"{where}  {letter.at:%Y-%m-%d %H:%M:%S}  {letter.stage:<8} {origin}  {letter.error}"


def parse(partition: int, offset: int, value: bytes | None) -> Entry:
    try:
        letter = DeadLetter.model_validate_json(value or b"")
    except ValueError as exc:
        return Entry(partition, offset, None, str(exc).splitlines()[0])
    return Entry(partition, offset, letter)


async def read_topic(settings: Settings, topic: str) -> list[Entry]:
    """Every record of ``topic``, from the beginning to its end, in (partition, offset) order."""
    from aiokafka import AIOKafkaConsumer, TopicPartition
    from aiokafka.errors import KafkaError

    consumer = AIOKafkaConsumer(
        bootstrap_servers=settings.bootstrap_servers, group_id=None, enable_auto_commit=False
    )
    try:
        await consumer.start()
    except KafkaError as exc:
        await consumer.stop()
        raise click.ClickException(
            f"cannot reach Kafka at {settings.bootstrap_servers} ({exc}); set ASTRO_KAFKA_URL"
        ) from None
    entries: list[Entry] = []
    try:
        await consumer.topics()  # fetch metadata, so partitions_for_topic knows the topic
        partitions = consumer.partitions_for_topic(topic)
        if not partitions:
            return []
        tps = [TopicPartition(topic, p) for p in sorted(partitions)]
        consumer.assign(tps)
        await consumer.seek_to_beginning(*tps)
        ends = await consumer.end_offsets(tps)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + READ_TIMEOUT_S
        while loop.time() < deadline:
            batch = await consumer.getmany(timeout_ms=IDLE_POLL_MS)
            for records in batch.values():
                entries.extend(parse(r.partition, r.offset, r.value) for r in records)
            at_end = all([await consumer.position(tp) >= ends[tp] for tp in tps])
            if at_end and not batch:
                break
    finally:
        await consumer.stop()
    return sorted(entries, key=lambda e: (e.partition, e.offset))


def select(entries: list[Entry], stage: str | None, limit: int | None) -> list[Entry]:
    """The newest ``limit`` entries (by time of dead-lettering) of ``stage``, oldest first."""
    chosen = [e for e in entries if stage is None or (e.letter and e.letter.stage == stage)]
    chosen.sort(key=lambda e: (e.letter.at.timestamp() if e.letter else 0.0, e.partition, e.offset))
    return chosen[-limit:] if limit else chosen


async def republish(settings: Settings, entries: list[Entry]) -> int:
    """Produce the original key and value of each letter to the papers topic; wait for acks."""
    from services.kafka.publisher import Publisher

    topic = settings.topic_papers
    async with Publisher(settings, connect_timeout=settings.kafka_connect_timeout_s) as publisher:
        acks = [
            await publisher.send(topic, entry.letter.key, entry.original_value())
            for entry in entries
            if entry.letter is not None
        ]
        await asyncio.gather(*acks)
    return len(acks)


@click.command()
@click.option("--limit", type=click.IntRange(min=1), help="Only the newest N dead letters.")
@click.option("--stage", help="Only dead letters of this stage (e.g. decode).")
@click.option("--json", "as_json", is_flag=True, help="One JSON object per line.")
@click.option(
    "--republish",
    "republish_",
    is_flag=True,
    help="Produce the selected records' original values to the papers topic again "
    "(after fixing what rejected them; a record that is still bad is dead-lettered again).",
)
def deadletters(limit: int | None, stage: str | None, as_json: bool, republish_: bool) -> None:
    """List rejected records and why, or publish them again.

    Each line shows where the record sits in the dead-letter topic, when and at which stage
    it was rejected, its origin (topic, partition, offset) and the reason. After fixing the
    cause, --republish sends the original values to the papers topic again.

    \b
    Example: astrostream deadletters --stage decode --limit 20
    """
    settings = settings_or_exit()
    setup_logging("warning")
    entries = select(asyncio.run(read_topic(settings, settings.topic_deadletter)), stage, limit)
    if republish_:
        try:
            sent = asyncio.run(republish(settings, entries))
        except AstrostreamError as exc:
            raise click.ClickException(str(exc)) from None
        click.echo(f"re-published {sent} records to {settings.topic_papers}")
        return
    for entry in entries:
        click.echo(json.dumps(entry.as_json()) if as_json else entry.line())
    if not entries and not as_json:
        click.echo(f"no dead letters in {settings.topic_deadletter}", err=True)
