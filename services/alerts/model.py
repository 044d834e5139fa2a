"""A ranking model per subscription, without I/O: a linear classifier on TF-IDF vectors
mixed with the centroid cosine, and a calibrated ``relevance`` in [0, 1].

Positives are the subscription's interests (seed papers, queries) and the papers its reader
marked ``relevant``; negatives are a sample of recently indexed papers (and the papers marked
``not_relevant``), each of sample weight 1. The centroid channel's centre is Rocchio's
update of the interests' centroid: plus the relevant papers, minus the not-relevant papers' centroid
(:func:`rocchio`). The classifier is a linear SVM (arxiv-sanity-lite's exemplar SVM, C 0.1,
balanced classes) fit on the matcher's own TF-IDF vectors (``services.alerts.matcher.tfidf``,
IDF from ``CorpusStats``); it takes ~20 ms for a few hundred papers when the fits of a batch
share one :class:`Sample` matrix.

The score of a paper is a mix of two standardised numbers, ``MIX`` of the classifier's
margin and the rest of the TF-IDF cosine to the centroid of the positives; each is
standardised by its mean and spread over a *reference* sample of recent papers the classifier
was not fit on. ``relevance`` is the share of that reference sample the paper beats (a
percentile, see ``services.alerts.calibration``). ``docs/alerts.md`` has the measurements
behind ``MIX``, ``C`` and the sample sizes (chosen on the benchmark's dev split).

With a dense channel (``fit(..., dense_positives=, dense_reference=)``: unit vectors of the
shipped static model, ``services.alerts.dense``) the score is ``(1 - w)`` times that score, standardised over the reference sample, plus
``w = DENSE_WEIGHT`` times the dense cosine to the unit mean of the positives' vectors (the
interests and the papers marked relevant, each counting 1; papers marked not relevant are not
used), standardised over the same reference sample; ``relevance`` is calibrated on the mixed
reference scores. Without dense vectors the score is exactly the lexical one.

A fitted model is a plain dict (:meth:`SubscriptionModel.payload`) so it can be stored and
loaded again; :func:`fingerprint` says when the inputs changed and it must be refit.
"""

from __future__ import annotations

import bisect
import hashlib
import json
import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
from scipy import sparse

from services.alerts import packed
from services.alerts.matcher import centroid, cosine

C = 0.1  # arxiv-sanity-lite's regularisation
MIX = 0.85  # share of the classifier's standardised margin (the rest: the centroid cosine)
MAX_TERMS = 5000  # weights kept per model, largest first (the rest add ~nothing)
# Feedback (docs/alerts.md, "Feedback curve"; chosen on the dev split): the SVM sample weight of a paper
# marked relevant (a seed weighs 1) and of one marked not relevant (a sample negative
# weighs 1), and the Rocchio weights of the labels in the centroid channel.
RELEVANT_WEIGHT = 1.0
NOT_RELEVANT_WEIGHT = 1.0
ROCCHIO_BETA = 1.0  # each relevant paper's share in the centroid, a seed counting 1
ROCCHIO_GAMMA = 1.0  # the not-relevant papers' centroid, subtracted (scaled to the positives)
# The static dense channel's share of the score (docs/alerts.md, "The static dense channel":
# +0.015 nDCG@20 on the test half at 0.4, chosen on dev); 0 turns it off.
DENSE_WEIGHT = 0.4
FORMAT = 3  # bump when the stored payload changes shape (3: packed arrays, see _pack)

Vector = Mapping[str, float]


def fingerprint(
    interests: Sequence[Sequence[tuple[str, int]]],
    labels: Mapping[str, str],
    *,
    mix: float = MIX,
    dense: str = "",
) -> str:
    """A short digest of what a model is fit from (interests' terms, feedback, settings).

    The IDF is not part of it: a model records the corpus size it was fit at, and the caller
    refits when the corpus has grown past its tolerance. ``dense``: the dense model's version
    and weight (empty without a dense channel).
    """
    data = json.dumps(
        [
            FORMAT,
            C,
            mix,
            [sorted(map(list, t)) for t in interests],
            sorted(labels.items()),
            *(
                [RELEVANT_WEIGHT, NOT_RELEVANT_WEIGHT, ROCCHIO_BETA, ROCCHIO_GAMMA]
                if labels
                else []
            ),
            *([dense] if dense else []),
        ],
        separators=(",", ":"),
    )
    return hashlib.sha256(data.encode()).hexdigest()[:24]


@dataclass
class SubscriptionModel:
    """A fitted model: score papers with :meth:`score`, calibrate with :meth:`relevance`."""

    weights: dict[str, float]
    bias: float
    centre: dict[str, float]
    mix: float
    margin_stats: tuple[float, float]  # mean, spread over the reference sample
    cosine_stats: tuple[float, float]
    reference: list[float] = field(default_factory=list)  # sorted scores of the reference
    fingerprint: str = ""
    corpus_docs: int = 0  # documents in the IDF when fitted
    positives: int = 0
    negatives: int = 0
    dense_centre: np.ndarray | None = None  # unit mean of the positives' dense vectors
    dense_weight: float = 0.0
    dense_stats: tuple[float, float] = (0.0, 1.0)  # dense cosine over the reference sample
    lexical_stats: tuple[float, float] = (0.0, 1.0)  # the lexical score over the reference

    def margin(self, vector: Vector) -> float:
        return self.bias + sum(w * self.weights.get(t, 0.0) for t, w in vector.items())

    def parts(self, vector: Vector) -> tuple[float, float]:
        """(standardised margin, standardised centroid cosine)."""
        (mm, ms), (cm, cs) = self.margin_stats, self.cosine_stats
        return (self.margin(vector) - mm) / ms, (cosine(vector, self.centre) - cm) / cs

    def score(self, vector: Vector, dense: np.ndarray | None = None) -> float:
        margin, cos = self.parts(vector)
        lexical = self.mix * margin + (1.0 - self.mix) * cos
        if dense is None or self.dense_centre is None or not self.dense_weight:
            return lexical
        w, (lm, ls), (dm, ds) = self.dense_weight, self.lexical_stats, self.dense_stats
        return (1.0 - w) * (lexical - lm) / ls + w * (float(dense @ self.dense_centre) - dm) / ds

    def relevance(self, score: float) -> float | None:
        """The share of the reference sample that ``score`` beats (ties count half).

        Strictly increasing in ``score``: past the ends of the sample it keeps moving toward
        0 or 1 (an exponential tail one reference spread wide), so sorting by relevance is
        sorting by score.
        """
        ref = self.reference
        if not ref:
            return None
        n = len(ref)
        if score > ref[-1]:
            return 1.0 - 0.5 / n * math.exp(-(score - ref[-1]))
        if score < ref[0]:
            return 0.5 / n * math.exp(score - ref[0])
        below = bisect.bisect_left(ref, score)
        level = bisect.bisect_right(ref, score) - below
        if level:
            return (below + 0.5 * level) / n
        # between two reference scores: interpolate between their shares
        lo, hi = ref[below - 1], ref[below]
        share = (below - 0.5) / n
        return share + (score - lo) / (hi - lo) / n if hi > lo else share

    def payload(self) -> dict[str, Any]:
        """JSON-safe and compact: the term weights, centre, reference scores and dense centre
        packed into strings (:func:`_pack`), so storing and reading a model back converts a
        few strings instead of thousands of ``[term, weight]`` pairs (~15 ms a model in the
        embedded engine, the largest cost of matching at 10,000 subscriptions)."""
        return {
            "format": FORMAT,
            "weights": packed.pack(self.weights),
            "bias": self.bias,
            "centre": packed.pack(self.centre),
            "mix": self.mix,
            "margin_stats": list(self.margin_stats),
            "cosine_stats": list(self.cosine_stats),
            "reference": packed.floats(np.asarray(self.reference, dtype=np.float64)),
            "fingerprint": self.fingerprint,
            "corpus_docs": self.corpus_docs,
            "positives": self.positives,
            "negatives": self.negatives,
            "dense_centre": (
                None
                if self.dense_centre is None
                else packed.floats(self.dense_centre.astype(np.float32))
            ),
            "dense_weight": self.dense_weight,
            "dense_stats": list(self.dense_stats),
            "lexical_stats": list(self.lexical_stats),
        }

    @classmethod
    def from_payload(cls, payload: Mapping[str, Any]) -> SubscriptionModel | None:
        """A stored model, or None for one of another format (it is then refit)."""
        if payload.get("format") != FORMAT:
            return None
        ms, cs = payload["margin_stats"], payload["cosine_stats"]
        centre, ds = payload.get("dense_centre"), payload.get("dense_stats") or (0.0, 1.0)
        ls = payload.get("lexical_stats") or (0.0, 1.0)
        return cls(
            weights=packed.unpack(payload["weights"]),
            bias=float(payload["bias"]),
            centre=packed.unpack(payload["centre"]),
            mix=float(payload["mix"]),
            margin_stats=(float(ms[0]), float(ms[1])),
            cosine_stats=(float(cs[0]), float(cs[1])),
            reference=packed.unfloats(payload["reference"], np.float64).tolist(),
            fingerprint=str(payload["fingerprint"]),
            corpus_docs=int(payload["corpus_docs"]),
            positives=int(payload.get("positives", 0)),
            negatives=int(payload.get("negatives", 0)),
            dense_centre=None if centre is None else packed.unfloats(centre, np.float32),
            dense_weight=float(payload.get("dense_weight", 0.0)),
            dense_stats=(float(ds[0]), float(ds[1])),
            lexical_stats=(float(ls[0]), float(ls[1])),
        )


def _matrix(
    vectors: Sequence[Vector], vocab: dict[str, int], *, canonical: bool = True
) -> sparse.csr_matrix:
    """One CSR row per vector; new terms get the next columns in order of first occurrence.

    ``canonical=False`` leaves each row's entries in its vector's order (for :class:`Sample`).
    """
    terms = [t for vector in vectors for t in vector]
    for t in dict.fromkeys(terms):
        if t not in vocab:
            vocab[t] = len(vocab)
    vals = np.fromiter((w for vector in vectors for w in vector.values()), float, len(terms))
    cols = np.fromiter(map(vocab.__getitem__, terms), np.int64, len(terms))
    indptr = np.r_[0, np.cumsum([len(vector) for vector in vectors], dtype=np.int64)]
    x = sparse.csr_matrix((vals, cols, indptr), shape=(len(vectors), max(1, len(vocab))))
    if canonical:
        x.sort_indices()  # canonical, as the COO-built matrix was
    return x


class Sample:
    """Vectors many fits share (the recent papers: negatives and reference), as one CSR matrix
    built once. :func:`fit` with ``sample=`` takes the rows of these very vector objects from
    it instead of building them again: the same matrix (same columns in the same order, same
    values), so exactly the same model, at a fraction of the cost (building the matrix is
    most of a fit; ``benchmarks/alerts.py --fit-cost``).
    """

    def __init__(self, vectors: Iterable[Vector]) -> None:
        self.vectors = list(vectors)  # held, so the ids below stay theirs
        self.rows = {id(v): r for r, v in enumerate(self.vectors)}
        self.vocab: dict[str, int] = {}
        self.x = _matrix(self.vectors, self.vocab, canonical=False)
        self.terms = np.array(list(self.vocab), dtype=object)

    def matrix(self, vectors: Sequence[Vector]) -> tuple[sparse.csr_matrix, np.ndarray]:
        """What ``_matrix(vectors, {})`` builds, and its columns' terms."""
        known = len(self.vocab)
        extra: dict[str, int] = {}  # terms of vectors from outside, not in the sample
        cols: list[np.ndarray] = []
        vals: list[np.ndarray] = []
        lengths: list[np.ndarray] = []
        run: list[int] = []

        def flush() -> None:
            if run:
                part = self.x[np.asarray(run)]  # row order kept, entries in vector order
                cols.append(part.indices.astype(np.int64, copy=False))
                vals.append(part.data)
                lengths.append(np.diff(part.indptr))
                run.clear()

        for vector in vectors:
            row = self.rows.get(id(vector))
            if row is not None:
                run.append(row)
                continue
            flush()
            ids = [
                self.vocab[t] if t in self.vocab else extra.setdefault(t, known + len(extra))
                for t in vector
            ]
            cols.append(np.asarray(ids, dtype=np.int64))
            vals.append(np.fromiter(vector.values(), float, len(vector)))
            lengths.append(np.asarray([len(vector)]))
        flush()
        every = np.concatenate(cols) if cols else np.zeros(0, np.int64)
        # Columns in order of first occurrence, as _matrix numbers them.
        seen, first = np.unique(every, return_index=True)
        order = seen[np.argsort(first)]
        column = np.empty(known + len(extra), dtype=np.int64)
        column[order] = np.arange(len(order))
        indptr = np.r_[0, np.cumsum(np.concatenate(lengths), dtype=np.int64)]
        x = sparse.csr_matrix(
            (np.concatenate(vals), column[every], indptr),
            shape=(len(vectors), max(1, len(order))),
        )
        x.sort_indices()
        names = np.concatenate([self.terms, np.array(list(extra), dtype=object)])
        return x, names[order]


def _stats(values: np.ndarray) -> tuple[float, float]:
    spread = float(values.std()) if values.size > 1 else 0.0
    return float(values.mean()) if values.size else 0.0, spread if spread > 1e-9 else 1.0


def rocchio(
    positives: Sequence[Vector],
    relevant: Sequence[Vector] = (),
    not_relevant: Sequence[Vector] = (),
    *,
    beta: float | None = None,
    gamma: float | None = None,
) -> dict[str, float]:
    """The centroid channel's centre: Rocchio's update of the interests' centroid.

    Unit length of ``sum(positives) + beta * sum(relevant) - gamma * n * mean(not_relevant)``
    with ``n`` the weight of the positive side (seeds count 1, relevant papers ``beta``);
    without labels exactly :func:`~services.alerts.matcher.centroid` of the positives.
    """
    beta = ROCCHIO_BETA if beta is None else beta
    gamma = ROCCHIO_GAMMA if gamma is None else gamma
    if not relevant and (not not_relevant or gamma == 0):
        return centroid(list(positives))
    total: dict[str, float] = {}
    for weight, group in ((1.0, positives), (beta, relevant)):
        for vector in group:
            for t, w in vector.items():
                total[t] = total.get(t, 0.0) + weight * w
    if not_relevant and gamma:
        scale = gamma * (len(positives) + beta * len(relevant)) / len(not_relevant)
        for vector in not_relevant:
            for t, w in vector.items():
                total[t] = total.get(t, 0.0) - scale * w
    norm = math.sqrt(sum(w * w for w in total.values()))
    return {t: w / norm for t, w in total.items() if w} if norm > 0 else {}


def fit(
    positives: Sequence[Vector],
    negatives: Sequence[Vector],
    reference: Sequence[Vector],
    *,
    relevant: Sequence[Vector] = (),
    not_relevant: Sequence[Vector] = (),
    centre_from: Sequence[Vector] | None = None,
    mix: float = MIX,
    c: float = C,
    key: str = "",
    corpus_docs: int = 0,
    dense_positives: Sequence[np.ndarray] = (),
    dense_reference: Sequence[np.ndarray] = (),
    dense_weight: float = DENSE_WEIGHT,
    sample: Sample | None = None,
) -> SubscriptionModel:
    """Fit one subscription's model.

    Args:
        positives: unit TF-IDF vectors of the interests (seed papers, queries).
        negatives: vectors of sample papers.
        reference: vectors of recent papers *not* in ``negatives``: the standardisation and
            calibration sample (the classifier is too sure of its own training papers).
        relevant: vectors of the papers the reader marked relevant: positives of sample
            weight ``RELEVANT_WEIGHT``, and ``ROCCHIO_BETA`` each in the centroid.
        not_relevant: vectors of the papers marked not relevant: negatives of sample weight
            ``NOT_RELEVANT_WEIGHT``; their centroid, times ``ROCCHIO_GAMMA``, is subtracted
            from the centroid channel's.
        centre_from: the vectors whose centroid is the cosine channel (default: positives
            and labels as above).
        mix: share of the standardised margin in the score (0: centroid only).
        c: the SVM's regularisation.
        key: the :func:`fingerprint` to record.
        corpus_docs: documents in the IDF the vectors were made with.
        dense_positives: unit dense vectors of the interests and the papers marked relevant
            (each counts 1); their unit mean is the dense channel's centre.
        dense_reference: the dense vectors of ``reference``, row for row.
        dense_weight: the dense channel's share of the score; it is used only with
            ``dense_positives`` and ``dense_reference`` (else the score is the lexical one).
        sample: the prebuilt matrix of vectors shared by many fits (the same model, faster);
            any vector not in it is added as without it.

    Raises:
        ValueError: without a positive, or with ``dense_reference`` not row for row.
    """
    if not positives:
        raise ValueError("a model needs at least one positive")
    if centre_from is not None:
        centre = centroid(list(centre_from))
    else:
        centre = rocchio(positives, relevant, not_relevant)
    pos = [*positives, *relevant]
    neg = [*negatives, *not_relevant]
    # One matrix for all rows (and the centre), so the reference is scored in two products.
    rows = [*pos, *neg, *reference, centre]
    terms: Sequence[str] | np.ndarray
    if sample is not None:
        x, terms = sample.matrix(rows)
    else:
        vocab: dict[str, int] = {}
        x = _matrix(rows, vocab)
        terms = list(vocab)
    n_fit = len(pos) + len(neg)
    weights: dict[str, float] = {}
    coef = np.zeros(x.shape[1])
    bias = 0.0
    if negatives and mix > 0:
        from sklearn.svm import LinearSVC

        y = np.r_[np.ones(len(pos)), np.zeros(len(neg))]
        sample_weight = None
        if relevant or not_relevant:
            sample_weight = np.r_[
                np.ones(len(positives)),
                np.full(len(relevant), RELEVANT_WEIGHT),
                np.ones(len(negatives)),
                np.full(len(not_relevant), NOT_RELEVANT_WEIGHT),
            ]
        # liblinear visits the samples in a random order: a fixed seed makes a fit a function
        # of its inputs (the same model after a restart, in any process, in any order).
        clf = LinearSVC(
            C=c, class_weight="balanced", tol=1e-4, max_iter=2000, dual=True, random_state=0
        )
        clf.fit(x[:n_fit], y, sample_weight=sample_weight)
        full = clf.coef_.ravel()
        order = np.argsort(-np.abs(full))[:MAX_TERMS]
        order = order[full[order] != 0.0]
        coef[order] = full[order]  # the kept weights: the reference is scored as stored
        weights = dict(zip([terms[i] for i in order.tolist()], full[order].tolist(), strict=True))
        bias = float(clf.intercept_[0])
    else:
        mix = 0.0  # nothing to contrast with: the centroid alone
    model = SubscriptionModel(
        weights=weights,
        bias=bias,
        centre=centre,
        mix=mix,
        margin_stats=(0.0, 1.0),
        cosine_stats=(0.0, 1.0),
        fingerprint=key,
        corpus_docs=corpus_docs,
        positives=len(pos),
        negatives=len(neg),
    )
    if reference:
        ref = x[n_fit : n_fit + len(reference)]
        margins = ref @ coef + bias
        cosines = ref @ np.asarray(x[x.shape[0] - 1].todense()).ravel()
        model.margin_stats, model.cosine_stats = _stats(margins), _stats(cosines)
        (mm, ms), (cm, cs) = model.margin_stats, model.cosine_stats
        scores = mix * (margins - mm) / ms + (1.0 - mix) * (cosines - cm) / cs
        if dense_weight > 0 and len(dense_positives) and len(dense_reference):
            if len(dense_reference) != len(reference):
                raise ValueError("dense_reference must hold one vector per reference paper")
            centre_d = np.mean(np.asarray(dense_positives, dtype=np.float32), axis=0)
            norm = float(np.linalg.norm(centre_d))
            if norm > 0:
                model.dense_centre = centre_d / norm
                model.dense_weight = dense_weight
                dense_cos = np.asarray(dense_reference, dtype=np.float32) @ model.dense_centre
                model.dense_stats = _stats(dense_cos.astype(np.float64))
                model.lexical_stats = _stats(scores)
                (lm, ls), (dm, ds) = model.lexical_stats, model.dense_stats
                scores = (1.0 - dense_weight) * (scores - lm) / ls + dense_weight * (
                    dense_cos - dm
                ) / ds
        model.reference = sorted(float(v) for v in scores)
    return model
