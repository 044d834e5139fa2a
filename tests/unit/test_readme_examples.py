"""The README's examples work right after the quick start: the papers they name are in the
file the quick start publishes, and the Qdrant snippet is marked for its integration test."""

from __future__ import annotations

import json
import re
from pathlib import Path

import click

from services.cli.commands import cli

ROOT = Path(__file__).resolve().parents[2]
README = ROOT / "README.md"


def quick_start_file() -> Path:
    """The file the quick start's ``astrostream publish`` sends (what ``make run`` users load)."""
    text = README.read_text()
    section = text[text.index("## Quick start") : text.index("## Data flow")]
    found = re.search(r"astrostream publish (\S+)", section)
    assert found, "the quick start publishes no file"
    return ROOT / found.group(1)


def sample_ids() -> set[str]:
    lines = quick_start_file().read_text().splitlines()
    return {json.loads(line)["arxiv_id"] for line in lines if line.strip()}


def help_texts() -> str:
    def walk(command: click.Command, name: str) -> str:
        text = command.get_help(click.Context(command, info_name=name))
        if isinstance(command, click.Group):
            text += "".join(walk(sub, f"{name} {n}") for n, sub in command.commands.items())
        return text

    return walk(cli, "astrostream")


def test_seed_papers_of_the_examples_are_in_the_quick_start_sample() -> None:
    ids = sample_ids()
    assert len(ids) >= 100
    for where, text in (("README.md", README.read_text()), ("--help", help_texts())):
        seeds = re.findall(r"--arxiv-id[ =]([0-9]\S*)", text)
        assert seeds, f"{where} has no subscribe example"
        missing = sorted(set(seeds) - ids)
        assert not missing, f"{where} names papers the quick start does not publish: {missing}"


def test_the_qdrant_snippet_is_marked_and_needs_no_placeholder() -> None:
    text = README.read_text()
    begin, end = "<!-- qdrant-snippet:begin -->", "<!-- qdrant-snippet:end -->"
    block = text[text.index(begin) : text.index(end)]
    assert "```python" in block and "```bash" in block
    assert "…" not in block and "<" not in block.replace(begin, "")
    assert "client.close()" in block and "model_path" in block
