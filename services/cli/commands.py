"""The ``astrostream`` command line: run the stack, publish papers, query a running API."""

from __future__ import annotations

import asyncio
import json
import logging
import sys
from pathlib import Path

import click

from services.cli.bench import bench
from services.cli.common import api_request, settings_or_exit
from services.cli.deadletters import deadletters
from services.cli.subscribe import subscribe
from services.core.errors import AstrostreamError
from services.core.logs import setup_logging
from services.core.settings import ROLES, Settings
from services.ingest.command import ingest
from trainer.cli import train

log = logging.getLogger("astrostream")


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="astrostream")
def cli() -> None:
    """astrostream: embed the astro-ph literature as it streams by, search it, get alerts."""


def wait_for_kafka(settings: Settings) -> None:
    """Exit with one clear line if Kafka does not answer within ``kafka_connect_timeout_s``.

    Without this, Faust dies on an unreachable broker with a long traceback, after the model
    has been loaded for nothing.
    """
    from services.kafka.publisher import Publisher

    async def probe() -> None:
        async with Publisher(settings, connect_timeout=settings.kafka_connect_timeout_s):
            pass

    # A private loop: asyncio.run() would unset the main thread's loop, which Faust reuses.
    loop = asyncio.new_event_loop()
    try:
        loop.run_until_complete(probe())
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    finally:
        loop.close()


def run_worker(settings: Settings) -> None:
    """Load the model, open Qdrant and run a Faust worker until SIGINT/SIGTERM."""
    import faust

    from services.store.vectorstore import wait_for_qdrant
    from services.worker.app import create_app

    setup_logging(settings.log_level)
    wait_for_kafka(settings)
    try:
        wait_for_qdrant(settings)  # before the model is loaded for nothing
        app, _ = create_app(settings)
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise


@cli.command()
@click.option("--roles", help=f"Comma-separated roles ({','.join(ROLES)}); default all.")
def up(roles: str | None) -> None:
    """Run the embedded stack: local broker (unless ASTRO_KAFKA_URL), local Qdrant, worker, API."""
    from services.cli.embedded import EmbeddedStack, start_embedded_broker
    from services.kafka.broker import BrokerError

    settings = settings_or_exit(**({"roles": roles} if roles else {}))
    stack: EmbeddedStack | None = None
    if settings.embedded_broker:
        try:
            stack = start_embedded_broker(
                settings, warn=lambda line: click.echo(f"warning: {line}", err=True)
            )
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        storage = "PostgreSQL, durable" if stack.durable else "memory"
        click.echo(f"embedded broker (Tansu, {storage}) on {stack.broker.bootstrap}", err=True)
    click.echo(f"API on {settings.http_base} (try /ready, /stats, /search?q=...)", err=True)
    try:
        run_worker(settings)
    finally:
        if stack is not None:
            stack.stop()


@cli.command()
@click.option("--roles", help=f"Comma-separated roles ({','.join(ROLES)}); default ASTRO_ROLES.")
def worker(roles: str | None) -> None:
    """Run one worker process against ASTRO_KAFKA_URL (scale out by starting more)."""
    run_worker(settings_or_exit(**({"roles": roles} if roles else {})))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--limit", type=click.IntRange(min=1), help="Publish at most this many papers.")
def publish(files: tuple[Path, ...], limit: int | None) -> None:
    """Validate papers from JSONL(.gz) FILES, then produce them to the papers topic."""
    from services.core.papers import read_papers_jsonl
    from services.core.schemas import Paper
    from services.kafka.publisher import Publisher

    settings = settings_or_exit()
    setup_logging("warning")
    papers: list[Paper] = []
    try:
        for path in files:
            papers.extend(read_papers_jsonl(path))
    except AstrostreamError as exc:
        raise click.ClickException(f"nothing published: {exc}") from None
    papers = papers[:limit] if limit else papers

    async def go() -> int:
        async with Publisher(settings) as publisher:
            sent = 0
            with click.progressbar(length=len(papers), label="publishing", file=sys.stderr) as bar:
                for start in range(0, len(papers), 500):
                    chunk = papers[start : start + 500]
                    sent += await publisher.publish_papers(chunk)
                    bar.update(len(chunk))
            return sent

    try:
        sent = asyncio.run(go())
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"published {sent} papers to {settings.topic_papers}")


@cli.command()
@click.argument("text")
@click.option("--limit", default=10, show_default=True, type=click.IntRange(1, 100))
@click.option("--category", help="Only papers in this arXiv category, e.g. astro-ph.GA.")
@click.option("--since", help="Only papers announced on or after this ISO date.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def search(text: str, limit: int, category: str | None, since: str | None, as_json: bool) -> None:
    """Search the indexed papers of a running stack for TEXT."""
    settings = settings_or_exit()
    answer = api_request(
        settings,
        "GET",
        "/search",
        params={"q": text, "limit": limit, "category": category, "since": since},
    )
    if as_json:
        click.echo(json.dumps(answer, indent=2))
        return
    for rank, hit in enumerate(answer["results"], start=1):
        click.echo(f"{rank:2d}. {hit['score']:.3f}  {hit['arxiv_id']}  {hit['title']}")
        for sentence in hit["sentences"][:1]:
            click.echo(f"      “{sentence['text'][:160]}”")
    if not answer["results"]:
        click.echo("no results")


@cli.command()
def stats() -> None:
    """Print the counts of a running stack (papers, sentences, subscriptions)."""
    click.echo(json.dumps(api_request(settings_or_exit(), "GET", "/stats"), indent=2))


for command in (ingest, subscribe, train, bench, deadletters):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="astrostream")


if __name__ == "__main__":
    main()
