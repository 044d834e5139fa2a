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
HIT_FIELDS = ["subscription_id", "interest", "threshold"]


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
    # The lexical search: each pair's sparse score (NaN: not among the paper's sparse hits),
    # and per paper the lowest sparse score returned when the search returned its limit
    # (others may score up to it), else 0 (every subscription with a term in common returned).
    sparse_scores: np.ndarray
    sparse_floor: np.ndarray
    thresholds: np.ndarray  # per subscription (column), from its interest points
    searched: bool = False  # whether the lexical search ran

    @property
    def pairs(self) -> int:
        return len(self.pair_rows)

    def hits(self, pair: int) -> slice:
        end = self.starts[pair + 1] if pair + 1 < len(self.starts) else len(self.scores)
        return slice(int(self.starts[pair]), int(end))

    def likely(self, margin: float) -> Reach:
        """Only the pairs whose lexical score can reach the subscription's threshold.

        The sparse score is the lexical score up to the IDF drift (the subscription's sparse
        vector has the IDF of its creation): a pair is kept when its sparse score is at least
        ``margin`` times the threshold, or when it has none and the paper's lexical search
        was cut off above that (it may have been left out). For the default score (lexical
        weight 1), where the dense hits only give evidence.
        """
        if not self.searched or margin <= 0:
            return self
        floor = margin * self.thresholds[self.pair_subs]
        known = ~np.isnan(self.sparse_scores)
        keep = np.where(
            known,
            np.nan_to_num(self.sparse_scores, nan=0.0) >= floor,
            self.sparse_floor[self.pair_rows] >= floor,
        )
        sizes = np.diff(np.r_[self.starts, len(self.scores)])
        hits = np.repeat(keep, sizes)
        kept_sizes = sizes[keep]
        return Reach(
            sub_ids=self.sub_ids,
            pair_rows=self.pair_rows[keep],
            pair_subs=self.pair_subs[keep],
            starts=np.r_[0, np.cumsum(kept_sizes)[:-1]].astype(np.int64)
            if len(kept_sizes)
            else np.zeros(0, np.int64),
            sentences=self.sentences[hits],
            interests=[i for i, h in zip(self.interests, hits.tolist(), strict=True) if h],
            scores=self.scores[hits],
            sparse_scores=self.sparse_scores[keep],
            sparse_floor=self.sparse_floor,
            thresholds=self.thresholds,
            searched=True,
        )

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
    margin: float = 0.0,
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
        margin: a pair reached only lexically whose sparse score is below ``margin`` times
            its threshold is left out before its dense re-score (``Reach.likely`` would
            leave it out); 0: every one is re-scored.
    """
    requests: list[Any] = []
    owners: list[tuple[int, int]] = []  # (paper row, sentence index; -1: the lexical search)
    for row, vectors in enumerate(sentence_vectors):
        for index, vector in enumerate(vectors):
            requests.append(points.dense_query(vector, dense_limit, HIT_FIELDS))
            owners.append((row, index))
    searched = (
        lexical is not None and sparse_limit > 0 and await call(store.has_lexical, "subscriptions")
    )
    if searched:
        assert lexical is not None
        for row, vector in enumerate(lexical):
            indices, values = sparse(vector)
            if indices:
                requests.append(points.lexical_query((indices, values), sparse_limit, HIT_FIELDS))
                owners.append((row, -1))
    column: dict[str, int] = {}
    sub_ids: list[str] = []
    thresholds: list[float] = []
    lexical_score: dict[tuple[int, int], float] = {}
    floor = np.zeros(len(sentence_vectors))
    pair_of: dict[tuple[int, int], int] = {}  # (row, column) → pair, in order of first reach
    hit_pair: list[int] = []
    sentences: list[int] = []
    interests: list[str] = []
    scores: list[float] = []
    for start in range(0, len(requests), QUERIES_PER_REQUEST):
        chunk = requests[start : start + QUERIES_PER_REQUEST]
        answers = await call(points.percolate_hits, store, chunk)
        for (row, index), hits in zip(owners[start:], answers, strict=False):
            if index < 0 and len(hits) >= sparse_limit:
                floor[row] = min(score for score, _ in hits)
            for score, payload in hits:
                sub_id = str(payload.get("subscription_id", ""))
                col = column.get(sub_id)
                if col is None:
                    col = column[sub_id] = len(sub_ids)
                    sub_ids.append(sub_id)
                    thresholds.append(float(payload.get("threshold") or 0.0))
                pair = pair_of.setdefault((row, col), len(pair_of))
                if index < 0:
                    lexical_score[(row, col)] = score
                else:
                    hit_pair.append(pair)
                    sentences.append(index)
                    interests.append(str(payload.get("interest", "")))
                    scores.append(score)
    dense_pairs = set(hit_pair)
    lexical_only = [
        (row, col)
        for (row, col), pair in pair_of.items()
        if pair not in dense_pairs and lexical_score[(row, col)] >= margin * thresholds[col]
    ]
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
    reach = _grouped(sub_ids, pair_of, hit_pair, sentences, interests, scores)
    reach.sparse_floor = floor
    reach.searched = bool(searched)
    reach.thresholds = np.asarray(thresholds, dtype=np.float64)
    reach.sparse_scores = np.array(
        [
            lexical_score.get((r, c), np.nan)
            for r, c in zip(reach.pair_rows.tolist(), reach.pair_subs.tolist(), strict=True)
        ]
    )
    return reach


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
        sparse_scores=np.zeros(0),
        sparse_floor=np.zeros(0),
        thresholds=np.zeros(0),
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
