"""Unit tests of services.alerts.lexicon: the prior document-frequency table of the alerts' IDF."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from services.alerts import lexicon
from services.core.errors import ConfigError
from services.core.settings import load_settings


def test_build_counts_documents_and_drops_rare_terms() -> None:
    stats = lexicon.build(
        ["dark matter halo", "dark matter lensing", "exoplanet transit"], min_df=2
    )
    assert stats.docs == 3
    assert stats.df["dark matter"] == 2
    assert "exoplanet" not in stats.df  # seen once: no better than unseen
    assert stats.idf("dark") < stats.idf("exoplanet") == stats.idf("never seen")


def test_save_and_load_round_trip_byte_for_byte(tmp_path: Path) -> None:
    stats = lexicon.build(["dark matter halo", "dark matter lensing"], min_df=1)
    first, second = tmp_path / "a.tsv.gz", tmp_path / "b.tsv.gz"
    lexicon.save(stats, first)
    lexicon.save(lexicon.load(first), second)
    assert first.read_bytes() == second.read_bytes()  # reproducible: no timestamp inside
    loaded = lexicon.load(first)
    assert (loaded.docs, loaded.df) == (stats.docs, stats.df)


def test_bundled_table_is_the_pre_cutoff_astro_ph_corpus() -> None:
    stats = lexicon.prior("bundled")
    assert stats is not None
    assert stats.docs > 5000
    # common astronomy words are frequent, so weigh less than rare instrument names
    assert stats.df["galaxies"] > 500
    assert stats.idf("galaxies") < stats.idf("jwst") < stats.idf("no such term")
    assert lexicon.prior("none") is None


@pytest.mark.parametrize(
    ("content", "problem"),
    [
        (b"not gzip", "not a document-frequency table"),
        (gzip.compress(b"term\t3\n"), "#docs"),
        (gzip.compress(b"#docs\t10\nterm\tmany\n"), "line 2"),
    ],
)
def test_load_rejects_what_is_not_a_table(tmp_path: Path, content: bytes, problem: str) -> None:
    path = tmp_path / "bad.tsv.gz"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=problem) as info:
        lexicon.load(path)
    assert "ASTRO_ALERT_DF_TABLE" in str(info.value)


def test_setting_names_a_missing_file() -> None:
    with pytest.raises(ConfigError, match="ASTRO_ALERT_DF_TABLE") as info:
        load_settings(alert_df_table="/nonexistent/df.tsv.gz")
    assert "no such file" in str(info.value)


def test_command_line_builds_a_table_from_papers(tmp_path: Path) -> None:
    papers = tmp_path / "papers.jsonl"
    rows = [
        {"title": "Dark matter halo", "abstract": "Lensing.", "announced": "2025-01-02"},
        {"title": "Dark matter lensing", "abstract": "Halo.", "announced": "2025-01-03"},
        {"title": "Dark matter later", "abstract": "Halo.", "announced": "2026-01-01"},
    ]
    rows = [{"arxiv_id": f"2501.0000{i}", **r} for i, r in enumerate(rows)]
    papers.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    out = tmp_path / "df.tsv.gz"
    assert lexicon.main(["--papers", str(papers), "--out", str(out), "--before", "2025-12-01"]) == 0
    stats = lexicon.load(out)
    assert stats.docs == 2
    assert stats.df["dark matter"] == 2

    papers.write_text(json.dumps({"title": "no id"}) + "\n")
    with pytest.raises(SystemExit) as exit_info:
        lexicon.main(["--papers", str(papers), "--out", str(tmp_path / "bad.tsv.gz")])
    assert exit_info.value.code == 1
    assert not (tmp_path / "bad.tsv.gz").exists()
