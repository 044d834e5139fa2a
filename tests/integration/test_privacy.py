"""Whose subscription it is, end to end: owners, the operator, strangers; the Atom feed; authors.

A real worker, broker and model. Owner A's subscription answers 404 on every path to owner B
and to anonymous clients (the same body as an unknown id), and works for A and the operator.
"""

from __future__ import annotations

import urllib.error
import urllib.request
import uuid
from pathlib import Path
from typing import Any

import feedparser
import pytest
from helpers import isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def fetch(url: str, headers: dict[str, str] | None = None) -> tuple[int, str, bytes]:
    """Status, Content-Type and raw body of a GET."""
    try:
        with urllib.request.urlopen(urllib.request.Request(url, headers=headers or {})) as r:
            return r.status, r.headers.get("Content-Type", ""), r.read()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.headers.get("Content-Type", ""), exc.read()


def test_owners_strangers_operator_feed_and_followed_authors(
    broker: EmbeddedBroker, tmp_path: Path, sample_records: list[dict[str, Any]]
) -> None:
    env = isolated_env(broker.url, tmp_path, unique("privacy"))
    seeds, news = sample_records[:6], sample_records[6:16]
    followed = next(r for r in sample_records[16:40] if r["authors"])
    topic = env["ASTRO_TOPIC_PAPERS"]
    with WorkerProcess(env, tmp_path / "w.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in seeds])
        worker.wait_for(lambda s: s["papers"] == len(seeds))
        body = {
            "name": "A's <stars> & planets",
            "queries": ["galaxies stars and planets"],
            "threshold": 0,
            "authors": [followed["authors"][0]],
            "exclude_terms": ["zzz-never-used"],
        }
        status, a = worker.request("POST", "/subscriptions", body, auth=False)
        assert status == 201 and a["owner_secret"] and a["feed_url"], a
        status, b = worker.request("POST", "/subscriptions", {"queries": ["x-rays"]}, auth=False)
        assert status == 201 and b["owner_secret"] != a["owner_secret"]
        owner_a = {"Authorization": f"Bearer {a['owner_secret']}"}
        owner_b = {"Authorization": f"Bearer {b['owner_secret']}"}
        # A second subscription of A's, created with A's secret, joins A's list (no new secret).
        status, a2 = worker.request(
            "POST", "/subscriptions", {"queries": ["dark matter"]}, owner_a, auth=False
        )
        assert status == 201 and "owner_secret" not in a2
        status, listed = worker.request("GET", "/subscriptions", headers=owner_a, auth=False)
        assert sorted(s["id"] for s in listed["subscriptions"]) == sorted([a["id"], a2["id"]])

        produce(broker.bootstrap, topic, [paper_bytes(r) for r in [*news, followed]])
        sub = f"/subscriptions/{a['id']}"
        alerts = worker.wait_for(
            lambda x: (
                followed["arxiv_id"] in {y["arxiv_id"] for y in x["alerts"]}
                and len(x["alerts"]) >= len(news)
            ),
            path=f"{sub}/alerts?limit=100",
        )["alerts"]
        reasons = {x["arxiv_id"]: x["reason"] for x in alerts}
        assert reasons[followed["arxiv_id"]] == "author you follow"
        assert reasons[news[0]["arxiv_id"]] == "related to your interests"
        target = news[0]["arxiv_id"]

        paths: list[tuple[str, str, Any]] = [
            ("GET", sub, None),
            ("PATCH", sub, {"threshold": 0.01}),
            ("PUT", sub, {**body, "threshold": 0.02}),
            ("GET", f"{sub}/alerts", None),
            ("GET", f"{sub}/feedback", None),
            ("POST", f"{sub}/feedback", {"arxiv_id": target, "label": "relevant"}),
            ("GET", f"{sub}/feed.atom", None),
            ("POST", f"{sub}/feed-token", None),
            ("DELETE", sub, None),
        ]
        unknown = "/subscriptions/" + "f" * 32
        for method, path, payload in paths:
            for who, headers in (("B", owner_b), ("anonymous", {})):
                status, answer = worker.request(method, path, payload, headers, auth=False)
                assert status == 404, (who, method, path, answer)
                same = worker.request(
                    method, path.replace(sub, unknown), payload, headers, auth=False
                )
                assert same[0] == 404 and answer == {
                    "error": same[1]["error"].replace("f" * 32, a["id"])
                }
            if method != "DELETE":
                for headers in (owner_a, {}):  # A, then the operator (auth=True)
                    status, answer = worker.request(
                        method, path, payload, headers or None, auth=not headers
                    )
                    assert status == 200, (method, path, answer)
        assert worker.get("/subscriptions", auth=False)[0] == 401
        listed = worker.request("GET", "/subscriptions", headers=owner_b, auth=False)[1]
        assert [s["id"] for s in listed["subscriptions"]] == [b["id"]]

        # The feed, through its capability URL (no bearer): valid Atom, newest first.
        shown = worker.request("GET", sub, headers=owner_a, auth=False)[1]
        feed_link = shown["feed_url"]
        assert feed_link.startswith(worker.base + sub + "/feed.atom?token=")
        status, kind, raw = fetch(feed_link)
        assert status == 200 and kind.startswith("application/atom+xml"), raw[:200]
        parsed = feedparser.parse(raw)
        assert not parsed.bozo, parsed.bozo_exception
        assert parsed.feed.title == "astrostream: A's <stars> & planets"
        by_id = {x["alert_id"]: x for x in alerts}
        assert {e.id for e in parsed.entries} == {uuid.UUID(i).urn for i in by_id}
        updated = [e.updated for e in parsed.entries]
        assert updated == sorted(updated, reverse=True)
        entry = next(e for e in parsed.entries if e.link.endswith(followed["arxiv_id"]))
        assert [au.name for au in entry.authors] == followed["authors"][:50]
        assert {ln.href for ln in entry.links} == {
            f"https://arxiv.org/abs/{followed['arxiv_id']}",
            f"https://arxiv.org/pdf/{followed['arxiv_id']}",
        }
        assert "author you follow" in entry.summary
        # Rotating the token revokes the old link; the new one works.
        status, rotated = worker.request("POST", f"{sub}/feed-token", headers=owner_a, auth=False)
        assert status == 200 and rotated["feed_url"] != shown["feed_url"]
        assert fetch(feed_link)[0] == 404
        assert fetch(feed_link.split("?")[0] + "?token=" + "x" * 32)[0] == 404
        new_link = rotated["feed_url"]
        assert fetch(new_link)[0] == 200
        # The owner deletes; the operator could too.
        assert worker.request("DELETE", sub, headers=owner_a, auth=False)[0] == 200
        assert worker.get(sub)[0] == 404
