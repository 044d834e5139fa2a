"""Does a dense channel earn a weight next to the lexical alert score? Offline, on real authorship.

The subscriptions, candidates and the lexical score are those of ``benchmarks/alerts.py
--offline`` (authors halved by a hash of their name; seeds before the cut-off, their later
papers relevant). A dense model embeds each paper whole (normalised title + abstract, one
vector); a subscription scores a candidate by cosine to the centroid of its seed vectors.
The mix standardises each score over a subscription's candidates (z-score) and adds them:
``w · z(dense) + (1 - w) · z(lexical)``. Choose ``w`` on ``--split dev``; run the chosen one
once on ``--split test``; every method is compared with lexical alone (paired bootstrap 95 %
CI over subscriptions).

    # a static model: astrostream train --architecture static --cutoff 2025-12-01 ...
    nice -n 10 .venv/bin/python benchmarks/static_dense.py --model models/astro-static-256-… \\
        --split dev --weights 0.1,0.2,0.3,0.4,0.5
    # the bundled MiniLM, whole-paper vectors and (--sentences) the sentence channel
    nice -n 10 .venv/bin/python benchmarks/static_dense.py --model bundled --sentences --split dev

``--against default`` puts the default per-subscription model (``services.alerts.model``,
exactly as ``benchmarks/alerts.py --offline`` fits and scores it: same subscriptions,
negatives, reference and IDF) in place of the lexical centroid; the dense score is mixed in
standardised over the candidates and, as a worker could, over the model's reference sample;
``--svm-scales`` also appends each paper's dense vector, times a scale, to the SVM's TF-IDF
features (the centroid channel stays lexical):

    nice -n 10 .venv/bin/python benchmarks/static_dense.py --against default \
        --model models/astro-static-256-… --split dev --subscriptions 400 --candidates 1200 \
        --max-seeds 10 --weights 0.1,0.2,0.3,0.4 --svm-scales 0.1,0.3,0.5,1
"""

from __future__ import annotations

import argparse
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks import alerts  # noqa: E402
from services.alerts import model as submodel  # noqa: E402
from services.core.text import normalise  # noqa: E402


def standardise(scores: np.ndarray) -> np.ndarray:
    """Each row (a subscription's scores over the candidates) to mean 0, standard deviation 1."""
    mean = scores.mean(axis=1, keepdims=True)
    std = scores.std(axis=1, keepdims=True)
    return (scores - mean) / np.where(std > 0, std, 1.0)


def mix(dense: np.ndarray, lexical: np.ndarray, weight: float) -> np.ndarray:
    """``weight`` of the standardised dense score, the rest standardised lexical."""
    return weight * standardise(dense) + (1.0 - weight) * standardise(lexical)


def rankings(ev: alerts.Evaluation, scores: np.ndarray) -> list[list[str]]:
    """Candidates by descending score, ties by arXiv id (as ``alerts.rank_by``)."""
    ids = np.array(ev.candidates)
    return [[ev.candidates[i] for i in np.lexsort((ids, -row))] for row in scores]


def lexical_matrix(ev: alerts.Evaluation) -> np.ndarray:
    """The matcher's lexical score (prior + stream IDF, cosine to the seeds' centroid)."""
    score = alerts.lexical_scorer(ev, alerts.default_prior())
    return np.array([[score(s, c) for c in ev.candidates] for s in ev.subscriptions])


def paper_ids(ev: alerts.Evaluation) -> list[str]:
    return sorted({x for s in ev.subscriptions for x in s.seeds} | set(ev.candidates))


def whole_paper_text(paper: dict[str, Any]) -> str:
    return normalise(alerts.text_of(paper))


def centroid_matrix(ev: alerts.Evaluation, vectors: dict[str, np.ndarray]) -> np.ndarray:
    """Cosine of each candidate to the (normalised) centroid of each subscription's seeds."""
    cand = np.vstack([vectors[c] for c in ev.candidates])
    centres = np.vstack([np.mean([vectors[x] for x in s.seeds], axis=0) for s in ev.subscriptions])
    centres /= np.maximum(np.linalg.norm(centres, axis=1, keepdims=True), 1e-12)
    return centres @ cand.T


def whole_paper_matrix(
    ev: alerts.Evaluation, encoder: Any, cache: Path | None = None
) -> tuple[np.ndarray, float, int]:
    """Centroid scores of whole-paper vectors, the seconds spent encoding and how many papers
    were encoded (vectors already in ``cache``, an ``.npz`` by arXiv id, are reused)."""
    vectors, elapsed, n = paper_vectors(paper_ids(ev), ev.papers, encoder, cache)
    return centroid_matrix(ev, vectors), elapsed, n


def sentence_matrix(ev: alerts.Evaluation, encoder: Any) -> tuple[np.ndarray, float]:
    """The workers' sentence channel: each candidate sentence against every seed sentence,
    aggregated like the matcher (``lse``) — the ``dense lse`` row of ``alerts.ablation``."""
    from services.alerts import matcher
    from services.core.text import sentences_for_embedding

    ids = paper_ids(ev)
    texts = {i: [m for _, m in sentences_for_embedding(ev.papers[i]["abstract"])] for i in ids}
    flat = [t for i in ids for t in texts[i]]
    started = time.perf_counter()
    encoded = encoder.encode(flat)
    elapsed = time.perf_counter() - started
    sentences: dict[str, np.ndarray] = {}
    row = 0
    for i in ids:
        sentences[i] = encoded[row : row + len(texts[i])]
        row += len(texts[i])
    out = np.zeros((len(ev.subscriptions), len(ev.candidates)))
    for r, s in enumerate(ev.subscriptions):
        block = np.vstack([sentences[x] for x in s.seeds])
        for c, cand in enumerate(ev.candidates):
            sims = sentences[cand] @ block.T
            out[r, c] = matcher.aggregate(sims, "lse") if sims.size else 0.0
    return out, elapsed


# against the default per-subscription model ---------------------------------------------
def paper_vectors(
    ids: Sequence[str], papers: dict[str, dict[str, Any]], encoder: Any, cache: Path | None
) -> tuple[dict[str, np.ndarray], float, int]:
    """Whole-paper vectors of ``ids`` (reusing and extending ``cache``), the seconds spent
    encoding and how many papers were encoded."""
    vectors: dict[str, np.ndarray] = {}
    if cache is not None and cache.exists():
        with np.load(cache) as stored:
            vectors = dict(zip(stored["ids"].tolist(), stored["vectors"], strict=True))
    todo = [i for i in ids if i not in vectors]
    started = time.perf_counter()
    if todo:
        encoded = encoder.encode([whole_paper_text(papers[i]) for i in todo])
        vectors.update(zip(todo, encoded, strict=True))
    elapsed = time.perf_counter() - started
    if cache is not None and todo:
        keys = sorted(vectors)
        np.savez(cache, ids=np.array(keys), vectors=np.vstack([vectors[k] for k in keys]))
    return vectors, elapsed, len(todo)


class Default:
    """The default model exactly as ``benchmarks/alerts.py --offline`` computes it (same
    subscriptions, reservoir of negatives and reference, IDF = prior + every paper involved),
    with each subscription's scores over the candidates and over its reference sample."""

    def __init__(self, ev: alerts.Evaluation, cutoff: str, reservoir: int, seed: int) -> None:
        self.ev = ev
        self.negatives, self.reference = alerts.reservoir(ev, cutoff, reservoir, seed)
        self.lex = alerts.Lexical(ev, alerts.default_prior(), self.negatives + self.reference)
        self.cand = self.lex.matrix(ev.candidates)

    def scores(self) -> tuple[np.ndarray, np.ndarray]:
        """(scores of each subscription and candidate, each subscription's (mean, spread) of its
        score over the reference sample)."""
        rows, stats = [], []
        for s in self.ev.subscriptions:
            score, fitted = alerts.fit_and_score(
                self.lex,
                self.cand,
                s.seeds,
                self.negatives,
                self.reference,
                mix=submodel.MIX,
                c=submodel.C,
            )
            rows.append(score)
            stats.append(_spread(np.array(fitted.reference)))
        return np.vstack(rows), np.array(stats)

    def augmented(self, vectors: dict[str, np.ndarray], scale: float) -> np.ndarray:
        """The default model with each paper's dense vector, times ``scale``, appended to its
        TF-IDF features in the SVM (the centroid channel stays lexical)."""
        lex, ev = self.lex, self.ev

        def features(i: str) -> dict[str, float]:
            out = dict(lex.vectors[i])
            out.update({f"~dense{k}": scale * float(x) for k, x in enumerate(vectors[i])})
            return out

        dim = len(next(iter(vectors.values())))
        cand_dense = np.vstack([vectors[c] for c in ev.candidates]) * scale
        aug = {i: features(i) for i in {*self.negatives, *self.reference}}
        rows = []
        for s in ev.subscriptions:
            seeds = set(s.seeds)
            fitted = submodel.fit(
                [features(x) for x in s.seeds],
                [aug[x] for x in self.negatives if x not in seeds],
                [aug[x] for x in self.reference if x not in seeds],
                centre_from=[lex.vectors[x] for x in s.seeds],
                mix=submodel.MIX,
                c=submodel.C,
            )
            dense_w = np.array([fitted.weights.get(f"~dense{k}", 0.0) for k in range(dim)])
            margin = self.cand @ lex.dense(fitted.weights) + cand_dense @ dense_w + fitted.bias
            cos = self.cand @ lex.dense(fitted.centre)
            (mm, ms), (cm, cs) = fitted.margin_stats, fitted.cosine_stats
            rows.append(fitted.mix * (margin - mm) / ms + (1 - fitted.mix) * (cos - cm) / cs)
        return np.vstack(rows)

    def with_dense(self, vectors: dict[str, np.ndarray], weight: float) -> np.ndarray:
        """The worker's default: ``services.alerts.model.fit`` with the dense channel (the
        seeds' vectors as positives, the reference's row for row), scored as
        ``SubscriptionModel.score`` does."""
        lex, ev = self.lex, self.ev
        cand_dense = np.vstack([vectors[c] for c in ev.candidates])
        rows = []
        for s in ev.subscriptions:
            seeds = set(s.seeds)
            fitted = submodel.fit(
                [lex.vectors[x] for x in s.seeds],
                [lex.vectors[x] for x in self.negatives if x not in seeds],
                [lex.vectors[x] for x in self.reference if x not in seeds],
                mix=submodel.MIX,
                c=submodel.C,
                dense_positives=[vectors[x] for x in s.seeds],
                dense_reference=[vectors[x] for x in self.reference if x not in seeds],
                dense_weight=weight,
            )
            margin = self.cand @ lex.dense(fitted.weights) + fitted.bias
            cos = self.cand @ lex.dense(fitted.centre)
            (mm, ms), (cm, cs) = fitted.margin_stats, fitted.cosine_stats
            (lm, ls), (dm, dsd) = fitted.lexical_stats, fitted.dense_stats
            lexical = fitted.mix * (margin - mm) / ms + (1 - fitted.mix) * (cos - cm) / cs
            assert fitted.dense_centre is not None
            dense = (cand_dense @ fitted.dense_centre - dm) / dsd
            rows.append((1 - weight) * (lexical - lm) / ls + weight * dense)
        return np.vstack(rows)


def _spread(values: np.ndarray) -> tuple[float, float]:
    std = float(values.std())
    return float(values.mean()), std if std > 1e-9 else 1.0


def reference_cosines(
    ev: alerts.Evaluation, vectors: dict[str, np.ndarray], reference: Sequence[str]
) -> np.ndarray:
    """Each subscription's (mean, spread) of the dense centroid cosine over the reference."""
    ref = np.vstack([vectors[r] for r in reference])
    out = []
    for s in ev.subscriptions:
        centre = np.mean([vectors[x] for x in s.seeds], axis=0)
        centre /= max(float(np.linalg.norm(centre)), 1e-12)
        out.append(_spread(ref @ centre))
    return np.array(out)


def by_reference(scores: np.ndarray, stats: np.ndarray) -> np.ndarray:
    """Standardise each row by its reference sample's (mean, spread): what a worker can do
    (it never sees the benchmark's candidate set)."""
    return (scores - stats[:, :1]) / stats[:, 1:]


def against_default(args: argparse.Namespace, weights: list[float], scales: list[float]) -> None:
    """The static channel against the default per-subscription model (see the docstring)."""
    started = time.perf_counter()
    ev = alerts.evaluation_from(args)
    base = Default(ev, args.cutoff, args.reservoir, args.seed)
    ids = sorted({*paper_ids(ev), *base.negatives, *base.reference})
    print(
        f"split {args.split}: {len(ev.subscriptions)} subscriptions, {len(ev.candidates)} "
        f"candidates from {args.cutoff} on, {len(ids)} papers to embed",
        flush=True,
    )
    default, default_stats = base.scores()
    print(f"default model fitted and scored: {time.perf_counter() - started:.0f} s", flush=True)
    name = f"default: SVM {submodel.MIX} + centroid (C {submodel.C})"
    results = {name: default}
    for model_name in args.model:
        encoder = load_model(model_name)
        label = Path(model_name).name[:24] if model_name != "bundled" else "MiniLM"
        cache = args.cache / f"{label}.npz" if args.cache else None
        vectors, seconds, n = paper_vectors(ids, ev.papers, encoder, cache)
        encoder.close()
        print(f"{label}: {n} whole papers encoded in {seconds:.1f} s", flush=True)
        dense = centroid_matrix(ev, vectors)
        results[f"{label} whole paper, centroid (alone)"] = dense
        for w in weights:
            results[f"  {w:g} z({label}) + {1 - w:g} z(default), z over candidates"] = mix(
                dense, default, w
            )
        dense_ref = by_reference(dense, reference_cosines(ev, vectors, base.reference))
        default_ref = by_reference(default, default_stats)
        for w in weights:
            results[f"  {w:g} z({label}) + {1 - w:g} z(default), z over reference"] = (
                w * dense_ref + (1 - w) * default_ref
            )
        for w in weights:
            results[f"  model.py dense channel w {w:g} ({label}), as the worker"] = base.with_dense(
                vectors, w
            )
        for scale in scales:
            t = time.perf_counter()
            results[f"  SVM features: TF-IDF + {scale:g} x {label}"] = base.augmented(
                vectors, scale
            )
            print(f"SVM on TF-IDF + {scale:g} x dense: {time.perf_counter() - t:.0f} s", flush=True)
    report(ev, results, args.k)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")


def report(ev: alerts.Evaluation, results: dict[str, np.ndarray], k: int) -> None:
    """nDCG@k, Recall@k per method; each against the first (lexical) with a paired 95 % CI."""
    per = {name: alerts.per_subscription(ev, rankings(ev, m), k) for name, m in results.items()}
    (base_name, (base_n, _)), *_ = per.items()
    print(f"\n{'method':66s} nDCG@{k:<3d} Recall@{k}  vs {base_name}: nDCG (95% CI)")
    for name, (n, r) in per.items():
        line = f"{name:66s} {n.mean():.4f}   {r.mean():.4f}"
        if name != base_name:
            lo, hi = alerts.paired_ci(n, base_n)
            line += f"    {n.mean() - base_n.mean():+.4f} ({lo:+.4f} .. {hi:+.4f})"
        print(line, flush=True)


def load_model(name: str) -> Any:
    """A torch ``Encoder`` on CPU: ``bundled`` (MiniLM, 256 tokens) or a model directory;
    ``shipped``: the worker's compact static model (``services.alerts.dense``)."""
    if name == "shipped":
        return Shipped()
    from services.models.encoder import Encoder

    return Encoder(name, "cpu", 64, 256, backend="torch")


class Shipped:
    """The compact static model the worker ships, with an ``Encoder``'s ``encode``/``close``."""

    def __init__(self) -> None:
        from services.alerts.dense import StaticModel

        self.model = StaticModel.load()

    def encode(self, texts: list[str]) -> np.ndarray:
        return self.model.encode(texts)

    def close(self) -> None:
        pass


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("--model", action="append", required=True, help="bundled or a directory")
    parser.add_argument("--sentences", action="store_true", help="also the sentence channel")
    parser.add_argument("--weights", default="0.1,0.2,0.3,0.4,0.5", help="dense weights to mix")
    alerts.add_evaluation_arguments(parser, subscriptions=600, candidates=1400, split="dev")
    parser.add_argument(
        "--cache", type=Path, help="keep whole-paper vectors here (<label>.npz) for the next run"
    )
    parser.add_argument(
        "--against",
        choices=("centroid", "default"),
        default="centroid",
        help="the lexical side: the lexical centroid, or the default per-subscription model "
        "as benchmarks/alerts.py --offline computes it",
    )
    parser.add_argument(
        "--reservoir", type=int, default=alerts.RESERVOIR, help="default: negatives, reference"
    )
    parser.add_argument(
        "--svm-scales",
        default="",
        help="default: also append the dense vector times each scale to the SVM's features",
    )
    args = parser.parse_args(argv)
    weights = [float(w) for w in args.weights.split(",") if w.strip()]
    if args.against == "default":
        scales = [float(x) for x in args.svm_scales.split(",") if x.strip()]
        against_default(args, weights, scales)
        return 0

    started = time.perf_counter()
    ev = alerts.evaluation_from(args)
    print(
        f"split {args.split}: {len(ev.subscriptions)} subscriptions, {len(ev.candidates)} "
        f"candidates from {args.cutoff} on, {len(paper_ids(ev))} papers to embed",
        flush=True,
    )
    lexical = lexical_matrix(ev)
    results = {"lexical (prior + stream IDF, centroid)": lexical}
    for name in args.model:
        encoder = load_model(name)
        label = Path(name).name[:24] if name != "bundled" else "MiniLM"
        cache = args.cache / f"{label}.npz" if args.cache else None
        whole, seconds, n = whole_paper_matrix(ev, encoder, cache)
        print(f"{label}: {n} whole papers encoded in {seconds:.1f} s", flush=True)
        results[f"{label} whole paper, centroid"] = whole
        for w in weights:
            results[f"  {w:g} z({label} whole) + {1 - w:g} z(lexical)"] = mix(whole, lexical, w)
        if args.sentences:
            lse, seconds = sentence_matrix(ev, encoder)
            print(f"{label}: sentences encoded in {seconds:.1f} s", flush=True)
            results[f"{label} sentences, lse"] = lse
            for w in weights:
                results[f"  {w:g} z({label} sentences) + {1 - w:g} z(lexical)"] = mix(
                    lse, lexical, w
                )
        encoder.close()
    report(ev, results, args.k)
    print(f"\ntotal {time.perf_counter() - started:.0f}s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
