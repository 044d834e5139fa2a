"""Qdrant: ``vectorstore`` (``VectorStore``: versioned collections behind aliases, idempotent
upserts, reads, all blocking calls on one thread) and ``binding`` (``Binding``: the encoder and
the store of one model version, swapped as one by a rollout).
"""
