"""Percolation: which subscriptions a micro-batch of new papers reaches, as flat arrays.

Two reaches, in batched requests whose cost grows with the papers, not with the number of
subscriptions: every sentence vector searched into the interest vectors (dense,
``dense_limit`` hits each), and each paper's TF-IDF vector searched into the subscriptions'
sparse vectors (lexical, ``sparse_limit``). A subscription reached only lexically gets its
dense hits from a re-score of the paper's sentences against its first interest vector (read
by id), so the scorer sees the same kind of input for every pair.

The hits come back as :class:`Reach`: one array entry per hit (paper row, subscription,
sentence, interest, cosine), grouped per (paper, subscription) pair in the order the pairs
were first reached: no Python object per hit beyond what the store returns.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

import numpy as np

from services.alerts.matcher import Entry
from services.core.ids import interest_point_id
from services.core.lexical import sparse
from services.store import points
from services.store.vectorstore import VectorStore, dense_of

T = TypeVar("T")
Call = Callable[..., Awaitable[Any]]

QUERIES_PER_REQUEST = 256  # searches per batched request
HIT_FIELDS = ["subscription_id", "interest"]


@dataclass
class Reach:
    """The hits of a micro-batch, grouped per (paper, subscription) pair.

    Pair ``k`` is paper ``pair_rows[k]`` and subscription ``sub_ids[pair_subs[k]]``; its hits
    are ``starts[k]`` up to ``starts[k + 1]`` (or the end) of the hit arrays.
    """

    sub_ids: list[str]
    pair_rows: np.ndarray
    pair_subs: np.ndarray
    starts: np.ndarray
    sentences: np.ndarray  # per hit: the paper's sentence index
    interests: list[str]  # per hit: the interest (query text or seed arXiv id)
    scores: np.ndarray  # per hit: the cosine

    @property
    def pairs(self) -> int:
        return len(self.pair_rows)

    def hits(self, pair: int) -> slice:
        end = self.starts[pair + 1] if pair + 1 < len(self.starts) else len(self.scores)
        return slice(int(self.starts[pair]), int(end))

    def entries(self, pair: int) -> list[Entry]:
        """The hits of one pair as :class:`~services.alerts.matcher.Entry` objects."""
        span = self.hits(pair)
        return [
            Entry(int(s), i, float(c))
            for s, i, c in zip(
                self.sentences[span].tolist(),
                self.interests[span],
                self.scores[span].tolist(),
                strict=True,
            )
        ]

    def per_paper(self, papers: int) -> list[dict[str, list[Entry]]]:
        """Per paper: subscription id → its hits (the matcher's former shape)."""
        found: list[dict[str, list[Entry]]] = [{} for _ in range(papers)]
        for k in range(self.pairs):
            found[int(self.pair_rows[k])][self.sub_ids[int(self.pair_subs[k])]] = self.entries(k)
        return found


async def percolate(
    call: Call,
    store: VectorStore,
    sentence_vectors: Sequence[np.ndarray],
    lexical: Sequence[Mapping[str, float]] | None,
    dense_limit: int,
    sparse_limit: int,
) -> Reach:
    """Percolate a micro-batch: its papers' sentence vectors and TF-IDF vectors.

    Args:
        call: runs a blocking store function (``call(fn, *args)``: the matcher's retrying
            ``store.run``).
        store: the live model's collections.
        sentence_vectors: per paper, its sentences' vectors (rows).
        lexical: per paper, its unit TF-IDF vector (None or ``sparse_limit`` 0: dense only).
        dense_limit: interest vectors returned per sentence.
        sparse_limit: subscriptions returned per paper by the lexical search.
    """
    requests: list[Any] = []
    owners: list[tuple[int, int]] = []  # (paper row, sentence index; -1: the lexical search)
    for row, vectors in enumerate(sentence_vectors):
        for index, vector in enumerate(vectors):
            requests.append(points.dense_query(vector, dense_limit, HIT_FIELDS))
            owners.append((row, index))
    if lexical is not None and sparse_limit > 0 and await call(store.has_lexical, "subscriptions"):
        for row, vector in enumerate(lexical):
            indices, values = sparse(vector)
            if indices:
                requests.append(points.lexical_query((indices, values), sparse_limit, HIT_FIELDS))
                owners.append((row, -1))
    column: dict[str, int] = {}
    sub_ids: list[str] = []
    pair_of: dict[tuple[int, int], int] = {}  # (row, column) → pair, in order of first reach
    hit_pair: list[int] = []
    sentences: list[int] = []
    interests: list[str] = []
    scores: list[float] = []
    for start in range(0, len(requests), QUERIES_PER_REQUEST):
        chunk = requests[start : start + QUERIES_PER_REQUEST]
        answers = await call(points.percolate_hits, store, chunk)
        for (row, index), hits in zip(owners[start:], answers, strict=False):
            for score, payload in hits:
                sub_id = str(payload.get("subscription_id", ""))
                col = column.get(sub_id)
                if col is None:
                    col = column[sub_id] = len(sub_ids)
                    sub_ids.append(sub_id)
                pair = pair_of.setdefault((row, col), len(pair_of))
                if index >= 0:
                    hit_pair.append(pair)
                    sentences.append(index)
                    interests.append(str(payload.get("interest", "")))
                    scores.append(score)
    dense_pairs = set(hit_pair)
    lexical_only = [key for key, pair in pair_of.items() if pair not in dense_pairs]
    if lexical_only:
        firsts = await _first_interests(call, store, sorted({sub_ids[c] for _, c in lexical_only}))
        for row, col in lexical_only:
            first = firsts.get(sub_ids[col])
            if first is None:
                continue  # deleted meanwhile: no interest vectors left
            interest, vector = first
            sims = np.asarray(sentence_vectors[row], dtype=np.float32) @ vector
            pair = pair_of[(row, col)]
            hit_pair.extend([pair] * len(sims))
            sentences.extend(range(len(sims)))
            interests.extend([interest] * len(sims))
            scores.extend(float(s) for s in sims)
    return _grouped(sub_ids, pair_of, hit_pair, sentences, interests, scores)


def _grouped(
    sub_ids: list[str],
    pair_of: dict[tuple[int, int], int],
    hit_pair: list[int],
    sentences: list[int],
    interests: list[str],
    scores: list[float],
) -> Reach:
    """Hits sorted by pair (stable: each pair's hits keep their order); pairs without a hit
    (a subscription deleted meanwhile) dropped."""
    table = np.asarray(list(pair_of), dtype=np.int64).reshape(-1, 2)
    # pairs ordered by paper, then by first reach (the order the matcher scores them in)
    order = np.lexsort((np.arange(len(table)), table[:, 0]))
    rank = np.empty(len(table), dtype=np.int64)
    rank[order] = np.arange(len(table))
    keys = rank[np.asarray(hit_pair, dtype=np.int64)]
    by_pair = np.argsort(keys, kind="stable")
    present, starts = np.unique(keys[by_pair], return_index=True)
    table = table[order][present]
    return Reach(
        sub_ids=sub_ids,
        pair_rows=table[:, 0],
        pair_subs=table[:, 1],
        starts=starts.astype(np.int64),
        sentences=np.asarray(sentences, dtype=np.int64)[by_pair],
        interests=[interests[i] for i in by_pair.tolist()],
        scores=np.asarray(scores, dtype=np.float64)[by_pair],
    )


async def _first_interests(
    call: Call, store: VectorStore, sub_ids: list[str]
) -> dict[str, tuple[str, np.ndarray]]:
    """Each subscription's first interest vector (its first query or seed sentence)."""
    records = await call(
        lambda: points.interests_by_id(
            store, [interest_point_id(s, 0) for s in sub_ids], HIT_FIELDS
        )
    )
    first: dict[str, tuple[str, np.ndarray]] = {}
    for record in records:
        payload = record.payload or {}
        dense = dense_of(record)
        if dense is not None:
            first[str(payload.get("subscription_id", ""))] = (
                str(payload.get("interest", "")),
                np.asarray(dense, dtype=np.float32),
            )
    return first
