"""The token-budget batcher: longest first, capped by count and by padded tokens."""

from __future__ import annotations

import pytest

from services.models.batching import token_batches


def test_count_cap_only_sorts_longest_first_and_keeps_ties_in_order() -> None:
    assert token_batches([3, 9, 5, 9, 1], max_batch=2) == [[1, 3], [2, 0], [4]]


def test_token_budget_caps_padded_tokens_per_batch() -> None:
    lengths = [40, 10, 40, 12, 11, 10, 100]
    batches = token_batches(lengths, max_batch=64, max_tokens=100)
    assert batches == [[6], [0, 2], [3, 4, 1, 5]]
    for batch in batches[1:]:
        assert len(batch) * max(lengths[i] for i in batch) <= 100
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))


def test_a_text_over_the_budget_goes_alone_and_nothing_is_empty() -> None:
    assert token_batches([500, 500], max_batch=8, max_tokens=100) == [[0], [1]]
    assert token_batches([], max_batch=8, max_tokens=100) == []


def test_max_batch_must_be_positive() -> None:
    with pytest.raises(ValueError, match="max_batch"):
        token_batches([1], max_batch=0)
