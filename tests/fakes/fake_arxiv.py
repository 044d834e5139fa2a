"""A local arXiv look-alike (API, announcement feed, OAI-PMH) for tests and offline demos.

It serves papers in arXiv's real response formats, logs every request (time, User-Agent, client
port) and plays scripted faults: error statuses with ``Retry-After``, malformed or empty pages.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import hashlib
import re
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from aiohttp import web

from fakes.fake_pages import (
    FakePaper,
    render_api,
    render_atom_feed,
    render_oai,
    render_oai_error,
    render_rss,
)

MALFORMED = b"<?xml version='1.0' encoding='UTF-8'?>\n<feed><entry><title>truncated"


@dataclass
class Logged:
    """A request the fake received."""

    path: str
    query: dict[str, str]
    at: float  # time.monotonic() on arrival
    user_agent: str
    peer_port: int | None
    headers: dict[str, str]


@dataclass
class Fault:
    """A scripted answer for requests whose path starts with ``path`` (and match ``when``)."""

    path: str
    status: int = 503
    body: bytes = b""
    headers: dict[str, str] = field(default_factory=dict)
    times: int = 1
    when: Callable[[dict[str, str]], bool] | None = None


class FakeArxiv:
    """The server. ``papers`` holds the latest version of each paper; ``feed`` the feed's items.

    Args:
        papers: initial papers (also the first announcement feed).
        oai_page_size: records per OAI-PMH page (arXiv: 1000).
        feed_day: the announcement date of the feed.
    """

    def __init__(
        self,
        papers: Iterable[FakePaper] = (),
        *,
        oai_page_size: int = 3,
        feed_day: dt.date = dt.date(2025, 12, 16),
        host: str = "127.0.0.1",
    ) -> None:
        self.papers: dict[str, FakePaper] = {p.arxiv_id: p for p in papers}
        self.feed: list[FakePaper] = list(self.papers.values())
        self.feed_day = feed_day
        self.oai_page_size = oai_page_size
        self.host = host
        self.port = 0
        self.requests: list[Logged] = []
        self.faults: list[Fault] = []
        self._runner: web.AppRunner | None = None

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    @property
    def api_url(self) -> str:
        return f"{self.base}/api/query"

    @property
    def rss_url(self) -> str:
        return f"{self.base}/rss/astro-ph"

    @property
    def atom_feed_url(self) -> str:
        return f"{self.base}/atom/astro-ph"

    @property
    def oai_url(self) -> str:
        return f"{self.base}/oai"

    def publish(self, paper: FakePaper) -> None:
        """Add a paper or a new version of one, and put it in the feed."""
        self.papers[paper.arxiv_id] = paper
        self.feed = [p for p in self.feed if p.arxiv_id != paper.arxiv_id] + [paper]

    def fault(self, path: str, status: int = 503, **kwargs: Any) -> Fault:
        fault = Fault(path, status, **kwargs)
        self.faults.append(fault)
        return fault

    def malformed(self, path: str, **kwargs: Any) -> Fault:
        return self.fault(path, 200, body=MALFORMED, **kwargs)

    def hits(self, path: str) -> list[Logged]:
        return [r for r in self.requests if r.path.startswith(path)]

    async def start(self) -> FakeArxiv:
        app = web.Application()
        app.router.add_get("/api/query", self._api)
        app.router.add_get("/rss/{archive}", self._rss)
        app.router.add_get("/atom/{archive}", self._atom)
        app.router.add_get("/oai", self._oai)
        self._runner = web.AppRunner(app, access_log=None)
        await self._runner.setup()
        site = web.TCPSite(self._runner, self.host, self.port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        return self

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def __aenter__(self) -> FakeArxiv:
        return await self.start()

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()

    def _log(self, request: web.Request) -> tuple[dict[str, str], web.Response | None]:
        query = dict(request.query)
        peer = request.transport.get_extra_info("peername") if request.transport else None
        self.requests.append(
            Logged(
                request.path,
                query,
                asyncio.get_running_loop().time(),
                request.headers.get("User-Agent", ""),
                peer[1] if peer else None,
                dict(request.headers),
            )
        )
        for fault in self.faults:
            wanted = fault.when is None or fault.when(query)
            if fault.times > 0 and request.path.startswith(fault.path) and wanted:
                fault.times -= 1
                response = web.Response(status=fault.status, body=fault.body, headers=fault.headers)
                return query, response
        return query, None

    async def _api(self, request: web.Request) -> web.Response:
        query, scripted = self._log(request)
        if scripted is not None:
            return scripted
        search = query.get("search_query", "")
        window = re.search(r"submittedDate:\[(\d{12}) TO (\d{12})\]", search)
        terms = re.findall(r"cat:([\w.*-]+)", search)
        low = dt.datetime.strptime(window.group(1), "%Y%m%d%H%M") if window else None
        matches = sorted(
            (
                p
                for p in self.papers.values()
                if _in_cats(p.categories, terms)
                and (low is None or p.published.replace(tzinfo=None) >= low)
            ),
            key=lambda p: (p.published, p.arxiv_id),
        )
        start, size = int(query.get("start", 0)), int(query.get("max_results", 10))
        body = render_api(matches[start : start + size], total=len(matches), start=start,
                          page_size=size)  # fmt: skip
        return web.Response(text=body, content_type="application/atom+xml")

    async def _rss(self, request: web.Request) -> web.Response:
        return self._feed(request, render_rss, "application/rss+xml")

    async def _atom(self, request: web.Request) -> web.Response:
        return self._feed(request, render_atom_feed, "application/atom+xml")

    def _feed(
        self,
        request: web.Request,
        render: Callable[[Iterable[FakePaper], dt.date], str],
        content_type: str,
    ) -> web.Response:
        _, scripted = self._log(request)
        if scripted is not None:
            return scripted
        body = render(self.feed, self.feed_day)
        etag = '"' + hashlib.sha1(body.encode()).hexdigest() + '"'
        if request.headers.get("If-None-Match") == etag:
            return web.Response(status=304, headers={"ETag": etag})
        return web.Response(text=body, content_type=content_type, headers={"ETag": etag})

    async def _oai(self, request: web.Request) -> web.Response:
        query, scripted = self._log(request)
        if scripted is not None:
            return scripted
        token = query.get("resumptionToken")
        if token:
            since, _, offset_text = token.partition("|")
            if not offset_text.isdigit():
                return _xml(render_oai_error(query, "badResumptionToken", "bad token"))
            offset = int(offset_text)
        else:
            since, offset = query.get("from", "0001-01-01"), 0
        records = sorted(
            (p for p in self.papers.values() if f"{p.updated:%Y-%m-%d}" >= since),
            key=lambda p: p.arxiv_id,
        )
        if not records:
            return _xml(render_oai_error(query, "noRecordsMatch", "no records match"))
        end = offset + self.oai_page_size
        more = end < len(records)
        body = render_oai(
            records[offset:end],
            query,
            token=f"{since}|{end}" if more else None,
            cursor=offset,
            complete_size=len(records) if (more or offset) else None,
        )
        return _xml(body)


def _xml(body: str) -> web.Response:
    return web.Response(text=body, content_type="text/xml")


def _in_cats(categories: Sequence[str], terms: Sequence[str]) -> bool:
    if not terms:
        return True
    for term in terms:
        if term.endswith("*"):
            if any(c.startswith(term[:-1]) for c in categories):
                return True
        elif term in categories:
            return True
    return False
