"""The ingest loop: one poll of a source, a replayed file, or polling forever on a schedule."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
from collections.abc import Awaitable
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, TypeVar

from services.core.clock import utcnow
from services.core.errors import AstrostreamError, DependencyUnavailable
from services.core.settings import Settings
from services.ingest import metrics
from services.ingest.client import PoliteClient
from services.ingest.records import Page
from services.ingest.replay import read_replay
from services.ingest.schedule import next_full_poll
from services.ingest.sources import (
    API_PAGE_SIZE,
    SOURCES,
    PaperSink,
    PollContext,
    PollResult,
    Source,
    as_utc,
    publish_page,
    walk_api,
    walk_oai,
    walk_rss,
)
from services.ingest.state import IngestState

__all__ = [
    "API_PAGE_SIZE",
    "SOURCES",
    "PaperSink",
    "PollResult",
    "Source",
    "poll_once",
    "replay_file",
    "run_forever",
]

log = logging.getLogger(__name__)

T = TypeVar("T")


async def poll_once(
    settings: Settings,
    publisher: PaperSink,
    *,
    since: dt.date | dt.datetime | None = None,
    source: Source = "api",
    page_size: int = API_PAGE_SIZE,
    client: PoliteClient | None = None,
    state: IngestState | None = None,
    stop: asyncio.Event | None = None,
) -> PollResult:
    """One full poll of a source: every page from the cursor (or ``since``) to the end.

    Args:
        since: fetch everything submitted (``api``) or changed (``oai``) since then, instead of
            continuing from the cursor. Not valid for ``rss`` (the feed is the latest day).
        page_size: entries per API page (the OAI-PMH server picks its own).
        client / state: shared ones (``run_forever``); by default opened and closed here.
        stop: when set, the poll ends after the current page.

    Raises:
        DependencyUnavailable: the source (after retries) or the broker is unreachable.
        SourceError: the source refuses the request (HTTP 4xx, API or OAI-PMH error).
    """
    if source not in SOURCES:
        raise ValueError(f"unknown source {source!r}: choose from {', '.join(SOURCES)}")
    if since is not None and source == "rss":
        raise ValueError("--since needs --source api or oai: the feed only holds the latest day")
    async with contextlib.AsyncExitStack() as stack:
        if client is None:
            client = await stack.enter_async_context(PoliteClient.from_settings(settings))
        if state is None:
            state = stack.enter_context(IngestState.for_settings(settings))
        run = PollContext(settings, publisher, state, client, PollResult(source), stop)
        run.categories = settings.category_list
        if source == "api":
            await walk_api(run, as_utc(since), page_size)
        elif source == "rss":
            await walk_rss(run)
        else:
            await walk_oai(run, as_utc(since))
    if run.result.pages:
        metrics.LAST_SUCCESS.labels(source).set_to_current_time()
    log.info("%s", run.result.summary())
    return run.result


async def replay_file(
    settings: Settings,
    publisher: PaperSink,
    path: Path,
    *,
    force: bool = False,
    state: IngestState | None = None,
    batch: int = 500,
) -> PollResult:
    """Publish a saved Atom / RSS / OAI-PMH / JSONL file, deduplicated unless ``force``.

    Raises:
        MalformedPage: the file is not one of those formats.
    """
    kind, page = await asyncio.to_thread(read_replay, path)
    log.info("replaying %s (%s): %d entries", path, kind, page.entries)
    with contextlib.ExitStack() as stack:
        if state is None:
            state = stack.enter_context(IngestState.for_settings(settings))
        run = PollContext(settings, publisher, state, None, PollResult("replay"), force=force)
        run.result.pages = 1
        for start in range(0, max(len(page.listings), 1), batch):
            part = Page(listings=page.listings[start : start + batch])
            if start == 0:
                part.skipped = page.skipped
            await publish_page(run, part, "replay", f"{path.name} [{start}:{start + batch}]")
    log.info("%s", run.result.summary())
    return run.result


async def run_forever(
    settings: Settings,
    publisher: PaperSink,
    stop: asyncio.Event,
    *,
    source: Source = "api",
    light_source: Source | None = "rss",
    page_size: int = API_PAGE_SIZE,
) -> None:
    """Poll until ``stop`` is set; errors are logged and retried, never raised.

    A full poll of ``source`` runs at start and after each arXiv announcement (Sunday-Thursday
    20:00 US Eastern, plus a settling delay); in between, a light check of ``light_source`` (the
    announcement feed, a conditional GET) runs every ``ASTRO_INGEST_POLL_INTERVAL_S``.
    All requests share one polite client, so the spacing holds across sources.
    """
    interval = dt.timedelta(seconds=settings.ingest_poll_interval_s)
    async with contextlib.AsyncExitStack() as stack:
        client = await stack.enter_async_context(PoliteClient.from_settings(settings))
        state = stack.enter_context(IngestState.for_settings(settings))
        now = utcnow()
        jobs: list[_Job] = [_Job("full", source, now)]
        if light_source is not None:
            jobs.append(_Job("light", light_source, now + interval))
        while not stop.is_set():
            job = min(jobs, key=lambda j: j.due)
            wait = (job.due - utcnow()).total_seconds()
            if wait > 0:
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(stop.wait(), timeout=wait)
                continue
            poll = poll_once(
                settings, publisher, source=job.source, page_size=page_size, client=client,
                state=state, stop=stop,
            )  # fmt: skip
            try:
                await _unless_stopped(poll, stop)
            except Exception as exc:  # the loop must survive any poll failure
                job.failures += 1
                delay = _retry_delay(settings, job.failures, exc)
                _log_failure(job, exc, delay)
                job.due = utcnow() + dt.timedelta(seconds=delay)
                continue
            job.failures = 0
            job.due = next_full_poll(utcnow()) if job.kind == "full" else utcnow() + interval
            log.info("next %s poll (%s) at %s", job.kind, job.source, f"{job.due:%Y-%m-%d %H:%M}Z")


@dataclass
class _Job:
    kind: Literal["full", "light"]
    source: Source
    due: dt.datetime
    failures: int = 0


def _retry_delay(settings: Settings, failures: int, exc: Exception) -> float:
    base = max(settings.ingest_min_interval_s, 1.0) * 2 ** min(failures, 10)
    hint = exc.retry_after_s if isinstance(exc, DependencyUnavailable) else 0.0
    return min(settings.ingest_poll_interval_s, max(base, hint))


def _log_failure(job: _Job, exc: Exception, delay: float) -> None:
    if isinstance(exc, AstrostreamError):  # expected failures: the message says it all
        log.warning("%s poll of %s failed: %s; retrying in %.0fs", job.kind, job.source, exc, delay)
    else:
        log.exception("%s poll of %s failed; retrying in %.0fs", job.kind, job.source, delay)


async def _unless_stopped(work: Awaitable[T], stop: asyncio.Event) -> T | None:
    """Run ``work`` but cancel it as soon as ``stop`` is set (nothing is marked before acks)."""
    task = asyncio.ensure_future(work)
    stopper = asyncio.ensure_future(stop.wait())
    try:
        done, _ = await asyncio.wait({task, stopper}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        stopper.cancel()
        if not task.done():
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
    return task.result() if task in done else None
