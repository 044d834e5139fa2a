"""The poll loop against a real local arXiv look-alike, publishing into memory."""

from __future__ import annotations

import asyncio
import datetime as dt
from collections import Counter
from typing import Any

import pytest
from fakes.fake_arxiv import FakeArxiv
from fakes.fake_pages import render_api, render_rss
from ingest_support import BASE_TIME, MemorySink, fake_papers, gaps

from services.core.settings import Settings
from services.ingest.poller import PollResult, poll_once, run_forever
from services.ingest.state import IngestState

SINCE = dt.date(2025, 12, 1)


def wired(settings: Settings, fake: FakeArxiv, **changes: Any) -> Settings:
    urls = {"arxiv_api_url": fake.api_url, "arxiv_rss_url": fake.rss_url}
    return settings.model_copy(update={**urls, "arxiv_oai_url": fake.oai_url, **changes})


def assert_exactly_once(sink: MemorySink) -> None:
    counts = Counter(sink.keys)
    assert all(n == 1 for n in counts.values()), counts


def test_api_paging_with_faults_publishes_each_paper_once(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    settings = settings.model_copy(update={"ingest_min_interval_s": 0.2})

    async def go() -> tuple[FakeArxiv, PollResult]:
        async with FakeArxiv(fake_papers(records)) as fake:
            empty = render_api([], total=0, start=0, page_size=5).encode()
            fake.fault("/api/query", 200, body=empty)  # arXiv's spurious empty answer
            fake.fault("/api/query", 503, headers={"Retry-After": "1"}, when=_start(5))
            fake.malformed("/api/query", when=_start(10))
            result = await poll_once(wired(settings, fake), sink, since=SINCE, page_size=5)
            return fake, result

    fake, result = asyncio.run(go())
    assert len(sink.papers) == 12
    assert_exactly_once(sink)
    by_id = {p.arxiv_id: p for p in sink.papers}
    for i, record in enumerate(records):
        paper = by_id[record["arxiv_id"]]
        assert paper.version == 1
        assert paper.title == " ".join(record["title"].split())
        assert paper.authors == record["authors"] and paper.categories == record["categories"]
        assert paper.abstract.split() == record["abstract"].split()
        assert paper.published == BASE_TIME + dt.timedelta(minutes=i)
    assert (result.pages, result.malformed_pages, result.published, result.complete) == (
        3,
        1,
        12,
        True,
    )
    starts = [r.query["start"] for r in fake.requests]
    assert starts == ["0", "0", "5", "5", "10", "10"]
    spacing = gaps([r.at for r in fake.requests])
    assert min(spacing) >= 0.2
    assert spacing[2] >= 1.0  # after the 503's Retry-After
    assert "submittedDate:[202512010000 TO 999912312359]" in fake.requests[0].query["search_query"]
    assert fake.requests[0].query["sortBy"] == "submittedDate"


def _start(n: int) -> Any:
    return lambda query: query.get("start") == str(n)


def test_unchanged_relisting_publishes_nothing_and_a_new_version_is_published(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    papers = fake_papers(records)

    async def go() -> list[PollResult]:
        async with FakeArxiv(papers) as fake:
            cfg = wired(settings, fake)
            results = [await poll_once(cfg, sink, since=SINCE, page_size=5)]
            results.append(await poll_once(cfg, sink, page_size=5))
            fake.publish(papers[3].revised(BASE_TIME + dt.timedelta(days=1), title="Revised"))
            results.append(await poll_once(cfg, sink, page_size=5))
            return results

    first, again, revised = asyncio.run(go())
    assert (first.published, again.published, again.duplicates) == (12, 0, 12)
    assert revised.published == 1 and revised.reasons["new-version"] == 1
    assert sink.keys[-1] == (records[3]["arxiv_id"], 2)
    assert sink.papers[-1].title == "Revised"
    assert len(sink.papers) == 13


def test_restart_continues_from_the_cursor(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    async def go() -> FakeArxiv:
        async with FakeArxiv(fake_papers(records)) as fake:
            await poll_once(wired(settings, fake), sink, since=SINCE, page_size=20)
            fake.requests.clear()
            await poll_once(wired(settings, fake), sink, page_size=20)  # a new process
            return fake

    fake = asyncio.run(go())
    newest = BASE_TIME + dt.timedelta(minutes=len(records) - 1)
    window = f"submittedDate:[{newest - dt.timedelta(days=2):%Y%m%d%H%M} TO 999912312359]"
    assert window in fake.requests[0].query["search_query"]
    with IngestState.for_settings(settings) as state:
        assert state.cursor("api") == {"newest": newest.isoformat()}


def test_interrupted_backfill_resumes_where_it_stopped(
    settings: Settings, records: list[dict[str, Any]]
) -> None:
    stop = asyncio.Event()

    class StopAfterFirstPage(MemorySink):
        async def publish_papers(self, papers: Any) -> int:
            stop.set()
            return await super().publish_papers(papers)

    sink = StopAfterFirstPage()

    async def go() -> FakeArxiv:
        async with FakeArxiv(fake_papers(records)) as fake:
            await poll_once(wired(settings, fake), sink, since=SINCE, page_size=5, stop=stop)
            assert len(sink.papers) == 5 and len(fake.requests) == 1
            await poll_once(wired(settings, fake), sink, since=SINCE, page_size=5)
            return fake

    fake = asyncio.run(go())
    assert len(sink.papers) == 12
    assert_exactly_once(sink)
    reached = BASE_TIME + dt.timedelta(minutes=4)
    assert f"submittedDate:[{reached:%Y%m%d%H%M} TO" in fake.requests[1].query["search_query"]


def test_malformed_page_is_skipped_and_the_cursor_waits_for_it(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    async def go() -> PollResult:
        async with FakeArxiv(fake_papers(records)) as fake:
            fake.malformed("/api/query", when=_start(5), times=2)
            cfg = wired(settings, fake)
            result = await poll_once(cfg, sink, since=SINCE, page_size=5)
            assert result.published == 7 and not result.complete
            assert result.malformed_pages == 2
            with IngestState.for_settings(settings) as state:
                newest = BASE_TIME + dt.timedelta(minutes=4)  # the last paper before the hole
                assert state.cursor("api") == {"newest": newest.isoformat()}
            return await poll_once(cfg, sink, page_size=5)

    again = asyncio.run(go())
    assert again.published == 5 and again.complete
    assert len(sink.papers) == 12
    assert_exactly_once(sink)


def test_unacknowledged_papers_are_published_again(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    async def go() -> PollResult:
        async with FakeArxiv(fake_papers(records)) as fake:
            sink.fail_next = 1
            with pytest.raises(ConnectionError):
                await poll_once(wired(settings, fake), sink, since=SINCE, page_size=20)
            return await poll_once(wired(settings, fake), sink, since=SINCE, page_size=20)

    assert asyncio.run(go()).published == 12
    assert_exactly_once(sink)


def test_rss_light_check_and_replaced_version(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    papers = fake_papers(records)

    async def go() -> tuple[FakeArxiv, list[PollResult]]:
        async with FakeArxiv(papers) as fake:
            cfg = wired(settings, fake)
            empty = render_rss([], dt.date(2025, 12, 16)).encode()
            fake.fault("/rss", 200, body=empty, times=2)
            results = [await poll_once(cfg, sink, source="rss")]
            results.append(await poll_once(cfg, sink, source="rss"))
            fake.publish(papers[0].revised(BASE_TIME + dt.timedelta(days=1)))
            results.append(await poll_once(cfg, sink, source="rss"))
            return fake, results

    fake, (first, unchanged, replaced) = asyncio.run(go())
    assert first.published == 12 and first.fetches == 3  # two empty answers re-fetched
    assert unchanged.not_modified and unchanged.published == 0
    assert "If-None-Match" in fake.requests[3].headers
    assert replaced.published == 1 and replaced.duplicates == 11
    assert sink.keys[-1] == (records[0]["arxiv_id"], 2)
    assert_exactly_once(sink)


def test_a_really_empty_feed_is_concluded_after_retries(
    settings: Settings, sink: MemorySink
) -> None:
    async def go() -> PollResult:
        async with FakeArxiv() as fake:
            return await poll_once(wired(settings, fake), sink, source="rss")

    result = asyncio.run(go())
    assert (result.fetches, result.pages, result.published, result.complete) == (3, 1, 0, True)


def test_categories_filter_cross_lists(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    async def go() -> PollResult:
        async with FakeArxiv(fake_papers(records)) as fake:
            cfg = wired(settings, fake, categories="astro-ph.GA")
            return await poll_once(cfg, sink, source="rss")

    result = asyncio.run(go())
    wanted = [r["arxiv_id"] for r in records if "astro-ph.GA" in r["categories"]]
    assert sorted(p.arxiv_id for p in sink.papers) == sorted(wanted)
    assert result.skipped == len(records) - len(wanted)


def test_oai_harvest_tokens_resume_and_revisions(
    settings: Settings, records: list[dict[str, Any]]
) -> None:
    papers = fake_papers(records)
    stop = asyncio.Event()

    class StopOnce(MemorySink):
        async def publish_papers(self, batch: Any) -> int:
            if not self.papers:
                stop.set()
            return await super().publish_papers(batch)

    sink = StopOnce()
    with IngestState.for_settings(settings) as state:
        state.set_cursor("oai", {"from": "2025-12-01"})

    async def go() -> tuple[FakeArxiv, PollResult]:
        async with FakeArxiv(papers, oai_page_size=5) as fake:
            cfg = wired(settings, fake)
            await poll_once(cfg, sink, source="oai", stop=stop)  # interrupted after page 1
            assert len(sink.papers) == 5
            await poll_once(cfg, sink, source="oai")  # resumes with the saved token
            assert len(sink.papers) == 12
            assert "resumptionToken" in fake.requests[1].query
            fake.publish(papers[2].revised(BASE_TIME + dt.timedelta(days=3)))
            fake.requests.clear()
            return fake, await poll_once(cfg, sink, source="oai")

    fake, revised = asyncio.run(go())
    assert revised.published == 1 and sink.keys[-1] == (records[2]["arxiv_id"], 2)
    assert fake.requests[0].query.get("from") == "2025-12-14"  # the newest datestamp seen
    assert_exactly_once(sink)


def test_oai_expired_token_restarts_the_harvest(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    with IngestState.for_settings(settings) as state:
        state.set_cursor("oai", {"from": "2025-12-01", "token": "expired", "newest": None})

    async def go() -> FakeArxiv:
        async with FakeArxiv(fake_papers(records), oai_page_size=5) as fake:
            await poll_once(wired(settings, fake), sink, source="oai")
            return fake

    fake = asyncio.run(go())
    assert fake.requests[0].query == {"verb": "ListRecords", "resumptionToken": "expired"}
    assert fake.requests[1].query["from"] == "2025-12-01"
    assert len(sink.papers) == 12


def test_run_forever_polls_checks_and_stops(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    papers = fake_papers(records)
    with IngestState.for_settings(settings) as state:
        state.set_cursor("api", {"newest": BASE_TIME.isoformat()})

    async def go() -> FakeArxiv:
        async with FakeArxiv(papers) as fake:
            fake.fault("/api/query", 500)
            sink.fail_next = 1  # the first poll fails at the broker: the loop must survive it
            stop = asyncio.Event()
            task = asyncio.create_task(run_forever(wired(settings, fake), sink, stop))
            await _until(lambda: len(sink.papers) == 12)
            fake.publish(papers[5].revised(BASE_TIME + dt.timedelta(days=1)))
            await _until(lambda: len(sink.papers) == 13)  # found by a light check
            stop.set()
            await asyncio.wait_for(task, timeout=5)
            return fake

    fake = asyncio.run(go())
    assert sink.keys[-1] == (records[5]["arxiv_id"], 2)
    assert fake.hits("/api/query") and fake.hits("/rss")
    assert min(gaps([r.at for r in fake.requests])) >= settings.ingest_min_interval_s
    assert_exactly_once(sink)


async def _until(condition: Any, timeout: float = 15.0) -> None:
    deadline = asyncio.get_running_loop().time() + timeout
    while not condition():
        assert asyncio.get_running_loop().time() < deadline, "timed out"
        await asyncio.sleep(0.02)


def test_since_is_refused_for_the_feed(settings: Settings, sink: MemorySink) -> None:
    with pytest.raises(ValueError, match="--since needs --source api or oai"):
        asyncio.run(poll_once(settings, sink, since=SINCE, source="rss"))


def test_deep_paging_narrows_the_window_instead(
    settings: Settings,
    sink: MemorySink,
    records: list[dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The API pages only so deep: past that, the query restarts from the newest date seen."""
    monkeypatch.setattr("services.ingest.sources.MAX_OFFSET", 6)

    async def go() -> FakeArxiv:
        async with FakeArxiv(fake_papers(records)) as fake:
            result = await poll_once(wired(settings, fake), sink, since=SINCE, page_size=3)
            assert result.published == 12 and result.complete
            return fake

    fake = asyncio.run(go())
    assert_exactly_once(sink)
    windows = [r.query["search_query"].split("submittedDate:")[1] for r in fake.requests]
    assert len(set(windows)) >= 3  # 0..6, then narrower windows from the newest paper seen
    assert [r.query["start"] for r in fake.requests][:3] == ["0", "3", "0"]


def test_oai_backfill_since_a_date_moves_both_cursors(
    settings: Settings, sink: MemorySink, records: list[dict[str, Any]]
) -> None:
    async def go() -> FakeArxiv:
        async with FakeArxiv(fake_papers(records), oai_page_size=5) as fake:
            cfg = wired(settings, fake)
            assert (await poll_once(cfg, sink, source="oai", since=SINCE)).published == 12
            again = await poll_once(cfg, sink, source="oai", since=SINCE)
            assert (again.published, again.duplicates) == (0, 12)
            return fake

    fake = asyncio.run(go())
    assert fake.requests[0].query["from"] == "2025-12-01"
    assert fake.requests[3].query["from"] == "2025-12-14"  # the rerun continues, not restarts
    with IngestState.for_settings(settings) as state:
        assert state.cursor("oai")["from"] == "2025-12-14"
        assert state.cursor("oai:since=2025-12-01")["from"] == "2025-12-14"
