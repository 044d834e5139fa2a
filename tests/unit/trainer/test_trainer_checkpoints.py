"""Unit tests of the checkpoint bookkeeping of ``--checkpoint-dir`` (no model is trained)."""

from __future__ import annotations

import json
from dataclasses import replace
from pathlib import Path

import pytest

from trainer.errors import CheckpointError
from trainer.train import (
    RUN_FILE,
    Checkpoints,
    TrainConfig,
    latest_checkpoint,
    pairs_digest,
    prepare_checkpoints,
    run_identity,
    save_interval,
    whole_run_loss,
)

PAIRS = [("a galaxy cluster", "a cluster of galaxies"), ("dust in discs", "discs hold dust")]


def _checkpoint(folder: Path, step: int, complete: bool = True) -> Path:
    path = folder / f"checkpoint-{step}"
    path.mkdir(parents=True)
    if complete:
        (path / "trainer_state.json").write_text(json.dumps({"global_step": step}))
    return path


def test_a_checkpoint_falls_on_a_logged_step() -> None:
    assert save_interval(200, 42) == 210  # the full recipe: 8,552 steps log every 42
    assert save_interval(2, 1) == 2
    assert save_interval(5, 10) == 10
    assert save_interval(20, 10) == 20


def test_whole_run_loss_weights_each_log_by_the_steps_it_averages() -> None:
    # Step 1 logged alone, then steps 2-3 averaged, then 4-6.
    assert whole_run_loss([(1, 3.0), (3, 2.0), (6, 1.0)]) == pytest.approx((3 + 4 + 3) / 6)
    assert whole_run_loss([]) is None


def test_latest_checkpoint_is_the_newest_complete_one(tmp_path: Path) -> None:
    assert latest_checkpoint(tmp_path / "missing") is None
    assert latest_checkpoint(tmp_path) is None
    _checkpoint(tmp_path, 2)
    ten = _checkpoint(tmp_path, 10)
    _checkpoint(tmp_path, 12, complete=False)  # killed while saving
    (tmp_path / "checkpoint-x").mkdir()
    assert latest_checkpoint(tmp_path) == ten  # numeric order, not "10" < "2"


def test_a_folder_resumes_only_the_run_that_made_it(tmp_path: Path) -> None:
    folder = tmp_path / "ckpt"
    checkpoints = Checkpoints(folder, 200, {"base": "/models/minilm"})
    identity = run_identity(PAIRS, TrainConfig(), checkpoints.identity)
    assert prepare_checkpoints(checkpoints, identity) is None  # fresh: nothing to resume
    assert json.loads((folder / RUN_FILE).read_text()) == identity
    newest = _checkpoint(folder, 400)
    assert prepare_checkpoints(checkpoints, identity) == newest

    other = run_identity(PAIRS, replace(TrainConfig(), lr=1e-4), checkpoints.identity)
    with pytest.raises(CheckpointError, match=r"another run \(differs in: config\.lr\)"):
        prepare_checkpoints(checkpoints, other)
    fewer = run_identity(PAIRS[:1], TrainConfig(), checkpoints.identity)
    with pytest.raises(CheckpointError, match="pairs, pairs_sha256"):
        prepare_checkpoints(checkpoints, fewer)
    astro = run_identity(PAIRS, TrainConfig(), {"base": "adsabs/astroBERT"})
    with pytest.raises(CheckpointError, match=r"differs in: base\)"):
        prepare_checkpoints(checkpoints, astro)


def test_checkpoints_of_unknown_origin_are_refused(tmp_path: Path) -> None:
    _checkpoint(tmp_path, 2)
    identity = run_identity(PAIRS, TrainConfig())
    with pytest.raises(CheckpointError, match=f"no {RUN_FILE}"):
        prepare_checkpoints(Checkpoints(tmp_path), identity)
    (tmp_path / RUN_FILE).write_text("{oops")
    with pytest.raises(CheckpointError, match=f"cannot read {RUN_FILE}"):
        prepare_checkpoints(Checkpoints(tmp_path), identity)


def test_the_pairs_digest_depends_on_order_and_boundaries() -> None:
    assert pairs_digest(PAIRS) == pairs_digest(list(PAIRS))
    assert pairs_digest(PAIRS) != pairs_digest(PAIRS[::-1])
    assert pairs_digest([("ab", "c")]) != pairs_digest([("a", "bc")])
