"""Nothing queued is lost on restart: the durable embedded broker, and ingest's reconcile on start."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from helpers import consume_all, isolated_env, unique

from services.cli.embedded import start_embedded_broker
from services.core.schemas import Paper
from services.core.settings import Settings
from services.kafka.broker import EmbeddedBroker, free_port, port_open, storage_supported
from services.kafka.postgres import PostgresCluster, postgres_bin_dir
from services.kafka.publisher import Publisher

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]


def replay(env: dict[str, str], path: Path) -> subprocess.CompletedProcess[str]:
    """``astrostream ingest --replay``: publish, and mark published once the broker acked."""
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", "--replay", str(path)],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_papers_queued_when_the_stack_stops_are_indexed_after_a_restart(
    tmp_path: Path, start_worker: Any, sample_records: list[dict[str, Any]]
) -> None:
    """Ingest published N papers, the broker (memory) stopped before any was indexed: 0 lost.

    Before reconcile, the restarted ingest role saw every paper as already published and the
    papers were never indexed.
    """
    records = sample_records[:12]
    papers_file = tmp_path / "papers.jsonl"
    papers_file.write_text("".join(json.dumps(r) + "\n" for r in records))
    port = free_port()
    env = isolated_env(
        f"kafka://127.0.0.1:{port}",
        tmp_path,
        unique("durable"),
        ASTRO_LOG_LEVEL="info",
        ASTRO_ARXIV_API_URL="http://127.0.0.1:1/api/query",  # polls fail; reconcile comes first
        ASTRO_INGEST_POLL_INTERVAL_S="3600",
    )
    with EmbeddedBroker(port, log_path=tmp_path / "broker-1.log"):
        published = replay(env, papers_file)
        assert published.returncode == 0, published.stderr
        assert f"{len(records)} published" in published.stdout
    # The broker is gone with the queue; the stack comes back on a fresh one (same address).
    with EmbeddedBroker(port, log_path=tmp_path / "broker-2.log"):
        worker = start_worker(env, ASTRO_ROLES="ingest,embed,api")
        stats = worker.wait_for(lambda s: s["papers"] == len(records), timeout=180)
        assert stats["papers"] == len(records)
        assert f"re-published {len(records)}" in worker.tail(200)
        worker.stop()

        # Restarted again with everything indexed: nothing is re-published.
        again = start_worker(env, ASTRO_ROLES="ingest,embed,api")
        done = f"all {len(records)} published papers are in Qdrant"
        deadline = time.monotonic() + 60
        while done not in again.tail(200) and time.monotonic() < deadline:
            time.sleep(0.5)
        assert done in again.tail(200)
        assert "re-published" not in again.tail(200)


def test_up_falls_back_to_memory_with_one_warning_when_postgres_is_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    import services.cli.embedded as embedded

    monkeypatch.setattr(embedded, "postgres_bin_dir", lambda: None)
    settings = Settings(
        data_dir=tmp_path / "data", embedded_broker_port=free_port(), broker_storage="postgres"
    )
    warnings: list[str] = []
    stack = start_embedded_broker(settings, warn=warnings.append)
    try:
        assert not stack.durable
        assert warnings == [
            "PostgreSQL is not installed (apt-get install postgresql); "
            "broker on memory storage: queued papers do not survive a restart"
        ]
        assert port_open(stack.broker.host, stack.broker.port)
    finally:
        stack.stop()


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[PostgresCluster]:
    if postgres_bin_dir() is None:
        pytest.skip("PostgreSQL is not installed (make system-deps installs it)")
    # As root the cluster runs as 'postgres', which cannot enter pytest's private tmp_path.
    root = Path(tempfile.mkdtemp(prefix="astro-pg-"))
    root.chmod(0o755)
    pg = PostgresCluster(root / "postgres")
    yield pg
    pg.stop()
    shutil.rmtree(root, ignore_errors=True)


def test_the_private_postgres_cluster_keeps_its_data_across_restarts(
    cluster: PostgresCluster,
) -> None:
    bin_dir = postgres_bin_dir()
    assert bin_dir is not None

    def sql(query: str) -> str:
        url = cluster.url.replace("postgres://", "postgresql://")
        done = subprocess.run(
            [str(bin_dir / "psql"), "-X", "-A", "-t", "-d", url, "-c", query],
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert done.returncode == 0, done.stderr
        return done.stdout.strip()

    cluster.start()
    sql("CREATE TABLE kept (n int); INSERT INTO kept VALUES (42);")
    cluster.stop()
    cluster.port = None  # a new free port, as after `make run` is restarted
    cluster.start()
    assert sql("SELECT n FROM kept") == "42"


def test_the_durable_broker_keeps_queued_papers_across_a_restart(
    cluster: PostgresCluster, tmp_path: Path, sample_papers: list[Paper]
) -> None:
    reason = storage_supported("postgres://probe@127.0.0.1:1/probe")
    if reason:
        pytest.skip(reason)
    cluster.start()
    port = free_port()
    settings = Settings(kafka_url=f"127.0.0.1:{port}", topic_papers=unique("durable.papers"))
    papers = sample_papers[:50]

    async def publish() -> int:
        async with Publisher(settings) as publisher:
            return await publisher.publish_papers(papers)

    with EmbeddedBroker(port, log_path=tmp_path / "b1.log", storage=cluster.url):
        assert asyncio.run(publish()) == len(papers)
    with EmbeddedBroker(port, log_path=tmp_path / "b2.log", storage=cluster.url) as broker:
        records = consume_all(broker.bootstrap, settings.topic_papers, expect=len(papers))
    assert sorted(r.key.decode() for r in records) == sorted(p.arxiv_id for p in papers)
