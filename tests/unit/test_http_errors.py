"""The HTTP error boundary in-process: the worker's real Faust web app on a free port, no broker.

Every answer is JSON ``{"error": ...}`` with the right status, and bad input is refused
before the (slow) encoder runs.
"""

from __future__ import annotations

import asyncio
import http.client
import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import numpy as np
import pytest
from aiohttp.test_utils import TestServer

from services.alerts.feedback import FeedbackStore
from services.alerts.lifecycle import SubscriptionService
from services.alerts.subscriptions import SubscriptionStore
from services.core.errors import InvalidRequest
from services.core.settings import load_settings
from services.http.body import (
    MAX_JSON_DEPTH,
    UnsupportedMediaType,
    check_media_type,
    nesting_depth,
    parse_json,
)
from services.http.reads import Reads
from services.http.subscriptions import register_subscriptions
from services.http.views import register_probes, register_reads
from services.store.binding import Binding
from services.store.vectorstore import VectorStore
from services.worker.app import faust_app

DIM = 8


class CountingEncoder:
    """Constant unit vectors; counts calls, so a test sees whether the encoder ran."""

    name = "counting"
    device = "cpu"
    dim = DIM

    def __init__(self) -> None:
        self.calls = 0

    async def aencode(self, texts: list[str]) -> np.ndarray:
        self.calls += 1
        return np.full((len(texts), DIM), 1 / np.sqrt(DIM), dtype=np.float32)

    def close(self) -> None:
        pass


class ServedApi:
    """The worker's Faust web app (same options, middleware and views) on its own thread."""

    def __init__(self) -> None:
        settings = load_settings(qdrant_path=":memory:")
        store = VectorStore(settings, DIM, "test")
        store.ensure_collections()
        self.encoder = CountingEncoder()
        binding = Binding(self.encoder, store)
        subs = SubscriptionStore(binding)
        subs.ensure_sync()
        self.app = faust_app(settings)

        async def ready() -> dict[str, str]:
            return {}

        register_probes(self.app, ready, lambda: "test", time.time())
        register_reads(self.app, Reads(binding))
        feedback = FeedbackStore(binding)
        feedback.ensure_sync()
        register_subscriptions(self.app, SubscriptionService(subs), feedback, None, False)
        self.loop = asyncio.new_event_loop()
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.server: TestServer | None = None

    def __enter__(self) -> ServedApi:
        self.thread.start()

        async def start() -> TestServer:
            server = TestServer(await self.app.web.wsgi(), host="127.0.0.1")
            await server.start_server()
            return server

        self.server = asyncio.run_coroutine_threadsafe(start(), self.loop).result(30)
        return self

    def __exit__(self, *exc: object) -> None:
        assert self.server is not None
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(30)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)

    def request(
        self, method: str, path: str, body: bytes | None = None, content_type: str | None = None
    ) -> tuple[int, str, Any]:
        """Status, Content-Type and decoded JSON body (None when there is no body)."""
        assert self.server is not None and self.server.port is not None
        conn = http.client.HTTPConnection("127.0.0.1", self.server.port, timeout=30)
        headers = {"Content-Type": content_type} if content_type else {}
        try:
            conn.request(method, path, body=body, headers=headers)
            response = conn.getresponse()
            raw = response.read()
            kind = response.getheader("Content-Type", "")
        finally:
            conn.close()
        return response.status, kind, json.loads(raw) if raw else None


@pytest.fixture(scope="module")
def api() -> Iterator[ServedApi]:
    with ServedApi() as served:
        yield served


JSON = "application/json"


@pytest.mark.parametrize(
    ("method", "path", "status"),
    [
        ("GET", "/no/such/route", 404),
        ("POST", "/search", 405),
        ("DELETE", "/papers/2501.00001", 405),
        ("PUT", "/stats", 405),
        ("POST", "/subscriptions/0123/alerts", 405),
        ("PATCH", "/subscriptions", 405),
    ],
)
def test_routing_errors_are_json(api: ServedApi, method: str, path: str, status: int) -> None:
    got, kind, body = api.request(method, path)
    assert (got, kind.split(";")[0]) == (status, JSON)
    assert path in body["error"]


@pytest.mark.parametrize(
    ("body", "content_type", "status", "says"),
    [
        (b"x" * (2 * 1024**2), JSON, 413, "body too large"),
        (b"[" * 200_000, JSON, 400, f"deeper than {MAX_JSON_DEPTH}"),
        (b'{"a":' * 40 + b"1" + b"}" * 40, JSON, 400, "deeper than"),
        (b"1" * 5000, JSON, 400, "not valid JSON"),  # int() refuses > 4300 digits
        (b'{"queries": ["x"', JSON, 400, "not valid JSON"),
        (b"\xff\xfe{}", JSON, 400, "not UTF-8"),
        (b"", JSON, 400, "empty"),
        (b'{"queries": ["dark matter"]}', "text/plain", 415, "text/plain"),
        (b'{"queries": ["dark matter"]}', "application/x-www-form-urlencoded", 415, "form"),
        (b'{"queries": ["dark matter"]}', None, 415, "application/json"),
    ],
)
def test_bad_bodies_are_refused_before_any_work(
    api: ServedApi, body: bytes, content_type: str | None, status: int, says: str
) -> None:
    calls = api.encoder.calls
    started = time.perf_counter()
    got, kind, answer = api.request("POST", "/subscriptions", body, content_type)
    assert (got, kind.split(";")[0]) == (status, JSON), answer
    assert says in answer["error"]
    assert api.encoder.calls == calls
    assert time.perf_counter() - started < 5


def test_a_json_body_with_charset_is_accepted(api: ServedApi) -> None:
    got, _, answer = api.request(
        "POST", "/subscriptions", b'{"queries": ["dark matter"]}', "application/json; charset=utf-8"
    )
    assert got == 201 and answer["queries"] == ["dark matter"]


@pytest.mark.parametrize(
    ("query", "says"),
    [
        ("q=" + "a" * 100_000, "q is too long"),
        ("q=dark+matter&since=garbage", "since must be an ISO date"),
        ("q=dark+matter&since=2025-13-45", "since must be an ISO date"),
        ("q=dark+matter&category=" + "c" * 100, "category is too long"),
        ("q=dark+matter&limit=0", "limit must be between"),
        ("q=", "q is required"),
    ],
)
def test_bad_queries_are_refused_before_the_encoder(api: ServedApi, query: str, says: str) -> None:
    calls = api.encoder.calls
    got, kind, answer = api.request("GET", "/search?" + query)
    assert (got, kind.split(";")[0]) == (400, JSON), answer
    assert says in answer["error"]
    assert api.encoder.calls == calls


def test_a_good_query_does_reach_the_encoder(api: ServedApi) -> None:
    calls = api.encoder.calls
    got, _, answer = api.request("GET", "/search?q=dark+matter&since=2025-01-01&category=astro-ph")
    assert (got, answer) == (200, {"results": []})
    assert api.encoder.calls == calls + 1


def test_nesting_depth_counts_without_recursion() -> None:
    assert nesting_depth('{"a": [1, {"b": "[[[[ \\" {{"}]}') == 3
    assert nesting_depth("[]" * 1000) == 1
    assert nesting_depth("[" * 200_000) == MAX_JSON_DEPTH + 1
    assert parse_json(b"[" * 32 + b"]" * 32) is not None
    with pytest.raises(InvalidRequest, match="deeper"):
        parse_json(b"[" * 33 + b"]" * 33)


def test_media_type() -> None:
    check_media_type("application/json")
    check_media_type("Application/JSON; charset=utf-8")
    for refused in ("text/plain", "multipart/form-data; boundary=x", "", "application/jsonp"):
        with pytest.raises(UnsupportedMediaType):
            check_media_type(refused)
