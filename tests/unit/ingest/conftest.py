"""Fixtures of the ingest unit tests: real records, settings, an in-memory sink."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from ingest_support import MemorySink, load_records

from services.core.settings import Settings


@pytest.fixture(scope="session")
def records() -> list[dict[str, Any]]:
    """Twelve real astro-ph records (CC0 arXiv metadata) copied from shared/data."""
    return load_records()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(
        data_dir=tmp_path / "data",
        ingest_min_interval_s=0.05,
        ingest_poll_interval_s=0.5,
        kafka_url="127.0.0.1:1",
    )


@pytest.fixture
def sink() -> MemorySink:
    return MemorySink()
