"""Lexical reach end to end: a paper alerts a subscription that dense percolation cannot reach.

The worker percolates with one dense hit per sentence (``ASTRO_ALERT_PERCOLATE_LIMIT=1``) and
every sentence of the new paper has a distractor subscription whose query *is* that sentence
(cosine 1): the dense search returns only distractors. The subscription under test asks for
the paper's title: a strong lexical match, never a dense top hit. Dense-only percolation
never scores it; the sparse search does, so the paper alerts it.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from helpers import isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess
from services.core.text import sentences_for_embedding
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

TOKEN = "s3cret-token"
AUTH = {"Authorization": f"Bearer {TOKEN}"}


def test_a_lexically_matching_paper_alerts_beyond_the_dense_limit(
    broker: EmbeddedBroker, tmp_path: Path
) -> None:
    records = [
        json.loads(line)
        for line in (Path(__file__).parent.parent / "data" / "papers-sample.jsonl")
        .read_text()
        .splitlines()
        if line.strip()
    ]
    seed, paper = records[0], records[1]
    sentences = [display for display, _ in sentences_for_embedding(paper["abstract"])]
    assert len(sentences) >= 2
    env = isolated_env(
        broker.url,
        tmp_path,
        unique("lexreach"),
        ASTRO_API_TOKEN=TOKEN,
        ASTRO_ALERT_PERCOLATE_LIMIT="1",
    )
    worker = WorkerProcess(env, tmp_path / "worker.log").start()
    try:
        produce(broker.bootstrap, env["ASTRO_TOPIC_PAPERS"], [paper_bytes(seed)])
        worker.wait_for(lambda b: b["papers"] == 1)  # the IDF has something to start from
        for sentence in sentences:
            status, body = worker.request(
                "POST", "/subscriptions", {"queries": [sentence], "threshold": 0.99}, AUTH
            )
            assert status == 201, body
        status, target = worker.request(
            "POST", "/subscriptions", {"queries": [paper["title"]], "threshold": 0.05}, AUTH
        )
        assert status == 201, target

        produce(broker.bootstrap, env["ASTRO_TOPIC_PAPERS"], [paper_bytes(paper)])
        worker.wait_for(lambda b: b["papers"] == 2)  # the paper point is written after matching
        status, body = worker.get(f"/subscriptions/{target['id']}/alerts?limit=10")
        assert status == 200, body
        alerts = body["alerts"]
        assert [a["arxiv_id"] for a in alerts] == [paper["arxiv_id"]]
        alert = alerts[0]
        assert alert["score"] >= 0.05
        # Evidence from the dense re-score: a sentence of the paper against the title query.
        assert alert["matches"] and alert["matches"][0]["interest"] == paper["title"]
        assert alert["matches"][0]["sentence"] in sentences
    finally:
        worker.stop()
