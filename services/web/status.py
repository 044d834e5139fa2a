"""What the status page shows besides ``/stats``: lag and freshness from this process's metrics."""

from __future__ import annotations

import time
from typing import Any

from prometheus_client import REGISTRY


def _sample(name: str, labels: dict[str, str] | None = None) -> float | None:
    return REGISTRY.get_sample_value(name, labels or {})


def lag_summary(now: float | None = None) -> dict[str, Any]:
    """End-to-end lag (mean since start), records waiting, and the age of the last batch.

    None where this process has not measured it (e.g. a worker without the embed role).
    """
    now = time.time() if now is None else now
    count = _sample("astrostream_end_to_end_lag_seconds_count") or 0.0
    total = _sample("astrostream_end_to_end_lag_seconds_sum") or 0.0
    waiting = [
        s.value
        for metric in REGISTRY.collect()
        if metric.name == "astrostream_consumer_lag"
        for s in metric.samples
    ]
    last = _sample("astrostream_last_batch_timestamp_seconds") or 0.0
    return {
        "end_to_end_s": total / count if count else None,
        "batches_measured": int(count),
        "records_waiting": int(sum(waiting)) if waiting else None,
        "last_batch_age_s": now - last if last > 0 else None,
    }
