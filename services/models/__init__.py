"""The sentence encoder: ``encoder`` (``Encoder``, a sentence-transformers model on CUDA or CPU,
run off the event loop, and ``derive_model_version``, the collections' version tag).
"""
