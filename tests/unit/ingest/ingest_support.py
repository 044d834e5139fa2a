"""Helpers of the ingest tests (import as ``from ingest_support import ...``)."""

from __future__ import annotations

import datetime as dt
import itertools
import json
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from fakes.fake_pages import FakePaper

from services.core.schemas import Paper

ARXIV_DATA = Path(__file__).resolve().parents[2] / "data" / "arxiv"
# Submission times for the fake server: two days before the announcement, a minute apart.
BASE_TIME = dt.datetime(2025, 12, 14, 9, 0, tzinfo=dt.UTC)


def sample(name: str) -> bytes:
    return (ARXIV_DATA / name).read_bytes()


def load_records() -> list[dict[str, Any]]:
    lines = (ARXIV_DATA / "papers.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def fake_papers(records: Iterable[dict[str, Any]]) -> list[FakePaper]:
    return [
        FakePaper.from_record(r, BASE_TIME + dt.timedelta(minutes=i)) for i, r in enumerate(records)
    ]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


class MemorySink:
    """A PaperSink that keeps what it was given (and can fail on demand)."""

    def __init__(self) -> None:
        self.papers: list[Paper] = []
        self.fail_next = 0

    async def publish_papers(self, papers: Iterable[Paper]) -> int:
        batch = list(papers)
        if self.fail_next:
            self.fail_next -= 1
            raise ConnectionError("broker down (test)")
        self.papers.extend(batch)
        return len(batch)

    @property
    def keys(self) -> list[tuple[str, int]]:
        return [(p.arxiv_id, p.version) for p in self.papers]
