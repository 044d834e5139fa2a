"""Retry-until-available: the one loop that waits out a dependency outage without committing."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from services.core import metrics
from services.core.errors import DependencyUnavailable

log = logging.getLogger(__name__)
T = TypeVar("T")

MAX_BACKOFF_S = 30.0


async def until_available(
    call: Callable[[], Awaitable[T]],
    stage: str,
    where: str = "",
    *,
    first_delay_s: float = 0.5,
    max_backoff_s: float = MAX_BACKOFF_S,
) -> T:
    """Await ``call()`` until it does not raise :class:`DependencyUnavailable`.

    Waits at least the error's ``retry_after_s``, doubling from ``first_delay_s`` up to
    ``max_backoff_s``; counts each retry in ``astrostream_retries_total{stage}``. Any other
    exception propagates at once.

    Args:
        call: makes a fresh attempt each time it is called.
        stage: metric label and log prefix (``upsert``, ``alerts``…).
        where: the record(s) concerned (topic, partition, offset), for the log.
    """
    delay = first_delay_s
    while True:
        try:
            return await call()
        except DependencyUnavailable as exc:
            metrics.RETRIES.labels(stage).inc()
            wait = min(max_backoff_s, max(delay, exc.retry_after_s))
            suffix = f" ({where})" if where else ""
            log.warning("%s: %s; retrying in %.1fs without committing%s", stage, exc, wait, suffix)
            await asyncio.sleep(wait)
            delay = min(max_backoff_s, delay * 2)
