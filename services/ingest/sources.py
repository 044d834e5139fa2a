"""Walking each arXiv source: paging, re-fetching empty/malformed pages, publishing, cursors.

Cursors (in the state file) per source:
- ``api``: ``newest`` submission time seen; the next poll queries from ``newest - 2 days`` so
  late listings are caught again (dedupe makes the overlap cheap). ``--since`` backfills keep
  their own ``api:since=...`` cursor, so an interrupted backfill resumes where it stopped.
- ``oai``: the ``from`` date of the next harvest, and the resumption token of a harvest in
  progress (an expired token restarts that harvest from ``from``).
- ``rss``: the feed's ``ETag`` / ``Last-Modified``, so a light check is a conditional GET.
A cursor only moves past pages that were published and acknowledged.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
from collections import Counter
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

from services.core.clock import utcnow
from services.core.schemas import Paper
from services.core.settings import Settings
from services.ingest import metrics
from services.ingest.atom import MAX_OFFSET, api_params, parse_atom
from services.ingest.client import PoliteClient, Response
from services.ingest.oai import OaiError, list_records_params, parse_oai
from services.ingest.records import MalformedPage, Page, in_categories
from services.ingest.rss import parse_feed
from services.ingest.state import IngestState

log = logging.getLogger(__name__)

Source = Literal["api", "rss", "oai"]
SOURCES: tuple[Source, ...] = ("api", "rss", "oai")
OVERLAP = dt.timedelta(days=2)
FIRST_LOOKBACK = dt.timedelta(days=3)  # no cursor and no --since: the last announcements
API_PAGE_SIZE = 200
EMPTY_RETRIES = 2  # an empty page is re-fetched this many times before we believe it
MALFORMED_RETRIES = 1
SKIP_REASONS = (
    "empty abstract",
    "deleted",
    "out of categories",
    "unrecognised id",
    "no arXiv id",
    "invalid",
    "no metadata",
    "unsupported metadata format",
)


class PaperSink(Protocol):
    """Where papers go: :class:`services.kafka.publisher.Publisher` or anything that acks like it."""

    async def publish_papers(self, papers: Iterable[Paper]) -> int: ...


@dataclass
class PollResult:
    """Counts of one poll (or replay), for logs, tests and the ``--once`` summary line."""

    source: str
    fetches: int = 0  # responses received (after the client's own retries)
    pages: int = 0  # responses that parsed (304 Not Modified included)
    malformed_pages: int = 0
    listed: int = 0
    published: int = 0
    duplicates: int = 0
    skipped: int = 0
    complete: bool = True  # False when a page had to be skipped or paging ended early
    not_modified: bool = False
    reasons: Counter[str] = field(default_factory=Counter)

    def summary(self) -> str:
        text = (
            f"ingest {self.source}: {self.published} published, {self.duplicates} duplicates, "
            f"{self.skipped} skipped of {self.listed} listed; {self.pages} pages, "
            f"{self.fetches} fetches, {self.malformed_pages} malformed"
        )
        if self.not_modified:
            text += "; feed not modified"
        return text if self.complete else text + "; INCOMPLETE (see the warnings above)"


@dataclass
class PollContext:
    """What a walk over one source needs, and the result it fills in."""

    settings: Settings
    sink: PaperSink
    state: IngestState
    client: PoliteClient | None
    result: PollResult
    stop: asyncio.Event | None = None
    force: bool = False
    categories: list[str] = field(default_factory=list)  # empty: keep every paper (replay)

    @property
    def stopped(self) -> bool:
        return self.stop is not None and self.stop.is_set()

    async def cursor(self, name: str) -> dict[str, Any]:
        return await asyncio.to_thread(self.state.cursor, name)

    async def set_cursor(self, name: str, value: dict[str, Any]) -> None:
        await asyncio.to_thread(self.state.set_cursor, name, value)


async def fetch_page(
    run: PollContext,
    url: str,
    params: dict[str, str] | None,
    parse: Callable[[bytes], Page],
    *,
    source: str,
    expect_entries: bool,
    headers: dict[str, str] | None = None,
) -> tuple[Response, Page | None]:
    """Fetch and parse one page; re-fetch malformed and (when entries are expected) empty pages.

    Returns:
        The response and its page; the page is None for 304 Not Modified or a page that was
        still malformed after the retry (logged with its URL).
    """
    assert run.client is not None
    empties = malformed = 0
    while True:
        response = await run.client.get(url, params, headers=headers, source=source)
        run.result.fetches += 1
        if response.status == 304:
            run.result.pages += 1
            return response, None
        try:
            page = parse(response.body)
        except MalformedPage as exc:
            run.result.malformed_pages += 1
            metrics.MALFORMED.labels(source).inc()
            log.warning("malformed page from %s: %s", response.url, exc)
            if malformed < MALFORMED_RETRIES:
                malformed += 1
                continue
            return response, None
        if page.entries == 0 and expect_entries and empties < EMPTY_RETRIES:
            empties += 1
            log.info(
                "empty page from %s; re-fetching (%d/%d) before concluding it is empty",
                response.url,
                empties,
                EMPTY_RETRIES,
            )
            continue
        run.result.pages += 1
        return response, page


async def publish_page(run: PollContext, page: Page, source: str, where: str) -> None:
    """Publish what is new on a page, wait for the broker's acks, then remember it."""
    result = run.result
    skipped = list(page.skipped)
    listings = []
    for listing in page.listings:
        if not in_categories(listing.paper, run.categories):
            skipped.append((listing.paper.arxiv_id, "out of categories"))
        else:
            listings.append(listing)
    for what, reason in skipped:
        label = next((r for r in SKIP_REASONS if reason.startswith(r)), "other")
        metrics.SKIPPED.labels(source, label).inc()
        level = (
            logging.WARNING if label in ("empty abstract", "invalid", "other") else logging.DEBUG
        )
        log.log(level, "%s %s: skipping %s: %s", source, where, what, reason)
    planned = await asyncio.to_thread(run.state.plan, listings, force=run.force)
    fresh = [p for p in planned if p.decision.publish]
    if fresh:
        await run.sink.publish_papers([p.paper for p in fresh])
        await asyncio.to_thread(run.state.mark_published, fresh)
    reasons = Counter(p.decision.reason for p in planned)
    result.reasons.update(reasons)
    result.listed += page.entries or len(page.listings) + len(page.skipped)
    result.published += len(fresh)
    result.duplicates += len(planned) - len(fresh)
    result.skipped += len(skipped)
    metrics.PUBLISHED.labels(source).inc(len(fresh))
    metrics.DUPLICATES.labels(source).inc(len(planned) - len(fresh))
    log.info(
        "%s %s: %d entries, %d published (%s), %d duplicates, %d skipped",
        source,
        where,
        page.entries or len(page.listings),
        len(fresh),
        ", ".join(f"{n} {r}" for r, n in sorted(reasons.items()) if r != "duplicate") or "-",
        len(planned) - len(fresh),
        len(skipped),
    )


async def walk_api(run: PollContext, since: dt.datetime | None, page_size: int) -> None:
    settings, result = run.settings, run.result
    main = await run.cursor("api")
    key = "api" if since is None else f"api:since={since:%Y-%m-%dT%H:%M}"
    if since is None:
        newest = parse_dt(main.get("newest"))
        window = newest - OVERLAP if newest else utcnow() - FIRST_LOOKBACK
    else:
        reached = parse_dt((await run.cursor(key)).get("newest"))
        window = max(since, reached) if reached else since
        if reached:
            log.info("resuming the backfill since %s from %s", f"{since:%Y-%m-%d}", reached)
    log.info("api: polling submissions since %s", f"{window:%Y-%m-%d %H:%M}Z")
    start, total, frozen, seen_newest = 0, None, False, None
    while not run.stopped:
        params = api_params(run.categories, window, start=start, max_results=page_size)
        expect = total is None or start < total
        _, page = await fetch_page(
            run, settings.arxiv_api_url, params, parse_atom, source="api", expect_entries=expect
        )
        if page is None:  # malformed: skip it, and stop moving the cursor past the hole
            result.complete, frozen = False, True
            if total is None:
                break
            start += page_size
        else:
            total = page.total_results or 0
            where = f"page start={start} total={total}"
            await publish_page(run, page, "api", where)
            dates = [as_utc(x.paper.published) for x in page.listings]
            seen_newest = max([d for d in [*dates, seen_newest] if d is not None], default=None)
            if not frozen and seen_newest:
                await _advance_api(run, key, seen_newest)
            if page.entries == 0:
                if start < total:
                    log.warning("api: empty page at start=%d of %d; ending this poll", start, total)
                    result.complete = False
                break
            start += page.entries
        if total is not None and start >= total:
            break
        if start + page_size > MAX_OFFSET:  # the API pages no deeper: narrow the window instead
            if seen_newest is None or seen_newest <= window:
                log.warning("api: more than %d results in one window; stopping", MAX_OFFSET)
                result.complete = False
                break
            window, start, total = seen_newest.replace(second=0, microsecond=0), 0, None
    if since is not None and result.complete and not frozen and not run.stopped:
        # The backfill finished: forget its resume point, so running it again re-lists the
        # whole window (dedupe publishes only what changed, e.g. a new version).
        await run.set_cursor(key, {})


async def _advance_api(run: PollContext, key: str, newest: dt.datetime) -> None:
    for name in {key, "api"}:
        previous = parse_dt((await run.cursor(name)).get("newest"))
        if previous is None or newest > previous:
            await run.set_cursor(name, {"newest": newest.isoformat()})


async def walk_rss(run: PollContext) -> None:
    settings, result = run.settings, run.result
    cursor = await run.cursor("rss")
    headers = {}
    if cursor.get("etag"):
        headers["If-None-Match"] = cursor["etag"]
    if cursor.get("last_modified"):
        headers["If-Modified-Since"] = cursor["last_modified"]
    response, page = await fetch_page(
        run, settings.arxiv_rss_url, None, parse_feed, source="rss", expect_entries=True,
        headers=headers,
    )  # fmt: skip
    if response.status == 304:
        result.not_modified = True
        log.info("rss: feed not modified since %s", cursor.get("feed_date") or "the last poll")
        return
    if page is None:
        result.complete = False
        return
    await publish_page(run, page, "rss", f"feed of {page.feed_date or 'unknown date'}")
    await run.set_cursor(
        "rss",
        {
            "etag": response.headers.get("ETag"),
            "last_modified": response.headers.get("Last-Modified"),
            "feed_date": page.feed_date,
        },
    )


async def walk_oai(run: PollContext, since: dt.datetime | None) -> None:
    settings, result = run.settings, run.result
    key = "oai" if since is None else f"oai:since={since:%Y-%m-%d}"
    cursor = await run.cursor(key)
    reached = dt.date.fromisoformat(cursor["from"]) if cursor.get("from") else None
    if since is not None:  # a backfill continues from where a previous run of it got to
        from_date = max(since.date(), reached) if reached else since.date()
    else:
        from_date = reached or (utcnow() - FIRST_LOOKBACK).date()
    token: str | None = cursor.get("token")
    newest: str | None = cursor.get("newest") if token else None
    log.info(
        "oai: harvesting records changed since %s%s", from_date, " (resuming)" if token else ""
    )
    number = 0
    while not run.stopped:
        params = list_records_params(from_date=from_date, token=token)
        try:
            _, page = await fetch_page(
                run, settings.arxiv_oai_url, params, parse_oai, source="oai",
                expect_entries=token is None,
            )  # fmt: skip
        except OaiError as exc:
            if exc.code == "badResumptionToken" and token:
                log.warning("oai: resumption token expired; restarting from %s", from_date)
                token, newest = None, None
                continue
            raise
        if page is None:  # malformed: without its token we cannot go on; resume here next time
            result.complete = False
            return
        number += 1
        size = f" of {page.complete_list_size}" if page.complete_list_size else ""
        await publish_page(run, page, "oai", f"page {number}{size}")
        stamps = [x.datestamp for x in page.listings if x.datestamp] + ([newest] if newest else [])
        newest = max(stamps) if stamps else None
        token = page.resumption_token
        if token is None:
            break
        await run.set_cursor(key, {"from": from_date.isoformat(), "token": token, "newest": newest})
    if run.stopped:
        return
    done_until = newest or from_date.isoformat()
    await run.set_cursor(key, {"from": done_until, "token": None, "newest": None})
    if key != "oai":
        main = await run.cursor("oai")
        if not main.get("token") and (main.get("from") or "") < done_until:
            await run.set_cursor("oai", {"from": done_until, "token": None, "newest": None})


def parse_dt(text: str | None) -> dt.datetime | None:
    return as_utc(dt.datetime.fromisoformat(text)) if text else None


def as_utc(when: dt.date | dt.datetime | None) -> dt.datetime | None:
    """Dates are midnight UTC; naive datetimes are taken as UTC."""
    if when is None:
        return None
    if not isinstance(when, dt.datetime):
        return dt.datetime.combine(when, dt.time(), tzinfo=dt.UTC)
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
