"""Prometheus metrics of the ingest role (default registry; names prefixed ``astrostream_ingest_``).

Labels: ``source`` is ``api``, ``rss``, ``oai`` or ``replay``; ``status`` is the HTTP status or
``error`` for a connection failure / timeout.
"""

from __future__ import annotations

from prometheus_client import Counter, Gauge

REQUESTS = Counter(
    "astrostream_ingest_requests",
    "HTTP requests made to arXiv, by source and response status.",
    ["source", "status"],
)
PUBLISHED = Counter(
    "astrostream_ingest_papers_published",
    "Papers (new ones or new versions) published to the papers topic and acknowledged.",
    ["source"],
)
DUPLICATES = Counter(
    "astrostream_ingest_duplicates_skipped",
    "Listed papers not published because that version and content were already published.",
    ["source"],
)
SKIPPED = Counter(
    "astrostream_ingest_records_skipped",
    "Listed records that cannot be published (empty abstract, invalid id, out of categories).",
    ["source", "reason"],
)
MALFORMED = Counter(
    "astrostream_ingest_malformed_pages",
    "Responses that were not the expected XML (logged with their URL, then skipped).",
    ["source"],
)
LAST_SUCCESS = Gauge(
    "astrostream_ingest_last_success_timestamp_seconds",
    "Unix time at which the last poll of a source completed.",
    ["source"],
)
BACKOFF = Counter(
    "astrostream_ingest_backoff_seconds",
    "Seconds spent waiting after errors (exponential backoff and Retry-After).",
    ["source"],
)
