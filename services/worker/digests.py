"""Wiring of the e-mail digests: a timer on the leader worker of the alerts role (if SMTP is set)."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

import faust

from services.alerts.digests import Digester
from services.core.errors import DependencyUnavailable

if TYPE_CHECKING:
    from services.worker.app import Runtime

log = logging.getLogger(__name__)


def install_digests(app: faust.App, runtime: Runtime) -> Digester | None:
    """Check for due digests every half period (30 s at most) on one worker: the group leader.

    Off unless ``ASTRO_SMTP_URL`` is set and this process has the alerts role.
    """
    settings = runtime.settings
    subs = runtime.subscriptions
    if settings.smtp_url is None or "alerts" not in settings.role_set or subs is None:
        if "alerts" in settings.role_set and settings.smtp_url is None:
            log.info("e-mail digests are off: set ASTRO_SMTP_URL to send them")
        return None
    digester = Digester(subs, settings)
    digester.ensure_sync()
    every = max(0.5, min(30.0, (settings.digest_interval_s or 60.0) / 2))

    @app.timer(every, on_leader=True)
    async def _digests() -> None:
        try:
            await digester.run_once()
        except DependencyUnavailable as exc:
            log.warning("digests postponed: %s", exc)

    log.info("e-mail digests on: checking every %.1fs", every)
    return digester
