"""What ``astrostream up`` shows a person: a start summary, one progress line, one stop line.

Console mode is ``up`` without an explicit ``ASTRO_LOG_LEVEL``: third-party loggers (faust,
aiokafka, mode…) and our own INFO lines are held back to warnings, long URLs are cut to their
path, and a warning repeated within a minute is shown once. With ``ASTRO_LOG_LEVEL`` set (or
``astrostream worker``, as deployments run it), logging is what it always was.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import signal
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

import click
import faust
from prometheus_client import REGISTRY

from services.core.settings import Settings
from services.worker.app import Runtime

PROGRESS_EVERY_S = 10.0
IDLE_EVERY_S = 60.0
REPEAT_WINDOW_S = 60.0
URL_QUERY = re.compile(r"(https?://[^\s?#]+)[?#]\S*?(?=:?\s|:?$)")
MAX_MESSAGE = 300


def console_mode(settings: Settings) -> bool:
    """Whether ``up`` speaks to a person: yes unless ``ASTRO_LOG_LEVEL`` was set explicitly."""
    return "log_level" not in settings.model_fields_set


class ConsoleFilter(logging.Filter):
    """Cut URLs to their path, cap a message's length, and drop a repeat within a minute."""

    def __init__(self, window_s: float = REPEAT_WINDOW_S) -> None:
        super().__init__()
        self.window_s = window_s
        self.last: dict[tuple[str, str], float] = {}

    def filter(self, record: logging.LogRecord) -> bool:
        key = (record.name, str(record.msg))
        now = time.monotonic()
        if now - self.last.get(key, -1e9) < self.window_s:
            return False
        self.last[key] = now
        message = URL_QUERY.sub(r"\1?…", record.getMessage())
        if len(message) > MAX_MESSAGE:
            message = message[: MAX_MESSAGE - 1] + "…"
        record.msg, record.args = message, None
        return True


def setup_console_logging() -> None:
    """Warnings and errors only, one short line each, on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s: %(message)s", "%H:%M:%S"))
    handler.addFilter(ConsoleFilter())
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.WARNING)
    # The model's "Loading weights" bar is noise in a console that prints its own progress.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()
    except ImportError:  # pragma: no cover - transformers comes with sentence-transformers
        pass


def smtp_line() -> str:
    """Whether e-mail digests are on, and how to turn them on when they are not."""
    url = os.environ.get("ASTRO_SMTP_URL", "").strip()
    if not url:
        return "e-mail digests: off (set ASTRO_SMTP_URL=smtp://… to turn them on)"
    shown = re.sub(r"//[^@/]*@", "//…@", url)  # never print credentials
    return f"e-mail digests: on, sent through {shown}"


def start_lines(settings: Settings) -> list[str]:
    """Where the web app is, where the data lives, what is on and off."""
    base = settings.http_base + "/"
    engine = "Qdrant Edge" if settings.qdrant_engine == "edge" else "qdrant-client local mode"
    qdrant = settings.qdrant_url or f"{settings.qdrant_path.resolve()} ({engine})"
    return [
        f"astrostream: web app and API on {base}  (try {base}search?q=dark+matter, {base}stats)",
        f"  data: {settings.data_dir.resolve()}  ·  vectors: {qdrant}",
        f"  roles: {settings.roles}  ·  model: {settings.model}",
        f"  {smtp_line()}",
        "  loading the model…",
    ]


def sample_value(name: str) -> float:
    """The value of a counter/gauge sample of this process (0 when not registered yet)."""
    return REGISTRY.get_sample_value(name) or 0.0


def total(metric: str) -> float:
    """The sum of every labelled sample named ``metric`` (e.g. dead letters of all stages)."""
    return sum(
        sample.value
        for family in REGISTRY.collect()
        for sample in family.samples
        if sample.name == metric
    )


@dataclass
class Snapshot:
    """The counters a progress line is made of, at one moment."""

    at: float
    indexed: float
    lag_sum: float
    lag_count: float
    alerts: float
    deadletters: float

    @classmethod
    def now(cls) -> Snapshot:
        return cls(
            at=time.monotonic(),
            indexed=sample_value("astrostream_papers_indexed_total"),
            lag_sum=sample_value("astrostream_end_to_end_lag_seconds_sum"),
            lag_count=sample_value("astrostream_end_to_end_lag_seconds_count"),
            alerts=sample_value("astrostream_alerts_total"),
            deadletters=total("astrostream_deadletters_total"),
        )


def progress_line(
    before: Snapshot, after: Snapshot, papers: int, sentences: int, busy: bool = True
) -> str:
    """``indexed 1,234 papers (12.3/s) · 9,876 sentences · lag 2.1 s · 3 alerts sent``.

    The rate and the lag (publish → Qdrant, mean over the batches) are of the interval
    between the two snapshots; the counts are those in Qdrant.
    """
    elapsed = max(after.at - before.at, 1e-9)
    rate = (after.indexed - before.indexed) / elapsed
    batches = after.lag_count - before.lag_count
    if batches:
        lag = f"lag {(after.lag_sum - before.lag_sum) / batches:.1f} s"
    else:
        lag = "encoding…" if busy else "idle"
    parts = [
        f"indexed {papers:,} papers ({rate:.1f}/s)",
        f"{sentences:,} sentences",
        lag,
        f"{int(after.alerts):,} alerts sent",
    ]
    if after.deadletters:
        parts.append(f"{int(after.deadletters):,} dead letters (astrostream deadletters)")
    return " · ".join(parts)


def duration(seconds: float) -> str:
    minutes, secs = divmod(int(seconds), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours} h {minutes:02d} min" if hours else f"{minutes} min {secs:02d} s"


@dataclass
class Console:
    """The progress of one ``up``: a ready line, then a progress line while work happens."""

    settings: Settings
    runtime: Runtime
    echo: Callable[[str], None] = click.echo
    started: float = field(default_factory=time.monotonic)
    first: Snapshot = field(default_factory=Snapshot.now)

    def install(self, app: faust.App) -> None:
        # Ctrl-C must not wait for the batch being encoded: its offsets are not committed,
        # so it is indexed again on the next start (idempotent writes), as after a crash.
        app.conf.stream_wait_empty = False

        @app.task
        async def _progress() -> None:
            await self.run()

    async def counts(self) -> tuple[int, int]:
        store = self.runtime.store
        return (
            await store.run(store.count, store.papers),
            await store.run(store.count, store.sentences),
        )

    async def run(self) -> None:
        while await self.runtime.readiness():
            await asyncio.sleep(1.0)
        papers, sentences = await self.counts()
        self.echo(
            f"ready in {time.monotonic() - self.started:.0f} s: {papers:,} papers and "
            f"{sentences:,} sentences indexed; open {self.settings.http_base}/ "
            "(publish papers: astrostream publish tests/data/papers-sample.jsonl; stop: Ctrl-C)"
        )
        before, shown = Snapshot.now(), (papers, sentences)
        last_line = time.monotonic()
        while True:
            await asyncio.sleep(PROGRESS_EVERY_S)
            try:
                counts = await self.counts()
            except Exception as exc:  # Qdrant down: say so, keep going
                self.echo(f"progress unavailable: {type(exc).__name__}: {exc}")
                continue
            after = Snapshot.now()
            busy = after.indexed != before.indexed or counts != shown
            if busy or time.monotonic() - last_line >= IDLE_EVERY_S:
                self.echo(progress_line(before, after, *counts, busy=busy))
                last_line = time.monotonic()
            before, shown = after, counts

    def stopped_line(self, reason: str) -> str:
        indexed = int(Snapshot.now().indexed - self.first.indexed)
        return (
            f"stopped: {reason} after {duration(time.monotonic() - self.started)}; "
            f"{indexed:,} papers indexed this run; data kept in {self.settings.data_dir.resolve()}"
        )


class ConsoleWorker(faust.Worker):
    """A Faust worker that leaves logging to the console and stops on the first Ctrl-C.

    A second Ctrl-C (or SIGTERM) while it is stopping ends the process at once.
    """

    def __init__(self, app: faust.App, on_force: Callable[[], None], **kwargs: Any) -> None:
        super().__init__(app, quiet=True, override_logging=False, **kwargs)
        self.spinner = None
        self.stop_reason: str | None = None
        self.on_force = on_force

    def _signalled(self, reason: str, signum: signal.Signals) -> None:
        if self.stop_reason is not None:
            self.on_force()
            os._exit(128 + signum.value)
        self.stop_reason = reason
        self._schedule_shutdown(signum)

    def _on_sigint(self) -> None:
        self._signalled("Ctrl-C", signal.SIGINT)

    def _on_sigterm(self) -> None:
        self._signalled("SIGTERM", signal.SIGTERM)
