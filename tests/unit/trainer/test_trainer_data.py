"""Unit tests of trainer.data: loading and validating inputs, the dated split, pair mining."""

from __future__ import annotations

import gzip
import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from services.core.schemas import Paper
from trainer.data import (
    MINING_STRATEGIES,
    holdout_pairs,
    load_pairs,
    load_papers,
    mine_pairs,
    paper_sentences,
    paper_text,
    sample_papers,
    time_split,
)
from trainer.errors import TrainingDataError

SAMPLE = Path(__file__).resolve().parents[2] / "data" / "papers-sample.jsonl"


def paper(
    arxiv_id: str, day: str | None, abstract: str, title: str = "A title", **extra: Any
) -> Paper:
    return Paper(arxiv_id=arxiv_id, announced=day, title=title, abstract=abstract, **extra)


ABSTRACT = (
    "We measure the mass of $M_\\odot$ stars in the cluster. "
    "The sample holds 120 stars observed with JWST \\citep{smith2020}. "
    "Our fits give a slope of 2.3 for the mass function."
)


def write_jsonl(path: Path, rows: list[dict[str, Any]]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


# --- papers -------------------------------------------------------------------------------


def test_load_papers_reads_the_sample_and_gzip(tmp_path: Path) -> None:
    papers = load_papers(SAMPLE)
    assert len(papers) == len({p.arxiv_id for p in papers}) > 100
    gz = tmp_path / "papers.jsonl.gz"
    with gzip.open(gz, "wt") as handle:
        handle.write(SAMPLE.read_text())
    assert [p.arxiv_id for p in load_papers(gz)] == [p.arxiv_id for p in papers]


def test_load_papers_keeps_the_highest_version(tmp_path: Path) -> None:
    rows = [
        {"arxiv_id": "2501.00001v2", "title": "new", "abstract": "Second version text here."},
        {"arxiv_id": "2501.00001", "version": 1, "title": "old", "abstract": "First one."},
    ]
    (only,) = load_papers(write_jsonl(tmp_path / "p.jsonl", rows))
    assert (only.version, only.title) == (2, "new")


@pytest.mark.parametrize(
    ("content", "expected"),
    [
        ("", "is empty"),
        ("\n\n", "holds no papers"),
        ('{"arxiv_id": "2501.00001", "title": "t"}\n', "p.jsonl:1: abstract"),
        ("not json\n", "p.jsonl:1"),
    ],
)
def test_load_papers_errors_name_the_file(tmp_path: Path, content: str, expected: str) -> None:
    path = tmp_path / "p.jsonl"
    path.write_text(content)
    with pytest.raises(TrainingDataError, match=expected):
        load_papers(path)


def test_load_papers_missing_file(tmp_path: Path) -> None:
    with pytest.raises(TrainingDataError, match="does not exist"):
        load_papers(tmp_path / "nope.jsonl")


# --- pairs --------------------------------------------------------------------------------

PAIRS = pd.DataFrame(
    {
        "sentence_0": ["The mass is $M_\\odot$.", "Dust grains grow.", "", "Dust grains grow."],
        "sentence_1": [
            "Stars form in clouds.",
            "As seen by \\citet{a}.",
            "x",
            "As seen by \\citet{a}.",
        ],
    }
)


@pytest.mark.parametrize("suffix", [".jsonl", ".csv", ".parquet", ".csv.gz"])
def test_load_pairs_formats_normalise_and_drop_blank_and_duplicate_rows(
    tmp_path: Path, suffix: str
) -> None:
    path = tmp_path / f"pairs{suffix}"
    if suffix == ".jsonl":
        PAIRS.to_json(path, orient="records", lines=True)
    elif suffix == ".parquet":
        PAIRS.to_parquet(path)
    else:
        PAIRS.to_csv(path, index=False)
    assert load_pairs(path) == [
        ("The mass is [MATH_tex=M_\\odot].", "Stars form in clouds."),
        ("Dust grains grow.", "As seen by <CIT>."),
    ]


def test_load_pairs_names_the_missing_column(tmp_path: Path) -> None:
    path = tmp_path / "pairs.csv"
    PAIRS.rename(columns={"sentence_1": "positive"}).to_csv(path, index=False)
    with pytest.raises(TrainingDataError, match=r"pairs.csv lacks column\(s\) sentence_1"):
        load_pairs(path)


@pytest.mark.parametrize(
    ("name", "content", "expected"),
    [
        ("pairs.csv", "", "is empty"),
        ("pairs.csv", "sentence_0,sentence_1\n", "no non-empty"),
        ("pairs.txt", "a", "unknown format"),
        ("pairs.parquet", "not parquet", "cannot be read as parquet"),
    ],
)
def test_load_pairs_bad_files(tmp_path: Path, name: str, content: str, expected: str) -> None:
    path = tmp_path / name
    path.write_text(content)
    with pytest.raises(TrainingDataError, match=expected):
        load_pairs(path)


def test_holdout_pairs_is_seeded_and_disjoint() -> None:
    pairs = [(f"a{i}", f"b{i}") for i in range(100)]
    train, held = holdout_pairs(pairs, fraction=0.1, limit=5, seed=1)
    assert len(held) == 5 and len(train) == 95
    assert not set(train) & set(held)
    assert holdout_pairs(pairs, 0.1, 5, 1) == (train, held)
    assert holdout_pairs(pairs, 0.5, 500, 1)[1].__len__() == 50


# --- split --------------------------------------------------------------------------------


def test_time_split_holds_out_the_latest_whole_days() -> None:
    days = ["2025-01-01"] * 4 + ["2025-01-02"] * 4 + ["2025-01-03"] * 2
    papers = [paper(f"2501.{i:05d}", d, ABSTRACT) for i, d in enumerate(days)]
    papers.append(paper("2501.99999", None, ABSTRACT))
    split = time_split(papers, eval_fraction=0.25)
    assert str(split.cutoff) == "2025-01-02"
    assert {str(p.announced) for p in split.heldout} == {"2025-01-02", "2025-01-03"}
    assert max(p.announced for p in split.train if p.announced) < split.cutoff  # type: ignore[type-var]
    assert "2501.99999" in {p.arxiv_id for p in split.train}  # undated: train only


def test_time_split_uses_published_when_announced_is_missing() -> None:
    papers = [
        Paper(
            arxiv_id=f"2501.0000{i}",
            title="t",
            abstract="a b",
            published=f"2025-01-0{i + 1}T10:00:00",
        )
        for i in range(5)
    ]
    split = time_split(papers, 0.2)
    assert [p.arxiv_id for p in split.heldout] == ["2501.00004"]


def test_time_split_errors() -> None:
    with pytest.raises(TrainingDataError, match="no paper has"):
        time_split([paper("2501.00001", None, ABSTRACT)])
    same_day = [paper(f"2501.0000{i}", "2025-01-01", ABSTRACT) for i in range(3)]
    with pytest.raises(TrainingDataError, match="more days"):
        time_split(same_day)


def test_sample_papers_is_deterministic() -> None:
    papers = load_papers(SAMPLE)
    first = sample_papers(papers, 10, seed=7)
    assert len(first) == 10 and first == sample_papers(list(reversed(papers)), 10, seed=7)
    assert len(sample_papers(papers, 10_000, seed=7)) == len(papers)


# --- mining -------------------------------------------------------------------------------


def test_paper_sentences_are_normalised_like_the_workers() -> None:
    sentences = paper_sentences(paper("2501.00001", "2025-01-01", ABSTRACT))
    assert sentences == [
        "We measure the mass of [MATH_tex=M_\\odot] stars in the cluster.",
        "The sample holds 120 stars observed with JWST <CIT>.",
        "Our fits give a slope of 2.3 for the mass function.",
    ]


def test_mining_strategies() -> None:
    p = paper("2501.00001", "2025-01-01", ABSTRACT, title="Masses of $M_\\odot$ stars")
    s = paper_sentences(p)
    title = "Masses of [MATH_tex=M_\\odot] stars"
    assert set(mine_pairs([p], "title-sentence")) == {(title, x) for x in s}
    assert set(mine_pairs([p], "adjacent")) == {(s[0], s[1]), (s[1], s[2])}
    assert set(mine_pairs([p], "mixed")) == set(mine_pairs([p], "title-sentence")) | set(
        mine_pairs([p], "adjacent")
    )


def test_coauthor_mining_pairs_papers_of_one_author() -> None:
    a = paper("2501.00001", "2025-01-01", ABSTRACT, title="Disc winds", authors=["Ann Lee"])
    b = paper("2501.00002", "2025-01-02", ABSTRACT, title="Jet power", authors=["ann lee", "Bo"])
    c = paper("2501.00003", "2025-01-03", ABSTRACT, title="Dust", authors=["Bo"])
    big = paper(
        "2501.00004", "2025-01-04", ABSTRACT, title="Survey", authors=[f"P{i}" for i in range(30)]
    )
    crowd = paper("2501.00005", "2025-01-05", ABSTRACT, title="Halo", authors=["P1"])
    pairs = {frozenset(p) for p in mine_pairs([a, b, c, big, crowd], "coauthor")}
    # names match case-insensitively; a 30-author paper pairs with nothing
    assert pairs == {
        frozenset((paper_text(a), paper_text(b))),
        frozenset((paper_text(b), paper_text(c))),
    }
    assert paper_text(a).startswith("Disc winds We measure the mass of [MATH_tex=M_\\odot]")


def test_mining_is_seeded_without_duplicates_on_real_papers() -> None:
    papers = load_papers(SAMPLE)
    for strategy in MINING_STRATEGIES:
        pairs = mine_pairs(papers, strategy, seed=3)
        assert pairs == mine_pairs(papers, strategy, seed=3)
        assert len(pairs) == len(set(pairs)) > (0 if strategy == "coauthor" else len(papers))
        assert all(a != b and len(b.split()) >= 3 for a, b in pairs)
    with pytest.raises(ValueError, match="unknown mining"):
        mine_pairs(papers, "random")
