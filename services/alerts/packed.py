"""Arrays and term weights packed into strings, for payloads read back often.

A payload of thousands of numbers costs a Python object per number to store and to read
back in the embedded engine; a base64 string costs one. Little-endian, exact.
"""

from __future__ import annotations

import base64
from collections.abc import Mapping
from typing import Any

import numpy as np


def floats(values: np.ndarray) -> str:
    return base64.b64encode(
        np.ascontiguousarray(values).astype(values.dtype.newbyteorder("<")).tobytes()
    ).decode("ascii")


def unfloats(text: str, dtype: Any) -> np.ndarray:
    return np.frombuffer(base64.b64decode(text), dtype=np.dtype(dtype).newbyteorder("<")).astype(
        dtype
    )


def pack(vector: Mapping[str, float]) -> dict[str, str]:
    """Term weights as two strings: the terms (newline-separated; a term has no newline)
    and their float64 weights, base64."""
    return {
        "terms": "\n".join(vector),
        "values": floats(np.fromiter(vector.values(), np.float64, len(vector))),
    }


def unpack(packed: Mapping[str, str]) -> dict[str, float]:
    terms = packed["terms"].split("\n") if packed["terms"] else []
    return dict(zip(terms, unfloats(packed["values"], np.float64).tolist(), strict=True))
