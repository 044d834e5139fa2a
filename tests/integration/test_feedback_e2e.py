"""Feedback end to end: a real worker, broker and model; labels survive a restart and mute papers."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration


def test_feedback_is_stored_validated_kept_and_mutes(
    broker: EmbeddedBroker, tmp_path: Path, sample_records: list[dict[str, Any]]
) -> None:
    env = isolated_env(broker.url, tmp_path, unique("feedback"))
    first, second = sample_records[:8], sample_records[8:12]
    topic = env["ASTRO_TOPIC_PAPERS"]
    with WorkerProcess(env, tmp_path / "w1.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in first])
        worker.wait_for(lambda s: s["papers"] == len(first))
        status, sub = worker.request(
            "POST", "/subscriptions", {"queries": ["galaxies stars and planets"], "threshold": 0}
        )
        assert status == 201, sub
        path = f"/subscriptions/{sub['id']}/feedback"
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in second])
        worker.wait_for(lambda s: s["papers"] == len(first) + len(second))
        alerted = worker.wait_for(
            lambda b: len(b["alerts"]) == len(second), path=f"/subscriptions/{sub['id']}/alerts"
        )["alerts"]
        target = alerted[0]["arxiv_id"]

        status, saved = worker.request("POST", path, {"arxiv_id": target, "label": "relevant"})
        assert (status, saved["label"], saved["arxiv_id"]) == (200, "relevant", target)
        status, saved = worker.request("POST", path, {"arxiv_id": target, "label": "not_relevant"})
        assert status == 200
        muted, kept = first[0]["arxiv_id"], first[1]["arxiv_id"]  # indexed before, never alerted
        assert worker.request("POST", path, {"arxiv_id": muted, "label": "not_relevant"})[0] == 200
        assert worker.request("POST", path, {"arxiv_id": target, "label": "meh"})[0] == 400
        assert (
            worker.request("POST", path, {"arxiv_id": "2101.99999", "label": "relevant"})[0] == 422
        )
        other = "/subscriptions/" + "0" * 32 + "/feedback"
        assert worker.request("POST", other, {"arxiv_id": target, "label": "relevant"})[0] == 404
        status, body = worker.request("POST", path, None, {"Content-Type": "text/plain"})
        assert status == 415, body

    with WorkerProcess(env, tmp_path / "w2.log") as worker:
        status, listed = worker.get(path)
        assert status == 200
        assert {(x["arxiv_id"], x["label"]) for x in listed["feedback"]} == {
            (target, "not_relevant"),
            (muted, "not_relevant"),
        }
        # New versions with new text: the muted paper is matched but never alerted.
        revised = [
            {**r, "version": 2, "abstract": r["abstract"] + " We revise the analysis."}
            for r in first[:2]
        ]
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in revised])
        alerts = worker.wait_for(
            lambda b: any(a["arxiv_id"] == kept for a in b["alerts"]),
            path=f"/subscriptions/{sub['id']}/alerts",
        )["alerts"]
        assert muted not in {a["arxiv_id"] for a in alerts}
