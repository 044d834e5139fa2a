"""Training data: papers and pairs files, validation, the later-dated split, pair mining."""

from __future__ import annotations

import datetime as dt
import itertools
import logging
import math
import random
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from services.core.errors import BadRecord
from services.core.papers import read_papers_jsonl
from services.core.schemas import Paper
from services.core.text import normalise, sentences_for_embedding
from trainer.errors import TrainingDataError

log = logging.getLogger(__name__)

Pair = tuple[str, str]
Mining = Literal["title-sentence", "adjacent", "mixed", "coauthor"]
MINING_STRATEGIES: tuple[str, ...] = get_args(Mining)
# Measured (trainer/README.md): title-sentence, adjacent and mixed after 30 MiniLM steps gave
# held-out nDCG@10 0.883, 0.895 and 0.896 (base 0.878).
DEFAULT_MINING = "mixed"
PAIR_COLUMNS = ("sentence_0", "sentence_1")
PAIR_FORMATS = {".jsonl": "jsonl", ".json": "jsonl", ".csv": "csv", ".parquet": "parquet"}
# Fragments shorter than this say too little to be a useful positive or query.
MIN_PAIR_WORDS = 3
# Co-author mining: papers of big collaborations say little about one person's interests,
# and a prolific author would otherwise fill the batches (pairs grow as papers squared).
COAUTHOR_MAX_AUTHORS = 25
COAUTHOR_PAIRS_PER_AUTHOR = 10


def _check_file(path: Path, what: str) -> None:
    if not path.exists():
        raise TrainingDataError(f"{what} file {path} does not exist")
    if not path.is_file():
        raise TrainingDataError(f"{what} file {path} is not a regular file")
    if path.stat().st_size == 0:
        raise TrainingDataError(f"{what} file {path} is empty")


def load_papers(path: Path) -> list[Paper]:
    """Papers of a JSONL(.gz) file in the ``Paper`` format, one per arXiv id (highest version).

    Raises:
        TrainingDataError: naming the file (and line) when it is missing, empty or invalid.
    """
    _check_file(path, "papers")
    latest: dict[str, Paper] = {}
    try:
        for paper in read_papers_jsonl(path):
            kept = latest.get(paper.arxiv_id)
            if kept is None or paper.version >= kept.version:
                latest[paper.arxiv_id] = paper
    except BadRecord as exc:
        raise TrainingDataError(
            f"papers file {exc.reason} (expected one Paper JSON object per line)"
        ) from None
    except (OSError, EOFError, UnicodeDecodeError) as exc:
        raise TrainingDataError(f"papers file {path} cannot be read: {exc}") from None
    if not latest:
        raise TrainingDataError(f"papers file {path} holds no papers")
    return list(latest.values())


def _pair_format(path: Path) -> str:
    suffixes = [s.lower() for s in path.suffixes]
    if suffixes and suffixes[-1] == ".gz":
        suffixes.pop()
    fmt = PAIR_FORMATS.get(suffixes[-1]) if suffixes else None
    if fmt is None:
        raise TrainingDataError(
            f"pairs file {path}: unknown format; name it *.jsonl, *.csv or *.parquet (.gz allowed)"
        )
    return fmt


def load_pairs(path: Path) -> list[Pair]:
    """Sentence pairs of a JSONL, CSV or Parquet file with columns ``sentence_0``, ``sentence_1``.

    Both sides get the workers' normalisation (math → ``[MATH_tex=…]``, citations → ``<CIT>``);
    blank rows and exact duplicates are dropped.

    Raises:
        TrainingDataError: naming the file and the missing columns, or why it cannot be read.
    """
    import pandas as pd

    _check_file(path, "pairs")
    fmt = _pair_format(path)
    try:
        if fmt == "jsonl":
            frame = pd.read_json(path, lines=True, dtype=False)
        elif fmt == "csv":
            frame = pd.read_csv(path, dtype=str, keep_default_na=False)
        else:
            frame = pd.read_parquet(path)
    except pd.errors.EmptyDataError:
        raise TrainingDataError(f"pairs file {path} is empty") from None
    except (ValueError, OSError, EOFError, UnicodeDecodeError, ImportError) as exc:
        raise TrainingDataError(f"pairs file {path} cannot be read as {fmt}: {exc}") from None
    missing = [c for c in PAIR_COLUMNS if c not in frame.columns]
    if missing:
        found = ", ".join(map(str, frame.columns)) or "none"
        raise TrainingDataError(
            f"pairs file {path} lacks column(s) {', '.join(missing)} (found: {found}); "
            f"a pairs file needs {PAIR_COLUMNS[0]} and {PAIR_COLUMNS[1]}"
        )
    rows = zip(frame[PAIR_COLUMNS[0]].tolist(), frame[PAIR_COLUMNS[1]].tolist(), strict=True)
    pairs = _dedupe(
        (normalise(str(a)), normalise(str(b)))
        for a, b in rows
        if isinstance(a, str) and isinstance(b, str) and a.strip() and b.strip()
    )
    if not pairs:
        raise TrainingDataError(f"pairs file {path} has no non-empty {'/'.join(PAIR_COLUMNS)} rows")
    if len(pairs) < len(frame):
        log.info(
            "%s: kept %d of %d rows (blank or duplicate rows dropped)", path, len(pairs), len(frame)
        )
    return pairs


def paper_date(paper: Paper) -> dt.date | None:
    """The announcement (else publication) day of a paper."""
    when = paper.announced or paper.published
    if isinstance(when, dt.datetime):
        return when.date()
    return when


@dataclass(frozen=True)
class Split:
    """Papers announced before ``cutoff`` (train) and on or after it (held out)."""

    train: list[Paper]
    heldout: list[Paper]
    cutoff: dt.date


def time_split(papers: Sequence[Paper], eval_fraction: float = 0.1) -> Split:
    """Hold out the latest-announced ``eval_fraction`` of papers, whole days only.

    Every paper of the cutoff day goes to the held-out side, so no day is split across
    train and evaluation. Undated papers can only be trained on.

    Raises:
        TrainingDataError: when the papers do not span enough days to split.
    """
    if not 0 < eval_fraction < 1:
        raise ValueError(f"eval_fraction must be in (0, 1), got {eval_fraction}")
    dated = sorted((d, p.arxiv_id) for p in papers if (d := paper_date(p)) is not None)
    if not dated:
        raise TrainingDataError(
            "no paper has an 'announced' or 'published' date, so there is no later-dated split"
        )
    index = min(len(dated) - 1, int(len(dated) * (1 - eval_fraction)))
    cutoff = dated[index][0]
    train = [p for p in papers if (d := paper_date(p)) is None or d < cutoff]
    heldout = [p for p in papers if (d := paper_date(p)) is not None and d >= cutoff]
    if not train:
        raise TrainingDataError(
            f"every dated paper was announced on or after {cutoff}: give papers from more days"
        )
    return Split(train=train, heldout=heldout, cutoff=cutoff)


def cutoff_split(papers: Sequence[Paper], cutoff: dt.date) -> Split:
    """Papers announced before ``cutoff`` (train) and on or after it (held out).

    Undated papers are left out of both sides: nothing says they are not later papers.

    Raises:
        TrainingDataError: when either side is empty.
    """
    train = [p for p in papers if (d := paper_date(p)) is not None and d < cutoff]
    heldout = [p for p in papers if (d := paper_date(p)) is not None and d >= cutoff]
    if not train:
        raise TrainingDataError(f"no paper was announced before the cutoff {cutoff}")
    if not heldout:
        raise TrainingDataError(
            f"no paper was announced on or after the cutoff {cutoff}: nothing to evaluate on"
        )
    return Split(train=train, heldout=heldout, cutoff=cutoff)


def sample_papers(papers: Sequence[Paper], limit: int, seed: int) -> list[Paper]:
    """At most ``limit`` papers, the same ones for the same input and seed (sorted by id)."""
    ordered = sorted(papers, key=lambda p: p.arxiv_id)
    if len(ordered) <= limit:
        return ordered
    return sorted(random.Random(seed).sample(ordered, limit), key=lambda p: p.arxiv_id)


def paper_sentences(paper: Paper, max_sentences: int = 200) -> list[str]:
    """The normalised sentences of a paper's abstract, exactly as the workers embed them."""
    return [model_text for _, model_text in sentences_for_embedding(paper.abstract, max_sentences)]


def _long_enough(text: str) -> bool:
    return len(text.split()) >= MIN_PAIR_WORDS


def _dedupe(pairs: Iterable[Pair]) -> list[Pair]:
    seen: set[Pair] = set()
    kept: list[Pair] = []
    for a, b in pairs:
        if a != b and (a, b) not in seen:
            seen.add((a, b))
            kept.append((a, b))
    return kept


def mine_pairs(
    papers: Iterable[Paper],
    strategy: str,
    seed: int = 42,
    skip_author: Callable[[str], bool] | None = None,
) -> list[Pair]:
    """Positive pairs for MultipleNegativesRankingLoss, in a seeded random order.

    Strategies:
        ``title-sentence``: (normalised title, each sentence of its abstract);
        ``adjacent``: (sentence i, sentence i+1) inside one abstract;
        ``mixed``: both;
        ``coauthor``: (paper, paper) for two papers sharing an author — what the related-work
        alerts need: papers of one person are related although they share no sentence.

    Raises:
        ValueError: for an unknown strategy.
    """
    if strategy not in MINING_STRATEGIES:
        raise ValueError(f"unknown mining {strategy!r}; choose from {', '.join(MINING_STRATEGIES)}")
    if strategy == "coauthor":
        return coauthor_pairs(papers, seed, skip_author)
    pairs: list[Pair] = []
    for paper in papers:
        sentences = [s for s in paper_sentences(paper) if _long_enough(s)]
        if strategy in ("title-sentence", "mixed"):
            title = normalise(paper.title)
            pairs += [(title, s) for s in sentences]
        if strategy in ("adjacent", "mixed"):
            pairs += list(itertools.pairwise(sentences))
    kept = _dedupe(pairs)
    random.Random(seed).shuffle(kept)
    return kept


def paper_text(paper: Paper) -> str:
    """Title and abstract as the workers normalise them (the model truncates it)."""
    return " ".join([normalise(paper.title), *paper_sentences(paper)])


def coauthor_pairs(
    papers: Iterable[Paper],
    seed: int = 42,
    skip_author: Callable[[str], bool] | None = None,
) -> list[Pair]:
    """Pairs of papers that share an author, at most ``COAUTHOR_PAIRS_PER_AUTHOR`` per author.

    Papers with more than ``COAUTHOR_MAX_AUTHORS`` authors are left out; each pair appears
    once, in a random orientation. No pair is formed through an author (name as written)
    for whom ``skip_author`` is true.
    """
    rng = random.Random(seed)
    texts: dict[str, str] = {}
    by_author: dict[str, list[str]] = {}
    for paper in papers:
        if 0 < len(paper.authors) <= COAUTHOR_MAX_AUTHORS and paper.arxiv_id not in texts:
            texts[paper.arxiv_id] = paper_text(paper)
            for author in paper.authors:
                if skip_author is not None and skip_author(author):
                    continue
                by_author.setdefault(author.strip().lower(), []).append(paper.arxiv_id)
    chosen: set[tuple[str, str]] = set()
    for author in sorted(by_author):
        combos = list(itertools.combinations(sorted(set(by_author[author])), 2))
        rng.shuffle(combos)
        chosen.update(combos[:COAUTHOR_PAIRS_PER_AUTHOR])
    pairs = [
        (texts[a], texts[b]) if rng.random() < 0.5 else (texts[b], texts[a])
        for a, b in sorted(chosen)
    ]
    kept = _dedupe(pairs)
    rng.shuffle(kept)
    return kept


def holdout_pairs(
    pairs: Sequence[Pair], fraction: float, limit: int, seed: int
) -> tuple[list[Pair], list[Pair]]:
    """Split a pairs file (which has no dates) into train and a seeded random held-out set.

    Returns:
        ``(train, heldout)``; the held-out side has ``min(limit, fraction·n)`` pairs (≥ 1
        when there are at least two pairs).
    """
    order = list(range(len(pairs)))
    random.Random(seed).shuffle(order)
    n_eval = min(limit, max(1, math.floor(len(pairs) * fraction))) if len(pairs) > 1 else 0
    held = set(order[:n_eval])
    train = [p for i, p in enumerate(pairs) if i not in held]
    heldout = [pairs[i] for i in sorted(held)]
    return train, heldout
