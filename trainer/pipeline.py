"""One training run end to end: data, evaluation, fine-tuning, versioning, promotion."""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import logging
import platform
import tempfile
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from services.core.clock import utcnow
from services.core.schemas import ModelUpdate
from services.core.settings import Settings
from trainer.data import (
    DEFAULT_MINING,
    Pair,
    Split,
    cutoff_split,
    holdout_pairs,
    load_pairs,
    load_papers,
    mine_pairs,
    sample_papers,
    time_split,
)
from trainer.errors import BaseModelError, TrainingDataError
from trainer.evaluate import (
    METRICS,
    PRIMARY_METRIC,
    EvalSet,
    evaluate,
    fingerprint,
    pair_eval_set,
    paper_eval_set,
)
from trainer.publish import publish_update
from trainer.registry import (
    ModelEntry,
    Registry,
    decide_promotion,
    insert_card_section,
    model_card_section,
    new_version,
    staging_dir,
)
from trainer.static import STATIC_DIM, Half, build_static_model, half_filter, static_pairs
from trainer.train import (
    CHECKPOINT_EVERY,
    Checkpoints,
    TrainConfig,
    fine_tune,
    load_model,
    plot_loss,
)

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

LOSS_CURVE = "loss-curve.png"
METRICS_FILE = "metrics.json"
TRAIN_ARGS_FILE = "train_args.json"
EVAL_PAPERS_GPU = 500
EVAL_PAPERS_CPU = 150
STATIC_NOT_PROMOTED = (
    "a static model is a paper-level channel for alerts, not the workers' sentence model: "
    "never made current without --force"
)


@dataclass(frozen=True)
class TrainOptions:
    """Everything ``astrostream train`` was asked to do."""

    base: str
    name: str
    out: Path
    papers: Path | None = None
    pairs: Path | None = None
    config: TrainConfig = field(default_factory=TrainConfig)
    mining: str = DEFAULT_MINING
    eval_papers: int | None = None
    eval_fraction: float = 0.1
    force: bool = False
    promote: bool = True
    publish: bool | None = None
    architecture: str = "transformer"
    cutoff: dt.date | None = None
    exclude_half: Half | None = None
    max_pairs: int | None = None
    embedding_dim: int = STATIC_DIM
    checkpoint_dir: Path | None = None
    save_steps: int = CHECKPOINT_EVERY

    @property
    def static(self) -> bool:
        return self.architecture == "static"

    def checkpoints(self) -> Checkpoints | None:
        """Where the run saves and resumes its training state (``--checkpoint-dir``), if anywhere.

        The identity names what else makes it the same run: the same base model (or the same
        static architecture and size); the options and the pairs are checked by ``fine_tune``.
        """
        if self.checkpoint_dir is None:
            return None
        identity: dict[str, Any] = {"architecture": self.architecture}
        if self.static:
            identity["embedding_dim"] = self.embedding_dim
        else:
            identity["base"] = self.base
        return Checkpoints(self.checkpoint_dir, self.save_steps, identity)


@dataclass
class RunResult:
    path: Path
    version: str
    promoted: bool
    published: bool
    metrics: dict[str, Any]


@dataclass
class PreparedData:
    pairs: list[Pair]
    eval_set: EvalSet
    eval_info: dict[str, Any]
    description: list[str]


def default_eval_papers() -> int:
    """500 held-out papers on a GPU; 150 on CPU, where MiniLM embeds only ~15 sentences/s."""
    import torch

    return EVAL_PAPERS_GPU if torch.cuda.is_available() else EVAL_PAPERS_CPU


def prepare_data(opts: TrainOptions) -> PreparedData:
    """Training pairs and the held-out evaluation set from ``--papers`` or ``--pairs``.

    Raises:
        TrainingDataError: for unusable inputs, naming the file.
    """
    eval_size = opts.eval_papers or default_eval_papers()
    if opts.papers is not None:
        data = _from_papers(opts.papers, opts, eval_size)
    else:
        assert opts.pairs is not None
        data = _from_pairs(opts.pairs, opts, eval_size)
    if data.eval_set.n_docs < 2:
        raise TrainingDataError(
            f"only {data.eval_set.n_docs} held-out item(s) to evaluate on; give more data or "
            "raise --eval-papers / --eval-fraction"
        )
    log.info("%d training pairs; evaluation: %s", len(data.pairs), data.eval_info["description"])
    return data


def _from_papers(path: Path, opts: TrainOptions, eval_papers: int) -> PreparedData:
    seed = opts.config.seed
    papers = load_papers(path)
    split: Split = (
        cutoff_split(papers, opts.cutoff)
        if opts.cutoff is not None
        else time_split(papers, opts.eval_fraction)
    )
    eval_set = paper_eval_set(sample_papers(split.heldout, eval_papers, seed), seed)
    if opts.static:
        pairs = static_pairs(
            split.train, seed=seed, exclude_half=opts.exclude_half, max_pairs=opts.max_pairs
        )
        mining = "co-author + title↔abstract"
    else:
        pairs = mine_pairs(split.train, opts.mining, seed, half_filter(opts.exclude_half))
        pairs = pairs[: opts.max_pairs] if opts.max_pairs is not None else pairs
        mining = opts.mining
    excluded = (
        f"; no co-author pair through an author of the alerts benchmark's {opts.exclude_half} half"
        if opts.exclude_half
        else ""
    )
    description = (
        f"{eval_set.n_docs} of the {len(split.heldout)} papers announced on or after "
        f"{split.cutoff} ({len(eval_set.corpus)} sentences); queries are titles (`title/`) and "
        "one sentence per paper (`sentence/`), a paper ranks by its best sentence"
    )
    info = {
        "source": str(path),
        "kind": "papers announced on or after the cutoff (later-dated split)",
        "cutoff": split.cutoff.isoformat(),
        "cutoff_given": opts.cutoff is not None,
        "heldout_papers": len(split.heldout),
        "eval_papers": eval_set.n_docs,
        "corpus_sentences": len(eval_set.corpus),
        "tasks": {t.name: len(t.texts) for t in eval_set.tasks},
        "description": description,
    }
    card_lines = [
        f"Base model: `{opts.base}`.",
        f"Source: `{path.name}`, {len(papers)} papers; trained on the {len(split.train)} "
        f"announced before {split.cutoff}.",
        f"Pairs: {len(pairs)} mined with `{mining}`{excluded} (text normalised like the "
        "workers: math → `[MATH_tex=…]`, citations → `<CIT>`); batches without duplicates.",
    ]
    return PreparedData(pairs, eval_set, info, card_lines)


def _from_pairs(path: Path, opts: TrainOptions, eval_pairs: int) -> PreparedData:
    all_pairs = load_pairs(path)
    pairs, held = holdout_pairs(all_pairs, opts.eval_fraction, eval_pairs, opts.config.seed)
    eval_set = pair_eval_set(held)
    info = {
        "source": str(path),
        "kind": "random held-out pairs (a pairs file has no dates)",
        "eval_pairs": len(held),
        "tasks": {t.name: len(t.texts) for t in eval_set.tasks},
        "description": f"{len(held)} random held-out pairs; `sentence_0` finds its `sentence_1`",
    }
    card_lines = [
        f"Base model: `{opts.base}`.",
        f"Source: `{path.name}`, {len(all_pairs)} distinct pairs; {len(pairs)} trained on.",
        "Text normalised like the workers; batches without duplicates.",
    ]
    return PreparedData(pairs, eval_set, info, card_lines)


class EvalCache:
    """Metrics of unchanged models on an unchanged evaluation set, in ``<out>/.eval-cache.json``.

    Evaluating on CPU takes minutes; the base and the current model are the same from one run
    to the next, so their metrics are looked up by (model files, eval set digest).
    """

    def __init__(self, out: Path, eval_set: EvalSet, max_seq_length: int) -> None:
        self.file = out / ".eval-cache.json"
        self.suffix = f"{fingerprint(eval_set)}:{max_seq_length}"
        self.eval_set = eval_set

    @staticmethod
    def model_key(model_ref: str) -> str:
        path = Path(model_ref).expanduser()
        if not path.is_dir():
            return model_ref  # a hub id (its files only change with a new revision)
        files = sorted(p for p in path.rglob("*") if p.is_file())
        stats = [f"{p.relative_to(path)}:{p.stat().st_size}:{p.stat().st_mtime_ns}" for p in files]
        return f"{path.resolve()}#{hashlib.sha256(chr(10).join(stats).encode()).hexdigest()[:16]}"

    def _load(self) -> dict[str, dict[str, float]]:
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return {}
        return data if isinstance(data, dict) else {}

    def get(self, model_ref: str) -> dict[str, float] | None:
        return self._load().get(f"{self.model_key(model_ref)}|{self.suffix}")

    def put(self, model_ref: str, metrics: dict[str, float]) -> None:
        data = self._load()
        data[f"{self.model_key(model_ref)}|{self.suffix}"] = metrics
        self.file.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.file.with_suffix(".tmp")
        tmp.write_text(json.dumps(data, indent=1) + "\n", encoding="utf-8")
        tmp.replace(self.file)

    def evaluate(self, model: SentenceTransformer, model_ref: str, label: str) -> dict[str, float]:
        cached = self.get(model_ref)
        if cached is not None:
            log.info("%s: metrics of this model on this split from %s", label, self.file)
            return cached
        metrics = evaluate(model, self.eval_set, label=label)
        self.put(model_ref, metrics)
        return metrics


def _reference(
    opts: TrainOptions, registry: Registry, cache: EvalCache, base_metrics: dict[str, float]
) -> tuple[str, dict[str, float]]:
    """The model to beat, evaluated on this run's split: the current one, else the base."""
    current = registry.current()
    if current is None:
        return "base", base_metrics
    path = Path(current.path)
    if not path.is_dir():
        log.warning("current model %s is missing: comparing with the base model", path)
        return "base", base_metrics
    label = f"current ({current.dirname})"
    if Path(opts.base).expanduser().resolve() == path.resolve():
        return label, base_metrics
    cached = cache.get(str(path))
    if cached is not None:
        return label, cached
    try:
        model = load_model(str(path), opts.config.max_seq_length)
    except BaseModelError as exc:
        log.warning("%s: comparing with the base model instead", exc)
        return "base", base_metrics
    return label, cache.evaluate(model, str(path), label)


def _train_args(opts: TrainOptions, version: str, n_pairs: int) -> dict[str, Any]:
    return {
        "name": opts.name,
        "version": version,
        "base": "random init (StaticEmbedding, bundled MiniLM tokenizer)"
        if opts.static
        else opts.base,
        "papers": str(opts.papers) if opts.papers else None,
        "pairs": str(opts.pairs) if opts.pairs else None,
        "architecture": opts.architecture,
        "mining": ("coauthor+title-abstract" if opts.static else opts.mining)
        if opts.papers
        else None,
        "cutoff": opts.cutoff.isoformat() if opts.cutoff else None,
        "exclude_author_half": opts.exclude_half,
        "max_pairs": opts.max_pairs,
        "checkpoint_dir": str(opts.checkpoint_dir) if opts.checkpoint_dir else None,
        "embedding_dim": opts.embedding_dim if opts.static else None,
        "eval_papers": opts.eval_papers or default_eval_papers(),
        "eval_fraction": opts.eval_fraction,
        "loss": "MultipleNegativesRankingLoss",
        "batch_sampler": "no_duplicates",
        "scheduler": "linear",
        "warmup_steps": 0,
        **asdict(opts.config),
        "training_pairs": n_pairs,
        "versions": _versions(),
    }


def _versions() -> dict[str, str]:
    import sentence_transformers
    import torch
    import transformers

    return {
        "python": platform.python_version(),
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "sentence_transformers": sentence_transformers.__version__,
    }


def run_training(opts: TrainOptions, settings: Settings) -> RunResult:
    """Train, evaluate, write ``<out>/<name>-<version>/``, promote and announce.

    Raises:
        TrainerError: for bad inputs or an unloadable base model (before any training).
    """
    data = prepare_data(opts)
    cache = EvalCache(opts.out, data.eval_set, opts.config.max_seq_length)
    if opts.static:
        model = build_static_model(opts.embedding_dim, opts.config.seed)
        # The random init is the "base": cheap to evaluate (no cache needed).
        base_metrics = evaluate(model, data.eval_set, label="random init")
    else:
        model = load_model(opts.base, opts.config.max_seq_length, model_name=opts.name)
        base_metrics = cache.evaluate(model, opts.base, "base")
    registry = Registry(opts.out)
    registry.entries()  # fail now, not after training, when registry.json is broken
    with tempfile.TemporaryDirectory(prefix="astro-train-") as work:
        result = fine_tune(model, data.pairs, opts.config, Path(work), opts.checkpoints())
    version = new_version(opts.out, opts.name)
    dirname = f"{opts.name}-{version}"
    tuned = evaluate(model, data.eval_set, label="fine-tuned")
    if opts.static:
        # Not a sentence model for the workers: versioned and recorded, made current only on
        # --force (which also announces it on the models topic like any promoted model).
        reference, reference_metrics = "base (random init)", base_metrics
    else:
        reference, reference_metrics = _reference(opts, registry, cache, base_metrics)
    promotion = decide_promotion(
        tuned[PRIMARY_METRIC],
        reference_metrics.get(PRIMARY_METRIC),
        reference,
        metric=PRIMARY_METRIC,
        force=opts.force,
        enabled=opts.promote,
    )
    if opts.static and opts.promote and not opts.force:
        promotion = replace(promotion, promoted=False, reason=STATIC_NOT_PROMOTED)
    log.info("%s %s: %s", dirname, "promoted" if promotion.promoted else "kept", promotion.reason)
    metrics: dict[str, Any] = {
        "primary_metric": PRIMARY_METRIC,
        "eval": data.eval_info,
        "base": base_metrics,
        "fine_tuned": tuned,
        "reference": {"model": reference, "metrics": reference_metrics},
        "promotion": asdict(promotion),
        "train": result.summary(),
    }
    train_args = _train_args(opts, version, len(data.pairs))
    results = {"random init" if opts.static else "base": base_metrics, "fine-tuned": tuned}
    if not reference.startswith("base"):
        results[reference] = reference_metrics
    with staging_dir(opts.out, dirname) as stage:
        model.save(str(stage))
        (stage / METRICS_FILE).write_text(json.dumps(metrics, indent=2) + "\n", encoding="utf-8")
        (stage / TRAIN_ARGS_FILE).write_text(
            json.dumps(train_args, indent=2) + "\n", encoding="utf-8"
        )
        plot_loss(result.loss_history, stage / LOSS_CURVE, f"{dirname} ({result.steps} steps)")
        card = model_card_section(
            opts.name,
            version,
            results,
            list(METRICS),
            data.eval_info["description"],
            [
                *data.description,
                f"Training: {result.steps} steps in {result.runtime_s:.0f} s "
                f"on {result.device} ({result.precision}), mean loss {result.train_loss:.4f}"
                + (
                    f"; resumed from a checkpoint at step {result.resumed_from} (the time "
                    "counts every session)."
                    if result.resumed_from
                    else "."
                ),
            ],
            promotion,
        )
        insert_card_section(stage / "README.md", card)
    final = (opts.out / dirname).resolve()
    cache.put(str(final), tuned)  # the next run compares against this model without re-encoding
    entry = ModelEntry(
        name=opts.name,
        version=version,
        path=str(final),
        created_at=utcnow().isoformat(timespec="seconds"),
        metrics=tuned,
    )
    registry.record(entry, promotion.promoted)
    published = False
    if promotion.promoted:
        update = ModelUpdate(name=opts.name, version=version, path=str(final), metrics=tuned)
        published = publish_update(settings, update, opts.publish)
    return RunResult(final, version, promotion.promoted, published, metrics)
