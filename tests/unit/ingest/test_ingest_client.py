"""The polite client against a real local HTTP server: spacing, backoff, Retry-After, giving up."""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import random
import re

import pytest
from fakes.fake_arxiv import FakeArxiv
from ingest_support import gaps

from services.core.errors import DependencyUnavailable
from services.core.settings import Settings
from services.ingest.client import (
    PoliteClient,
    Schedule,
    backoff_delay,
    default_user_agent,
    parse_retry_after,
)
from services.ingest.records import SourceError
from services.kafka.broker import free_port


def test_spacing_user_agent_and_single_connection() -> None:
    async def go() -> FakeArxiv:
        async with FakeArxiv() as fake, PoliteClient(min_interval_s=0.2) as client:
            for _ in range(4):
                response = await client.get(fake.rss_url, source="rss")
                assert response.status == 200
            return fake

    fake = asyncio.run(go())
    assert len(fake.requests) == 4
    assert min(gaps([r.at for r in fake.requests])) >= 0.2
    assert {r.user_agent for r in fake.requests} == {default_user_agent()}
    assert default_user_agent().startswith("astrostream/")
    assert "+https://github.com/astrostream" in default_user_agent()
    assert len({r.peer_port for r in fake.requests}) == 1  # one keep-alive connection


def test_default_interval_is_three_seconds() -> None:
    async def go() -> FakeArxiv:
        async with FakeArxiv() as fake:
            # A schedule of its own: not spaced from the previous tests' requests.
            async with PoliteClient.from_settings(Settings(), schedule=Schedule()) as client:
                for _ in range(3):
                    await client.get(fake.rss_url)
            return fake

    fake = asyncio.run(go())
    assert min(gaps([r.at for r in fake.requests])) >= 3.0


def test_retry_after_on_429_and_503_is_honoured() -> None:
    async def go() -> FakeArxiv:
        async with FakeArxiv() as fake, PoliteClient(min_interval_s=0.05) as client:
            # An HTTP-date at least two seconds ahead (the header has second resolution).
            ahead = dt.datetime.now(dt.UTC) + dt.timedelta(seconds=3)
            when = email.utils.format_datetime(ahead.replace(microsecond=0), usegmt=True)
            fake.fault("/rss", 429, headers={"Retry-After": when})
            fake.fault("/rss", 503, headers={"Retry-After": "1"})
            response = await client.get(fake.rss_url)
            assert response.status == 200
            return fake

    fake = asyncio.run(go())
    first, second = gaps([r.at for r in fake.requests])
    assert first >= 1.5
    assert second >= 1.0


def test_exponential_backoff_then_unavailable_naming_the_url() -> None:
    async def go() -> tuple[FakeArxiv, DependencyUnavailable]:
        async with FakeArxiv() as fake:
            fake.fault("/api/query", 500, times=10)
            client = PoliteClient(min_interval_s=0.05, max_retries=3, backoff_base_s=0.2)
            async with client:
                with pytest.raises(DependencyUnavailable) as caught:
                    await client.get(fake.api_url, {"search_query": "cat:astro-ph*"})
            return fake, caught.value

    fake, error = asyncio.run(go())
    assert len(fake.requests) == 4  # the first attempt and three retries
    spacing = gaps([r.at for r in fake.requests])
    # Equal jitter: attempt n waits between half and all of 0.2 * 2**n.
    for attempt, gap in enumerate(spacing):
        assert gap >= 0.2 * 2**attempt / 2
    assert "/api/query?search_query=cat:astro-ph*" in str(error)
    assert "4 attempts" in str(error) and "HTTP 500" in str(error)


def test_connection_refused_is_unavailable() -> None:
    url = f"http://127.0.0.1:{free_port()}/api/query"

    async def go() -> None:
        async with PoliteClient(min_interval_s=0.01, max_retries=2) as client:
            await client.get(url)

    with pytest.raises(DependencyUnavailable, match=re.escape(f"{url} is unreachable after 3")):
        asyncio.run(go())


def test_client_errors_are_not_retried() -> None:
    async def go() -> FakeArxiv:
        async with FakeArxiv() as fake, PoliteClient(min_interval_s=0.01) as client:
            fake.fault("/api/query", 400, body=b"bad query")
            with pytest.raises(SourceError, match=r"HTTP 400.*bad query"):
                await client.get(fake.api_url)
            return fake

    assert len(asyncio.run(go()).requests) == 1


def test_a_long_retry_after_is_handed_to_the_caller() -> None:
    async def go() -> DependencyUnavailable:
        async with FakeArxiv() as fake:
            fake.fault("/rss", 503, headers={"Retry-After": "3600"})
            async with PoliteClient(min_interval_s=0.01, max_retry_after_s=60) as client:
                with pytest.raises(DependencyUnavailable) as caught:
                    await client.get(fake.rss_url)
        return caught.value

    error = asyncio.run(go())
    assert error.retry_after_s == 3600 and "retry after 3600s" in str(error)


def test_conditional_get_returns_304() -> None:
    async def go() -> tuple[int, int]:
        async with FakeArxiv() as fake, PoliteClient(min_interval_s=0.01) as client:
            first = await client.get(fake.rss_url)
            again = await client.get(fake.rss_url, headers={"If-None-Match": first.headers["ETag"]})
            return first.status, again.status

    assert asyncio.run(go()) == (200, 304)


def test_parse_retry_after() -> None:
    now = dt.datetime(2025, 12, 16, 12, 0, tzinfo=dt.UTC)
    assert parse_retry_after("120", now) == 120
    assert parse_retry_after("Tue, 16 Dec 2025 12:00:30 GMT", now) == 30
    assert parse_retry_after("Tue, 16 Dec 2025 11:00:00 GMT", now) == 0
    assert parse_retry_after(None) is None
    assert parse_retry_after("soon") is None


def test_backoff_delay_grows_and_is_capped() -> None:
    rng = random.Random(1)
    for attempt in range(8):
        delay = backoff_delay(attempt, 1.0, 30.0, rng)
        ceiling = min(30.0, 2.0**attempt)
        assert ceiling / 2 <= delay <= ceiling
