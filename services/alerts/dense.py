"""The alerts' dense channel: a shipped static embedding model, in numpy and ``tokenizers``.

``data/astro-static-256.*`` is ``astrostream train --architecture static`` (StaticEmbedding,
256-d, MiniLM's tokenizer, trained on the astro-ph train split before 2025-12-01 with the
benchmark's test authors excluded), exported by ``python -m trainer.compact``: the rows of the
14,603 token ids that occur in the training corpus, int8 with a scale per row (3.8 MB with the
gzipped tokenizer; ``astro-static-256.json`` has the provenance). A text's vector is the mean of
its tokens' rows, normalised, tokenised as sentence-transformers' ``StaticEmbedding`` does (no
special tokens, no truncation); a token outside the kept ones adds nothing. Cosine to the
original fp32 model on real papers: docs/alerts.md ("The static dense channel").

No torch: a whole paper (title + abstract) takes ~2.5 ms on the shared, loaded 2-core CPU
(load 7), nearly all of it in the tokenizer; loading takes ~0.4 s, once per process.
"""

from __future__ import annotations

import gzip
import json
import logging
import time
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np

from services.core.errors import ConfigError
from services.core.text import normalise

log = logging.getLogger(__name__)

FORMAT = 1  # trainer.compact.FORMAT
DATA = Path(__file__).with_name("data")
DEFAULT = "astro-static-256"


class StaticModel:
    """Token rows averaged into a unit vector: :meth:`encode` texts, :meth:`paper` a paper."""

    def __init__(self, table: np.ndarray, index: np.ndarray, tokenizer: object, version: str):
        self.table = table  # (kept tokens + 1, dim) float32; the last row is zero
        self.index = index  # token id -> row of ``table``
        self.tokenizer = tokenizer
        self.version = version
        self.dim = int(table.shape[1])

    @classmethod
    def load(cls, name: str = DEFAULT, directory: Path = DATA) -> StaticModel:
        """Load ``<directory>/<name>.{npz,tokenizer.json.gz,json}`` (see ``trainer.compact``)."""
        from tokenizers import Tokenizer

        try:
            meta = json.loads((directory / f"{name}.json").read_text(encoding="utf-8"))
            with np.load(directory / f"{name}.npz") as stored:
                ids, rows, scales = stored["ids"], stored["rows"], stored["scales"]
            with gzip.open(directory / f"{name}.tokenizer.json.gz", "rt", encoding="utf-8") as f:
                tokenizer = Tokenizer.from_str(f.read())
        except (OSError, ValueError, KeyError) as exc:
            raise ConfigError(
                f"cannot load the static model {name!r} from {directory}: {exc}"
            ) from exc
        if meta.get("format") != FORMAT:
            raise ConfigError(f"static model {name!r}: format {meta.get('format')}, want {FORMAT}")
        tokenizer.no_padding()
        tokenizer.no_truncation()
        table = np.zeros((len(ids) + 1, rows.shape[1]), dtype=np.float32)
        table[:-1] = rows.astype(np.float32) * scales[:, None]
        index = np.full(int(meta["vocab_size"]), len(ids), dtype=np.int64)
        index[ids] = np.arange(len(ids))
        return cls(table, index, tokenizer, str(meta["version"]))

    def encode(self, texts: Sequence[str]) -> np.ndarray:
        """Unit vectors (n, dim) float32; a text without a known token gives a zero vector."""
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        if not texts:
            return out
        encodings = self.tokenizer.encode_batch(list(texts), add_special_tokens=False)  # type: ignore[attr-defined]
        for row, encoding in enumerate(encodings):
            if encoding.ids:
                out[row] = self.table[self.index[encoding.ids]].sum(axis=0)
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms > 0, norms, 1.0)

    def papers(self, texts: Sequence[str]) -> np.ndarray:
        """Vectors of whole papers' raw texts (title + abstract or title + sentences), each
        normalised as the benchmark does (``normalise(title + " " + abstract)``)."""
        return self.encode([normalise(t) for t in texts])


@lru_cache(maxsize=1)
def shipped() -> StaticModel:
    """The shipped model, loaded once per process."""
    started = time.perf_counter()
    model = StaticModel.load()
    log.info(
        "static dense model %s loaded in %.2fs (%d tokens, %d-d)",
        model.version,
        time.perf_counter() - started,
        model.table.shape[0] - 1,
        model.dim,
    )
    return model
