"""Unit tests of trainer.publish: no broker never fails a run."""

from __future__ import annotations

import logging
import time

import pytest

from services.core.schemas import ModelUpdate
from services.core.settings import Settings
from services.kafka.broker import free_port
from trainer import publish

UPDATE = ModelUpdate(name="m", version="20260301000000", path="/models/m-20260301000000")


def test_no_broker_is_logged_and_skipped(caplog: pytest.LogCaptureFixture) -> None:
    settings = Settings(kafka_url=None, embedded_broker_port=free_port())
    with caplog.at_level(logging.INFO):
        assert publish.publish_update(settings, UPDATE, requested=None) is False
    assert "no broker reachable" in caplog.text


def test_no_publish_is_respected(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.INFO):
        assert publish.publish_update(Settings(kafka_url="127.0.0.1:1"), UPDATE, False) is False
    assert "--no-publish" in caplog.text


def test_an_unreachable_configured_broker_warns_without_raising(
    caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(publish, "CONNECT_TIMEOUT_S", 0.5)
    settings = Settings(kafka_url=f"127.0.0.1:{free_port()}")
    assert publish.broker_reachable(settings)  # configured: we try
    started = time.monotonic()
    assert publish.publish_update(settings, UPDATE, requested=None) is False
    assert time.monotonic() - started < 20
    assert "could not publish ModelUpdate" in caplog.text
