"""The embedded broker of ``astrostream up``: Tansu on durable PostgreSQL storage when it can be.

``ASTRO_BROKER_STORAGE``: ``postgres`` (default) starts a private PostgreSQL cluster under
``<data_dir>/postgres`` and Tansu on it, so papers queued when the stack stops are still queued
when it starts again; when PostgreSQL is not installed, cannot start, or the Tansu build has no
postgres engine, the broker runs on memory after one warning line (ingest still re-publishes what
Qdrant lacks on start: ``services.ingest.reconcile``). ``memory`` skips all that; a storage URL
is used as given, and its failure stops the command.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from dataclasses import dataclass

from services.core.settings import Settings
from services.kafka.broker import MEMORY, BrokerError, EmbeddedBroker, storage_supported
from services.kafka.postgres import PostgresCluster, PostgresError, postgres_bin_dir


@dataclass
class EmbeddedStack:
    broker: EmbeddedBroker
    postgres: PostgresCluster | None = None
    warning: str | None = None  # why the broker runs on memory although postgres was asked for

    @property
    def durable(self) -> bool:
        return not self.broker.storage.startswith("memory:")

    def stop(self) -> None:
        self.broker.stop()
        if self.postgres is not None:
            self.postgres.stop()


def start_embedded_broker(
    settings: Settings, warn: Callable[[str], None] | None = None
) -> EmbeddedStack:
    """Start the embedded broker on the storage ``settings.broker_storage`` asks for.

    Raises:
        BrokerError: the broker could not start (on memory, or on an explicit storage URL).
    """
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    log_path = settings.data_dir / "broker.log"
    port = settings.embedded_broker_port
    choice = settings.broker_storage.strip()

    def on_memory(warning: str | None = None) -> EmbeddedStack:
        if warning and warn:
            warn(warning)
        return EmbeddedStack(EmbeddedBroker(port, log_path=log_path).start(), warning=warning)

    if choice == "memory":
        return on_memory()
    if choice != "postgres":  # a storage URL, used as given
        return EmbeddedStack(EmbeddedBroker(port, log_path=log_path, storage=choice).start())

    fallback = "broker on memory storage: queued papers do not survive a restart"
    if postgres_bin_dir() is None:
        return on_memory(f"PostgreSQL is not installed (apt-get install postgresql); {fallback}")
    reason = storage_supported("postgres://probe@127.0.0.1:1/probe")
    if reason:
        return on_memory(f"{reason}; {fallback}")
    cluster = PostgresCluster(settings.data_dir / "postgres")
    try:
        cluster.start()
    except PostgresError as exc:
        return on_memory(f"{exc}; {fallback}")
    broker = EmbeddedBroker(port, log_path=log_path, storage=cluster.url)
    try:
        broker.start()
    except BrokerError as exc:
        with contextlib.suppress(Exception):
            cluster.stop()
        if "already in use" in str(exc):
            raise
        return on_memory(f"{exc}; {fallback}")
    return EmbeddedStack(broker, cluster)


__all__ = ["MEMORY", "EmbeddedStack", "start_embedded_broker"]
