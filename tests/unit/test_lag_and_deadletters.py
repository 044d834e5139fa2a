"""Pure parts of the operator tools: consumer-lag arithmetic, the lag gauge, dead-letter selection."""

from __future__ import annotations

import base64
import datetime as dt
from typing import NamedTuple

from prometheus_client import REGISTRY

from services.cli.deadletters import parse, select
from services.core.schemas import DeadLetter
from services.worker.lag import LagGauge, partition_lag


class TP(NamedTuple):
    topic: str
    partition: int


A, B, C = TP("p", 0), TP("p", 1), TP("p", 2)


def test_lag_is_highwater_minus_committed() -> None:
    lags = partition_lag({A: 100, B: 50}, {}, {A: 40, B: 50}, {A: 0, B: 0})
    assert lags == {A: 60, B: 0}


def test_lag_without_commits_counts_from_the_earliest_offset() -> None:
    assert partition_lag({A: 100}, {}, {A: None}, {A: 30}) == {A: 70}


def test_lag_uses_the_larger_highwater_and_is_never_negative() -> None:
    # Tansu's ListOffsets reads low; the fetch response's highwater is larger.
    assert partition_lag({A: 90}, {A: 120}, {A: 100}, {A: 0}) == {A: 20}
    assert partition_lag({A: 90}, {A: None}, {A: 100}, {A: 0}) == {A: 0}
    assert partition_lag({}, {C: None}, {}, {}) == {}


def lag_samples() -> dict[tuple[str, str], float]:
    return {
        (s.labels["topic"], s.labels["partition"]): s.value
        for metric in REGISTRY.collect()
        if metric.name == "astrostream_consumer_lag"
        for s in metric.samples
        if s.labels.get("topic") == "unit.lag"
    }


def test_gauge_drops_partitions_that_moved_to_another_worker() -> None:
    gauge = LagGauge()
    gauge.publish({TP("unit.lag", 0): 5, TP("unit.lag", 1): 7})
    assert lag_samples() == {("unit.lag", "0"): 5.0, ("unit.lag", "1"): 7.0}
    gauge.publish({TP("unit.lag", 1): 3})
    assert lag_samples() == {("unit.lag", "1"): 3.0}
    gauge.publish({})
    assert lag_samples() == {}


def letter(stage: str, minute: int, value: bytes = b"{}") -> bytes:
    raw = DeadLetter.from_raw(
        stage=stage, error="bad", topic="t", partition=0, offset=minute, key="k", value=value
    )
    raw.at = dt.datetime(2026, 1, 1, 0, minute, tzinfo=dt.UTC)
    return raw.model_dump_json().encode()


def test_select_filters_by_stage_and_keeps_the_newest() -> None:
    entries = [parse(0, i, letter("decode" if i % 2 else "upsert", 10 - i)) for i in range(6)]
    entries.append(parse(1, 0, b"not a dead letter"))
    assert entries[-1].letter is None and entries[-1].problem
    decode = select(entries, "decode", None)
    assert [e.offset for e in decode] == [5, 3, 1]  # oldest first
    assert [e.offset for e in select(entries, "decode", 2)] == [3, 1]
    assert len(select(entries, None, None)) == 7


def test_original_value_round_trips_binary_records() -> None:
    binary = b"\xff\xfe paper"
    entry = parse(0, 0, letter("decode", 1, binary))
    assert entry.letter is not None and entry.letter.value_encoding == "base64"
    assert entry.original_value() == binary
    assert base64.b64decode(entry.letter.value) == binary
    assert parse(0, 1, letter("decode", 1, b'{"a": 1}')).original_value() == b'{"a": 1}'
