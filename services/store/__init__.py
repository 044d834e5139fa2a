"""Qdrant, owned here and nowhere else: ``vectorstore`` (``VectorStore``: versioned collections
behind aliases, idempotent upserts, reads, all blocking calls on one thread), ``points`` (the
other reads and writes of a version's points: payload edits, deletes, percolation batches),
``tables`` (``PayloadTable``: payload-only collections such as alerts, feedback and state),
``models`` (the query vocabulary other packages build filters with) and ``binding``
(``Binding``: the encoder and the store of one model version, swapped as one by a rollout).
"""
