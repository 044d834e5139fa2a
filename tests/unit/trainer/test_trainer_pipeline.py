"""Unit tests of trainer.pipeline pieces that need no model: the evaluation cache."""

from __future__ import annotations

import os
from pathlib import Path

from trainer.evaluate import pair_eval_set
from trainer.pipeline import EvalCache

EVAL = pair_eval_set([("a b c", "d e f"), ("g h i", "j k l")])


def test_eval_cache_is_keyed_by_model_files_and_eval_set(tmp_path: Path) -> None:
    model = tmp_path / "model"
    model.mkdir()
    (model / "model.safetensors").write_bytes(b"weights")
    cache = EvalCache(tmp_path / "out", EVAL, max_seq_length=256)
    assert cache.get(str(model)) is None
    cache.put(str(model), {"ndcg@10": 0.5})
    assert EvalCache(tmp_path / "out", EVAL, 256).get(str(model)) == {"ndcg@10": 0.5}
    assert cache.get("adsabs/astroBERT") is None
    # Another split, another length, or changed weights: not the same measurement.
    other = pair_eval_set([("a b c", "d e f"), ("x y z", "j k l")])
    assert EvalCache(tmp_path / "out", other, 256).get(str(model)) is None
    assert EvalCache(tmp_path / "out", EVAL, 128).get(str(model)) is None
    (model / "model.safetensors").write_bytes(b"new weights")
    os.utime(model / "model.safetensors", ns=(1, 1))
    assert cache.get(str(model)) is None


def test_a_corrupt_cache_is_ignored(tmp_path: Path) -> None:
    (tmp_path / ".eval-cache.json").write_text("{oops")
    cache = EvalCache(tmp_path, EVAL, 256)
    assert cache.get("m") is None
    cache.put("m", {"ndcg@10": 1.0})
    assert cache.get("m") == {"ndcg@10": 1.0}
