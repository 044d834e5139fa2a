"""The ingest role's hook into a Faust worker, and the metrics it exports."""

from __future__ import annotations

import asyncio

import faust
from prometheus_client import REGISTRY, generate_latest

import services.ingest.metrics  # noqa: F401 - registers the metrics
from services.core.settings import Settings
from services.ingest.worker import install


def test_install_registers_a_task_and_a_readiness_check(settings: Settings) -> None:
    app = faust.App("ingest-install-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    tasks_before = len(app._app_tasks)
    check = install(app, settings)
    assert len(app._app_tasks) == tasks_before + 1
    assert asyncio.run(check()) is None


def test_metric_names() -> None:
    text = generate_latest(REGISTRY).decode()
    for name in (
        "astrostream_ingest_requests_total",
        "astrostream_ingest_papers_published_total",
        "astrostream_ingest_duplicates_skipped_total",
        "astrostream_ingest_records_skipped_total",
        "astrostream_ingest_malformed_pages_total",
        "astrostream_ingest_last_success_timestamp_seconds",
        "astrostream_ingest_backoff_seconds_total",
    ):
        assert f"# TYPE {name.removesuffix('_total')}" in text, name
