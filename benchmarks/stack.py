"""Run real worker processes against a broker: used by the integration tests and benchmarks."""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import signal
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from types import TracebackType
from typing import Any

from services.kafka.broker import free_port


class WorkerProcess:
    """An ``astrostream worker`` subprocess with its own port, data folder and environment.

    Args:
        env: ``ASTRO_*`` variables (strings) for the worker, on top of the current environment.
        log_path: where the worker's output goes.
    """

    def __init__(self, env: dict[str, str], log_path: Path, port: int | None = None) -> None:
        self.port = port or free_port()
        self.env = {**os.environ, "HF_HUB_OFFLINE": "1", "ASTRO_WEB_PORT": str(self.port), **env}
        # An operator token of its own unless the caller chose one: request() sends it.
        self.env.setdefault("ASTRO_API_TOKEN", f"operator-{secrets.token_hex(12)}")
        self.log_path = log_path
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int:
        assert self.proc is not None, "not started"
        return self.proc.pid

    @property
    def base(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def start(self, ready_timeout: float = 120.0) -> WorkerProcess:
        self.log_path.parent.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")  # noqa: SIM115 - owned by the child process
        self.proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "worker"],
            env=self.env,
            stdout=log,
            stderr=subprocess.STDOUT,
            start_new_session=True,
        )
        log.close()
        self.wait_ready(ready_timeout)
        return self

    def wait_ready(self, timeout: float = 120.0) -> None:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            if self.proc is not None and self.proc.poll() is not None:
                raise RuntimeError(f"worker exited with {self.proc.returncode}:\n{self.tail()}")
            status, last = self.get("/ready")
            if status == 200:
                return
            time.sleep(0.3)
        raise TimeoutError(f"worker not ready after {timeout:.0f}s: {last}\n{self.tail()}")

    def get(self, path: str, auth: bool = True) -> tuple[int, Any]:
        """GET a JSON endpoint: (status, body); (0, reason) when nothing answers."""
        return self.request("GET", path, auth=auth)

    def request(
        self,
        method: str,
        path: str,
        body: Any = None,
        headers: dict[str, str] | None = None,
        auth: bool = True,
    ) -> tuple[int, Any]:
        """A JSON request; with ``auth`` (and no Authorization header given) as the operator."""
        data = json.dumps(body).encode() if body is not None else None
        sent = {"Content-Type": "application/json", **(headers or {})}
        token = self.env.get("ASTRO_API_TOKEN")
        if auth and token and "Authorization" not in sent:
            sent["Authorization"] = f"Bearer {token}"
        req = urllib.request.Request(self.base + path, data=data, method=method, headers=sent)
        try:
            with urllib.request.urlopen(req, timeout=30) as response:
                raw = response.read()
                return response.status, _decode(raw, response.headers.get("Content-Type", ""))
        except urllib.error.HTTPError as exc:
            return exc.code, _decode(exc.read(), exc.headers.get("Content-Type", ""))
        except (urllib.error.URLError, ConnectionError, TimeoutError) as exc:
            return 0, str(exc)

    def wait_for(self, predicate: Any, timeout: float = 120.0, path: str = "/stats") -> Any:
        """Poll ``path`` until ``predicate(body)`` holds; return the body."""
        deadline = time.monotonic() + timeout
        body: Any = None
        while time.monotonic() < deadline:
            status, body = self.get(path)
            if status == 200 and predicate(body):
                return body
            time.sleep(0.25)
        raise TimeoutError(
            f"condition not met after {timeout:.0f}s; last {path}: {body}\n{self.tail()}"
        )

    def metric(self, name: str, labels: str = "") -> float:
        """:func:`metric_sum` of this worker's ``/metrics``."""
        status, text = self.get("/metrics")
        assert status == 200, text
        return metric_sum(text, name, labels)

    def kill(self) -> None:
        """SIGKILL: the crash case."""
        if self.proc is not None and self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)

    def stop(self, timeout: float = 15.0) -> None:
        """SIGTERM, then SIGKILL if it does not exit (a worker whose broker died may hang)."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            self.kill()

    def tail(self, lines: int = 40) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except OSError:
            return ""

    def __enter__(self) -> WorkerProcess:
        return self.start()

    def __exit__(
        self, et: type[BaseException] | None, ev: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def metric_sum(text: str, name: str, labels: str = "") -> float:
    """Sum of a metric's samples in a Prometheus text exposition (0 when absent).

    Args:
        text: the body of ``/metrics``.
        name: the exact sample name, e.g. ``astrostream_papers_indexed_total``.
        labels: only samples whose label set contains this text, e.g. ``stage="encode"``.
    """
    pattern = re.compile(rf"^{re.escape(name)}(?:{{([^}}]*)}})? (\S+)$", re.M)
    return sum(float(value) for found, value in pattern.findall(text) if labels in found)


def _decode(raw: bytes, content_type: str) -> Any:
    if "json" in content_type:
        try:
            return json.loads(raw)
        except ValueError:
            pass
    return raw.decode("utf-8", "replace")
