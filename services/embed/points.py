"""The one builder of title/sentence points, shared by the embed stage and the rollout (pure)."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from services.core.ids import paper_point_id
from services.core.lexical import sparse, sublinear_tf, term_counts
from services.store.vectorstore import Sparse


def paper_vector(title_vector: np.ndarray, sentence_vectors: np.ndarray) -> np.ndarray:
    """Normalised mean of the title and sentence vectors: the paper-level vector."""
    if not len(sentence_vectors):
        return title_vector
    mean = np.vstack([title_vector[None, :], sentence_vectors]).mean(axis=0)
    norm = float(np.linalg.norm(mean))
    return mean / norm if norm > 0 else mean


@dataclass(frozen=True)
class PaperSource:
    """What one paper's points are made of, before encoding.

    Args:
        arxiv_id: the paper.
        payload: the paper point's payload (``model_version`` is set by the builder).
        sentences: ``(point id, payload)`` of each sentence point, in sentence order.
    """

    arxiv_id: str
    payload: dict[str, Any]
    sentences: list[tuple[str, dict[str, Any]]]


@dataclass
class Points:
    """The sentence and paper points of a batch, ready for two upserts."""

    sentence_ids: list[str] = field(default_factory=list)
    sentence_payloads: list[dict[str, Any]] = field(default_factory=list)
    sentence_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    paper_ids: list[str] = field(default_factory=list)
    paper_payloads: list[dict[str, Any]] = field(default_factory=list)
    paper_vectors: np.ndarray = field(default_factory=lambda: np.zeros((0, 0)))
    paper_lexical: list[Sparse] = field(default_factory=list)  # sparse term weights per paper
    spans: list[slice] = field(default_factory=list)  # sentence rows of each paper

    def sentences_of(self, index: int) -> np.ndarray:
        """The sentence vectors of the ``index``-th paper."""
        return self.sentence_vectors[self.spans[index]]


def build_points(papers: Sequence[PaperSource], vectors: np.ndarray, model_version: str) -> Points:
    """Points of ``papers`` from ``vectors``: per paper its title's row, then one per sentence.

    That is the order of :func:`texts_of`'s texts, so ``encoder.aencode(texts)`` is the
    ``vectors`` this takes. Paper vectors are :func:`paper_vector` of title and sentences.
    """
    points = Points()
    rows: list[int] = []
    paper_vecs: list[np.ndarray] = []
    row = 0
    for source in papers:
        title_row, row = row, row + 1
        first = len(rows)
        for point_id, payload in source.sentences:
            points.sentence_ids.append(point_id)
            points.sentence_payloads.append({**payload, "model_version": model_version})
            rows.append(row)
            row += 1
        points.spans.append(slice(first, len(rows)))
        paper_vecs.append(paper_vector(vectors[title_row], vectors[rows[first:]]))
        points.paper_ids.append(paper_point_id(source.arxiv_id))
        points.paper_payloads.append({**source.payload, "model_version": model_version})
        points.paper_lexical.append(paper_lexical(source))
    if row != len(vectors):
        raise ValueError(f"{len(vectors)} vectors for {row} texts")
    points.sentence_vectors = vectors[rows]
    points.paper_vectors = np.vstack(paper_vecs) if paper_vecs else vectors[:0]
    return points


def paper_lexical(source: PaperSource) -> Sparse:
    """The paper's sparse vector: unit sublinear tf of the terms of title + sentences.

    The same text and terms as the alerts' TF-IDF score of the paper; the collection's IDF
    modifier supplies the IDF at query time.
    """
    text = " ".join(
        [
            str(source.payload.get("title", "")),
            *(str(p.get("text", "")) for _, p in source.sentences),
        ]
    )
    return sparse(sublinear_tf(term_counts(text)))


def texts_of(titles: Sequence[str], sentences: Sequence[Sequence[str]]) -> list[str]:
    """The texts to encode, in the row order :func:`build_points` expects."""
    texts: list[str] = []
    for title, texts_of_paper in zip(titles, sentences, strict=True):
        texts.append(title)
        texts.extend(texts_of_paper)
    return texts
