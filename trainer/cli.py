"""``astrostream train`` / ``python -m trainer``: the click command of the trainer."""

from __future__ import annotations

import contextlib
import datetime as dt
import os
import sys
from pathlib import Path

import click
from click.core import ParameterSource

from services.core.errors import AstrostreamError
from services.core.logs import setup_logging
from services.core.settings import load_settings
from services.models.encoder import (
    BUNDLED,
    BUNDLED_VERSION,
    bundled_model_path,
    derive_model_version,
    resolve_model,
)
from trainer.data import DEFAULT_MINING, MINING_STRATEGIES
from trainer.pipeline import TrainOptions, run_training
from trainer.registry import slug
from trainer.static import STATIC_BATCH_SIZE, STATIC_DIM, STATIC_EPOCHS, STATIC_LR
from trainer.train import CHECKPOINT_EVERY, TrainConfig

FILE = click.Path(dir_okay=False, path_type=Path)


def default_name(base: str) -> str:
    """``astro-<base>``: ``astro-astrobert``, ``astro-all-minilm-l6-v2`` (bundled, by name or path)."""
    path = Path(base).expanduser()
    if path.is_dir() and path.resolve() == bundled_model_path().resolve():
        return f"astro-{BUNDLED_VERSION}"
    return f"astro-{derive_model_version(base)}"


@click.command("train")
@click.option(
    "--architecture",
    type=click.Choice(["transformer", "static"]),
    default="transformer",
    show_default=True,
    help="transformer: fine-tune --base. static: a StaticEmbedding (MiniLM's tokenizer, random "
    f"init) trained on co-author and title-abstract pairs of --papers; unless given, "
    f"--epochs {STATIC_EPOCHS:g}, --batch-size {STATIC_BATCH_SIZE}, --lr {STATIC_LR:g}. "
    "Never made current without --force (a paper-level alert channel, docs/alerts.md).",
)
@click.option(
    "--papers",
    type=FILE,
    help="Paper JSONL(.gz) to mine pairs from (later-dated papers are held out).",
)
@click.option(
    "--pairs",
    type=FILE,
    help="Pairs file with sentence_0, sentence_1 columns (JSONL, CSV, Parquet).",
)
@click.option(
    "--base",
    default=BUNDLED,
    show_default=True,
    help="Base model: hub id (production: adsabs/astroBERT), local directory, or 'bundled' "
    "(all-MiniLM-L6-v2 shipped offline). A plain BERT checkpoint gets mean pooling.",
)
@click.option("--name", help="Model name in the version directory. Default: astro-<base name>.")
@click.option(
    "--out",
    type=click.Path(file_okay=False, path_type=Path),
    default=Path("models"),
    show_default=True,
    help="Folder of model versions, registry.json and the 'current' link.",
)
@click.option(
    "--epochs", type=click.FloatRange(min=0, min_open=True), default=8.0, show_default=True
)
@click.option(
    "--max-steps",
    type=click.IntRange(min=1),
    help="Stop after this many steps (overrides --epochs).",
)
@click.option("--batch-size", type=click.IntRange(min=2), default=32, show_default=True)
@click.option("--lr", type=click.FloatRange(min=0, min_open=True), default=5e-5, show_default=True)
@click.option("--seed", type=int, default=42, show_default=True)
@click.option("--max-seq-length", type=click.IntRange(min=8), default=256, show_default=True)
@click.option(
    "--precision",
    type=click.Choice(["auto", "fp32", "fp16", "bf16"]),
    default="auto",
    show_default=True,
    help="auto: bf16 (else fp16) on CUDA, fp32 on CPU.",
)
@click.option(
    "--mining",
    type=click.Choice(MINING_STRATEGIES),
    default=DEFAULT_MINING,
    show_default=True,
    help="How pairs are mined from --papers.",
)
@click.option(
    "--eval-papers",
    type=click.IntRange(min=2),
    help="Held-out papers (pairs, with --pairs) to evaluate on. Default: 500 on CUDA, 150 on CPU.",
)
@click.option(
    "--eval-fraction",
    type=click.FloatRange(0, 1, min_open=True, max_open=True),
    default=0.1,
    show_default=True,
    help="Share of the latest papers held out.",
)
@click.option(
    "--cutoff",
    type=click.DateTime(formats=["%Y-%m-%d"]),
    help="Train on papers announced before this day, evaluate on later ones (instead of "
    "--eval-fraction). The alerts benchmark's cut-off is 2025-12-01.",
)
@click.option(
    "--exclude-authors",
    type=click.Choice(["test", "dev"]),
    help="Form no co-author pair through an author of this half of the alerts benchmark "
    "(crc32 of the name, as benchmarks/alerts.py halves them).",
)
@click.option("--max-pairs", type=click.IntRange(min=2), help="Train on at most this many pairs.")
@click.option(
    "--embedding-dim",
    type=click.IntRange(min=8),
    default=STATIC_DIM,
    show_default=True,
    help="Vector size of a static model.",
)
@click.option(
    "--force", is_flag=True, help="Promote even if the model does not beat the current one."
)
@click.option("--no-promote", is_flag=True, help="Never promote (just write the version).")
@click.option(
    "--publish/--no-publish",
    default=None,
    help="Announce a promoted model on the models topic. Default: when a broker answers.",
)
@click.option(
    "--threads", type=click.IntRange(min=1), help="CPU threads for torch. Default: torch's choice."
)
@click.option(
    "--checkpoint-dir",
    type=click.Path(file_okay=False, path_type=Path),
    help="Save the training state here every --save-steps steps (the last 2 kept); the same "
    "command run again with the same folder resumes from the newest checkpoint (for long CPU "
    "runs that get interrupted). Default: no checkpoints, a temporary work folder.",
)
@click.option(
    "--save-steps",
    type=click.IntRange(min=1),
    default=CHECKPOINT_EVERY,
    show_default=True,
    help="Steps between two checkpoints with --checkpoint-dir (rounded up to a multiple of "
    "the loss-logging interval).",
)
def train(
    architecture: str,
    papers: Path | None,
    pairs: Path | None,
    base: str,
    name: str | None,
    out: Path,
    epochs: float,
    max_steps: int | None,
    batch_size: int,
    lr: float,
    seed: int,
    max_seq_length: int,
    precision: str,
    mining: str,
    eval_papers: int | None,
    eval_fraction: float,
    cutoff: dt.datetime | None,
    exclude_authors: str | None,
    max_pairs: int | None,
    embedding_dim: int,
    force: bool,
    no_promote: bool,
    publish: bool | None,
    threads: int | None,
    checkpoint_dir: Path | None,
    save_steps: int,
) -> None:
    """Fine-tune, evaluate, version and promote a sentence model.

    It mines training pairs from astro-ph papers, evaluates the base and the fine-tuned model
    on later-dated papers, writes a version directory and promotes it only if it beats the
    current model. It prints the new model directory as the last line of standard output.

    A long run given --checkpoint-dir can be stopped at any time: the same command resumes it
    from its newest checkpoint.

    \b
    Example: astrostream train --papers papers.jsonl.gz --max-steps 60 --out /tmp/models
    """
    if (papers is None) == (pairs is None):
        raise click.UsageError("give exactly one of --papers or --pairs")
    if force and no_promote:
        raise click.UsageError("--force and --no-promote contradict each other")
    context = click.get_current_context()
    if checkpoint_dir is None and context.get_parameter_source("save_steps") not in (
        ParameterSource.DEFAULT,
        None,
    ):
        raise click.UsageError("--save-steps needs --checkpoint-dir")
    static = architecture == "static"
    if static and papers is None:
        raise click.UsageError("--architecture static mines its pairs from --papers")
    if static:

        def unset(name: str) -> bool:
            return context.get_parameter_source(name) == ParameterSource.DEFAULT

        epochs = STATIC_EPOCHS if unset("epochs") else epochs
        batch_size = STATIC_BATCH_SIZE if unset("batch_size") else batch_size
        lr = STATIC_LR if unset("lr") else lr
    setup_logging("info")
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    if threads:
        import torch

        torch.set_num_threads(threads)
    options = TrainOptions(
        base=resolve_model(base),
        name=slug(name)
        if name
        else (f"astro-static-{embedding_dim}" if static else default_name(base)),
        out=out,
        papers=papers,
        pairs=pairs,
        config=TrainConfig(
            epochs=epochs,
            max_steps=max_steps,
            batch_size=batch_size,
            lr=lr,
            seed=seed,
            max_seq_length=max_seq_length,
            precision=precision,  # type: ignore[arg-type]
        ),
        mining=mining,
        eval_papers=eval_papers,
        eval_fraction=eval_fraction,
        force=force,
        promote=not no_promote,
        publish=publish,
        architecture=architecture,
        cutoff=cutoff.date() if cutoff else None,
        exclude_half=exclude_authors,  # type: ignore[arg-type]
        max_pairs=max_pairs,
        embedding_dim=embedding_dim,
        checkpoint_dir=checkpoint_dir,
        save_steps=save_steps,
    )
    try:
        # Libraries print progress and logs on stdout; keep it for the result path alone.
        with contextlib.redirect_stdout(sys.stderr):
            result = run_training(options, load_settings())
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None
    click.echo(f"{'promoted' if result.promoted else 'not promoted'}: {result.path.name}", err=True)
    click.echo(str(result.path))
