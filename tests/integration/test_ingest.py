"""End to end: ingest from a local arXiv look-alike into a real broker, in-process and by CLI."""

from __future__ import annotations

import asyncio
import datetime as dt
import itertools
import json
import os
import subprocess
import sys
import uuid
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer
from fakes.fake_arxiv import FakeArxiv
from fakes.fake_pages import FakePaper, render_api
from helpers import ServedArxiv

from services.core.settings import Settings
from services.ingest.poller import poll_once
from services.ingest.state import IngestState
from services.ingest.worker import serve
from services.kafka.broker import EmbeddedBroker, free_port
from services.kafka.publisher import Publisher

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ARXIV_DATA = ROOT / "tests" / "data" / "arxiv"
BASE_TIME = dt.datetime(2025, 12, 14, 9, 0, tzinfo=dt.UTC)
_ids = itertools.count()


def load_records() -> list[dict[str, Any]]:
    lines = (ARXIV_DATA / "papers.jsonl").read_text(encoding="utf-8").splitlines()
    return [json.loads(line) for line in lines if line.strip()]


def fake_papers(records: list[dict[str, Any]]) -> list[FakePaper]:
    return [
        FakePaper.from_record(r, BASE_TIME + dt.timedelta(minutes=i)) for i, r in enumerate(records)
    ]


def gaps(times: list[float]) -> list[float]:
    return [b - a for a, b in itertools.pairwise(times)]


@pytest.fixture(scope="session")
def ingest_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[EmbeddedBroker]:
    """A real Tansu broker for this module's tests (each test uses its own topic)."""
    log = tmp_path_factory.mktemp("ingest-broker") / "tansu.log"
    with EmbeddedBroker(port=free_port(), log_path=log) as broker:
        yield broker


@pytest.fixture
def topic() -> str:
    return f"ingest-{next(_ids)}-{uuid.uuid4().hex[:8]}.papers"


@pytest.fixture
def records() -> list[dict[str, Any]]:
    return load_records()


def consume(bootstrap: str, topic: str, expect: int, settle: float = 1.5) -> list[dict[str, Any]]:
    """Everything on ``topic``: read until ``expect`` arrived, then ``settle`` s more for extras."""

    async def go() -> list[dict[str, Any]]:
        consumer = AIOKafkaConsumer(
            topic, bootstrap_servers=bootstrap, auto_offset_reset="earliest", group_id=None
        )
        await consumer.start()
        out: list[dict[str, Any]] = []
        try:
            loop = asyncio.get_running_loop()
            deadline = loop.time() + 30
            quiet_until: float | None = None
            while loop.time() < deadline:
                batch = await consumer.getmany(timeout_ms=300)
                for messages in batch.values():
                    for m in messages:
                        out.append({"key": m.key.decode(), **json.loads(m.value)})
                if len(out) >= expect:
                    quiet_until = quiet_until or loop.time() + settle
                    if loop.time() >= quiet_until:
                        break
        finally:
            await consumer.stop()
        return out

    return asyncio.run(go())


def assert_exactly_once(messages: list[dict[str, Any]]) -> None:
    counts = Counter((m["arxiv_id"], m["version"]) for m in messages)
    assert all(n == 1 for n in counts.values()), counts
    assert all(m["key"] == m["arxiv_id"] for m in messages)


def run_cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.ingest.command", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


def cli_env(broker: EmbeddedBroker, topic: str, tmp_path: Path, fake: FakeArxiv) -> dict[str, str]:
    return {
        "ASTRO_KAFKA_URL": broker.url,
        "ASTRO_TOPIC_PAPERS": topic,
        "ASTRO_DATA_DIR": str(tmp_path / "data"),
        "ASTRO_ARXIV_API_URL": fake.api_url,
        "ASTRO_ARXIV_RSS_URL": fake.rss_url,
        "ASTRO_ARXIV_OAI_URL": fake.oai_url,
        "ASTRO_LOG_LEVEL": "info",
    }


def test_poll_publishes_each_paper_once_through_faults(
    ingest_broker: EmbeddedBroker, topic: str, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    papers = fake_papers(records)

    async def go() -> tuple[FakeArxiv, list[Any]]:
        async with FakeArxiv(papers) as fake:
            settings = Settings(
                kafka_url=ingest_broker.bootstrap,
                topic_papers=topic,
                data_dir=tmp_path / "data",
                arxiv_api_url=fake.api_url,
                ingest_min_interval_s=0.2,
            )
            empty = render_api([], total=0, start=0, page_size=4).encode()
            fake.fault("/api/query", 200, body=empty)
            fake.fault("/api/query", 503, headers={"Retry-After": "1"}, when=_start(4))
            fake.malformed("/api/query", when=_start(8))
            since = dt.date(2025, 12, 1)
            async with Publisher(settings) as publisher:
                results = [await poll_once(settings, publisher, since=since, page_size=4)]
                results.append(await poll_once(settings, publisher, page_size=4))
                fake.publish(papers[7].revised(BASE_TIME + dt.timedelta(days=1)))
                results.append(await poll_once(settings, publisher, page_size=4))
            return fake, results

    fake, (first, again, revised) = asyncio.run(go())
    assert (first.published, first.pages, first.malformed_pages) == (12, 3, 1)
    assert (again.published, again.duplicates) == (0, 12)
    assert revised.published == 1

    messages = consume(ingest_broker.bootstrap, topic, expect=13)
    assert len(messages) == 13
    assert_exactly_once(messages)
    latest = {m["arxiv_id"]: m for m in messages}
    for i, record in enumerate(records):
        message = latest[record["arxiv_id"]]
        assert message["title"] == " ".join(record["title"].split())
        assert message["abstract"].split() == record["abstract"].split()
        assert message["authors"] == record["authors"]
        assert message["categories"] == record["categories"]
        assert dt.datetime.fromisoformat(message["published"]) == BASE_TIME + dt.timedelta(
            minutes=i
        )
        assert message["version"] == (2 if i == 7 else 1)

    spacing = gaps([r.at for r in fake.requests])
    assert min(spacing) >= 0.2
    assert spacing[2] >= 1.0  # the 503's Retry-After
    assert all(r.user_agent.startswith("astrostream/") for r in fake.requests)


def _start(n: int) -> Any:
    return lambda query: query.get("start") == str(n)


def test_command_once_restart_resumes_and_publishes_new_versions(
    ingest_broker: EmbeddedBroker, topic: str, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    papers = fake_papers(records)
    served = ServedArxiv(papers)
    with served as fake:
        env = cli_env(ingest_broker, topic, tmp_path, fake)
        options = ["--once", "--min-interval", "0.2", "--page-size", "5"]
        first = run_cli(env, *options, "--since", "2025-12-01")
        assert first.returncode == 0, first.stderr
        assert "12 published, 0 duplicates" in first.stdout
        assert "api page start=5 total=12" in first.stderr  # progress per page

        served.call(fake.requests.clear)
        restart = run_cli(env, *options)
        assert restart.returncode == 0, restart.stderr
        assert "0 published, 12 duplicates" in restart.stdout
        newest = BASE_TIME + dt.timedelta(minutes=len(records) - 1)
        window = f"submittedDate:[{newest - dt.timedelta(days=2):%Y%m%d%H%M} TO"
        assert window in fake.requests[0].query["search_query"]

        served.call(fake.publish, papers[2].revised(newest))
        replaced = run_cli(env, "--once", "--source", "rss", "--min-interval", "0.2")
        assert replaced.returncode == 0, replaced.stderr
        assert "1 published, 11 duplicates" in replaced.stdout
        assert min(gaps([r.at for r in fake.requests])) >= 0.2

    messages = consume(ingest_broker.bootstrap, topic, expect=13)
    assert len(messages) == 13
    assert_exactly_once(messages)
    assert (records[2]["arxiv_id"], 2) in {(m["arxiv_id"], m["version"]) for m in messages}
    with IngestState(tmp_path / "data" / "ingest" / "state.sqlite") as state:
        assert state.count() == 12
        assert state.cursor("api") == {"newest": newest.isoformat()}


def test_command_once_fails_clearly_when_the_source_is_unreachable(
    ingest_broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    url = f"http://127.0.0.1:{free_port()}/api/query"
    env = {
        "ASTRO_KAFKA_URL": ingest_broker.url,
        "ASTRO_TOPIC_PAPERS": topic,
        "ASTRO_DATA_DIR": str(tmp_path / "data"),
        "ASTRO_ARXIV_API_URL": url,
    }
    result = run_cli(env, "--once", "--since", "2025-12-01", "--min-interval", "0.05")
    assert result.returncode == 1
    assert "unreachable" in result.stderr and url in result.stderr
    assert "Traceback" not in result.stderr


def test_command_once_fails_clearly_when_the_source_is_not_arxiv(
    ingest_broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    served = ServedArxiv([])
    with served as fake:
        html = b"<html><body>Maintenance</body></html>"
        served.call(lambda: fake.fault("/api/query", 200, body=html, times=10))
        env = cli_env(ingest_broker, topic, tmp_path, fake)
        result = run_cli(env, "--once", "--since", "2025-12-01", "--min-interval", "0.05")
    assert result.returncode == 1
    assert f"no valid page from {fake.api_url}" in result.stderr
    assert "malformed page from" in result.stderr


def test_command_replays_a_saved_file(
    ingest_broker: EmbeddedBroker, topic: str, tmp_path: Path
) -> None:
    env = {
        "ASTRO_KAFKA_URL": ingest_broker.url,
        "ASTRO_TOPIC_PAPERS": topic,
        "ASTRO_DATA_DIR": str(tmp_path / "data"),
    }
    result = run_cli(env, "--replay", str(ARXIV_DATA / "oai_page2.xml"))
    assert result.returncode == 0, result.stderr
    assert "2 published" in result.stdout
    messages = consume(ingest_broker.bootstrap, topic, expect=2)
    assert sorted((m["arxiv_id"], m["version"]) for m in messages) == [
        ("2512.12644", 2),
        ("2512.13818", 1),
    ]


def test_the_ingest_role_runs_until_stopped(
    ingest_broker: EmbeddedBroker, topic: str, tmp_path: Path, records: list[dict[str, Any]]
) -> None:
    async def go() -> None:
        async with FakeArxiv(fake_papers(records)) as fake:
            settings = Settings(
                kafka_url=ingest_broker.bootstrap,
                topic_papers=topic,
                data_dir=tmp_path / "data",
                arxiv_api_url=fake.api_url,
                arxiv_rss_url=fake.rss_url,
                ingest_min_interval_s=0.1,
                ingest_poll_interval_s=0.3,
            )
            with IngestState.for_settings(settings) as state:
                state.set_cursor("api", {"newest": BASE_TIME.isoformat()})
            stop = asyncio.Event()
            role = asyncio.create_task(serve(settings, stop))
            deadline = asyncio.get_running_loop().time() + 20
            while len(fake.hits("/rss")) < 2:  # a full poll, then light checks
                assert asyncio.get_running_loop().time() < deadline
                await asyncio.sleep(0.05)
            stop.set()
            await asyncio.wait_for(role, timeout=10)

    asyncio.run(go())
    messages = consume(ingest_broker.bootstrap, topic, expect=12)
    assert len(messages) == 12
    assert_exactly_once(messages)
