"""The alerts benchmark's evaluation: author halves, dated seeds and relevant papers, metrics."""

from __future__ import annotations

import gzip
import json
import sys
from pathlib import Path

import pytest
from helpers import authored_papers

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import alerts as bench


def test_dev_and_test_halves_share_no_author() -> None:
    data = authored_papers()
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


@pytest.fixture
def path(tmp_path: Path) -> Path:
    """The synthetic authored papers as the benchmark reads them (JSONL, gzipped)."""
    out = tmp_path / "papers.jsonl.gz"
    with gzip.open(out, "wt") as handle:
        handle.write("\n".join(json.dumps(r) for r in authored_papers()) + "\n")
    return out


def test_offline_mode_ranks_an_authors_later_papers_first(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert bench.main(["--data", str(path), "--offline", "--candidates", "60"]) == 0
    out = capsys.readouterr().out
    line = next(x for x in out.splitlines() if x.startswith("default:"))
    ndcg = float(line.split()[-2])
    assert ndcg > 0.9  # each author's own method/survey names single out their later papers


def test_offline_report_has_the_baselines_the_calibration_and_the_feedback_curve(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
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


def test_forked_jobs_give_the_same_report_as_one_process(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data", str(path), "--offline", "--candidates", "60", "--reservoir", "20"]
    reports = []
    for jobs in ("1", "2"):
        assert bench.main([*argv, "--feedback-curve", "--jobs", jobs]) == 0
        out = capsys.readouterr().out
        reports.append([x for x in out.splitlines() if not x.startswith("total ")])
    assert any("20 labels:" in x for x in reports[0])
    assert reports[0] == reports[1]


def test_each_keeps_the_order_of_its_items() -> None:
    offset = 7  # a closure: the forked children inherit it
    assert bench.each(lambda x: x * x + offset, list(range(50)), jobs=2) == [
        x * x + offset for x in range(50)
    ]


def test_fit_cost_times_both_ways_and_finds_the_models_identical(
    path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["--data", str(path), "--candidates", "60", "--reservoir", "20", "--fit-cost"]
    assert bench.main(argv) == 0
    line = next(x for x in capsys.readouterr().out.splitlines() if x.startswith("model fit ("))
    fits = int(line.split("(")[1].split()[0])
    assert fits > 0 and line.endswith(f"identical models {fits}/{fits}"), line
