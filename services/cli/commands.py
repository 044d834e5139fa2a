"""The ``astrostream`` command line: run the stack, publish papers, query a running API."""

from __future__ import annotations

import asyncio
import json
import logging
import os
import sys
import time
from pathlib import Path
from typing import Any

import click

from services.cli.bench import bench
from services.cli.common import api_request, settings_or_exit
from services.cli.deadletters import deadletters
from services.cli.migrate import migrate
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
    """Embed new astro-ph papers, search them and get alerts.

    Every command has --help with an example. Commands other than up and worker talk to a
    running stack through its broker and its HTTP API (ASTRO_API_URL).

    \b
    Example, the quick start (up in one terminal, the rest in another):
      astrostream up
      astrostream publish tests/data/papers-sample.jsonl
      astrostream search "dust in early-type galaxies"
    """


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


def run_worker(
    settings: Settings, console: bool = False, on_force: Any = None, started: float | None = None
) -> str | None:
    """Load the model, open Qdrant and run a Faust worker until SIGINT/SIGTERM.

    With ``console`` (``astrostream up`` without ``ASTRO_LOG_LEVEL``), the worker prints a
    ready line and progress lines instead of its logs, and this returns the one line that
    says why and when it stopped.
    """
    import faust

    from services.store.vectorstore import wait_for_qdrant
    from services.worker.app import create_app

    if console:
        from services.cli.console import setup_console_logging

        setup_console_logging()
    else:
        setup_logging(settings.log_level)
    wait_for_kafka(settings)
    try:
        wait_for_qdrant(settings)  # before the model is loaded for nothing
        app, runtime = create_app(settings)
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    if console:
        from services.cli.console import Console, ConsoleWorker

        view = Console(settings, runtime, started=started or time.monotonic())
        view.install(app)
        worker: faust.Worker = ConsoleWorker(app, on_force=on_force or (lambda: None))
    else:
        worker = faust.Worker(app, loglevel=settings.log_level.upper(), quiet=True)
    try:
        worker.execute_from_commandline()
    except SystemExit as exc:
        if exc.code not in (0, None):
            raise
    if console:
        assert isinstance(worker, ConsoleWorker)
        return view.stopped_line(worker.stop_reason or "the worker ended")
    return None


@cli.command()
@click.option("--roles", help=f"Comma-separated roles ({','.join(ROLES)}); default all.")
def up(roles: str | None) -> None:
    """Run broker, Qdrant, worker, API and web app in one process.

    It starts a local broker (unless ASTRO_KAFKA_URL is set), opens Qdrant in local mode
    under ASTRO_DATA_DIR (unless ASTRO_QDRANT_URL is set), loads the model and runs a worker
    with every role. It prints a progress line every 10 seconds while papers are indexed;
    set ASTRO_LOG_LEVEL=info (or debug) to see every log line instead. Ctrl-C stops it.

    \b
    Example: astrostream up --roles embed,alerts,api
    """
    from services.cli.console import console_mode, start_lines
    from services.cli.embedded import EmbeddedStack, start_embedded_broker
    from services.kafka.broker import BrokerError

    started = time.monotonic()
    settings = settings_or_exit(**({"roles": roles} if roles else {}))
    console = console_mode(settings)
    for line in start_lines(settings):
        click.echo(line)
    stack: EmbeddedStack | None = None
    if settings.embedded_broker:
        try:
            stack = start_embedded_broker(
                settings, warn=lambda line: click.echo(f"warning: {line}", err=True)
            )
        except BrokerError as exc:
            raise click.ClickException(str(exc)) from None
        storage = "PostgreSQL, durable" if stack.durable else "memory"
        click.echo(f"  embedded broker (Tansu, {storage}) on {stack.broker.bootstrap}")
    stopped: str | None = None
    try:
        stopped = run_worker(
            settings, console, on_force=stack.stop if stack else None, started=started
        )
    finally:
        if stack is not None:
            stack.stop()
    if stopped:
        click.echo(stopped)
        # The model may be mid-way through a batch on its own thread, which the interpreter
        # would join at exit (a minute on a busy CPU). Everything that matters is stopped and
        # committed; that batch's offsets are not, so it is indexed again on the next start.
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(0)


@cli.command()
@click.option("--roles", help=f"Comma-separated roles ({','.join(ROLES)}); default ASTRO_ROLES.")
def worker(roles: str | None) -> None:
    """Run one worker against ASTRO_KAFKA_URL; start more to scale.

    This is how deployments run the service: it logs every line (ASTRO_LOG_LEVEL) instead of
    printing progress, and workers of one ASTRO_APP_ID share the partitions.

    \b
    Example: ASTRO_KAFKA_URL=kafka://broker:9092 astrostream worker --roles embed,alerts
    """
    run_worker(settings_or_exit(**({"roles": roles} if roles else {})))


@cli.command()
@click.argument("files", nargs=-1, required=True, type=click.Path(exists=True, path_type=Path))
@click.option("--limit", type=click.IntRange(min=1), help="Publish at most this many papers.")
def publish(files: tuple[Path, ...], limit: int | None) -> None:
    """Check papers from JSONL files, then publish them to Kafka.

    Every line of every FILE (JSONL, optionally gzipped) is validated first, so a bad file
    publishes nothing; the papers then go to the papers topic, keyed by arXiv id.

    \b
    Example: astrostream publish tests/data/papers-sample.jsonl
    """
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
@click.option(
    "--limit", default=10, show_default=True, type=click.IntRange(1, 100), help="At most this many."
)
@click.option("--category", help="Only papers in this arXiv category, e.g. astro-ph.GA.")
@click.option("--since", help="Only papers announced on or after this ISO date.")
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer.")
def search(text: str, limit: int, category: str | None, since: str | None, as_json: bool) -> None:
    """Search the papers of a running stack for TEXT.

    Each hit shows its score, arXiv id, title and the sentence that matched best.

    \b
    Example: astrostream search "fast radio bursts" --category astro-ph.HE --limit 5
    """
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


def stats_table(answer: dict[str, Any]) -> str:
    """``/stats`` as lines a person reads: counts, model, collections."""
    collections = answer.get("collections") or {}
    aliases = collections.get("aliases") or {}
    rows = [
        ("papers", f"{answer.get('papers', 0):,}"),
        ("sentences", f"{answer.get('sentences', 0):,}"),
        ("subscriptions", f"{answer.get('subscriptions', 0):,}"),
        ("model version", str(answer.get("model_version", "?"))),
    ]
    if answer.get("model_path"):
        rows.append(("model path", str(answer["model_path"])))
    for role in ("papers", "sentences", "subscriptions"):
        name = collections.get(role)
        if name:
            alias = next((a for a, target in aliases.items() if target == name), None)
            label = "" if any(r[0] == "collections" for r in rows) else "collections"
            rows.append((label, f"{alias} → {name}" if alias else name))
    width = max(len(label) for label, _ in rows)
    return "\n".join(f"{label:<{width}}  {value}" for label, value in rows)


@cli.command()
@click.option("--json", "as_json", is_flag=True, help="Print the raw JSON answer (for scripts).")
def stats(as_json: bool) -> None:
    """Print what a running stack holds, as a table or JSON.

    The counts of papers, sentences and subscriptions come from Qdrant through the API's
    /stats; the model path is what a downstream tool loads to embed its own queries.

    \b
    Example: astrostream stats --json
    """
    answer = api_request(settings_or_exit(), "GET", "/stats")
    click.echo(json.dumps(answer, indent=2) if as_json else stats_table(answer))


for command in (ingest, subscribe, train, bench, deadletters, migrate):
    cli.add_command(command)


def main() -> None:
    cli(prog_name="astrostream")


if __name__ == "__main__":
    main()
