"""Related-work alerts end to end: a real worker, real papers, the real broker and model."""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from helpers import consume_all, isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess, metric_sum
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}
SEEDS = 24  # papers indexed before the subscriptions exist
NEW = 24  # papers published after


@dataclass
class Stack:
    worker: WorkerProcess
    broker: EmbeddedBroker
    env: dict[str, str]
    records: list[dict[str, Any]]
    subs: dict[str, dict[str, Any]] = field(default_factory=dict)
    received: int = 0

    def publish(self, records: list[dict[str, Any]]) -> None:
        produce(
            self.broker.bootstrap, self.env["ASTRO_TOPIC_PAPERS"], [paper_bytes(r) for r in records]
        )
        self.received += len(records)
        self.worker.wait_for(
            lambda text: metric_sum(text, "astrostream_papers_received_total") >= self.received,
            path="/metrics",
        )

    def topic_alerts(self, expect: int, timeout: float = 10.0) -> list[dict[str, Any]]:
        records = consume_all(
            self.broker.bootstrap, self.env["ASTRO_TOPIC_ALERTS"], expect, timeout
        )
        return [json.loads(r.value) for r in records]

    def alerts(self, sub_id: str, **params: Any) -> list[dict[str, Any]]:
        query = "&".join(f"{k}={v}" for k, v in {"limit": 500, **params}.items())
        status, body = self.worker.get(f"/subscriptions/{sub_id}/alerts?{query}")
        assert status == 200, body
        return body["alerts"]


@pytest.fixture(scope="module")
def stack(broker: EmbeddedBroker, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Stack]:
    """One worker (with an API token) for the module: seeds indexed, subscriptions made, news matched."""
    records = [
        json.loads(line)
        for line in (Path(__file__).parent.parent / "data" / "papers-sample.jsonl")
        .read_text()
        .splitlines()
        if line.strip()
    ]
    tmp = tmp_path_factory.mktemp("alerts")
    name = unique("alerts")
    env = isolated_env(broker.url, tmp, name, ASTRO_API_TOKEN=TOKEN)
    worker = WorkerProcess(env, tmp / "worker.log").start()
    try:
        s = Stack(worker, broker, env, records)
        s.publish(records[:SEEDS])
        worker.wait_for(lambda b: b["papers"] == SEEDS)
        seeds_ep = [r["arxiv_id"] for r in records[:SEEDS]][:2]
        for key, body in {
            "papers": {"name": "my papers", "arxiv_ids": seeds_ep, "threshold": 0},
            "query": {"queries": ["star formation in molecular clouds"], "threshold": 0},
            "galaxies": {
                "arxiv_ids": [records[2]["arxiv_id"]],
                "threshold": 0,
                "categories": ["astro-ph.CO"],
            },
            "strict": {
                "queries": ["exoplanet atmospheres transmission spectroscopy"],
                "threshold": 0.9,
            },
        }.items():
            status, created = worker.request("POST", "/subscriptions", body, AUTH)
            assert status == 201, created
            s.subs[key] = created
        s.publish(records[SEEDS : SEEDS + NEW])
        worker.wait_for(lambda b: b["papers"] == SEEDS + NEW)
        yield s
    finally:
        worker.stop()


def test_alerts_arrive_with_evidence(stack: Stack) -> None:
    new_ids = {r["arxiv_id"] for r in stack.records[SEEDS : SEEDS + NEW]}
    papers_sub = stack.subs["papers"]
    alerts = stack.alerts(papers_sub["id"], sort="score")
    # Threshold 0: every new paper the percolation reaches is scored and kept.
    assert len(alerts) >= NEW // 2
    assert {a["arxiv_id"] for a in alerts} <= new_ids
    scores = [a["score"] for a in alerts]
    assert scores == sorted(scores, reverse=True)
    for alert in alerts:
        assert alert["subscription_id"] == papers_sub["id"]
        assert alert["matches"], alert
        for match in alert["matches"]:
            assert match["interest"] in papers_sub["arxiv_ids"]
            assert match["sentence"] and isinstance(match["sentence_index"], int)
            assert -1.0 <= match["score"] <= 1.0
    by_time = stack.alerts(papers_sub["id"], sort="time", limit=5)
    times = [a["created_at"] for a in by_time]
    assert len(by_time) == 5 and times == sorted(times, reverse=True)

    query_alerts = stack.alerts(stack.subs["query"]["id"])
    assert query_alerts and all(
        m["interest"] == "star formation in molecular clouds"
        for a in query_alerts
        for m in a["matches"]
    )
    assert stack.alerts(stack.subs["strict"]["id"]) == []  # nothing reaches 0.9


def test_category_filter_and_topic(stack: Stack) -> None:
    categories = {r["arxiv_id"]: r["categories"] for r in stack.records}
    filtered = stack.alerts(stack.subs["galaxies"]["id"])
    assert filtered, "some new papers are in astro-ph.CO"
    assert all("astro-ph.CO" in categories[a["arxiv_id"]] for a in filtered)

    stored = sum(len(stack.alerts(s["id"])) for s in stack.subs.values())
    on_topic = stack.topic_alerts(stored)
    assert len(on_topic) == stored
    assert len({a["alert_id"] for a in on_topic}) == stored
    assert {
        "alert_id",
        "subscription_id",
        "arxiv_id",
        "title",
        "score",
        "matches",
        "model_version",
        "created_at",
    } <= set(on_topic[0])


def test_republishing_creates_no_new_alerts(stack: Stack) -> None:
    before = {k: stack.alerts(s["id"], sort="score") for k, s in stack.subs.items()}
    total = sum(len(v) for v in before.values())
    news = stack.records[SEEDS : SEEDS + NEW]
    stack.publish(news)  # re-delivery: same version, same text
    stack.publish([{**r, "version": 2} for r in news[:5]])  # new version, unchanged text
    stack.worker.wait_for(
        lambda t: metric_sum(t, "astrostream_papers_indexed_total") >= SEEDS + NEW + 5,
        path="/metrics",
    )
    after = {k: stack.alerts(s["id"], sort="score") for k, s in stack.subs.items()}
    assert {k: sorted(a["alert_id"] for a in v) for k, v in after.items()} == {
        k: sorted(a["alert_id"] for a in v) for k, v in before.items()
    }
    assert len(stack.topic_alerts(total + 1, timeout=5.0)) == total


def test_seed_papers_never_alert_their_subscription(stack: Stack) -> None:
    sub = stack.subs["papers"]
    seed = next(r for r in stack.records if r["arxiv_id"] == sub["arxiv_ids"][0])
    changed = {**seed, "version": 3, "abstract": seed["abstract"] + " We add a new appendix."}
    stack.publish([changed])
    stack.worker.wait_for(lambda b: b.get("version") == 3, path=f"/papers/{seed['arxiv_id']}")
    assert seed["arxiv_id"] not in {a["arxiv_id"] for a in stack.alerts(sub["id"])}


def test_anonymous_callers_get_an_owner_secret_and_nothing_else(stack: Stack) -> None:
    body = {"queries": ["dark matter halos"], "threshold": 0.99}
    status, answer = stack.worker.request(
        "POST", "/subscriptions", body, {"Authorization": "Bearer nope"}, auth=False
    )
    assert status == 401 and "token" in answer["error"]  # too short to be an owner secret
    status, created = stack.worker.request("POST", "/subscriptions", body, auth=False)
    assert status == 201 and created["owner_secret"].startswith("ast_"), created
    own = {"Authorization": f"Bearer {created['owner_secret']}"}
    assert stack.worker.request("GET", f"/subscriptions/{created['id']}", headers=own)[0] == 200
    sub_id = stack.subs["strict"]["id"]  # the operator's
    unknown = stack.worker.get("/subscriptions/" + "0" * 32, auth=False)
    for method in ("GET", "DELETE"):
        status, answer = stack.worker.request(method, f"/subscriptions/{sub_id}", auth=False)
        assert status == 404 and answer["error"] == unknown[1]["error"].replace("0" * 32, sub_id)
        assert stack.worker.request(method, f"/subscriptions/{sub_id}", headers=own)[0] == 404
    assert stack.worker.get("/subscriptions", auth=False)[0] == 401
    status, listed = stack.worker.request("GET", "/subscriptions", headers=own)
    assert status == 200 and [s["id"] for s in listed["subscriptions"]] == [created["id"]]
    assert stack.worker.request("DELETE", f"/subscriptions/{created['id']}", headers=own)[0] == 200
    shown = stack.worker.get(f"/subscriptions/{sub_id}")[1]  # the operator sees everything
    assert shown["id"] == sub_id and "webhook_secret" not in shown and "feed_token" not in shown


@pytest.mark.parametrize(
    ("body", "status", "needle"),
    [
        ({}, 400, "at least one of queries, arxiv_ids or authors"),
        ({"queries": []}, 400, "at least one"),
        ({"queries": ["x"], "threshold": 1.5}, 400, "threshold: must be a number between 0 and 1"),
        ({"queries": ["x"], "threshold": "high"}, 400, "threshold"),
        ({"queries": [f"q{i}" for i in range(51)]}, 400, "too many interests"),
        ({"queries": ["x" * 2001]}, 400, "over the limit of 2000"),
        ({"queries": ["  "]}, 400, "query 0 is empty"),
        ({"arxiv_ids": ["not-an-id"]}, 400, "not an arXiv id"),
        (
            {"arxiv_ids": ["2501.00001", "2501.00002"]},
            422,
            "unknown arXiv id(s): 2501.00001, 2501.00002 (not indexed yet)",
        ),
        ({"query": ["x"]}, 400, "query: unknown field"),
        ({"queries": ["x"], "webhook": "http://127.0.0.1:9/hook"}, 400, "private or loopback"),
        ({"queries": ["x"], "webhook": "ftp://example.org/"}, 400, "http(s) URL"),
        (["not", "an", "object"], 400, "JSON object"),
    ],
)
def test_invalid_subscriptions_get_clear_4xx(
    stack: Stack, body: Any, status: int, needle: str
) -> None:
    got, answer = stack.worker.request("POST", "/subscriptions", body, AUTH)
    assert got == status, answer
    assert needle in answer["error"]


def test_other_4xx(stack: Stack) -> None:
    import urllib.request

    req = urllib.request.Request(
        stack.worker.base + "/subscriptions",
        data=b"{not json",
        method="POST",
        headers={**AUTH, "Content-Type": "application/json"},
    )
    try:
        urllib.request.urlopen(req, timeout=10)
        raise AssertionError("invalid JSON was accepted")
    except urllib.error.HTTPError as exc:
        assert exc.code == 400 and "not valid JSON" in json.loads(exc.read())["error"]
    sub_id = stack.subs["papers"]["id"]
    for path, status in [
        ("/subscriptions/0123456789abcdef0123456789abcdef", 404),
        ("/subscriptions/nope", 404),
        (f"/subscriptions/{sub_id}/alerts?sort=best", 400),
        (f"/subscriptions/{sub_id}/alerts?limit=0", 400),
        (f"/subscriptions/{sub_id}/alerts?limit=501", 400),
    ]:
        got, answer = stack.worker.get(path)
        assert got == status, (path, answer)
        assert answer["error"]


def test_list_stats_metrics_and_delete(stack: Stack) -> None:
    status, listed = stack.worker.get("/subscriptions")
    assert status == 200 and {s["id"] for s in listed["subscriptions"]} == {
        s["id"] for s in stack.subs.values()
    }
    status, stats = stack.worker.get("/stats")
    assert stats["subscriptions"] == len(stack.subs)
    status, text = stack.worker.get("/metrics")
    assert metric_sum(text, "astrostream_alerts_total") > 0
    assert metric_sum(text, "astrostream_subscriptions") == len(stack.subs)
    assert metric_sum(text, "astrostream_match_seconds_count") > 0

    # Delete a subscription of its own: the module's are shared by the other tests.
    body = {"queries": ["ultra-high-energy cosmic rays"], "threshold": 0.99}
    status, created = stack.worker.request("POST", "/subscriptions", body, AUTH)
    assert status == 201, created
    sub_id = created["id"]
    assert stack.worker.get("/stats")[1]["subscriptions"] == len(stack.subs) + 1
    status, answer = stack.worker.request("DELETE", f"/subscriptions/{sub_id}", headers=AUTH)
    assert status == 200 and answer == {"deleted": sub_id}
    assert stack.worker.get(f"/subscriptions/{sub_id}")[0] == 404
    assert stack.worker.get("/stats")[1]["subscriptions"] == len(stack.subs)


def test_subscribe_cli(stack: Stack, monkeypatch: pytest.MonkeyPatch) -> None:
    from click.testing import CliRunner

    from services.cli.subscribe import subscribe

    monkeypatch.setenv("ASTRO_API_URL", stack.worker.base)
    monkeypatch.setenv("ASTRO_API_TOKEN", TOKEN)
    runner = CliRunner()
    added = runner.invoke(subscribe, ["add", "--query", "galaxy clusters", "--json"])
    assert added.exit_code == 0, added.output
    sub_id = json.loads(added.output)["id"]
    listed = runner.invoke(subscribe, ["list"])
    assert listed.exit_code == 0 and sub_id in listed.output
    papers_id = stack.subs["papers"]["id"]
    shown = runner.invoke(subscribe, ["alerts", papers_id, "--sort", "score", "--limit", "2"])
    assert shown.exit_code == 0 and shown.output.count("\n    ") >= 1, shown.output
    unknown = runner.invoke(subscribe, ["add", "--arxiv-id", "2501.00009"])
    assert unknown.exit_code != 0 and "unknown arXiv id(s): 2501.00009" in unknown.output
    removed = runner.invoke(subscribe, ["remove", sub_id])
    assert removed.exit_code == 0, removed.output
    assert stack.worker.get(f"/subscriptions/{sub_id}")[0] == 404


def test_subscribe_cli_owner_key_gives_the_subscription_to_a_web_owner(
    stack: Stack, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from click.testing import CliRunner

    from services.cli.subscribe import subscribe

    status, web = stack.worker.request("POST", "/subscriptions", {"queries": ["x"]}, auth=False)
    assert status == 201, web
    own = {"Authorization": f"Bearer {web['owner_secret']}"}
    monkeypatch.setenv("ASTRO_API_URL", stack.worker.base)
    monkeypatch.setenv("ASTRO_DATA_DIR", str(tmp_path))  # no api-token file here
    runner = CliRunner()
    made = []
    for token in (TOKEN, None):  # with the operator token (X-Owner) and without (bearer)
        if token:
            monkeypatch.setenv("ASTRO_API_TOKEN", token)
        else:
            monkeypatch.delenv("ASTRO_API_TOKEN", raising=False)
        added = runner.invoke(
            subscribe,
            ["add", "--query", "galaxy clusters", "--json"],
            env={"ASTRO_OWNER_KEY": web["owner_secret"]},
        )
        assert added.exit_code == 0, added.output
        made.append(json.loads(added.output)["id"])
    status, listed = stack.worker.request("GET", "/subscriptions", headers=own)
    assert status == 200
    assert {s["id"] for s in listed["subscriptions"]} == {web["id"], *made}
    short = runner.invoke(subscribe, ["add", "--query", "x", "--owner-key", "short"])
    assert short.exit_code != 0 and "401" in short.output, short.output
    for sub_id in (web["id"], *made):
        assert stack.worker.request("DELETE", f"/subscriptions/{sub_id}", headers=own)[0] == 200
