"""Grouping sentences into forward passes: longest first, capped by count and padded tokens (pure)."""

from __future__ import annotations

from collections.abc import Sequence


def token_batches(
    lengths: Sequence[int], max_batch: int, max_tokens: int | None = None
) -> list[list[int]]:
    """Indices of ``lengths`` grouped into batches, longest texts first.

    A batch holds at most ``max_batch`` texts and, when ``max_tokens`` is set, at most
    ``max_tokens`` padded tokens (its size times its longest text's tokens), as
    text-embeddings-inference caps a forward pass. A text longer than the budget goes
    alone. Sorting first means each batch pads to a length close to its own texts'
    (sentence-transformers sorts too, by characters; this sorts by tokens). Ties keep
    their input order.
    """
    if max_batch < 1:
        raise ValueError(f"max_batch must be at least 1, not {max_batch}")
    order = sorted(range(len(lengths)), key=lambda i: -lengths[i])
    batches: list[list[int]] = []
    current: list[int] = []
    longest = 0
    for index in order:
        full = len(current) >= max_batch or (
            max_tokens is not None and (len(current) + 1) * longest > max_tokens
        )
        if current and full:
            batches.append(current)
            current = []
        if not current:
            longest = lengths[index]
        current.append(index)
    if current:
        batches.append(current)
    return batches
