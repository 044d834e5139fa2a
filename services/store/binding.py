"""The model a reader uses: one encoder and the collections of its version, swapped as one."""

from __future__ import annotations

from services.core.types import TextEncoder
from services.store.vectorstore import VectorStore


class Binding:
    """Encoder + store of one model version, shared by everything that reads or writes with it.

    Readers (the HTTP API, subscriptions, the alert matcher) and the embed stage each hold a
    binding and read ``binding.encoder`` / ``binding.store`` on every use, so a rollout moves
    them all with one :meth:`swap` instead of writing other objects' fields.
    """

    def __init__(self, encoder: TextEncoder, store: VectorStore) -> None:
        self.encoder = encoder
        self.store = store

    @property
    def model_version(self) -> str:
        return self.store.model_version

    def swap(self, encoder: TextEncoder, store: VectorStore) -> TextEncoder:
        """Point the binding at another model; returns the encoder it replaced."""
        previous = self.encoder
        self.encoder, self.store = encoder, store
        return previous
