"""Consumer lag per assigned partition (``astrostream_consumer_lag``), refreshed by a timer.

Lag is the highwater (the offset the next produced record will get) minus the offset this
consumer group will resume from: records that are on the broker but not yet indexed and
committed. That is what the ``AstrostreamConsumerLagHigh`` alert watches.

On Kafka both numbers are exact. On Tansu (the embedded and test broker) ListOffsets answers
low (the start of the last batch + 1, see ARCHITECTURE.md), so the value is an estimate there;
the larger of ListOffsets and the highwater of the last fetch response is used, and the lag
is never negative.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterable, Mapping
from typing import Any

from services.core import metrics

log = logging.getLogger(__name__)

LAG_INTERVAL_S = 10.0


def partition_lag(
    highwaters: Mapping[Any, int | None],
    fetched: Mapping[Any, int | None],
    committed: Mapping[Any, int | None],
    earliest: Mapping[Any, int | None],
) -> dict[Any, int]:
    """Lag per partition (pure: no I/O).

    Args:
        highwaters: ListOffsets end offsets (may read low on Tansu).
        fetched: the highwater of the last fetch response (None before the first fetch).
        committed: the next offset the group resumes from (None when nothing is committed).
        earliest: the first offset on the broker, where a group without commits starts.

    Returns:
        ``{tp: records not yet committed}``, 0 or more, for every tp with a known highwater.
    """
    lags: dict[Any, int] = {}
    for tp in set(highwaters) | set(fetched):
        ends = [v for v in (highwaters.get(tp), fetched.get(tp)) if v is not None and v >= 0]
        if not ends:
            continue
        start = committed.get(tp)
        if start is None:
            start = earliest.get(tp) or 0
        lags[tp] = max(0, max(ends) - start)
    return lags


class LagGauge:
    """Keeps ``astrostream_consumer_lag`` to exactly the partitions this worker holds."""

    def __init__(self) -> None:
        self.labelled: set[tuple[str, str]] = set()

    def publish(self, lags: Mapping[Any, int]) -> None:
        current = {(tp.topic, str(tp.partition)): lag for tp, lag in lags.items()}
        for labels, lag in current.items():
            metrics.CONSUMER_LAG.labels(*labels).set(lag)
        # A partition moved to another worker after a rebalance: drop its series, so the
        # sum over workers does not count it twice.
        for labels in self.labelled - set(current):
            with contextlib.suppress(KeyError):
                metrics.CONSUMER_LAG.remove(*labels)
        self.labelled = set(current)


async def measure(consumer: Any, tps: Iterable[Any]) -> dict[Any, int]:
    """Ask the consumer (a Faust consumer) for the offsets of ``tps`` and compute the lag."""
    tps = list(tps)
    if not tps:
        return {}
    highwaters = dict(await consumer.highwaters(*tps))
    earliest = dict(await consumer.earliest_offsets(*tps))
    fetched: dict[Any, int | None] = {}
    for tp in tps:
        try:
            fetched[tp] = consumer.highwater(tp)
        except (AssertionError, KeyError):  # not fetched yet / no longer assigned
            fetched[tp] = None
    # Faust's own view of what it committed (or found committed at assignment): the next
    # offset to resume from. It is updated at every commit, so it needs no broker call.
    known: Mapping[Any, int | None] = getattr(consumer, "_committed_offset", {})
    committed = {tp: known.get(tp) for tp in tps}
    return partition_lag(highwaters, fetched, committed, earliest)


def install_lag(app: Any, interval: float = LAG_INTERVAL_S) -> None:
    """Add the timer that refreshes ``astrostream_consumer_lag`` every ``interval`` seconds.

    Call it from ``create_app`` for every worker that consumes (the ``embed`` role).
    """
    gauge = LagGauge()

    @app.timer(interval=interval)
    async def consumer_lag() -> None:
        consumer = app.consumer
        try:
            lags = await measure(consumer, consumer.assignment())
        except Exception as exc:  # a rebalance or a broker hiccup: try again next tick
            log.warning("consumer lag not measured this time: %s", exc)
            return
        gauge.publish(lags)
