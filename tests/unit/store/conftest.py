"""Fixtures of the store tests: a local-mode store written by today's release, one copy a test."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest
from store_support import write_release_store


@pytest.fixture(scope="session")
def release_store(
    tmp_path_factory: pytest.TempPathFactory, sample_records: list[dict[str, Any]]
) -> tuple[Path, dict[str, dict[str, Any]]]:
    """The store of eight real papers, a subscription and its tables, and its indexes."""
    path = tmp_path_factory.mktemp("release") / "qdrant"
    return path, write_release_store(path, sample_records[:8])


@pytest.fixture
def release_folder(release_store: tuple[Path, dict[str, dict[str, Any]]], tmp_path: Path) -> Path:
    """A copy of :func:`release_store` at ``<tmp_path>/data/qdrant`` (ASTRO_QDRANT_PATH)."""
    path = tmp_path / "data" / "qdrant"
    shutil.copytree(release_store[0], path)
    return path
