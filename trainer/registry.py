"""Model versions on disk: `<out>/<name>-<version>/`, registry.json, `current`; promotion."""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import logging
import os
import re
import shutil
from collections.abc import Iterator, Mapping
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

from services.core.clock import utcnow
from trainer.errors import TrainerError

log = logging.getLogger(__name__)

VERSION_FORMAT = "%Y%m%d%H%M%S"
REGISTRY_FILE = "registry.json"
CURRENT_LINK = "current"
CARD_ANCHOR = "## Training Details"


def slug(text: str) -> str:
    """A lower-case name safe for directories and collection names (``[a-z0-9_.-]``)."""
    cleaned = re.sub(r"[^a-z0-9_.-]+", "-", text.lower()).strip("-._")
    return cleaned[:60] or "model"


def new_version(out: Path, name: str, now: dt.datetime | None = None) -> str:
    """UTC timestamp ``YYYYMMDDHHMMSS``, with ``-2``, ``-3``… when that directory exists."""
    stamp = (now or utcnow()).strftime(VERSION_FORMAT)
    version, n = stamp, 1
    while (out / f"{name}-{version}").exists() or (out / f".{name}-{version}.partial").exists():
        n += 1
        version = f"{stamp}-{n}"
    return version


@contextlib.contextmanager
def staging_dir(out: Path, dirname: str) -> Iterator[Path]:
    """A hidden directory to write a version into, renamed to ``out/dirname`` on success.

    A failed run leaves no half-written version behind.
    """
    out.mkdir(parents=True, exist_ok=True)
    staging = out / f".{dirname}.partial"
    shutil.rmtree(staging, ignore_errors=True)
    staging.mkdir()
    try:
        yield staging
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    staging.rename(out / dirname)


@dataclass(frozen=True)
class Promotion:
    """Whether a new version becomes current, and why."""

    promoted: bool
    reason: str
    reference: str
    reference_score: float | None
    score: float


def decide_promotion(
    score: float,
    reference_score: float | None,
    reference: str,
    *,
    metric: str,
    force: bool = False,
    enabled: bool = True,
) -> Promotion:
    """Promote only a model that beats the reference (the current model, else the base).

    Args:
        score: the new model's primary metric.
        reference_score: the reference's primary metric on the same evaluation, if known.
        reference: what the reference is (for the reason and the metrics file).
        metric: the primary metric's name.
        force: promote whatever the scores.
        enabled: False for ``--no-promote``: never promote.
    """

    def result(promoted: bool, reason: str) -> Promotion:
        return Promotion(promoted, reason, reference, reference_score, score)

    ref_text = "n/a" if reference_score is None else f"{reference_score:.4f}"
    versus = f"{metric} {score:.4f} vs {ref_text} for {reference}"
    if not enabled:
        return result(False, f"--no-promote ({versus})")
    if force:
        return result(True, f"--force ({versus})")
    if reference_score is None:
        return result(True, f"nothing to compare against ({versus})")
    if score > reference_score:
        return result(True, f"beats {reference}: {versus}")
    return result(False, f"does not beat {reference}: {versus}")


@dataclass
class ModelEntry:
    """One version in ``registry.json``."""

    name: str
    version: str
    path: str
    created_at: str
    metrics: dict[str, float] = field(default_factory=dict)
    promoted: bool = False

    @property
    def dirname(self) -> str:
        return f"{self.name}-{self.version}"


class Registry:
    """``<out>/registry.json`` (every version, which is current) and the ``<out>/current`` link.

    The JSON file is the source of truth; the symlink is a convenience for
    ``SentenceTransformer("models/current")`` and for workers started with ``ASTRO_MODEL``.
    """

    def __init__(self, out: Path) -> None:
        self.out = out
        self.file = out / REGISTRY_FILE
        self.link = out / CURRENT_LINK

    def _load(self) -> dict[str, Any]:
        if not self.file.exists():
            return {"current": None, "models": []}
        try:
            data = json.loads(self.file.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise TrainerError(
                f"{self.file} is unreadable ({exc}); fix or remove it to start a new registry"
            ) from None
        if not isinstance(data, dict) or not isinstance(data.get("models", []), list):
            raise TrainerError(f"{self.file} is not a registry file; fix or remove it")
        data.setdefault("models", [])
        data.setdefault("current", None)
        return data

    def entries(self) -> list[ModelEntry]:
        return [ModelEntry(**entry) for entry in self._load()["models"]]

    def current(self) -> ModelEntry | None:
        """The current version, or None when nothing was promoted yet."""
        data = self._load()
        for entry in data["models"]:
            if f"{entry['name']}-{entry['version']}" == data["current"]:
                return ModelEntry(**entry)
        return None

    def record(self, entry: ModelEntry, promote: bool) -> None:
        """Add a version; when ``promote``, make it current (file first, then the symlink)."""
        data = self._load()
        entry.promoted = promote
        data["models"].append(asdict(entry))
        if promote:
            data["current"] = entry.dirname
        tmp = self.file.with_suffix(".json.tmp")
        tmp.write_text(json.dumps(data, indent=2) + "\n", encoding="utf-8")
        os.replace(tmp, self.file)
        if promote:
            self._point_current(entry.dirname)

    def _point_current(self, dirname: str) -> None:
        if self.link.exists() and not self.link.is_symlink():
            log.warning(
                "%s exists and is not a symlink: left alone (registry.json is updated)", self.link
            )
            return
        tmp = self.out / f".{CURRENT_LINK}.tmp"
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()
        os.symlink(dirname, tmp)  # relative: the models folder can move
        os.replace(tmp, self.link)


def model_card_section(
    name: str,
    version: str,
    results: Mapping[str, Mapping[str, float]],
    metrics: list[str],
    eval_description: str,
    data_description: list[str],
    promotion: Promotion,
) -> str:
    """Markdown for the model card: our held-out metrics per model, the data, the promotion."""
    header = "| model | " + " | ".join(metrics) + " |"
    rule = "|---|" + "---:|" * len(metrics)
    rows = [
        f"| {label} | " + " | ".join(f"{values.get(m, float('nan')):.4f}" for m in metrics) + " |"
        for label, values in results.items()
    ]
    lines = [
        f"## Evaluation (astrostream `{name}-{version}`)",
        "",
        f"Held-out split: {eval_description}.",
        "",
        header,
        rule,
        *rows,
        "",
        f"Promotion: {'promoted' if promotion.promoted else 'not promoted'} — {promotion.reason}.",
        "",
        "## Training data (astrostream)",
        "",
        *[f"- {line}" for line in data_description],
        "",
    ]
    return "\n".join(lines)


def insert_card_section(readme: Path, section: str) -> None:
    """Insert ``section`` before the card's training details (or append it)."""
    text = readme.read_text(encoding="utf-8") if readme.exists() else ""
    if CARD_ANCHOR in text:
        text = text.replace(CARD_ANCHOR, section + "\n" + CARD_ANCHOR, 1)
    else:
        text = text.rstrip("\n") + "\n\n" + section
    readme.write_text(text, encoding="utf-8")
