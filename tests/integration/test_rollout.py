"""Rolling out a second model on a running worker: no gap in /search, every point moves."""

from __future__ import annotations

import shutil
import threading
import time
from pathlib import Path
from typing import Any

import pytest
from helpers import paper_bytes, produce

from benchmarks.stack import WorkerProcess
from services.core.schemas import ModelUpdate
from services.kafka.broker import EmbeddedBroker
from services.models.encoder import bundled_model_path

pytestmark = pytest.mark.integration


def test_rollout_switches_model_without_search_gap(
    broker: EmbeddedBroker,
    stack_env: dict[str, str],
    start_worker: Any,
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    worker: WorkerProcess = start_worker(stack_env, ASTRO_ROLES="embed,alerts,api")
    topic = stack_env["ASTRO_TOPIC_PAPERS"]
    first, late, last = sample_records[:24], sample_records[24:30], sample_records[30:32]
    produce(broker.bootstrap, topic, [paper_bytes(r) for r in first])
    before = worker.wait_for(lambda s: s["papers"] == len(first), timeout=180)
    assert before["model_version"] == "all-minilm-l6-v2"
    status, sub = worker.request(
        "POST",
        "/subscriptions",
        {"name": "rollout", "queries": ["galaxy clusters"], "threshold": 0.0},
    )
    assert status == 201, sub

    # The "new" model: the bundled one under another name (a different version tag).
    new_model = tmp_path / "minilm-rollout"
    shutil.copytree(bundled_model_path(), new_model)

    failures: list[Any] = []
    answered = 0
    stop = threading.Event()

    def keep_searching() -> None:
        nonlocal answered
        while not stop.is_set():
            status, body = worker.get("/search?q=galaxy+clusters&limit=3")
            if status != 200 or not body["results"]:
                failures.append((status, body))
            answered += 1
            time.sleep(0.1)

    searcher = threading.Thread(target=keep_searching)
    searcher.start()
    try:
        update = ModelUpdate(name="minilm-rollout", version="minilm-rollout", path=str(new_model))
        produce(
            broker.bootstrap,
            stack_env["ASTRO_TOPIC_MODELS"],
            [(b"minilm-rollout", update.model_dump_json().encode())],
        )
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in late])  # during the rollout
        after = worker.wait_for(
            lambda s: (
                s["model_version"] == "minilm-rollout" and s["papers"] == len(first) + len(late)
            ),
            timeout=300,
        )
    finally:
        stop.set()
        searcher.join()
    assert failures == []
    assert answered > 5
    aliases = after["collections"]["aliases"]
    assert aliases["astro_sentences"] == "astro_sentences__minilm-rollout"
    assert aliases["astro_papers"] == "astro_papers__minilm-rollout"
    want_sentences = worker.wait_for(lambda s: s["sentences"] >= before["sentences"], timeout=60)
    assert want_sentences["sentences"] > before["sentences"]  # the late papers are there too
    for record in first[:3] + late[:3]:
        status, paper = worker.get(f"/papers/{record['arxiv_id']}")
        assert status == 200
        assert paper["model_version"] == "minilm-rollout"
    _, text = worker.get("/metrics")
    assert 'astrostream_rollouts_total{outcome="done"} 1.0' in text

    # The subscription's interests moved too: papers after the rollout still alert.
    produce(broker.bootstrap, topic, [paper_bytes(r) for r in last])
    wanted = {r["arxiv_id"] for r in last}

    def alerted(_: Any) -> bool:
        status, body = worker.get(f"/subscriptions/{sub['id']}/alerts?limit=100")
        return status == 200 and wanted <= {a["arxiv_id"] for a in body["alerts"]}

    worker.wait_for(alerted, timeout=120)
    alerts = worker.get(f"/subscriptions/{sub['id']}/alerts?limit=100")[1]["alerts"]
    assert {a["model_version"] for a in alerts if a["arxiv_id"] in wanted} == {"minilm-rollout"}
