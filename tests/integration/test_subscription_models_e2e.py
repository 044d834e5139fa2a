"""Per-subscription models end to end: calibrated relevance on every alert, feedback that
changes the ranking, and models that a restarted worker loads instead of refitting."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from helpers import isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

FITS = "astrostream_subscription_model_fits_total"
LOADS = "astrostream_subscription_model_loads_total"


def test_models_rank_calibrate_learn_from_feedback_and_survive_a_restart(
    broker: EmbeddedBroker, tmp_path: Path, sample_records: list[dict[str, Any]]
) -> None:
    env = isolated_env(broker.url, tmp_path, unique("models"))
    topic = env["ASTRO_TOPIC_PAPERS"]
    sample, second, third = sample_records[:50], sample_records[50:62], sample_records[62:70]
    with WorkerProcess(env, tmp_path / "w1.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in sample])
        worker.wait_for(lambda s: s["papers"] == len(sample))
        status, sub = worker.request(
            "POST",
            "/subscriptions",
            {"queries": ["galaxies stars and planets"], "threshold": 0, "min_relevance": 0},
        )
        assert status == 201 and sub["min_relevance"] == 0, sub
        alerts_path = f"/subscriptions/{sub['id']}/alerts"
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in second])
        alerted = worker.wait_for(
            lambda b: len(b["alerts"]) == len(second), path=alerts_path + "?limit=100"
        )["alerts"]
        assert worker.metric(FITS) >= 1
        assert all(0 <= a["relevance"] <= 1 for a in alerted), alerted
        by_relevance = worker.get(alerts_path + "?sort=relevance&limit=100")[1]["alerts"]
        values = [a["relevance"] for a in by_relevance]
        assert values == sorted(values, reverse=True) and len(values) == len(second)

        # The reader says the least relevant alert is relevant: the refit model ranks it higher.
        worst = by_relevance[-1]
        path = f"/subscriptions/{sub['id']}/feedback"
        assert worker.request("POST", path, {"arxiv_id": worst["arxiv_id"], "label": "relevant"})[
            0
        ] == (200)
        fits = worker.metric(FITS)
        record = next(r for r in second if r["arxiv_id"] == worst["arxiv_id"])
        revised = {**record, "version": 2, "abstract": record["abstract"] + " We revise it."}
        produce(broker.bootstrap, topic, [paper_bytes(revised)])
        updated = worker.wait_for(
            lambda b: any(
                a["arxiv_id"] == worst["arxiv_id"] and a["version"] == 2 for a in b["alerts"]
            ),
            path=alerts_path + "?limit=100",
        )["alerts"]
        assert worker.metric(FITS) == fits + 1
        again = next(a for a in updated if a["arxiv_id"] == worst["arxiv_id"])
        assert again["relevance"] > worst["relevance"], (worst, again)

    with WorkerProcess(env, tmp_path / "w2.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in third])
        alerted = worker.wait_for(
            lambda b: len(b["alerts"]) == len(second) + len(third), path=alerts_path + "?limit=100"
        )["alerts"]
        assert all(a["relevance"] is not None for a in alerted)
        assert worker.metric(LOADS) == 1 and worker.metric(FITS) == 0  # loaded, not refit
