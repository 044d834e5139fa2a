"""``astrostream migrate``: copy the embedded store into a Qdrant server when one machine is not enough."""

from __future__ import annotations

from contextlib import suppress
from pathlib import Path

import click

from services.cli.common import settings_or_exit
from services.core.errors import AstrostreamError, ConfigError
from services.core.settings import Settings
from services.store.local_mode import open_local_mode
from services.store.migrate import PAGE_SIZE, StoreClient, copy_store, open_server
from services.store.vectorstore import open_client

PROGRESS_FILE = "migrate-progress.json"  # under ASTRO_DATA_DIR


def open_embedded(settings: Settings) -> StoreClient:
    """The embedded store of these settings, which the migration reads.

    Raises:
        click.ClickException: there is none, or another process (a worker) has it open.
    """
    if settings.qdrant_url:
        raise click.ClickException(
            f"ASTRO_QDRANT_URL={settings.qdrant_url} is set: this deployment already uses a "
            "server. migrate copies the embedded store; unset ASTRO_QDRANT_URL to name it"
        )
    path = settings.qdrant_path
    if str(path) == ":memory:" or not path.is_dir() or not any(path.iterdir()):
        raise click.ClickException(
            f"no embedded store at {path} (ASTRO_QDRANT_PATH / ASTRO_DATA_DIR): nothing to migrate"
        )
    try:
        return open_client(settings)
    except ConfigError as exc:  # the folder's lock: one process at a time
        raise click.ClickException(
            f"the embedded store is open in another process ({exc}). Stop `astrostream up` or "
            "the worker first: the store must not change while it is copied"
        ) from None


@click.command()
@click.option("--to", "url", metavar="URL", help="The Qdrant server, e.g. http://qdrant:6333.")
@click.option(
    "--to-path",
    type=click.Path(file_okay=False, path_type=Path),
    help="A qdrant-client local-mode folder instead of a server: the same API, for tests.",
)
@click.option("--api-key", help="The server's API key; default ASTRO_QDRANT_API_KEY.")
@click.option(
    "--page-size",
    default=PAGE_SIZE,
    show_default=True,
    type=click.IntRange(1, 10_000),
    help="Points per request.",
)
def migrate(url: str | None, to_path: Path | None, api_key: str | None, page_size: int) -> None:
    """Copy the embedded store into a Qdrant server.

    Vectors, payloads, payload indexes and aliases are copied; then the exact counts of every
    collection are compared. Stop the worker first. An interrupted migration resumes where it
    stopped when run again (its progress is in ASTRO_DATA_DIR/migrate-progress.json); the
    embedded store is left as it was. Then set ASTRO_QDRANT_URL to the server.

    \b
    Example: astrostream migrate --to http://qdrant.example.org:6333 --api-key "$KEY"
    """
    if (url is None) == (to_path is None):
        raise click.UsageError("give exactly one of --to URL and --to-path DIR")
    settings = settings_or_exit()
    if to_path is not None and to_path.resolve() == settings.qdrant_path.resolve():
        raise click.UsageError("--to-path is the embedded store itself")
    source = open_embedded(settings)
    destination: StoreClient | None = None
    where = url or str(to_path)
    try:
        if to_path is not None:
            destination = open_local_mode(to_path)
        else:
            assert url is not None
            destination = open_server(settings, url, api_key)
        summary = copy_store(
            source,
            destination,
            prefix=settings.collection_prefix,
            progress_path=settings.data_dir / PROGRESS_FILE,
            destination_name=where,
            page_size=page_size,
            report=lambda line: click.echo(line, err=True),
        )
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    except KeyboardInterrupt:
        raise click.ClickException(
            "interrupted: run the same command again to go on where it stopped"
        ) from None
    finally:
        for client in (destination, source):
            if client is not None:
                with suppress(Exception):
                    client.close()
    click.echo(
        f"{where} holds {len(summary.counts)} collections, {summary.points:,} points and "
        f"{len(summary.aliases)} aliases, counts verified. The embedded store "
        f"({settings.qdrant_path}) is unchanged."
    )
    if url:
        click.echo(f"Next: stop using it and run the workers with ASTRO_QDRANT_URL={url}")
