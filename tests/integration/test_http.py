"""The HTTP error boundary of a real worker process: every error is JSON with the right status.

One worker serves all the cases; the last test starts a worker whose Qdrant is unreachable.
"""

from __future__ import annotations

import http.client
import json
import os
import subprocess
import sys
import time
from collections.abc import Iterator
from typing import Any

import pytest
from helpers import isolated_env, unique

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

JSON = "application/json"


@pytest.fixture(scope="module")
def worker(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Any]:
    tmp = tmp_path_factory.mktemp("http")
    env = isolated_env(broker.url, tmp, unique("http"), ASTRO_ROLES="api")
    process = WorkerProcess(env, tmp / "worker.log").start()
    try:
        yield process
    finally:
        process.stop()


def call(
    worker: WorkerProcess,
    method: str,
    path: str,
    body: bytes | None = None,
    content_type: str | None = None,
) -> tuple[int, str, Any]:
    """Status, media type and JSON body, over a raw connection (any Content-Type, any size)."""
    conn = http.client.HTTPConnection("127.0.0.1", worker.port, timeout=30)
    try:
        conn.request(method, path, body, {"Content-Type": content_type} if content_type else {})
        response = conn.getresponse()
        raw = response.read()
        kind = (response.getheader("Content-Type") or "").split(";")[0]
    finally:
        conn.close()
    return response.status, kind, json.loads(raw) if raw else None


CASES: list[tuple[str, str, bytes | None, str | None, int, str]] = [
    ("GET", "/no/such/route", None, None, 404, "no such route"),
    ("POST", "/search", None, None, 405, "POST is not allowed"),
    ("DELETE", "/papers/2501.00001", None, None, 405, "DELETE is not allowed"),
    ("PUT", "/stats", None, None, 405, "PUT is not allowed"),
    ("POST", "/subscriptions/0123abcd/alerts", None, None, 405, "POST is not allowed"),
    ("PATCH", "/subscriptions", None, None, 405, "PATCH is not allowed"),
    ("POST", "/subscriptions", b"x" * (2 * 1024**2), JSON, 413, "body too large"),
    ("POST", "/subscriptions", b"[" * 200_000, JSON, 400, "deeper than 32"),
    ("POST", "/subscriptions", b"1" * 5000, JSON, 400, "not valid JSON"),
    ("POST", "/subscriptions", b'{"queries": ["x"]}', "text/plain", 415, "application/json"),
    ("GET", "/search?q=" + "a" * 100_000, None, None, 400, "q is too long"),
    ("GET", "/search?q=dark+matter&since=garbage", None, None, 400, "since must be"),
    ("GET", "/search?q=dark+matter&category=" + "c" * 100, None, None, 400, "category"),
    ("GET", "/papers/not-an-id", None, None, 400, "not an arXiv id"),
    ("GET", "/papers/2501.00001", None, None, 404, "not indexed"),
]


@pytest.mark.parametrize(
    ("method", "path", "body", "content_type", "status", "says"),
    CASES,
    ids=[f"{c[0]} {c[1][:40]} -> {c[4]}" for c in CASES],
)
def test_errors_are_json_with_the_right_status(
    worker: WorkerProcess,
    method: str,
    path: str,
    body: bytes | None,
    content_type: str | None,
    status: int,
    says: str,
) -> None:
    got, kind, answer = call(worker, method, path, body, content_type)
    assert (got, kind) == (status, JSON), answer
    assert says in answer["error"]


def test_the_worker_survives_them_all(worker: WorkerProcess) -> None:
    assert worker.get("/health")[0] == 200
    got, _, answer = call(
        worker, "POST", "/subscriptions", b'{"queries": ["dark matter halos"]}', JSON
    )
    assert got == 201, answer


def test_unreachable_qdrant_is_one_line_naming_it(stack_env: dict[str, str]) -> None:
    port = free_port()
    env = {
        **os.environ,
        **stack_env,
        "HF_HUB_OFFLINE": "1",
        "ASTRO_QDRANT_URL": f"http://127.0.0.1:{port}",
        "ASTRO_QDRANT_CONNECT_TIMEOUT_S": "2",
        "ASTRO_WEB_PORT": str(free_port()),
    }
    started = time.perf_counter()
    done = subprocess.run(
        [sys.executable, "-m", "services.cli", "worker"],
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    elapsed = time.perf_counter() - started
    assert done.returncode != 0
    assert "Traceback" not in done.stderr + done.stdout
    errors = [line for line in done.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and f"127.0.0.1:{port}" in errors[0], done.stderr
    assert "ASTRO_QDRANT_URL" in errors[0]
    assert elapsed < 30, f"took {elapsed:.1f}s"
