"""The README stays true: its configuration table is the one generated from Settings."""

from __future__ import annotations

from pathlib import Path

from services.core.settings import Settings, markdown_table

README = Path(__file__).resolve().parents[2] / "README.md"


def test_configuration_table_matches_settings() -> None:
    text = README.read_text()
    begin, end = "<!-- settings:begin -->\n", "\n<!-- settings:end -->"
    block = text[text.index(begin) + len(begin) : text.index(end)]
    assert block == markdown_table(), "regenerate: python -m services.core.settings --write"
    for name in Settings.model_fields:
        assert f"`ASTRO_{name.upper()}`" in block


def test_readme_names_the_two_commands() -> None:
    text = README.read_text()
    assert "make run" in text and "make test" in text
    assert (README.parent / ".ci" / "run").read_text().strip().endswith("make test")
