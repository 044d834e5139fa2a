"""Unit tests of trainer.evaluate: rank and metric arithmetic, eval sets, a fake encoder."""

from __future__ import annotations

import hashlib
import math
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from trainer.data import load_papers, paper_sentences
from trainer.evaluate import (
    METRICS,
    PRIMARY_METRIC,
    doc_ranks,
    evaluate,
    ir_metrics,
    pair_eval_set,
    paper_eval_set,
)

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "papers-sample.jsonl"


def test_ir_metrics_by_hand() -> None:
    m = ir_metrics(np.array([1, 2, 11]))
    assert m["mrr@10"] == pytest.approx((1 + 0.5 + 0) / 3)
    assert m["ndcg@10"] == pytest.approx((1 + 1 / math.log2(3)) / 3)
    assert (m["recall@1"], m["recall@5"], m["recall@10"]) == pytest.approx((1 / 3, 2 / 3, 2 / 3))
    assert ir_metrics(np.array([])) == dict.fromkeys(METRICS, 0.0)


def test_doc_ranks_take_the_best_entry_of_each_document() -> None:
    # Corpus: doc 0 = entries 0, 1; doc 1 = entry 2; doc 2 = entries 3, 4.
    corpus_doc = [0, 0, 1, 2, 2]
    scores = np.array(
        [
            [0.1, 0.9, 0.5, 0.2, 0.3],  # doc 0 best (0.9)
            [0.1, 0.2, 0.5, 0.2, 0.8],  # doc 2 (0.8) > doc 1 (0.5) > doc 0 (0.2)
        ]
    )
    assert doc_ranks(scores, corpus_doc, [0, 1], [-1, -1]).tolist() == [1, 2]
    # Excluding the query's own entry (1) drops doc 0 to its other entry (0.1): last.
    assert doc_ranks(scores, corpus_doc, [0, 1], [1, -1]).tolist() == [3, 2]


def test_ties_count_against_the_relevant_document() -> None:
    scores = np.zeros((2, 3))
    assert doc_ranks(scores, [0, 1, 2], [0, 2], [-1, -1]).tolist() == [3, 3]


def test_paper_eval_set_on_real_papers() -> None:
    papers = load_papers(SAMPLE)[:20]
    eval_set = paper_eval_set(papers, seed=1)
    title, sentence = eval_set.tasks
    assert (title.name, sentence.name) == ("title", "sentence")
    assert eval_set.n_docs == len(title.texts) == 20
    assert eval_set.corpus_doc == sorted(eval_set.corpus_doc)
    assert len(eval_set.corpus) == sum(len(paper_sentences(p)) for p in papers)
    for text, doc, excluded in zip(
        sentence.texts, sentence.relevant, sentence.exclude, strict=True
    ):
        assert eval_set.corpus[excluded] == text and eval_set.corpus_doc[excluded] == doc
    assert paper_eval_set(papers, seed=1).tasks[1].exclude == sentence.exclude


DIM = 4096


class FakeModel:
    """A deterministic bag-of-words encoder: enough to rank text overlap, no torch needed."""

    def encode(self, texts: list[str], **_: Any) -> np.ndarray:
        out = np.zeros((len(texts), DIM), dtype=np.float32)
        for row, text in enumerate(texts):
            for word in text.lower().split():
                out[row, int(hashlib.md5(word.encode()).hexdigest(), 16) % DIM] += 1
        norms = np.linalg.norm(out, axis=1, keepdims=True)
        return out / np.where(norms == 0, 1, norms)


def test_evaluate_with_a_fake_encoder() -> None:
    eval_set = paper_eval_set(load_papers(SAMPLE)[:30])
    metrics = evaluate(FakeModel(), eval_set)  # type: ignore[arg-type]
    for metric in METRICS:
        for key in (metric, f"title/{metric}", f"sentence/{metric}"):
            assert 0.0 <= metrics[key] <= 1.0
        assert metrics[metric] == pytest.approx(
            (metrics[f"title/{metric}"] + metrics[f"sentence/{metric}"]) / 2
        )
    # Word overlap finds most papers from their titles: far better than chance (~0.1).
    assert metrics[f"title/{PRIMARY_METRIC}"] > 0.5


def test_pair_eval_set_finds_identical_pairs() -> None:
    words = ["quasar", "pulsar", "nebula", "comet", "magnetar"]
    pairs = [(f"galaxy {w} spectra", f"galaxy {w} spectra") for w in words]
    pairs += [("a b c d", "e f g h")]
    metrics = evaluate(FakeModel(), pair_eval_set(pairs))  # type: ignore[arg-type]
    assert metrics["pairs/recall@1"] == pytest.approx(5 / 6)
