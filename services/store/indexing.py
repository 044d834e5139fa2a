"""How the searched collections are indexed: HNSW, int8 scalar quantization, vectors on disk.

Chosen by ``benchmarks/growth.py`` on real sentence vectors (docs/performance.md, "Growth"):
int8 quantization builds the HNSW graph ~2.7x faster (CPU 2.9 s against 7.9 s for 10k
points) and keeps the searched data in RAM at a quarter of its float size, while the float
vectors, read only to rescore the best candidates, stay on disk (mmap); the search ``ef``
(``ASTRO_QDRANT_HNSW_EF``) is the smallest that reaches recall@10 ≥ 0.98 against exact
search. The same arguments are valid for a Qdrant server.
"""

from __future__ import annotations

from typing import Any

from qdrant_client import models as qm

SEARCHED = ("sentences", "papers")  # the kinds /search ranks; subscriptions stay small
HNSW = qm.HnswConfigDiff(m=16, ef_construct=100)
INT8 = qm.ScalarQuantization(
    scalar=qm.ScalarQuantizationConfig(type=qm.ScalarType.INT8, quantile=0.99, always_ram=True)
)


def index_options(kind: str) -> dict[str, Any]:
    """``create_collection`` arguments of ``kind`` beyond its vectors."""
    if kind not in SEARCHED:
        return {}
    return {"hnsw_config": HNSW, "quantization_config": INT8}


def vectors_on_disk(kind: str) -> bool | None:
    """Whether ``kind``'s float vectors live on disk (None: the engine's default, RAM)."""
    return True if kind in SEARCHED else None
