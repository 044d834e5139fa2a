"""Alert scoring in vectorised form: many (paper, subscription) pairs at once, no I/O.

The same numbers as ``services.alerts.matcher`` computes one pair at a time (``tfidf``,
``centroid``, ``cosine``, ``aggregate``, ``fuse``), as numpy and scipy.sparse operations over
all the pairs of a micro-batch, so the cost of scoring is a few array operations per batch
instead of Python objects per (paper, subscription, sentence):

* :class:`Lexicon` numbers terms (columns) and builds the TF-IDF rows of papers and the
  TF-IDF centroids of subscriptions as sparse matrices; the lexical score of every pair is
  then one sparse product (:func:`pair_cosines`).
* :func:`lse_groups` is the dense aggregation (``aggregate(..., "lse")``) of many pairs'
  percolation hits at once, the hits given as flat arrays grouped by pair.

Equal to the per-pair functions up to the order of floating-point sums (checked by
``tests/unit/test_scoring.py`` on real-shaped inputs).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import numpy as np
from scipy import sparse

from services.alerts.matcher import LSE_TAU, CorpusStats, aggregate


class Lexicon:
    """Term → column numbering shared by the sparse matrices built with it.

    Matrices built at different times have the width of the vocabulary of their time;
    :meth:`widen` brings one to the current width before a product.
    """

    def __init__(self) -> None:
        self.columns: dict[str, int] = {}
        self.terms: list[str] = []

    @property
    def width(self) -> int:
        return max(1, len(self.terms))

    def widen(self, matrix: sparse.csr_matrix) -> sparse.csr_matrix:
        """``matrix`` with as many columns as the vocabulary has now."""
        if matrix.shape[1] == self.width:
            return matrix
        return sparse.csr_matrix(
            (matrix.data, matrix.indices, matrix.indptr), shape=(matrix.shape[0], self.width)
        )

    def counts(self, counts: Sequence[Mapping[str, int]]) -> sparse.csr_matrix:
        """Sublinear term frequencies (``1 + log n``, terms with ``n > 0``), one row each."""
        columns, terms = self.columns, self.terms
        cols: list[int] = []
        vals: list[int] = []
        lengths = np.zeros(len(counts), dtype=np.int64)
        for row, found in enumerate(counts):
            before = len(cols)
            for term, n in found.items():
                if n > 0:
                    col = columns.get(term)
                    if col is None:
                        col = columns[term] = len(terms)
                        terms.append(term)
                    cols.append(col)
                    vals.append(n)
            lengths[row] = len(cols) - before
        data = 1.0 + np.log(np.asarray(vals, dtype=np.float64))
        indptr = np.r_[0, np.cumsum(lengths)]
        return sparse.csr_matrix(
            (data, np.asarray(cols, dtype=np.int64), indptr), shape=(len(counts), self.width)
        )

    def idf(self, cols: np.ndarray, corpus: CorpusStats) -> np.ndarray:
        """``corpus.idf`` of the terms of these columns."""
        terms, df = self.terms, corpus.df
        found = np.fromiter((df.get(terms[c], 0) for c in cols.tolist()), np.float64, len(cols))
        return np.log((1 + corpus.docs) / (1 + found)) + 1.0

    def tfidf(self, tf: sparse.csr_matrix, corpus: CorpusStats) -> sparse.csr_matrix:
        """Unit TF-IDF rows (``matcher.tfidf`` of each row's counts) from :meth:`counts` rows."""
        return _unit_rows(self._weighted(tf, corpus))

    def centroids(
        self, tf: sparse.csr_matrix, owner: np.ndarray, groups: int, corpus: CorpusStats
    ) -> sparse.csr_matrix:
        """Row ``g``: ``matcher.centroid`` of the TF-IDF vectors of the rows ``owner == g``."""
        unit = _unit_rows(self._weighted(tf, corpus))
        gather = sparse.csr_matrix(
            (np.ones(len(owner)), (np.asarray(owner, dtype=np.int64), np.arange(len(owner)))),
            shape=(groups, len(owner)),
        )
        return _unit_rows(gather @ unit)

    def _weighted(self, tf: sparse.csr_matrix, corpus: CorpusStats) -> sparse.csr_matrix:
        out = self.widen(tf).copy()
        if out.nnz:
            cols, inverse = np.unique(out.indices, return_inverse=True)
            out.data = out.data * self.idf(cols, corpus)[inverse]
        return out


def _unit_rows(matrix: sparse.csr_matrix) -> sparse.csr_matrix:
    matrix = sparse.csr_matrix(matrix)
    norms = np.sqrt(np.asarray(matrix.multiply(matrix).sum(axis=1)).ravel())
    scale = np.divide(1.0, norms, out=np.zeros_like(norms), where=norms > 0)
    out = sparse.diags(scale) @ matrix
    out.eliminate_zeros()
    return sparse.csr_matrix(out)


def pair_cosines(
    papers: sparse.csr_matrix, centres: sparse.csr_matrix, rows: np.ndarray, cols: np.ndarray
) -> np.ndarray:
    """The cosine of paper ``rows[k]`` and centre ``cols[k]`` for every ``k`` (unit rows)."""
    if not len(rows):
        return np.zeros(0)
    width = max(papers.shape[1], centres.shape[1])
    papers = sparse.csr_matrix(
        (papers.data, papers.indices, papers.indptr), (papers.shape[0], width)
    )
    centres = sparse.csr_matrix(
        (centres.data, centres.indices, centres.indptr), (centres.shape[0], width)
    )
    product = (papers @ centres.T).tocsr()
    return np.asarray(product[np.asarray(rows), np.asarray(cols)]).ravel()


def lse_groups(
    scores: np.ndarray, starts: np.ndarray, totals: np.ndarray, tau: float = LSE_TAU
) -> np.ndarray:
    """``aggregate(group, "lse", total=t)`` of every group of hits at once.

    Args:
        scores: every hit's cosine, the hits of one group contiguous.
        starts: the index in ``scores`` where each group starts (groups are not empty).
        totals: the size of each group's full sentence-interest matrix.
        tau: the temperature.
    """
    scores = np.asarray(scores, dtype=np.float64)
    starts = np.asarray(starts, dtype=np.int64)
    top = np.maximum.reduceat(scores, starts)
    sizes = np.diff(np.r_[starts, len(scores)])
    spread = np.repeat(top, sizes)
    sums = np.add.reduceat(np.exp((scores - spread) / tau), starts)
    n = np.maximum(np.asarray(totals, dtype=np.float64), sizes)
    return top + tau * np.log(sums / n)


def aggregate_groups(
    scores: np.ndarray, starts: np.ndarray, totals: np.ndarray, method: str
) -> np.ndarray:
    """``matcher.aggregate(group, method, total=t)`` of every group of hits at once."""
    if method == "lse":
        return lse_groups(scores, starts, totals)
    if method == "max":
        return np.maximum.reduceat(np.asarray(scores, dtype=np.float64), starts)
    ends = np.r_[starts[1:], len(scores)]
    return np.array([aggregate(scores[a:b], method) for a, b in zip(starts, ends, strict=True)])
