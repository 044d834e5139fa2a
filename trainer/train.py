"""Fine-tuning: the seed recipe (MultipleNegativesRankingLoss, no-duplicates batches) on pairs."""

from __future__ import annotations

import hashlib
import json
import logging
import math
import os
import re
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from services.models.encoder import bundled_model_path
from trainer.data import Pair
from trainer.errors import BaseModelError, CheckpointError, TrainingDataError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer
    from transformers import TrainerCallback

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The loss curve gets about this many points, whatever the run length.
LOSS_POINTS = 200
# A checkpoint about this often (rounded up to a logging step) when --checkpoint-dir is given.
CHECKPOINT_EVERY = 200
CHECKPOINTS_KEPT = 2
RUN_FILE = "run.json"  # what the checkpoints in a folder belong to
CLOCK_FILE = "astrostream-clock.json"  # training seconds up to a checkpoint, all sessions
CHECKPOINT_RE = re.compile(r"^checkpoint-(\d+)$")


@dataclass(frozen=True)
class TrainConfig:
    """Hyper-parameters; the defaults are the seed model card's."""

    epochs: float = 8
    max_steps: int | None = None
    batch_size: int = 32
    lr: float = 5e-5
    seed: int = 42
    max_seq_length: int = 256
    scale: float = 20.0
    precision: Precision = "auto"


@dataclass(frozen=True)
class Checkpoints:
    """Save the training state into ``dir`` every ``every`` steps; a rerun resumes from it.

    ``identity`` is what, besides the hyper-parameters and the pairs, makes two runs the same
    (the base model, the architecture): a folder only resumes the run it was made by.
    """

    dir: Path
    every: int = CHECKPOINT_EVERY
    identity: dict[str, Any] = field(default_factory=dict)


@dataclass
class TrainResult:
    """What a run did: steps, speed and the logged loss per step.

    A resumed run counts the whole run: ``steps``, ``runtime_s`` (training time of every
    session), ``train_loss`` and ``loss_history`` from step 1; ``resumed_from`` is the step
    this session started at (0 for a fresh run).
    """

    steps: int
    epochs: float
    runtime_s: float
    steps_per_s: float
    train_loss: float
    precision: str
    device: str
    loss_history: list[tuple[int, float]] = field(default_factory=list)
    resumed_from: int = 0

    def summary(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "loss_history"}


def load_model(
    base: str, max_seq_length: int, model_name: str | None = None
) -> SentenceTransformer:
    """A SentenceTransformer from a sentence-transformers directory, a plain BERT one or a hub id.

    A plain transformers checkpoint (e.g. ``adsabs/astroBERT``) gets mean pooling added by
    sentence-transformers itself. ``max_seq_length`` is capped by the position embeddings.

    Raises:
        BaseModelError: when the model cannot be loaded, saying what to pass instead.
    """
    local = Path(base).expanduser()
    if (base.startswith((".", "/", "~")) or local.exists()) and not local.is_dir():
        raise BaseModelError(f"base model {base}: no such directory")
    from sentence_transformers import SentenceTransformer, SentenceTransformerModelCardData

    offline = local.is_dir() or os.environ.get("HF_HUB_OFFLINE") == "1"
    card = SentenceTransformerModelCardData(
        language="en",
        model_name=model_name,
        local_files_only=offline,
        train_datasets=[{"name": "arXiv astro-ph sentence pairs (astrostream)"}],
    )
    try:
        model = SentenceTransformer(str(local) if local.is_dir() else base, model_card_data=card)
    except Exception as exc:  # any loader failure means the same thing to the user
        raise BaseModelError(
            f"cannot load base model {base!r} ({type(exc).__name__}: {exc}); pass --base with a "
            "local sentence-transformers or BERT directory, or a hub id reachable from here"
        ) from None
    # Name the base in the card without asking the hub: a hub id as given, the bundled one by id.
    if not local.is_dir():
        card.base_model = base
    elif local.resolve() == bundled_model_path().resolve():
        card.base_model = BUNDLED_HUB_ID
    config = getattr(model[0], "auto_model", None)
    limit = getattr(getattr(config, "config", None), "max_position_embeddings", None)
    model.max_seq_length = min(max_seq_length, limit) if isinstance(limit, int) else max_seq_length
    return model


def resolve_precision(requested: Precision) -> tuple[str, str]:
    """``(device, precision)``: auto = bf16 on GPUs that have it, else fp16 on CUDA, fp32 on CPU.

    Raises:
        BaseModelError: when fp16/bf16 is asked for without CUDA.
    """
    import torch

    device = "cuda" if torch.cuda.is_available() else "cpu"
    if requested == "auto":
        if device == "cpu":
            return device, "fp32"
        return device, "bf16" if torch.cuda.is_bf16_supported() else "fp16"
    if requested != "fp32" and device == "cpu":
        raise BaseModelError(f"--precision {requested} needs a CUDA GPU; use auto or fp32 on CPU")
    return device, requested


def planned_steps(n_pairs: int, config: TrainConfig) -> int:
    """Optimizer steps the run will take (``max_steps`` wins over epochs)."""
    if config.max_steps:
        return config.max_steps
    return max(1, math.ceil(math.ceil(n_pairs / config.batch_size) * config.epochs))


def logging_interval(steps: int) -> int:
    """Steps between two logged losses: about ``LOSS_POINTS`` points whatever the run length."""
    return max(1, steps // LOSS_POINTS)


def save_interval(every: int, logging_steps: int) -> int:
    """``every`` rounded up to a multiple of the logging interval.

    A checkpoint then always falls on a logged step, so the loss of the steps between the last
    log and the checkpoint is never lost on resume and ``log_history`` covers the whole run.
    """
    return max(1, math.ceil(every / logging_steps)) * logging_steps


def pairs_digest(pairs: Sequence[Pair]) -> str:
    """sha256 of the pairs in their training order."""
    digest = hashlib.sha256()
    for anchor, positive in pairs:
        digest.update(anchor.encode("utf-8") + b"\x00" + positive.encode("utf-8") + b"\x01")
    return digest.hexdigest()


def run_identity(
    pairs: Sequence[Pair], config: TrainConfig, extra: dict[str, Any] | None = None
) -> dict[str, Any]:
    """What a checkpoint folder records and a resumed run must match, exactly."""
    return {
        **(extra or {}),
        "config": asdict(config),
        "pairs": len(pairs),
        "pairs_sha256": pairs_digest(pairs),
    }


def latest_checkpoint(folder: Path) -> Path | None:
    """The newest complete ``checkpoint-<step>`` in ``folder``, if any.

    The trainer writes ``trainer_state.json`` after the weights, optimizer and RNG states, so a
    checkpoint without a readable one was cut short (the process was killed while saving) and
    the one before it is used.
    """
    if not folder.is_dir():
        return None
    found = sorted(
        ((int(m.group(1)), p) for p in folder.iterdir() if (m := CHECKPOINT_RE.match(p.name))),
        reverse=True,
    )
    for _, path in found:
        try:
            state = json.loads((path / "trainer_state.json").read_text(encoding="utf-8"))
        except (OSError, ValueError):
            log.warning("checkpoint %s is incomplete: skipped", path)
            continue
        if isinstance(state, dict) and isinstance(state.get("global_step"), int):
            return path
        log.warning("checkpoint %s is incomplete: skipped", path)
    return None


def prepare_checkpoints(checkpoints: Checkpoints, identity: dict[str, Any]) -> Path | None:
    """Record the run in ``checkpoints.dir`` (or check it is the one recorded there).

    Returns:
        The checkpoint to resume from, ``None`` for a fresh run.

    Raises:
        CheckpointError: when the folder holds checkpoints of another run (other options, other
            pairs, another base model), or cannot be written.
    """
    folder = checkpoints.dir
    run_file = folder / RUN_FILE
    try:
        recorded = json.loads(run_file.read_text(encoding="utf-8")) if run_file.exists() else None
    except (OSError, ValueError) as exc:
        raise CheckpointError(
            f"checkpoint folder {folder}: cannot read {RUN_FILE}: {exc}"
        ) from None
    latest = latest_checkpoint(folder)
    if recorded is None and latest is not None:
        raise CheckpointError(
            f"checkpoint folder {folder} holds checkpoints but no {RUN_FILE}: not made by "
            "astrostream train; give an empty or new --checkpoint-dir"
        )
    if recorded is not None and recorded != identity:
        keys = sorted(
            k
            for k in set(recorded) | set(identity)
            if recorded.get(k) != identity.get(k) and k != "config"
        )
        keys += sorted(
            f"config.{k}"
            for k in set(recorded.get("config", {})) | set(identity["config"])
            if recorded.get("config", {}).get(k) != identity["config"].get(k)
        )
        raise CheckpointError(
            f"checkpoint folder {folder} belongs to another run (differs in: {', '.join(keys)}); "
            "rerun the same command to resume it, or give a new --checkpoint-dir"
        )
    try:
        folder.mkdir(parents=True, exist_ok=True)
        if recorded is None:
            tmp = run_file.with_suffix(".tmp")
            tmp.write_text(json.dumps(identity, indent=2) + "\n", encoding="utf-8")
            tmp.replace(run_file)
    except OSError as exc:
        raise CheckpointError(f"checkpoint folder {folder}: {exc}") from None
    return latest


def _train_seconds(checkpoint: Path | None) -> float:
    """Training seconds of all sessions up to ``checkpoint`` (0 without a clock file)."""
    if checkpoint is None:
        return 0.0
    try:
        return float(json.loads((checkpoint / CLOCK_FILE).read_text(encoding="utf-8"))["seconds"])
    except (OSError, ValueError, KeyError, TypeError):
        return 0.0


def _clock_callback(before: float, started: float) -> TrainerCallback:
    """Writes the training seconds so far into each checkpoint, and checkpoints the last step.

    Saving the final step too means a run killed during its final evaluation resumes with
    nothing left to train.
    """
    from transformers import TrainerCallback

    class Clock(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            if state.global_step >= state.max_steps:
                control.should_save = True
            return control

        def on_save(self, args: Any, state: Any, control: Any, **kwargs: Any) -> Any:
            path = Path(args.output_dir) / f"checkpoint-{state.global_step}"
            if path.is_dir():
                seconds = round(before + time.monotonic() - started, 2)
                (path / CLOCK_FILE).write_text(json.dumps({"seconds": seconds}) + "\n")
            return control

    return Clock()


def whole_run_loss(history: Sequence[tuple[int, float]]) -> float | None:
    """Mean loss per step over the logged steps (each log averages the steps since the last)."""
    total, last = 0.0, 0
    for step, loss in history:
        if step > last:
            total += loss * (step - last)
            last = step
    return total / last if last else None


def fine_tune(
    model: SentenceTransformer,
    pairs: Sequence[Pair],
    config: TrainConfig,
    work_dir: Path,
    checkpoints: Checkpoints | None = None,
) -> TrainResult:
    """Train ``model`` in place on ``(anchor, positive)`` pairs with in-batch negatives.

    Without ``checkpoints`` nothing is saved (``work_dir`` is scratch). With them, the state is
    saved every ``checkpoints.every`` steps (the last ``CHECKPOINTS_KEPT`` kept) and training
    resumes from the newest checkpoint there: same weights, optimizer, schedule, data order and
    RNG state, so the run reaches the same planned steps as an uninterrupted one.

    Raises:
        TrainingDataError: when there are too few pairs for in-batch negatives.
        CheckpointError: when the checkpoint folder belongs to another run.
    """
    from datasets import Dataset
    from sentence_transformers import (
        SentenceTransformerTrainer,
        SentenceTransformerTrainingArguments,
    )
    from sentence_transformers.base.sampler import BatchSamplers
    from sentence_transformers.sentence_transformer.losses import MultipleNegativesRankingLoss

    if len(pairs) < 2:
        raise TrainingDataError(
            f"only {len(pairs)} training pair(s): in-batch negatives need at least 2; "
            "give more data"
        )
    device, precision = resolve_precision(config.precision)
    steps = planned_steps(len(pairs), config)
    logging_steps = logging_interval(steps)
    resume: Path | None = None
    save: dict[str, Any] = {"save_strategy": "no"}
    if checkpoints is not None:
        resume = prepare_checkpoints(checkpoints, run_identity(pairs, config, checkpoints.identity))
        work_dir = checkpoints.dir
        save = {
            "save_strategy": "steps",
            "save_steps": save_interval(checkpoints.every, logging_steps),
            "save_total_limit": CHECKPOINTS_KEPT,
        }
        log.info(
            "checkpoints every %d steps in %s; %s",
            save["save_steps"],
            work_dir,
            f"resuming from {resume.name}" if resume else "no checkpoint yet: a fresh run",
        )
    log.info(
        "training on %d pairs, batch %d, %d steps, lr %g, %s on %s",
        len(pairs),
        config.batch_size,
        steps,
        config.lr,
        precision,
        device,
    )
    dataset = Dataset.from_dict(
        {"anchor": [a for a, _ in pairs], "positive": [b for _, b in pairs]}
    )
    args = SentenceTransformerTrainingArguments(
        output_dir=str(work_dir),
        num_train_epochs=config.epochs,
        max_steps=config.max_steps or -1,
        per_device_train_batch_size=config.batch_size,
        learning_rate=config.lr,
        lr_scheduler_type="linear",
        warmup_steps=0,
        seed=config.seed,
        data_seed=config.seed,
        fp16=precision == "fp16",
        bf16=precision == "bf16",
        batch_sampler=BatchSamplers.NO_DUPLICATES,
        logging_steps=logging_steps,
        logging_first_step=True,
        report_to="none",
        dataloader_pin_memory=device == "cuda",
        disable_tqdm=False,
        **save,
    )
    loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    before = _train_seconds(resume)
    started = time.monotonic()
    if checkpoints is not None:
        trainer.add_callback(_clock_callback(before, started))
    output = trainer.train(resume_from_checkpoint=str(resume) if resume else None)
    runtime = before + time.monotonic() - started
    history = [
        (int(entry["step"]), float(entry["loss"]))
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    done = int(output.global_step)
    resumed_from = _checkpoint_step(resume)
    train_loss = float(output.training_loss)
    if resumed_from:
        # The trainer's own mean only counts this session's steps; the log covers them all.
        train_loss = whole_run_loss(history) or train_loss
    return TrainResult(
        steps=done,
        epochs=float(output.metrics.get("epoch", 0.0)),
        runtime_s=round(runtime, 2),
        steps_per_s=round(done / runtime, 4) if runtime > 0 else 0.0,
        train_loss=train_loss,
        precision=precision,
        device=device,
        loss_history=history,
        resumed_from=resumed_from,
    )


def _checkpoint_step(checkpoint: Path | None) -> int:
    match = CHECKPOINT_RE.match(checkpoint.name) if checkpoint else None
    return int(match.group(1)) if match else 0


def plot_loss(history: Sequence[tuple[int, float]], path: Path, title: str) -> None:
    """Draw the training loss per logged step (and a moving average) into a PNG."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4))
    if history:
        steps = [s for s, _ in history]
        losses = [v for _, v in history]
        ax.plot(steps, losses, lw=1, alpha=0.6, label="loss")
        window = max(1, len(losses) // 20)
        if window > 1:
            smooth = [
                sum(losses[max(0, i - window + 1) : i + 1])
                / len(losses[max(0, i - window + 1) : i + 1])
                for i in range(len(losses))
            ]
            ax.plot(steps, smooth, lw=2, label=f"moving average ({window})")
        ax.legend()
    else:
        ax.text(0.5, 0.5, "no loss logged", ha="center", va="center", transform=ax.transAxes)
    ax.set_xlabel("step")
    ax.set_ylabel("MultipleNegativesRankingLoss")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)
