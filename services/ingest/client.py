"""A polite HTTP client for arXiv: one connection, spaced requests, backoff with jitter, Retry-After.

arXiv asks machines for at most one request every 3 seconds on a single connection, and to say
who they are. Every request (retries included) waits ``min_interval_s`` after the previous one
*finished*; errors add exponential backoff with jitter, or the server's ``Retry-After``. The
schedule is shared by every client of the process, so consecutive polls with fresh clients
(``poll_once`` calls, a restarted loop) are spaced too.
"""

from __future__ import annotations

import asyncio
import datetime as dt
import email.utils
import importlib.metadata
import logging
import random
import threading
import time
from collections.abc import Mapping
from dataclasses import dataclass
from types import TracebackType

import aiohttp
from multidict import CIMultiDict
from yarl import URL

from services.core.clock import utcnow
from services.core.errors import DependencyUnavailable
from services.core.settings import Settings
from services.ingest import metrics
from services.ingest.records import SourceError

log = logging.getLogger(__name__)

PROJECT_URL = "https://github.com/astrostream"
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})


def default_user_agent(contact: str | None = None) -> str:
    """``astrostream/<version> (+https://github.com/astrostream; mailto:<contact>)``."""
    try:
        version = importlib.metadata.version("astrostream")
    except importlib.metadata.PackageNotFoundError:
        version = "0.0.0"
    mail = f"; mailto:{contact}" if contact else ""
    return f"astrostream/{version} (+{PROJECT_URL}{mail})"


class Schedule:
    """When this process may send its next arXiv request (``time.monotonic`` seconds)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.last_end: float | None = None
        self.not_before = 0.0

    def ready_at(self, interval_s: float) -> float:
        with self._lock:
            ready = self.not_before
            if self.last_end is not None:
                ready = max(ready, self.last_end + interval_s)
            return ready

    def finished(self) -> None:
        with self._lock:
            self.last_end = time.monotonic()

    def back_off(self, delay_s: float) -> None:
        with self._lock:
            self.not_before = max(self.not_before, time.monotonic() + delay_s)


SCHEDULE = Schedule()  # shared by every client of the process


def parse_retry_after(value: str | None, now: dt.datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header (delta-seconds or HTTP-date), None if absent."""
    if not value or not value.strip():
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=dt.UTC)
    return max(0.0, (when - (now or utcnow())).total_seconds())


def backoff_delay(attempt: int, base_s: float, cap_s: float, rng: random.Random) -> float:
    """Exponential backoff with "equal jitter": half of ``base * 2**attempt`` fixed, half random."""
    ceiling = min(cap_s, base_s * 2**attempt)
    return ceiling / 2 + rng.uniform(0, ceiling / 2)


@dataclass(frozen=True)
class Response:
    """A successful (2xx) or not-modified (304) response (headers are case-insensitive)."""

    url: str
    status: int
    body: bytes
    headers: Mapping[str, str]


class PoliteClient:
    """Sequential GETs over a single keep-alive connection, spaced and retried politely.

    Args:
        min_interval_s: minimum seconds from the end of a request to the start of the next.
        user_agent: the identifying User-Agent (default: :func:`default_user_agent`).
        max_retries: retries after the first attempt before giving up.
        backoff_base_s: first backoff step (default: ``max(min_interval_s, 0.05)``).
        backoff_max_s: cap of one backoff step.
        max_retry_after_s: a longer ``Retry-After`` is not slept here: it is raised as
            :class:`DependencyUnavailable` with ``retry_after_s`` so the caller can reschedule.
        timeout_s: total time allowed for one request.
        max_bytes: larger bodies are refused.
        schedule: the request schedule (default: the one the whole process shares).
    """

    def __init__(
        self,
        *,
        min_interval_s: float = 3.0,
        user_agent: str | None = None,
        max_retries: int = 5,
        backoff_base_s: float | None = None,
        backoff_max_s: float = 120.0,
        max_retry_after_s: float = 900.0,
        timeout_s: float = 60.0,
        max_bytes: int = 64 << 20,
        rng: random.Random | None = None,
        schedule: Schedule | None = None,
    ) -> None:
        self.min_interval_s = min_interval_s
        self.user_agent = user_agent or default_user_agent()
        self.max_retries = max_retries
        self.backoff_base_s = backoff_base_s or max(min_interval_s, 0.05)
        self.backoff_max_s = backoff_max_s
        self.max_retry_after_s = max_retry_after_s
        self.timeout_s = timeout_s
        self.max_bytes = max_bytes
        self._rng = rng or random.Random()
        self._schedule = schedule or SCHEDULE
        self._lock = asyncio.Lock()
        self._session: aiohttp.ClientSession | None = None

    @classmethod
    def from_settings(cls, settings: Settings, **overrides: object) -> PoliteClient:
        """A client spaced by ``ASTRO_INGEST_MIN_INTERVAL_S``; keyword overrides win."""
        contact = settings.ingest_contact
        options: dict[str, object] = {
            "min_interval_s": settings.ingest_min_interval_s,
            "user_agent": settings.ingest_user_agent or default_user_agent(contact),
        }
        options.update(overrides)
        return cls(**options)  # type: ignore[arg-type]

    async def start(self) -> PoliteClient:
        if self._session is None:
            self._session = aiohttp.ClientSession(
                connector=aiohttp.TCPConnector(limit=1, limit_per_host=1),
                headers={"User-Agent": self.user_agent},
                timeout=aiohttp.ClientTimeout(total=self.timeout_s),
            )
        return self

    async def close(self) -> None:
        session, self._session = self._session, None
        if session is not None:
            await session.close()

    async def __aenter__(self) -> PoliteClient:
        return await self.start()

    async def __aexit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        await self.close()

    async def get(
        self,
        url: str,
        params: Mapping[str, str] | None = None,
        *,
        headers: Mapping[str, str] | None = None,
        source: str = "api",
    ) -> Response:
        """GET ``url``, waiting its turn and retrying transient failures.

        Returns:
            The 2xx or 304 response.

        Raises:
            DependencyUnavailable: still failing after ``max_retries`` retries, or asked to wait
                longer than ``max_retry_after_s``; names the URL.
            SourceError: a status that retrying cannot fix (4xx other than 429), or a body
                larger than ``max_bytes``.
        """
        target = URL(url).update_query(dict(params)) if params else URL(url)
        await self.start()
        async with self._lock:
            attempt = 0
            while True:
                await self._wait_turn()
                outcome = await self._attempt(target, headers)
                metrics.REQUESTS.labels(source, outcome.label).inc()
                if outcome.response is not None:
                    return outcome.response
                if outcome.status is not None and outcome.status not in RETRY_STATUSES:
                    raise SourceError(f"{target} answered HTTP {outcome.status}: {outcome.error}")
                delay = self._delay(target, attempt, outcome)
                if attempt >= self.max_retries:
                    raise DependencyUnavailable(
                        f"{target} is unreachable after {attempt + 1} attempts "
                        f"(last: {outcome.error}); check the URL and the network, or try later",
                        retry_after_s=delay,
                    )
                attempt += 1
                log.warning(
                    "%s: %s; retrying in %.1fs (retry %d/%d)",
                    target,
                    outcome.error,
                    delay,
                    attempt,
                    self.max_retries,
                )
                metrics.BACKOFF.labels(source).inc(delay)
                self._schedule.back_off(delay)

    def _delay(self, target: URL, attempt: int, outcome: _Outcome) -> float:
        if outcome.retry_after is not None and outcome.retry_after > self.max_retry_after_s:
            raise DependencyUnavailable(
                f"{target} asks to retry after {outcome.retry_after:.0f}s (HTTP {outcome.status})",
                retry_after_s=outcome.retry_after,
            )
        if outcome.retry_after is not None:
            return max(outcome.retry_after, self.min_interval_s)
        step = backoff_delay(attempt, self.backoff_base_s, self.backoff_max_s, self._rng)
        return max(step, self.min_interval_s)

    async def _wait_turn(self) -> None:
        wait = self._schedule.ready_at(self.min_interval_s) - time.monotonic()
        if wait > 0:
            await asyncio.sleep(wait)

    async def _attempt(self, target: URL, headers: Mapping[str, str] | None) -> _Outcome:
        assert self._session is not None
        try:
            async with self._session.get(target, headers=headers) as resp:
                body = await self._read(resp, target)
                if 200 <= resp.status < 300 or resp.status == 304:
                    response = Response(str(resp.url), resp.status, body, CIMultiDict(resp.headers))
                    return _Outcome(str(resp.status), response=response, status=resp.status)
                retry_after = None
                if resp.status in (429, 503):
                    retry_after = parse_retry_after(resp.headers.get("Retry-After"))
                snippet = body[:200].decode("utf-8", "replace").strip()
                return _Outcome(
                    str(resp.status),
                    status=resp.status,
                    error=f"HTTP {resp.status} {resp.reason or ''} {snippet}".strip(),
                    retry_after=retry_after,
                )
        except (aiohttp.ClientError, TimeoutError) as exc:
            return _Outcome("error", error=f"{type(exc).__name__}: {exc}".rstrip(": "))
        finally:
            self._schedule.finished()

    async def _read(self, resp: aiohttp.ClientResponse, target: URL) -> bytes:
        chunks: list[bytes] = []
        size = 0
        async for chunk in resp.content.iter_chunked(1 << 16):
            size += len(chunk)
            if size > self.max_bytes:
                raise SourceError(f"{target} sent more than {self.max_bytes} bytes")
            chunks.append(chunk)
        return b"".join(chunks)


@dataclass(frozen=True)
class _Outcome:
    label: str
    response: Response | None = None
    status: int | None = None
    error: str = ""
    retry_after: float | None = None
