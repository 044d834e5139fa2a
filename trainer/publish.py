"""Announcing a promoted model on ``astro.models``; never fails a training run."""

from __future__ import annotations

import asyncio
import logging

from services.core.schemas import ModelUpdate
from services.core.settings import Settings
from services.kafka.broker import port_open
from services.kafka.publisher import Publisher, encode_json

log = logging.getLogger(__name__)

CONNECT_TIMEOUT_S = 5.0
SEND_TIMEOUT_S = 15.0


def broker_reachable(settings: Settings) -> bool:
    """Whether a broker answers: a configured ``ASTRO_KAFKA_URL`` counts, else the embedded port."""
    if settings.kafka_url:
        return True
    return port_open("127.0.0.1", settings.embedded_broker_port)


async def _send(settings: Settings, update: ModelUpdate) -> None:
    async with Publisher(settings, connect_timeout=CONNECT_TIMEOUT_S) as publisher:
        ack = await publisher.send(settings.topic_models, update.name, encode_json(update))
        await asyncio.wait_for(ack, SEND_TIMEOUT_S)


def publish_update(settings: Settings, update: ModelUpdate, requested: bool | None) -> bool:
    """Publish ``update`` keyed by model name; log instead of raising when no broker answers.

    Args:
        settings: broker address and topic.
        update: the promoted model.
        requested: True/False from ``--publish/--no-publish``; None = only when a broker answers.

    Returns:
        True when the broker acknowledged the message.
    """
    if requested is False:
        log.info("--no-publish: ModelUpdate for %s-%s not published", update.name, update.version)
        return False
    if requested is None and not broker_reachable(settings):
        log.info(
            "no broker reachable at %s (set ASTRO_KAFKA_URL or run `astrostream up`): "
            "ModelUpdate not published",
            settings.bootstrap_servers,
        )
        return False
    try:
        asyncio.run(_send(settings, update))
    except Exception as exc:  # the model is saved and promoted: a broker problem must not fail it
        log.warning(
            "could not publish ModelUpdate on %s via %s (%s: %s); the model is promoted on disk, "
            "announce it later or restart workers with ASTRO_MODEL=%s",
            settings.topic_models,
            settings.bootstrap_servers,
            type(exc).__name__,
            exc,
            update.path,
        )
        return False
    log.info(
        "published ModelUpdate %s-%s on %s", update.name, update.version, settings.topic_models
    )
    return True
