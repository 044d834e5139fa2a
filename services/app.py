"""The Faust app: topics, the embed agent and the HTTP views; a process runs the roles it is given."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import faust
from aiohttp import web
from faust.web import Request, Response, View

from services import metrics
from services.api import Api, ApiError
from services.broker import port_open
from services.embedder import EmbedPipeline, Prepared, RawRecord
from services.encoder import Encoder, derive_model_version
from services.errors import AstrostreamError, DependencyUnavailable, NotFound
from services.rollout import Rollout, model_path, version_of
from services.schemas import DeadLetter, ModelUpdate
from services.settings import Settings
from services.vectorstore import VectorStore

if TYPE_CHECKING:
    from services.subscriptions import SubscriptionStore

log = logging.getLogger(__name__)


class Runtime:
    """What the agents and views share: settings, model, vector store, readiness."""

    def __init__(self, settings: Settings, encoder: Encoder, store: VectorStore) -> None:
        self.settings = settings
        self.encoder = encoder
        self.store = store
        self.api = Api(store, encoder)
        self.assigned = False
        self.started_at = time.time()
        self.extra_checks: dict[str, Callable[[], Awaitable[str | None]]] = {}
        self.pipeline: EmbedPipeline
        self.rollout: Rollout
        self.subscriptions: SubscriptionStore | None = None  # set by the api/alerts roles

    def swap_pipeline(self, encoder: Encoder, store: VectorStore) -> None:
        """Send newly arriving papers to another model's collections (rollout step)."""
        pipeline = self.pipeline
        pipeline.encoder, pipeline.store = encoder, store

    def swap_api(self, encoder: Encoder, store: VectorStore) -> Encoder:
        """Serve reads from another model's collections; returns the encoder it replaced."""
        previous = self.encoder
        self.encoder, self.store = encoder, store
        self.api.encoder, self.api.store = encoder, store
        if self.subscriptions is not None:
            self.subscriptions.store, self.subscriptions.encoder = store, encoder
        metrics.MODEL.info(
            {
                "model": str(encoder.name),
                "version": store.model_version,
                "device": encoder.device,
                "dim": str(encoder.dim),
            }
        )
        return previous

    @classmethod
    def load(cls, settings: Settings) -> Runtime:
        """Load the model and open Qdrant (blocking: done before the worker starts)."""
        encoder = Encoder(
            settings.model, settings.device, settings.batch_size, settings.max_seq_length
        )
        version = settings.model_version or derive_model_version(settings.model)
        store = VectorStore(settings, encoder.dim, version)
        store.ensure_collections()
        metrics.MODEL.info(
            {
                "model": settings.model,
                "version": version,
                "device": encoder.device,
                "dim": str(encoder.dim),
            }
        )
        return cls(settings, encoder, store)

    async def readiness(self) -> dict[str, str]:
        """Problems keyed by component; empty when the process is ready."""
        problems: dict[str, str] = {}
        host, _, port = self.settings.bootstrap_servers.split(",")[0].rpartition(":")
        if not await asyncio.to_thread(port_open, host, int(port), 1.0):
            problems["broker"] = f"cannot connect to {self.settings.bootstrap_servers}"
        try:
            await asyncio.wait_for(self.store.run(self.store.ping), timeout=3)
        except (DependencyUnavailable, TimeoutError, OSError) as exc:
            problems["qdrant"] = f"unreachable: {exc}"
        if "embed" in self.settings.role_set and not self.assigned:
            problems["consumer"] = "not yet joined the consumer group"
        for name, check in self.extra_checks.items():
            problem = await check()
            if problem:
                problems[name] = problem
        return problems


class JsonView(View):
    """A view that always answers JSON, maps our errors to 4xx/5xx and counts requests."""

    route_name = "other"

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        method = request.method.lower()
        handler = self.methods[method]
        try:
            response = await handler(request, **(request.match_info or {}))
        except ApiError as exc:
            response = self.error(exc.status, exc.message)
        except NotFound as exc:
            response = self.error(404, str(exc))
        except DependencyUnavailable as exc:
            response = self.error(
                503, str(exc), headers={"Retry-After": str(int(exc.retry_after_s) or 1)}
            )
        except AstrostreamError as exc:
            response = self.error(400, str(exc))
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            response = self.error(500, f"internal error ({type(exc).__name__}); see the worker log")
        status = getattr(response, "status", 200)
        metrics.HTTP_REQUESTS.labels(self.route_name, str(status)).inc()
        metrics.HTTP_SECONDS.labels(self.route_name).observe(time.perf_counter() - started)
        return response


def create_app(settings: Settings, runtime: Runtime | None = None) -> tuple[faust.App, Runtime]:
    """Build the Faust app for ``settings.roles``; loads the model unless a runtime is given."""
    runtime = runtime or Runtime.load(settings)
    app = faust.App(
        settings.app_id,
        broker=settings.broker_url,
        store="memory://",
        autodiscover=False,
        topic_partitions=settings.topic_partitions,
        topic_replication_factor=1,
        broker_session_timeout=settings.broker_session_timeout,
        broker_heartbeat_interval=settings.broker_heartbeat_interval,
        broker_rebalance_timeout=settings.broker_rebalance_timeout,
        broker_commit_interval=1.0,
        consumer_auto_offset_reset="earliest",
        producer_acks=-1,
        web_enabled=True,
        web_host=settings.web_host,
        web_port=settings.web_port,
        web_bind=settings.web_host,
        web_stats_enabled=False,
        web_router_enabled=False,
        web_tables_enabled=False,
        web_graph_enabled=False,
        web_metrics_enabled=False,
        web_in_thread=False,
    )
    deadletters = app.topic(settings.topic_deadletter, key_serializer="raw", value_serializer="raw")

    async def dead_letter(letter: DeadLetter) -> None:
        key = letter.key.encode() if letter.key is not None else None
        fut = await deadletters.send(key=key, value=letter.model_dump_json().encode())
        await fut  # the record is acked only once the broker holds its dead letter

    # Subscriptions and alerts: their views (api role) and the matcher hook (alerts role).
    from services.alerts import install as install_alerts

    runtime.rollout = Rollout(runtime)
    on_indexed = install_alerts(app, runtime)
    pipeline = EmbedPipeline(settings, runtime.encoder, runtime.store, dead_letter, on_indexed)
    runtime.pipeline = pipeline

    if "embed" in settings.role_set:
        papers = app.topic(
            settings.topic_papers,
            key_serializer="raw",
            value_serializer="raw",
            partitions=settings.topic_partitions,
        )

        @app.agent(papers, name="embed")
        async def embed(stream: faust.StreamT[Any]) -> None:
            window = settings.batch_window_ms / 1000
            batches = stream.noack_take(  # type: ignore[attr-defined]
                settings.take_max_papers, within=window
            )
            committing: asyncio.Future[None] | None = None

            async def commit(prepared: Prepared, events: list[Any]) -> None:
                await pipeline.commit(prepared)
                for event in events:  # acked only once Qdrant has acknowledged the batch
                    await stream.ack(event)

            # Two batches in flight: batch N+1 is decoded and encoded while batch N is
            # written to Qdrant (the encoder and Qdrant each have their own thread).
            async for events in batches:
                records = [_raw(event) for event in events]
                prepared = await pipeline.prepare(records, earlier=committing)
                if committing is not None:
                    await committing
                committing = asyncio.ensure_future(commit(prepared, list(events)))

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            runtime.assigned = True

        models = app.topic(settings.topic_models, key_serializer="raw", value_serializer="raw")

        @app.agent(models, name="models")
        async def on_model(stream: faust.StreamT[Any]) -> None:
            async for event in stream.events():
                try:
                    update = ModelUpdate.model_validate_json(event.message.value)
                except ValueError as exc:
                    log.warning("ignoring bad ModelUpdate (%s): %s", _raw(event).where, exc)
                    continue
                try:
                    await runtime.rollout.run(update)
                except Exception:
                    log.exception(
                        "rollout to %s failed (%s); still serving %s",
                        update.version,
                        _raw(event).where,
                        runtime.store.model_version,
                    )

        @app.timer(interval=10.0)
        async def follow_alias() -> None:
            """Other workers follow a rollout done by the one that got the ModelUpdate."""
            store = runtime.store
            aliases = await store.run(store.aliases)
            live = version_of(aliases.get(store.alias("papers")))
            if live is None or live == store.model_version or runtime.rollout.lock.locked():
                return
            path = await store.run(model_path, store, live)
            if path is None:
                return
            log.info("alias moved to %s: loading %s", live, path)
            await runtime.rollout.run(ModelUpdate(name=live, version=live, path=path))

    if "ingest" in settings.role_set:
        from services.ingest.worker import install as install_ingest

        install_ingest(app, runtime)

    register_views(app, runtime)
    return app, runtime


def _raw(event: Any) -> RawRecord:
    message = event.message
    return RawRecord(
        topic=message.topic,
        partition=message.partition,
        offset=message.offset,
        key=message.key,
        value=message.value,
        timestamp=message.timestamp,
    )


def register_views(app: faust.App, runtime: Runtime) -> None:
    api = runtime.api

    @app.page("/health", name="health")
    class Health(JsonView):
        route_name = "health"

        async def get(self, request: Request) -> Response:
            return self.json(
                {"status": "alive", "uptime_s": round(time.time() - runtime.started_at, 1)}
            )

    @app.page("/ready", name="ready")
    class Ready(JsonView):
        route_name = "ready"

        async def get(self, request: Request) -> Response:
            problems = await runtime.readiness()
            if problems:
                return self.json({"ready": False, "problems": problems}, status=503)
            return self.json({"ready": True, "model_version": runtime.store.model_version})

    @app.page("/metrics", name="metrics")
    class Metrics(JsonView):
        route_name = "metrics"

        async def get(self, request: Request) -> Response:
            body, content_type = metrics.exposition()
            # aiohttp refuses a charset inside content_type=, so set the header as is.
            return web.Response(body=body, headers={"Content-Type": content_type})  # type: ignore[return-value]

    if "api" not in runtime.settings.role_set:
        return

    @app.page("/stats", name="stats")
    class Stats(JsonView):
        route_name = "stats"

        async def get(self, request: Request) -> Response:
            return self.json(await api.stats())

    @app.page("/search", name="search")
    class Search(JsonView):
        route_name = "search"

        async def get(self, request: Request) -> Response:
            return self.json(await api.search(request.query))  # type: ignore[attr-defined]

    @app.page("/papers/{arxiv_id:.+}/similar", name="similar")
    class Similar(JsonView):
        route_name = "similar"

        async def get(self, request: Request, arxiv_id: str) -> Response:
            return self.json(await api.similar(arxiv_id, request.query))  # type: ignore[attr-defined]

    # Registered after /similar: aiohttp takes the first route that matches.
    @app.page("/papers/{arxiv_id:.+}", name="paper")
    class PaperView(JsonView):
        route_name = "paper"

        async def get(self, request: Request, arxiv_id: str) -> Response:
            return self.json(await api.paper(arxiv_id))
