"""The ``ingest`` role: the polling loop as a task of a worker process (or of the CLI)."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Awaitable, Callable
from typing import Any

from services.core.errors import DependencyUnavailable
from services.core.settings import Settings
from services.ingest.poller import API_PAGE_SIZE, Source, run_forever
from services.ingest.reconcile import reconcile
from services.ingest.state import IngestState
from services.kafka.publisher import Publisher
from services.store.binding import Binding

log = logging.getLogger(__name__)

BROKER_RETRY_S = 5.0


async def serve(
    settings: Settings,
    stop: asyncio.Event,
    *,
    source: Source = "api",
    page_size: int = API_PAGE_SIZE,
    indexed: Binding | None = None,
) -> None:
    """Open a publisher (waiting for the broker as long as it takes) and poll until ``stop``.

    This is the whole role: a worker runs it as a task, ``astrostream ingest`` runs it in the
    foreground. With ``indexed`` (the embed stage's binding), it first re-publishes what it
    published before but Qdrant does not hold (:mod:`services.ingest.reconcile`), once.
    """
    reconciled = indexed is None
    while not stop.is_set():
        publisher = Publisher(settings)
        try:
            await publisher.start()
        except DependencyUnavailable as exc:
            log.warning("ingest: %s; retrying in %.0fs", exc, BROKER_RETRY_S)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=BROKER_RETRY_S)
            continue
        try:
            if not reconciled and indexed is not None:
                try:
                    with IngestState.for_settings(settings) as state:
                        await reconcile(state, indexed.store, publisher)
                except DependencyUnavailable as exc:
                    log.warning("ingest reconcile: %s; retrying in %.0fs", exc, BROKER_RETRY_S)
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(stop.wait(), timeout=BROKER_RETRY_S)
                    continue
                reconciled = True
            await run_forever(settings, publisher, stop, source=source, page_size=page_size)
        finally:
            await publisher.stop()


def install(
    app: Any, settings: Settings, indexed: Binding | None = None
) -> Callable[[], Awaitable[str | None]]:
    """Run the ingest role inside a Faust worker (``services.worker.app.create_app`` calls this).

    Run the role in one process per deployment: each ingest process keeps its own state file,
    so two of them would publish every paper twice (harmless downstream, where writes are
    idempotent, but wasteful).

    Args:
        indexed: the embed stage's binding; given, the role reconciles its state with Qdrant on
            start (see :func:`serve`).

    Returns:
        A readiness check that reports the loop if it ever dies.
    """
    stop = asyncio.Event()
    failure: list[str] = []

    @app.task
    async def ingest() -> None:
        try:
            await serve(settings, stop, indexed=indexed)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            failure.append(f"{type(exc).__name__}: {exc}")
            log.exception("the ingest loop stopped")
            raise

    @app.on_before_shutdown.connect  # type: ignore[misc]
    async def _stop_ingest(sender: Any, **kwargs: Any) -> None:
        stop.set()

    async def check() -> str | None:
        return f"ingest loop stopped ({failure[-1]})" if failure else None

    return check
