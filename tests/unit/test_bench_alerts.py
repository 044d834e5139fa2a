"""The alerts benchmark's evaluation: author halves, dated seeds and relevant papers, metrics."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import alerts as bench

TOPICS = ["pulsar timing", "galaxy cluster lensing", "exoplanet transit", "dust grain"]


def rows() -> list[dict[str, object]]:
    out = []
    for a in range(40):
        topic = TOPICS[a % len(TOPICS)]
        for n, day in enumerate(["2025-10-01", "2025-11-01", "2025-12-05", "2026-01-10"]):
            out.append(
                {
                    "arxiv_id": f"2510.{a:03d}{n}",
                    "version": 1,
                    "announced": day,
                    "title": f"{topic} study {n} by group {a}",
                    "abstract": f"We study {topic} with method{a} and survey{a}. It works well.",
                    "authors": [f"Author {a}"],
                    "categories": ["astro-ph.GA"],
                }
            )
    return out


def test_dev_and_test_halves_share_no_author() -> None:
    data = rows()
    kwargs = dict(
        subscriptions=100,
        candidates=60,
        cutoff="2025-12-01",
        max_authors=25,
        max_seeds=3,
        max_relevant=10,
        seed=1,
    )
    test = bench.build_evaluation(data, split="test", **kwargs)  # type: ignore[arg-type]
    dev = bench.build_evaluation(data, split="dev", **kwargs)  # type: ignore[arg-type]
    assert test.subscriptions and dev.subscriptions
    assert not {s.author for s in test.subscriptions} & {s.author for s in dev.subscriptions}
    assert len(test.subscriptions) + len(dev.subscriptions) == 40
    for s in test.subscriptions:
        assert all(test.papers[x]["announced"] < "2025-12-01" for x in s.seeds)
        assert all(test.papers[x]["announced"] >= "2025-12-01" for x in s.relevant)
        assert s.relevant <= set(test.candidates)


def test_metrics() -> None:
    assert bench.ndcg(["a", "b"], {"a"}, 20) == 1.0
    assert bench.ndcg(["b", "a"], {"a"}, 20) == pytest.approx(1 / 1.5849625)
    assert bench.recall(["c", "b"], {"a", "b"}, 1) == 0.0
    assert bench.recall(["c", "b"], {"a", "b"}, 2) == 0.5


def test_offline_mode_ranks_an_authors_later_papers_first(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "papers.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows()) + "\n")
    assert bench.main(["--data", str(path), "--offline", "--candidates", "60"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("default:"))
    ndcg = float(line.split()[-2])
    assert ndcg > 0.9  # each author's own method/survey names single out their later papers


def test_offline_report_has_the_baselines_the_calibration_and_the_feedback_curve(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = tmp_path / "papers.jsonl.gz"
    with gzip.open(path, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in rows()) + "\n")
    argv = ["--data", str(path), "--offline", "--candidates", "60", "--reservoir", "20"]
    assert bench.main([*argv, "--calibration", "--feedback-curve"]) == 0
    out = capsys.readouterr().out
    for name in (
        "default: SVM 0.85 + centroid (C 0.1) + static dense 0.4",  # what the worker ranks by
        "SVM 0.85 + centroid (C 0.1), no dense channel",
        "centroid (the previous default)",
        "arxiv-sanity-lite exemplar SVM",
    ):
        assert any(line.startswith(name) for line in out.splitlines()), out
    assert "ours - arxiv-sanity-lite exemplar SVM: nDCG" in out
    levels = [x for x in out.splitlines() if x.strip().startswith(">= 0.990")]
    assert len(levels) == 1
    curve = {
        int(x.split()[0]): float(x.split()[2])
        for x in out.splitlines()
        if x.strip().split(" ")[1:2] == ["labels:"]
    }
    assert set(curve) == {0, 5, 10, 20}
    assert all(0 <= v <= 1 for v in curve.values())
    assert curve[20] >= curve[0]  # labels of an author's own later papers only help
