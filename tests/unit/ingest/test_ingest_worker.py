"""The ingest role's hook into a Faust worker: its readiness check reports a dead loop."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import faust
import pytest

import services.ingest.worker as ingest_worker
from services.core.settings import Settings


def _installed(settings: Settings) -> tuple[faust.App, Callable[[], Awaitable[str | None]]]:
    app = faust.App("ingest-install-test", broker="kafka://127.0.0.1:1", autodiscover=False)
    check = ingest_worker.install(app, settings)
    return app, check


def test_readiness_reports_a_dead_ingest_loop(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def broken(*args: object, **kwargs: object) -> None:
        raise RuntimeError("state file is corrupt")

    monkeypatch.setattr(ingest_worker, "serve", broken)
    app, check = _installed(settings)
    assert asyncio.run(check()) is None  # ready while the loop runs
    with pytest.raises(RuntimeError):
        asyncio.run(app._app_tasks[-1]())
    assert asyncio.run(check()) == "ingest loop stopped (RuntimeError: state file is corrupt)"


def test_a_cancelled_loop_is_not_a_failure(
    settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    async def cancelled(*args: object, **kwargs: object) -> None:
        raise asyncio.CancelledError

    monkeypatch.setattr(ingest_worker, "serve", cancelled)
    app, check = _installed(settings)
    with pytest.raises(asyncio.CancelledError):
        asyncio.run(app._app_tasks[-1]())
    assert asyncio.run(check()) is None
