"""The terms of the lexical signal and their sparse-vector form (pure, no I/O).

:func:`tokens` / :func:`term_counts` are what the alerts' TF-IDF score counts
(``services.alerts.matcher`` re-exports them); :func:`sparse` turns term weights into the
``(indices, values)`` of a Qdrant sparse vector, so the ``lexical`` sparse vectors of
``astro_papers`` and ``astro_subscriptions`` hold the same terms as the score.

Term → index is :func:`term_index`, a stable hash (the first 31 bits of BLAKE2b), the same in
every process and for every client: a downstream tool hashes its query terms the same way.
Two terms may share an index (a collision); their weights are then added. With a million
distinct terms (unigrams and bigrams) about 230 pairs collide, out of 2^31 indices: a
negligible blur of the lexical match, never an error.
"""

from __future__ import annotations

import hashlib
import itertools
import math
import re
from collections import Counter
from collections.abc import Mapping

# The token pattern of arxiv-sanity (a letter, then letters/digits): keeps "JWST", "H0", "z6".
_TOKEN = re.compile(r"\b[a-zA-Z_][a-zA-Z0-9_]+\b")
# LaTeX commands carry no topic ("\odot", "\mathrm"): drop them before tokenising.
_LATEX = re.compile(r"\\[a-zA-Z]+")
# fmt: off
STOP_WORDS = frozenset(
    (
        "a", "about", "above", "after", "again", "against", "all", "also", "am", "an", "and", "any",
        "are", "as", "at", "be", "because", "been", "before", "being", "below", "between", "both",
        "but", "by", "can", "could", "did", "do", "does", "doing", "down", "during", "each", "either",
        "et", "al", "few", "for", "from", "further", "had", "has", "have", "having", "he", "her",
        "here", "hers", "him", "his", "how", "however", "i", "if", "in", "into", "is", "it", "its",
        "itself", "just", "may", "me", "might", "more", "most", "much", "must", "my", "no", "nor",
        "not", "now", "of", "off", "on", "once", "only", "or", "other", "our", "ours", "out", "over",
        "own", "per", "same", "she", "should", "since", "so", "some", "such", "than", "that", "the",
        "their", "them", "then", "there", "these", "they", "this", "those", "through", "thus", "to",
        "too", "under", "until", "up", "upon", "us", "very", "via", "was", "we", "were", "what",
        "when", "where", "whether", "which", "while", "who", "whom", "why", "will", "with", "within",
        "without", "would", "you", "your",
    )
)
# fmt: on

INDEX_BITS = 31  # indices stay positive in any client's signed 32-bit integers


def tokens(text: str) -> list[str]:
    """Lower-cased words (no stop words, no LaTeX commands) followed by their bigrams."""
    words = [
        w for w in (m.lower() for m in _TOKEN.findall(_LATEX.sub(" ", text))) if w not in STOP_WORDS
    ]
    return words + [f"{a} {b}" for a, b in itertools.pairwise(words)]


def term_counts(text: str) -> Counter[str]:
    return Counter(tokens(text))


def term_index(term: str) -> int:
    """The sparse-vector index of a term: the first 31 bits of its BLAKE2b digest (stable)."""
    digest = hashlib.blake2b(term.encode("utf-8"), digest_size=4).digest()
    return int.from_bytes(digest, "big") & ((1 << INDEX_BITS) - 1)


def sublinear_tf(counts: Mapping[str, int]) -> dict[str, float]:
    """Unit-length ``1 + log(tf)`` weights: what Qdrant's IDF modifier multiplies by the IDF."""
    weights = {t: 1.0 + math.log(n) for t, n in counts.items() if n > 0}
    norm = math.sqrt(sum(w * w for w in weights.values()))
    return {t: w / norm for t, w in weights.items()} if norm > 0 else {}


def sparse(weights: Mapping[str, float]) -> tuple[list[int], list[float]]:
    """``(indices, values)`` of term weights, indices ascending, colliding terms summed."""
    merged: dict[int, float] = {}
    for term, weight in weights.items():
        if weight:
            index = term_index(term)
            merged[index] = merged.get(index, 0.0) + float(weight)
    indices = sorted(merged)
    return indices, [merged[i] for i in indices]
