"""``astrostream ingest``: poll arXiv continuously, once, since a date, or replay a saved file."""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import logging
import signal
from collections.abc import Iterator
from pathlib import Path
from typing import cast

import click
from aiokafka.errors import KafkaError

from services.core.errors import AstrostreamError, ConfigError, DependencyUnavailable
from services.core.logs import setup_logging
from services.core.settings import Settings, load_settings
from services.ingest.poller import (
    API_PAGE_SIZE,
    SOURCES,
    PollResult,
    Source,
    poll_once,
    replay_file,
)
from services.ingest.records import SourceError
from services.ingest.worker import serve
from services.kafka.publisher import Publisher

log = logging.getLogger("services.ingest")


@click.command("ingest")
@click.option("--once", is_flag=True, help="Do one full poll and exit (non-zero on failure).")
@click.option(
    "--since",
    type=click.DateTime(formats=["%Y-%m-%d", "%Y-%m-%dT%H:%M"]),
    metavar="DATE",
    help="Backfill everything submitted (api) or changed (oai) since DATE, then exit.",
)
@click.option(
    "--replay",
    type=click.Path(exists=True, dir_okay=False, path_type=Path),
    help="Publish a saved Atom / RSS / OAI-PMH / JSONL(.gz) file, then exit.",
)
@click.option(
    "--source",
    type=click.Choice(SOURCES),
    default="api",
    show_default=True,
    help="api: arXiv API; rss: the daily announcement feed; oai: OAI-PMH (bulk backfill).",
)
@click.option(
    "--min-interval",
    type=click.FloatRange(min=0),
    help="Seconds between requests [default: ASTRO_INGEST_MIN_INTERVAL_S, 3]. Lower for tests.",
)
@click.option(
    "--page-size",
    type=click.IntRange(1, 2000),
    default=API_PAGE_SIZE,
    show_default=True,
    help="Entries per arXiv API page.",
)
@click.option("--force", is_flag=True, help="With --replay: publish papers already published.")
@click.option(
    "--metrics-port",
    type=click.IntRange(0, 65535),
    default=0,
    help="Serve Prometheus /metrics on this port (0: off).",
)
def ingest(
    once: bool,
    since: dt.datetime | None,
    replay: Path | None,
    source: str,
    min_interval: float | None,
    page_size: int,
    force: bool,
    metrics_port: int,
) -> None:
    """Publish new astro-ph papers and versions from arXiv.

    Without options it runs until interrupted: a full poll now and after each arXiv
    announcement, a light check of the announcement feed every ASTRO_INGEST_POLL_INTERVAL_S.
    A state file under ASTRO_DATA_DIR remembers what was published and where each source
    stopped, so a restart continues there and never re-publishes an unchanged paper.

    \b
    Example: astrostream ingest --once --since 2026-03-01
    """
    if replay is not None and (once or since is not None):
        raise click.UsageError("--replay publishes a file: it takes no --once or --since")
    if force and replay is None:
        raise click.UsageError("--force only applies to --replay")
    if since is not None and source == "rss":
        raise click.UsageError("--since needs --source api or oai (the feed holds one day)")
    try:
        settings = load_settings()
    except ConfigError as exc:
        raise click.ClickException(str(exc)) from None
    if min_interval is not None:
        settings = settings.model_copy(update={"ingest_min_interval_s": min_interval})
    setup_logging(settings.log_level)
    if metrics_port:
        from prometheus_client import start_http_server

        start_http_server(metrics_port, addr=settings.web_host)
    since_utc = since.replace(tzinfo=dt.UTC) if since is not None else None
    try:
        if replay is not None:
            result = asyncio.run(_replay(settings, replay, force))
        elif once or since_utc is not None:
            result = asyncio.run(_once(settings, cast(Source, source), since_utc, page_size))
        else:
            asyncio.run(_forever(settings, cast(Source, source), page_size))
            return
    except DependencyUnavailable as exc:
        raise click.ClickException(f"unreachable: {exc}") from None
    except KafkaError as exc:
        raise click.ClickException(
            f"the broker did not acknowledge the papers ({exc!r}); nothing was marked as "
            "published, so running the command again retries them"
        ) from None
    except SourceError as exc:
        raise click.ClickException(f"the source refused the request: {exc}") from None
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(result.summary())
    if result.pages == 0:
        url = _source_url(settings, source) if replay is None else str(replay)
        raise click.ClickException(f"no valid page from {url}: is it an arXiv {source} endpoint?")


async def _once(
    settings: Settings, source: Source, since: dt.datetime | None, page_size: int
) -> PollResult:
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        async with Publisher(settings) as publisher:
            return await poll_once(
                settings, publisher, source=source, since=since, page_size=page_size, stop=stop
            )


async def _replay(settings: Settings, path: Path, force: bool) -> PollResult:
    async with Publisher(settings) as publisher:
        return await replay_file(settings, publisher, path, force=force)


async def _forever(settings: Settings, source: Source, page_size: int) -> None:
    stop = asyncio.Event()
    with _stop_on_signals(stop):
        log.info("ingesting from arXiv %s until interrupted (Ctrl-C to stop)", source)
        await serve(settings, stop, source=source, page_size=page_size)


@contextlib.contextmanager
def _stop_on_signals(stop: asyncio.Event) -> Iterator[None]:
    """SIGINT/SIGTERM finish the current page, then stop (a second Ctrl-C interrupts)."""
    loop = asyncio.get_running_loop()
    installed: list[signal.Signals] = []
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError, RuntimeError):
            loop.add_signal_handler(sig, _on_signal, loop, sig, stop)
            installed.append(sig)
    try:
        yield
    finally:
        for sig in installed:
            loop.remove_signal_handler(sig)


def _on_signal(loop: asyncio.AbstractEventLoop, sig: signal.Signals, stop: asyncio.Event) -> None:
    log.info("%s: stopping after the current page", sig.name)
    stop.set()
    loop.remove_signal_handler(sig)


def _source_url(settings: Settings, source: str) -> str:
    return {
        "api": settings.arxiv_api_url,
        "rss": settings.arxiv_rss_url,
        "oai": settings.arxiv_oai_url,
    }[source]


if __name__ == "__main__":
    ingest(prog_name="astrostream ingest")
