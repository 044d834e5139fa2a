"""Shared fixtures: the real broker (one per session), real worker processes, real papers."""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import isolated_env, unique

from benchmarks.stack import WorkerProcess
from services.core.schemas import Paper
from services.kafka.broker import EmbeddedBroker, free_port

os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

DATA = Path(__file__).parent / "data"
SAMPLE = DATA / "papers-sample.jsonl"


def load_sample() -> list[dict[str, Any]]:
    return [json.loads(line) for line in SAMPLE.read_text().splitlines() if line.strip()]


@pytest.fixture(scope="session")
def sample_records() -> list[dict[str, Any]]:
    """About 120 real astro-ph papers (arXiv metadata, CC0), as raw JSON objects."""
    return load_sample()


@pytest.fixture(scope="session")
def sample_papers(sample_records: list[dict[str, Any]]) -> list[Paper]:
    return [Paper.model_validate(r) for r in sample_records]


@pytest.fixture(scope="session")
def broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Tansu broker for the whole session (tests use unique topic names)."""
    log = tmp_path_factory.mktemp("broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log_path=log) as b:
        yield b


@pytest.fixture
def stack_env(broker: EmbeddedBroker, tmp_path: Path) -> dict[str, str]:
    """ASTRO_* variables of an isolated stack: own group, topics and Qdrant folder."""
    return isolated_env(broker.url, tmp_path, unique("t"), ASTRO_LOG_LEVEL="info")


@pytest.fixture
def start_worker(tmp_path: Path) -> Iterator[Callable[..., WorkerProcess]]:
    """Start real ``astrostream worker`` processes; all are stopped at the end of the test."""
    started: list[WorkerProcess] = []

    def start(env: dict[str, str], **overrides: str) -> WorkerProcess:
        worker = WorkerProcess({**env, **overrides}, tmp_path / f"worker-{len(started)}.log")
        started.append(worker)
        return worker.start()

    yield start
    for worker in started:
        worker.stop()
