"""Prometheus metrics of every stage, all named ``astrostream_*``."""

from __future__ import annotations

from prometheus_client import CONTENT_TYPE_LATEST, REGISTRY, Counter, Gauge, Histogram, Info
from prometheus_client import generate_latest as _generate_latest

from services.core.types import TextEncoder

LATENCY_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30, 60)
LAG_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10, 30, 60, 120, 300, 900, 3600)
SIZE_BUCKETS = (1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 1024, 2048, 4096)

PAPERS_RECEIVED = Counter("astrostream_papers_received", "Records read from the papers topic.")
PAPERS_INDEXED = Counter("astrostream_papers_indexed", "Papers whose vectors Qdrant acknowledged.")
PAPERS_SKIPPED = Counter(
    "astrostream_papers_skipped",
    "Papers not re-embedded: duplicate (same version and text) or stale (older version).",
    ["reason"],
)
SENTENCES_INDEXED = Counter("astrostream_sentences_indexed", "Sentence vectors upserted.")
DEADLETTERS = Counter(
    "astrostream_deadletters", "Records sent to the dead-letter topic.", ["stage"]
)
ERRORS = Counter("astrostream_errors", "Errors by stage and kind.", ["stage", "kind"])
RETRIES = Counter("astrostream_retries", "Retries after a dependency was unavailable.", ["stage"])
BATCH_PAPERS = Histogram(
    "astrostream_batch_papers", "Papers per micro-batch.", buckets=SIZE_BUCKETS
)
BATCH_SENTENCES = Histogram(
    "astrostream_batch_sentences", "Texts encoded per micro-batch.", buckets=SIZE_BUCKETS
)
STAGE_SECONDS = Histogram(
    "astrostream_stage_seconds",
    "Time per micro-batch in each stage (decode, encode, upsert, match, total).",
    ["stage"],
    buckets=LATENCY_BUCKETS,
)
END_TO_END_LAG = Histogram(
    "astrostream_end_to_end_lag_seconds",
    "From the record's Kafka timestamp (publish) to Qdrant's acknowledgement.",
    buckets=LAG_BUCKETS,
)
LAST_BATCH = Gauge("astrostream_last_batch_timestamp_seconds", "When the last batch was indexed.")
MODEL = Info("astrostream_model", "The model this process embeds with.")
HTTP_REQUESTS = Counter(
    "astrostream_http_requests", "API requests by route and status.", ["route", "status"]
)
CONSUMER_LAG = Gauge(
    "astrostream_consumer_lag",
    "Records of an assigned partition not yet committed: highwater minus committed offset "
    "(an estimate on Tansu, whose ListOffsets answers low; exact on Kafka).",
    ["topic", "partition"],
)
HTTP_SECONDS = Histogram(
    "astrostream_http_request_seconds", "API latency by route.", ["route"], buckets=LATENCY_BUCKETS
)


def exposition() -> tuple[bytes, str]:
    """The text exposition of every registered metric, with its content type."""
    return _generate_latest(REGISTRY), CONTENT_TYPE_LATEST


def describe_model(encoder: TextEncoder, version: str) -> None:
    """Publish which model this process embeds with (``astrostream_model_info``)."""
    MODEL.info(
        {
            "model": str(encoder.name),
            "version": version,
            "device": encoder.device,
            "dim": str(encoder.dim),
        }
    )
