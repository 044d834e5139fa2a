"""The embed stage: ``pipeline`` (raw records → validated papers → sentences → one encode call
→ Qdrant; bad records are dead-lettered, an unavailable Qdrant is waited out), ``agent`` (the
Faust agent that feeds it micro-batches and acks after Qdrant) and ``rollout`` (re-embedding
into a new model version's collections, then switching the aliases).
"""
