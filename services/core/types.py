"""Interfaces between the layers (as faust keeps them in ``faust/types``): no implementation here."""

from __future__ import annotations

from typing import Protocol

import numpy as np


class TextEncoder(Protocol):
    """What the embed stage, the API and the alerts need of a model (``services.models``)."""

    name: str
    device: str
    dim: int

    async def aencode(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text, computed off the event loop."""
        ...

    def close(self) -> None:
        """Release the model's thread."""
        ...
