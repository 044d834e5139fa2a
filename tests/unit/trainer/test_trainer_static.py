"""Unit tests of the static architecture's pair builder: co-author pairs, caps, title↔abstract
pairs, the date cut-off and the author half of the alerts benchmark (no held-out leakage)."""

from __future__ import annotations

import datetime as dt
import itertools
import zlib
from typing import Any

import pytest

from benchmarks import alerts
from services.core.schemas import Paper
from trainer.data import COAUTHOR_MAX_AUTHORS, COAUTHOR_PAIRS_PER_AUTHOR, cutoff_split, paper_text
from trainer.errors import TrainingDataError
from trainer.static import author_half, static_pairs, title_abstract_pairs

KEYS: dict[str, str] = {}  # arXiv id -> the short name a test gives its paper


def paper(key: str, authors: list[str], day: str | None = "2025-06-02", **extra: Any) -> Paper:
    arxiv_id = f"2501.{zlib.crc32(key.encode()) % 100_000:05d}"
    assert KEYS.setdefault(arxiv_id, key) == key
    return Paper(
        arxiv_id=arxiv_id,
        announced=day,
        title=f"Title of paper {key} on galaxies",
        abstract=f"We study the dust of galaxies in sample {key}. It has many stars in it.",
        authors=authors,
        **extra,
    )


def names(half: str, n: int) -> list[str]:
    """``n`` author names that fall into ``half`` of the alerts benchmark."""
    found = (f"Author {i}" for i in itertools.count())
    return list(itertools.islice((a for a in found if author_half(a) == half), n))


def by_text(papers: list[Paper]) -> dict[str, str]:
    return {paper_text(p): KEYS[p.arxiv_id] for p in papers}


def coauthor_links(pairs: list[tuple[str, str]], papers: list[Paper]) -> set[frozenset[str]]:
    ids = by_text(papers)
    return {frozenset((ids[a], ids[b])) for a, b in pairs if a in ids and b in ids}


def test_papers_sharing_an_author_are_paired_and_strangers_are_not() -> None:
    papers = [paper("1", ["Ann"]), paper("2", ["Ann", "Bob"]), paper("3", ["Cy"])]
    pairs = static_pairs(papers, title_pairs=0)
    assert coauthor_links(pairs, papers) == {frozenset({"1", "2"})}


def test_caps_big_collaborations_and_pairs_per_author() -> None:
    crowd = [f"P{i}" for i in range(COAUTHOR_MAX_AUTHORS)]
    big = [paper("b1", ["Ann", *crowd]), paper("b2", ["Ann", *crowd])]
    assert static_pairs(big, title_pairs=0) == []  # 26 authors each: left out
    prolific = [paper(str(i), ["Ann"]) for i in range(8)]  # 28 possible pairs
    pairs = static_pairs(prolific, title_pairs=0)
    assert len(coauthor_links(pairs, prolific)) == COAUTHOR_PAIRS_PER_AUTHOR


def test_title_abstract_pairs_are_capped_and_seeded() -> None:
    papers = [paper(str(i), []) for i in range(30)]
    pairs = title_abstract_pairs(papers, 10, seed=1)
    assert len(pairs) == 10
    assert all(t.startswith("Title of paper") and a.startswith("We study") for t, a in pairs)
    assert pairs == title_abstract_pairs(list(reversed(papers)), 10, seed=1)
    assert pairs != title_abstract_pairs(papers, 10, seed=2)
    both = static_pairs(papers, seed=1, title_pairs=10, max_pairs=4)
    assert len(both) == 4 and set(both) <= set(pairs)


def test_no_coauthor_pair_goes_through_an_author_of_the_excluded_half() -> None:
    (tester,) = names("test", 1)
    (dever,) = names("dev", 1)
    papers = [
        paper("t1", [tester]),
        paper("t2", [tester]),
        paper("d1", [dever]),
        paper("d2", [dever]),
    ]
    kept = coauthor_links(static_pairs(papers, title_pairs=0, exclude_half="test"), papers)
    assert kept == {frozenset({"d1", "d2"})}
    every = coauthor_links(static_pairs(papers, title_pairs=0), papers)
    assert every == {frozenset({"t1", "t2"}), frozenset({"d1", "d2"})}


def test_author_half_is_the_alerts_benchmarks_halving() -> None:
    """Subscriptions of the benchmark's test split are all authors of the ``test`` half."""
    rows = []
    for i, author in enumerate(names("test", 6) + names("dev", 6)):
        for j, day in enumerate(("2025-10-01", "2025-11-01", "2025-12-05")):
            rows.append(
                {"arxiv_id": f"{i}.{j}", "announced": day, "authors": [author], "title": "t"}
            )
    for split in ("test", "dev"):
        ev = alerts.build_evaluation(
            rows,
            subscriptions=100,
            candidates=10,
            cutoff="2025-12-01",
            max_authors=25,
            max_seeds=3,
            max_relevant=10,
            seed=0,
            split=split,
        )
        assert len(ev.subscriptions) == 6
        assert {author_half(s.author) for s in ev.subscriptions} == {split}


def test_the_cutoff_keeps_every_later_and_undated_paper_out_of_training() -> None:
    papers = [
        paper("early1", ["Ann", "Bob"], "2025-11-28"),
        paper("early2", ["Ann"], "2025-11-30"),
        paper("late1", ["Ann", "Bob"], "2025-12-01"),
        paper("late2", ["Bob"], "2026-01-10"),
        paper("undated", ["Ann"], None),
    ]
    split = cutoff_split(papers, dt.date(2025, 12, 1))
    assert {KEYS[p.arxiv_id] for p in split.train} == {"early1", "early2"}
    assert {KEYS[p.arxiv_id] for p in split.heldout} == {"late1", "late2"}
    pairs = static_pairs(split.train)
    texts = {t for pair in pairs for t in pair}
    for p in papers[2:]:
        assert not any(f"sample {KEYS[p.arxiv_id]}." in t for t in texts), p.arxiv_id
    assert coauthor_links(pairs, papers) == {frozenset({"early1", "early2"})}


@pytest.mark.parametrize("day", ["2025-01-01", "2027-01-01"])
def test_a_cutoff_with_an_empty_side_is_an_error(day: str) -> None:
    papers = [paper("1", ["Ann"], "2025-06-01"), paper("2", ["Ann"], "2025-07-01")]
    with pytest.raises(TrainingDataError, match="cutoff"):
        cutoff_split(papers, dt.date.fromisoformat(day))


def test_pairs_are_deterministic_for_a_seed() -> None:
    papers = [paper(str(i), ["Ann", f"X{i % 3}"]) for i in range(12)]
    assert static_pairs(papers, seed=3) == static_pairs(papers, seed=3)
    assert static_pairs(papers, seed=3) != static_pairs(papers, seed=4)
