"""Fine-tuning: the seed recipe (MultipleNegativesRankingLoss, no-duplicates batches) on pairs."""

from __future__ import annotations

import logging
import math
import os
import time
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from services.models.encoder import bundled_model_path
from trainer.data import Pair
from trainer.errors import BaseModelError, TrainingDataError

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

Precision = Literal["auto", "fp32", "fp16", "bf16"]
BUNDLED_HUB_ID = "sentence-transformers/all-MiniLM-L6-v2"
# The loss curve gets about this many points, whatever the run length.
LOSS_POINTS = 200


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


@dataclass
class TrainResult:
    """What a run did: steps, speed and the logged loss per step."""

    steps: int
    epochs: float
    runtime_s: float
    steps_per_s: float
    train_loss: float
    precision: str
    device: str
    loss_history: list[tuple[int, float]] = field(default_factory=list)

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


def fine_tune(
    model: SentenceTransformer, pairs: Sequence[Pair], config: TrainConfig, work_dir: Path
) -> TrainResult:
    """Train ``model`` in place on ``(anchor, positive)`` pairs with in-batch negatives.

    Raises:
        TrainingDataError: when there are too few pairs for in-batch negatives.
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
        logging_steps=max(1, steps // LOSS_POINTS),
        logging_first_step=True,
        save_strategy="no",
        report_to="none",
        dataloader_pin_memory=device == "cuda",
        disable_tqdm=False,
    )
    loss = MultipleNegativesRankingLoss(model, scale=config.scale)
    trainer = SentenceTransformerTrainer(model=model, args=args, train_dataset=dataset, loss=loss)
    started = time.monotonic()
    output = trainer.train()
    runtime = time.monotonic() - started
    history = [
        (int(entry["step"]), float(entry["loss"]))
        for entry in trainer.state.log_history
        if "loss" in entry and "step" in entry
    ]
    done = int(output.global_step)
    return TrainResult(
        steps=done,
        epochs=float(output.metrics.get("epoch", 0.0)),
        runtime_s=round(runtime, 2),
        steps_per_s=round(done / runtime, 4) if runtime > 0 else 0.0,
        train_loss=float(output.training_loss),
        precision=precision,
        device=device,
        loss_history=history,
    )


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
