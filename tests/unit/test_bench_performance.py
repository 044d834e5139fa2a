"""The performance benchmark's table: every measured section, the ratio, the extrapolation."""

from __future__ import annotations

import json
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "benchmarks"))
import performance as bench


def result() -> dict[str, object]:
    stages = {"decode": 0.1, "encode": 30.0, "upsert": 2.0, "match": 0.5, "total": 33.0}
    run = {
        "papers": 10,
        "texts": 100.0,
        "wall_s": 2.0,
        "worker_cpu_s": 3.0,
        "papers_per_s": 5.0,
        "sentences_per_s": 50.0,
        "stage_seconds": stages,
        "micro_batches": 1.0,
        "worker_rss_mib": 900.0,
    }
    bare = [
        {"encoder": "torch", "batch": 16, "max_tokens": None, "sentences": 100, "wall_s": 5.0,
         "cpu_s": 9.0, "sentences_per_s": 20.0},
        {"encoder": "default (onnx-int8)", "batch": 64, "max_tokens": 1024, "sentences": 100,
         "wall_s": 1.5, "cpu_s": 2.5, "sentences_per_s": 66.7},
    ]  # fmt: skip
    search = [
        {"papers": 1000, "sentences": 8000, "p50_ms": 20.0, "p95_ms": 25.0, "cpu_ms_mean": 19.0,
         "similar_p50_ms": 15.0, "similar_p95_ms": 18.0},
        {"papers": 2000, "sentences": 16000, "p50_ms": 40.0, "p95_ms": 45.0, "cpu_ms_mean": 39.0},
    ]  # fmt: skip
    return {
        "pipeline": {"bare": bare, "run": run, "ratio_wall": 2.5, "ratio_cpu": 3.0},
        "backfill": run,
        "latency": {
            **run,
            "publish_rate": 2.5,
            "subscriptions": 10,
            "lag_p50_s": 0.5,
            "lag_p95_s": 2.0,
        },
        "search": search,
        "search_backend": "onnx-int8",
    }


def test_histogram_quantile_reads_the_bucket_bound() -> None:
    text = "\n".join(
        f'astrostream_end_to_end_lag_seconds_bucket{{le="{le}"}} {count}'
        for le, count in [("0.5", 10.0), ("1.0", 50.0), ("5.0", 96.0), ("+Inf", 100.0)]
    )
    assert bench.histogram_quantile(text, "astrostream_end_to_end_lag_seconds", 0.5) == 1.0
    assert bench.histogram_quantile(text, "astrostream_end_to_end_lag_seconds", 0.95) == 5.0


def test_table_has_the_pipeline_ratio_backfill_and_search_extrapolation() -> None:
    text = bench.table(result())
    assert "| bare torch | 16 | 20.0 | 5.0 | 9.0 |" in text
    assert "| bare default (onnx-int8) | 64 (≤1024 tokens) | 66.7 |" in text
    assert "full pipeline (make run defaults" in text
    assert "**2.50x** sentences/s, 3.00x less CPU" in text
    assert "| 10 | 5.00 | 50.0 | 2 | 3 | 30 | 2 | 0 | 1 | 900 |" in text
    # 20 ms per 1,000 papers from the last two sizes: 40 + 0.02 * 298,000
    assert "/search p50 ≈ 6,000 ms" in text
    assert "| 2,000 | 16,000 | 40.0 | 45.0 | 39.0 | nan | nan |" in text
    assert "at 2.50 papers/s (half the pipeline's rate), 10 subscriptions" in text
    assert "p50 ≤ 0.5 s, p95 ≤ 2 s" in text
    json.dumps(result())  # what main() writes is plain JSON
