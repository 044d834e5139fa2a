"""What operators see, on real parts: a real Prometheus scraping a real worker evaluates every
alert rule; promtool lints the exposition; the Grafana dashboard only names exported metrics;
``astrostream deadletters`` lists and re-publishes what a real worker dead-lettered.

One worker (roles ingest, embed, api; a tiny ASTRO_MAX_ABSTRACT_CHARS so real papers are
dead-lettered; ingest polling a local arXiv look-alike) serves the module. The last test
replaces it with a fixed worker, so it stays last.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml
from helpers import ServedArxiv, consume_all, isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
ALERTS = ROOT / "deploy" / "alerts.yml"
DASHBOARD = ROOT / "deploy" / "grafana" / "dashboards" / "astrostream.json"
GARBAGE = b"{this is not a paper"
LONG_PAPERS = 3  # real abstracts, all longer than the worker's ASTRO_MAX_ABSTRACT_CHARS


def cli(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "services.cli", *args],
        cwd=ROOT,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def arxiv() -> Iterator[Any]:
    with ServedArxiv([]) as fake:
        yield fake


@pytest.fixture(scope="module")
def env(
    broker: EmbeddedBroker, arxiv: Any, tmp_path_factory: pytest.TempPathFactory
) -> dict[str, str]:
    return isolated_env(
        broker.url,
        tmp_path_factory.mktemp("operations"),
        unique("ops"),
        ASTRO_ROLES="ingest,embed,api",
        ASTRO_ARXIV_API_URL=arxiv.api_url,
        ASTRO_ARXIV_RSS_URL=arxiv.rss_url,
        ASTRO_ARXIV_OAI_URL=arxiv.oai_url,
        ASTRO_INGEST_MIN_INTERVAL_S="0.1",
        ASTRO_INGEST_POLL_INTERVAL_S="5",
    )


@pytest.fixture(scope="module")
def long_records(sample_records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    records = [r for r in sample_records if len(r["abstract"]) > 300][:LONG_PAPERS]
    assert len(records) == LONG_PAPERS
    return records


@pytest.fixture(scope="module")
def worker(
    env: dict[str, str],
    broker: EmbeddedBroker,
    long_records: list[dict[str, Any]],
    tmp_path_factory: pytest.TempPathFactory,
) -> Iterator[WorkerProcess]:
    """A worker that has dead-lettered 3 too-long papers and 1 garbage record."""
    log = tmp_path_factory.mktemp("operations-log") / "worker.log"
    with WorkerProcess({**env, "ASTRO_MAX_ABSTRACT_CHARS": "300"}, log) as w:
        messages = [paper_bytes(r) for r in long_records] + [(b"garbage", GARBAGE)]
        produce(broker.bootstrap, env["ASTRO_TOPIC_PAPERS"], messages)
        deadline = time.monotonic() + 120
        while w.metric("astrostream_deadletters_total") < len(messages):
            assert time.monotonic() < deadline, w.tail()
            time.sleep(0.5)
        yield w


# A real Prometheus ---------------------------------------------------------------------------


class Prometheus:
    """A real ``prometheus`` process scraping given targets every second, with the alert rules."""

    def __init__(self, targets: list[str], folder: Path) -> None:
        binary = shutil.which("prometheus")
        assert binary, "Debian's prometheus package is missing: apt-get install -y prometheus"
        self.port = free_port()
        config = folder / "prometheus.yml"
        config.write_text(
            yaml.safe_dump(
                {
                    "global": {"scrape_interval": "1s", "evaluation_interval": "1s"},
                    "rule_files": [str(ALERTS)],
                    "scrape_configs": [
                        {"job_name": "astrostream", "static_configs": [{"targets": targets}]}
                    ],
                }
            )
        )
        self.proc = subprocess.Popen(
            [
                binary,
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'tsdb'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )

    def api(self, path: str, **params: str) -> Any:
        url = f"http://127.0.0.1:{self.port}/api/v1/{path}?{urllib.parse.urlencode(params)}"
        with urllib.request.urlopen(url, timeout=5) as response:
            body = json.loads(response.read())
        assert body["status"] == "success", body
        return body["data"]

    def query_until(self, expr: str, timeout: float = 90.0) -> list[Any]:
        """Evaluate ``expr`` until it returns data; [] when it never does."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                result = self.api("query", query=expr)["result"]
            except OSError:  # not listening yet
                result = []
            if result:
                return list(result)
            time.sleep(1)
        return []

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(timeout=10)


def series_expr(expr: str) -> str:
    """The rule's expression without its threshold: it returns data whenever the metrics exist.

    ``absent(X)`` becomes ``X``; a trailing comparison with a number is dropped.
    """
    expr = " ".join(expr.split())
    absent = re.fullmatch(r"absent\((.*)\)", expr)
    if absent:
        expr = absent.group(1)
    return re.sub(r"\s*(==|!=|>=|<=|>|<)\s*[0-9.e+]+$", "", expr)


def alert_rules() -> list[dict[str, Any]]:
    return [r for g in yaml.safe_load(ALERTS.read_text())["groups"] for r in g["rules"]]


def test_series_expr_drops_only_the_threshold() -> None:
    assert series_expr("sum(astrostream_consumer_lag) > 10000") == "sum(astrostream_consumer_lag)"
    assert series_expr('absent(up{job="a"} == 1)') == 'up{job="a"}'
    assert series_expr("time() - max(x) > 3600") == "time() - max(x)"


def test_every_alert_rule_evaluates_on_a_real_worker(
    worker: WorkerProcess, arxiv: Any, tmp_path: Path
) -> None:
    """Each rule's expression, threshold removed, returns series from a scraped worker.

    A rule over a metric that no process exports (or exports under another name) returns
    nothing, whatever the threshold: such a rule can never fire.
    """
    prometheus = Prometheus([f"127.0.0.1:{worker.port}"], tmp_path)
    try:
        missing = {}
        for rule in alert_rules():
            expr = series_expr(rule["expr"])
            if not prometheus.query_until(expr):
                missing[rule["alert"]] = expr
        assert not missing, f"rules whose metrics never appeared: {missing}\n{worker.tail()}"
        groups = prometheus.api("rules")["groups"]
        health = {r["name"]: r["health"] for g in groups for r in g["rules"]}
        assert set(health) == {r["alert"] for r in alert_rules()}
        assert set(health.values()) == {"ok"}, health
        lag = prometheus.query_until('astrostream_consumer_lag{topic=~".*papers"}')
        assert {s["metric"]["partition"] for s in lag} == {"0", "1", "2", "3"}
        assert all(float(s["value"][1]) >= 0 for s in lag)
        # Every record was processed and committed: the committed offsets reach the highwater.
        caught_up = prometheus.query_until('sum(astrostream_consumer_lag{topic=~".*papers"}) == 0')
        assert caught_up, f"lag stays above 0 after everything was committed: {lag}"
    finally:
        prometheus.stop()


def test_promtool_finds_no_problem_in_the_worker_metrics(worker: WorkerProcess) -> None:
    promtool = shutil.which("promtool")
    assert promtool, "Debian's prometheus package is missing: apt-get install -y prometheus"
    status, text = worker.get("/metrics")
    assert status == 200
    proc = subprocess.run(
        [promtool, "check", "metrics"], input=text, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0 and not (proc.stdout + proc.stderr).strip(), (
        proc.stdout + proc.stderr
    )


def exported_names(exposition: str) -> set[str]:
    """Every series name a Prometheus text exposition can produce, from its TYPE lines."""
    suffixes = {
        "counter": ("", "_total", "_created"),
        "histogram": ("_bucket", "_count", "_sum", "_created"),
        "summary": ("", "_count", "_sum", "_created"),
    }
    names: set[str] = set()
    for line in exposition.splitlines():
        if line.startswith("# TYPE "):
            _, _, name, kind = line.split()
            base = name.removesuffix("_total") if kind == "counter" else name
            names.update(base + suffix for suffix in suffixes.get(kind, ("",)))
    return names


def test_the_dashboard_only_queries_metrics_the_worker_exports(worker: WorkerProcess) -> None:
    dashboard = json.loads(DASHBOARD.read_text())
    exprs = [t["expr"] for p in dashboard["panels"] for t in p.get("targets", [])]
    used = {name for expr in exprs for name in re.findall(r"\bastrostream_[a-z0-9_]+", expr)}
    assert len(used) >= 10
    status, text = worker.get("/metrics")
    assert status == 200
    unknown = sorted(used - exported_names(text))
    assert not unknown, f"the dashboard queries metrics no worker exports: {unknown}"


# astrostream deadletters ---------------------------------------------------------------------


def test_deadletters_lists_then_republishes_once_fixed(
    worker: WorkerProcess,
    env: dict[str, str],
    broker: EmbeddedBroker,
    long_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    listed = cli(env, "deadletters", "--json")
    assert listed.returncode == 0, listed.stderr
    letters = [json.loads(line) for line in listed.stdout.splitlines()]
    assert len(letters) == LONG_PAPERS + 1
    assert {letter["stage"] for letter in letters} == {"decode"}
    assert {letter["source_topic"] for letter in letters} == {env["ASTRO_TOPIC_PAPERS"]}
    assert all(letter["partition"] is not None and letter["offset"] >= 0 for letter in letters)
    assert all(letter["at"] for letter in letters)
    assert sum("ASTRO_MAX_ABSTRACT_CHARS" in letter["error"] for letter in letters) == LONG_PAPERS
    assert {letter["key"] for letter in letters} == {r["arxiv_id"] for r in long_records} | {
        "garbage"
    }

    text = cli(env, "deadletters", "--limit", "2")
    assert text.returncode == 0, text.stderr
    lines = text.stdout.splitlines()
    assert len(lines) == 2
    assert all("decode" in line and env["ASTRO_TOPIC_PAPERS"] in line for line in lines)

    # The fix: a worker with the default abstract limit replaces the strict one.
    worker.stop()
    fixed = WorkerProcess({**env, "ASTRO_ROLES": "embed,api"}, tmp_path / "fixed.log").start()
    try:
        none = cli(env, "deadletters", "--republish", "--stage", "no-such-stage")
        assert none.returncode == 0, none.stderr
        assert "re-published 0 records" in none.stdout

        again = cli(env, "deadletters", "--republish", "--stage", "decode")
        assert again.returncode == 0, again.stderr
        assert f"re-published {LONG_PAPERS + 1} records" in again.stdout
        stats = fixed.wait_for(lambda s: s["papers"] == LONG_PAPERS, timeout=120)
        assert stats["papers"] == LONG_PAPERS
        # The garbage is still garbage: dead-lettered again, with its original bytes.
        dead = consume_all(broker.bootstrap, env["ASTRO_TOPIC_DEADLETTER"], LONG_PAPERS + 2)
        assert len(dead) == LONG_PAPERS + 2
        assert sum(json.loads(d.value)["value"] == GARBAGE.decode() for d in dead) == 2
        assert fixed.wait_for(lambda text: "astrostream_deadletters_total{" in text, 30, "/metrics")
        assert fixed.metric("astrostream_deadletters_total") == 1
    finally:
        fixed.stop()
