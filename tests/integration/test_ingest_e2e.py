"""Issue 3 end to end: `astrostream ingest --once` against a local arXiv look-alike → worker → Qdrant."""

from __future__ import annotations

import datetime as dt
import itertools
import os
import subprocess
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlencode

import pytest
from fakes.fake_pages import FakePaper
from helpers import ServedArxiv

from services.core.text import sentences_for_embedding
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
EXTRA = "Finally, we publish the complete catalogue of forty thousand variable stars online."


def ingest(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", "ingest", "--once", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=180,
    )


def test_ingest_once_indexes_each_served_paper_once_and_follows_versions(
    broker: EmbeddedBroker,
    stack_env: dict[str, str],
    start_worker: Any,
    sample_records: list[dict[str, Any]],
) -> None:
    worker = start_worker(stack_env, ASTRO_ROLES="embed,api")
    base = dt.datetime(2026, 3, 2, 10, 0, tzinfo=dt.UTC)
    records = sample_records[:8]
    papers = [FakePaper.from_record(r, base + dt.timedelta(hours=i)) for i, r in enumerate(records)]
    served = ServedArxiv(papers)
    with served as fake:
        fake.fault("/api/query", 503, headers={"Retry-After": "1"})  # the first answer
        env = {
            **stack_env,
            "ASTRO_ARXIV_API_URL": fake.api_url,
            "ASTRO_ARXIV_RSS_URL": fake.rss_url,
            "ASTRO_ARXIV_OAI_URL": fake.oai_url,
        }
        first = ingest(env, "--since", "2026-03-01")
        assert first.returncode == 0, first.stderr
        stats = worker.wait_for(lambda s: s["papers"] == len(records), timeout=120)
        assert stats["sentences"] == sum(
            len(sentences_for_embedding(r["abstract"])) for r in records
        )
        times = [r.at for r in fake.requests]
        assert fake.requests and len(times) >= 2
        assert min(b - a for a, b in itertools.pairwise(times)) >= 3.0  # the default etiquette

        again = ingest(env, "--since", "2026-03-01")
        assert again.returncode == 0, again.stderr
        assert "0 published" in again.stdout

        revised = papers[3].revised(
            base + dt.timedelta(days=2), abstract=papers[3].abstract.rstrip() + " " + EXTRA
        )
        served.call(fake.publish, revised)
        third = ingest(env, "--since", "2026-03-01")
        assert third.returncode == 0, third.stderr
        assert "1 published" in third.stdout

    after = worker.wait_for(lambda s: s["sentences"] == stats["sentences"] + 1, timeout=120)
    assert after["papers"] == stats["papers"]
    status, body = worker.get("/search?" + urlencode({"q": EXTRA, "limit": 3}))
    assert status == 200
    assert body["results"][0]["arxiv_id"] == records[3]["arxiv_id"]
    assert worker.get(f"/papers/{records[3]['arxiv_id']}")[1]["version"] == 2
