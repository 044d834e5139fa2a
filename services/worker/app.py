"""Wiring: the Faust app, its topics and agents, the HTTP routes; a process runs the roles it is given."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiokafka.errors import KafkaError, KafkaTimeoutError, ProducerClosed

from services.alerts import lexicon
from services.alerts.feedback import FeedbackStore
from services.alerts.hook import SUBSCRIPTIONS, AlertMatcher
from services.alerts.lifecycle import SubscriptionService
from services.alerts.subscriptions import SubscriptionStore
from services.alerts.webhooks import WebhookSender
from services.core import metrics
from services.core.apitoken import operator_token
from services.core.errors import DependencyUnavailable
from services.core.schemas import Alert, DeadLetter, ModelUpdate, clip
from services.core.settings import Settings
from services.embed.agent import install_embed_agent, raw_record
from services.embed.pipeline import EmbedPipeline, IndexedHook
from services.embed.rollout import Rollout, model_path, version_of
from services.http.reads import Reads
from services.http.subscriptions import register_subscriptions
from services.http.views import register_probes, register_reads, web_application_options
from services.kafka.broker import port_open
from services.models.encoder import Encoder, backend_version, derive_model_version, load_encoder
from services.store.binding import Binding
from services.store.vectorstore import VectorStore
from services.web.pages import register_web
from services.worker.digests import install_digests
from services.worker.lag import install_lag

log = logging.getLogger(__name__)


class Runtime:
    """What one worker process holds: settings, the serving and indexing bindings, readiness.

    ``serving`` is what the API, subscriptions and alerts read; ``indexing`` is what the
    embed stage writes with. They are the same model except during a rollout.
    """

    def __init__(self, settings: Settings, encoder: Encoder, store: VectorStore) -> None:
        self.settings = settings
        self.serving = Binding(encoder, store)
        self.indexing = Binding(encoder, store)
        self.assigned = False
        self.failure: str | None = None  # why the embed agent died (the worker then exits)
        self.started_at = time.time()
        self.extra_checks: dict[str, Callable[[], Awaitable[str | None]]] = {}
        self.rollout = Rollout(settings, self.serving, self.indexing)
        self.subscriptions: SubscriptionStore | None = None  # api and alerts roles
        self.feedback: FeedbackStore | None = None

    @classmethod
    def load(cls, settings: Settings) -> Runtime:
        """Load the model and open Qdrant (blocking: done before the worker starts)."""
        encoder = load_encoder(settings)
        version = backend_version(
            settings.model_version or derive_model_version(settings.model), encoder.backend
        )
        store = VectorStore(settings, encoder.dim, version)
        store.ensure_collections()
        metrics.describe_model(encoder, version)
        return cls(settings, encoder, store)

    @property
    def store(self) -> VectorStore:
        """The serving store (what readiness and ``/stats`` look at)."""
        return self.serving.store

    async def readiness(self) -> dict[str, str]:
        """Problems keyed by component; empty when the process is ready."""
        problems: dict[str, str] = {}
        host, _, port = self.settings.bootstrap_servers.split(",")[0].rpartition(":")
        if not await asyncio.to_thread(port_open, host, int(port), 1.0):
            problems["broker"] = f"cannot connect to {self.settings.bootstrap_servers}"
        store = self.store
        try:
            await asyncio.wait_for(store.run(store.ping), timeout=3)
        except (DependencyUnavailable, TimeoutError, OSError) as exc:
            problems["qdrant"] = f"unreachable: {exc}"
        if self.failure is not None:
            problems["embed"] = self.failure
        elif "embed" in self.settings.role_set and not self.assigned:
            problems["consumer"] = "not yet joined the consumer group"
        for name, check in self.extra_checks.items():
            problem = await check()
            if problem:
                problems[name] = problem
        return problems


def faust_app(settings: Settings) -> faust.App:
    """The Faust app with the settings that matter on Tansu and on Kafka alike."""
    return faust.App(
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
        web_application_options=web_application_options(),
    )


def create_app(settings: Settings, runtime: Runtime | None = None) -> tuple[faust.App, Runtime]:
    """Build the Faust app for ``settings.roles``; loads the model unless a runtime is given."""
    runtime = runtime or Runtime.load(settings)
    app = faust_app(settings)
    deadletters = app.topic(settings.topic_deadletter, key_serializer="raw", value_serializer="raw")

    async def dead_letter(letter: DeadLetter) -> None:
        key = letter.key.encode() if letter.key is not None else None
        fut = await deadletters.send(key=key, value=letter.model_dump_json().encode())
        await fut  # the record is acked only once the broker holds its dead letter

    on_indexed = install_alerts(app, runtime, dead_letter)
    install_digests(app, runtime)
    pipeline = EmbedPipeline(settings, runtime.indexing, dead_letter, on_indexed)

    async def embed_died(exc: BaseException) -> None:
        # Readiness says why, and the worker exits non-zero (its supervisor restarts it)
        # rather than idling, or restarting the agent on the same offset forever.
        runtime.failure = clip(f"embed agent died: {type(exc).__name__}: {exc}", 500)
        runtime.assigned = False
        await app.crash(exc)

    if "embed" in settings.role_set:
        install_embed_agent(app, settings, pipeline, on_death=embed_died)
        install_rollout(app, runtime)
        install_lag(app)

        @app.on_partitions_assigned.connect  # type: ignore[arg-type]
        async def _assigned(sender: Any, assigned: Any, **kwargs: Any) -> None:
            runtime.assigned = True

    if "ingest" in settings.role_set:
        from services.ingest.worker import install as install_ingest

        runtime.extra_checks["ingest"] = install_ingest(app, settings, runtime.indexing)

    register_probes(
        app, runtime.readiness, lambda: runtime.serving.model_version, runtime.started_at
    )
    if "api" in settings.role_set:
        register_reads(app, Reads(runtime.serving))
        if runtime.subscriptions is not None and runtime.feedback is not None:
            service = SubscriptionService(runtime.subscriptions)  # the API's and the web's
            register_subscriptions(
                app,
                service,
                runtime.feedback,
                operator_token(settings),
                settings.webhook_allow_private,
                settings.public_base,
            )
            register_web(
                app.web.web_app,  # type: ignore[attr-defined]
                service=service,
                feedback=runtime.feedback,
                reads=Reads(runtime.serving),
                readiness=runtime.readiness,
                data_dir=settings.data_dir,
                allow_private=settings.webhook_allow_private,
                public_url=settings.public_url,
                roles=frozenset(settings.role_set),
            )
    return app, runtime


def transient(exc: BaseException) -> bool:
    """Whether publishing may succeed if retried (broker down, timeout) rather than never."""
    if isinstance(exc, KafkaTimeoutError | ProducerClosed):
        return True
    if isinstance(exc, KafkaError):
        return bool(exc.retriable)
    return isinstance(exc, TimeoutError | ConnectionError | DependencyUnavailable)


Send = Callable[[bytes, bytes], Awaitable[Any]]


def alert_publisher(
    send: Send,
    dead_letter: Callable[[DeadLetter], Awaitable[None]],
    topic: str,
    *,
    max_backoff_s: float = 30.0,
) -> Callable[[list[Alert]], Awaitable[None]]:
    """``publish(alerts)``: returns once the broker holds each alert or its dead letter.

    Args:
        send: ``send(key, value)``, awaited until the broker acknowledges.
        dead_letter: where an alert goes that can never be published.
        topic: the alerts topic (named in logs and dead letters).

    A transient error (see :func:`transient`) is retried with backoff; any other (the
    alert is too large, a serialization error…) dead-letters that alert, and the others
    are published all the same.
    """

    async def publish_one(alert: Alert) -> None:
        await send(alert.subscription_id.encode(), alert.model_dump_json().encode())

    async def bury(alert: Alert, exc: BaseException) -> None:
        reason = f"alert for {alert.arxiv_id} not publishable: {type(exc).__name__}: {exc}"
        log.error("dead-letter (alerts) topic=%s partition=None offset=None: %s", topic, reason)
        try:
            value: bytes | str = alert.model_dump_json()
        except Exception:
            value = repr(alert)
        await dead_letter(
            DeadLetter.from_raw(
                stage="alerts",
                error=reason,
                topic=topic,
                partition=None,
                offset=None,
                key=alert.subscription_id,
                value=value,
            )
        )
        metrics.DEADLETTERS.labels("alerts").inc()

    async def publish(alerts: list[Alert]) -> None:
        pending = list(alerts)
        delay = 0.5
        while pending:
            # on the broker before the paper is marked done
            outcomes = await asyncio.gather(
                *(publish_one(a) for a in pending), return_exceptions=True
            )
            retry: list[Alert] = []
            for alert, outcome in zip(pending, outcomes, strict=True):
                if isinstance(outcome, asyncio.CancelledError):
                    raise outcome
                if outcome is None:
                    continue
                if transient(outcome):
                    retry.append(alert)
                    last = outcome
                else:
                    await bury(alert, outcome)
            pending = retry
            if pending:
                metrics.RETRIES.labels("alerts_publish").inc()
                log.warning(
                    "publishing %d alerts to topic=%s failed (%s: %s); retrying in %.1fs",
                    len(pending),
                    topic,
                    type(last).__name__,
                    last,
                    delay,
                )
                await asyncio.sleep(delay)
                delay = min(max_backoff_s, delay * 2)

    return publish


def install_alerts(
    app: faust.App,
    runtime: Runtime,
    dead_letter: Callable[[DeadLetter], Awaitable[None]],
) -> IndexedHook | None:
    """Open the subscriptions (api and alerts roles); return the matcher hook (alerts role)."""
    settings = runtime.settings
    roles = settings.role_set
    if not roles & {"api", "alerts"}:
        return None
    prior = lexicon.prior(settings.alert_df_table)
    subs = SubscriptionStore(runtime.serving, prior)
    subs.ensure_sync()
    runtime.subscriptions = subs
    runtime.feedback = FeedbackStore(runtime.serving)
    runtime.feedback.ensure_sync()
    SUBSCRIPTIONS.set(subs.count_sync())
    if "alerts" not in roles:
        return None

    topic = app.topic(settings.topic_alerts, key_serializer="raw", value_serializer="raw")

    async def send(key: bytes, value: bytes) -> None:
        await (await topic.send(key=key, value=value))

    publish = alert_publisher(send, dead_letter, settings.topic_alerts)

    matcher = AlertMatcher(
        subs,
        publish,
        WebhookSender(settings.webhook_allow_private),
        aggregation=settings.alert_aggregation,
        lexical_weight=settings.alert_lexical_weight,
        prior=prior,
        percolate_limit=settings.alert_percolate_limit,
        sparse_limit=settings.alert_sparse_limit,
        crash_after_publish=settings.crash_at == "after_alert_publish",
        feedback=runtime.feedback,
        dense_weight=settings.alert_dense_weight,
        lexical_margin=settings.alert_lexical_margin,
    )

    @app.on_before_shutdown.connect  # type: ignore[misc,arg-type]
    async def _close_webhooks(sender: Any, **kwargs: Any) -> None:
        await matcher.webhooks.close()

    return matcher


def install_rollout(app: faust.App, runtime: Runtime) -> None:
    """The ``models`` agent (roll out a ModelUpdate) and the timer that follows another's rollout."""
    settings = runtime.settings
    models = app.topic(settings.topic_models, key_serializer="raw", value_serializer="raw")

    @app.agent(models, name="models")
    async def on_model(stream: faust.StreamT[Any]) -> None:
        async for event in stream.events():
            where = raw_record(event).where
            try:
                update = ModelUpdate.model_validate_json(event.message.value)
            except ValueError as exc:
                log.warning("ignoring bad ModelUpdate (%s): %s", where, exc)
                continue
            try:
                await runtime.rollout.run(update)
            except Exception:
                log.exception(
                    "rollout to %s failed (%s); still serving %s",
                    update.version,
                    where,
                    runtime.serving.model_version,
                )

    @app.timer(interval=10.0)
    async def follow_alias() -> None:
        """Other workers follow a rollout done by the one that got the ModelUpdate."""
        store = runtime.serving.store
        aliases = await store.run(store.aliases)
        live = version_of(aliases.get(store.alias("papers")))
        if live is None or live == store.model_version or runtime.rollout.lock.locked():
            return
        path = await store.run(model_path, store, live)
        if path is None:
            return
        log.info("alias moved to %s: loading %s", live, path)
        await runtime.rollout.run(ModelUpdate(name=live, version=live, path=path))
