"""Unit tests of the train command's argument checks (no model is loaded)."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from trainer.cli import train


@pytest.mark.parametrize(
    ("args", "message"),
    [
        ([], "exactly one of --papers or --pairs"),
        (["--papers", "a.jsonl", "--pairs", "b.csv"], "exactly one of --papers or --pairs"),
        (["--papers", "a.jsonl", "--force", "--no-promote"], "contradict"),
        (["--papers", "a.jsonl", "--mining", "random"], "'random' is not one of"),
        (["--papers", "a.jsonl", "--batch-size", "1"], "--batch-size"),
        (["--architecture", "static", "--pairs", "b.csv"], "static mines its pairs from --papers"),
        (["--papers", "a.jsonl", "--cutoff", "1 Dec 2025"], "--cutoff"),
        (["--papers", "a.jsonl", "--exclude-authors", "all"], "'all' is not one of"),
        (["--papers", "a.jsonl", "--save-steps", "10"], "--save-steps needs --checkpoint-dir"),
        (["--papers", "a.jsonl", "--checkpoint-dir", "c", "--save-steps", "0"], "--save-steps"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(train, args)
    assert result.exit_code == 2
    assert message in result.output


def test_input_errors_are_one_line_without_traceback(tmp_path: Path) -> None:
    empty = tmp_path / "pairs.csv"
    empty.write_text("")
    result = CliRunner().invoke(train, ["--pairs", str(empty), "--out", str(tmp_path / "m")])
    assert result.exit_code == 1
    assert f"Error: pairs file {empty} is empty" in result.output
    assert "Traceback" not in result.output
    assert not (tmp_path / "m").exists()


def test_help_lists_the_seed_defaults() -> None:
    result = CliRunner().invoke(train, ["--help"])
    assert result.exit_code == 0
    for default in ("default: 8.0", "default: 32", "default: 5e-05", "default: 42", "default: 256"):
        assert default in result.output
    text = " ".join(result.output.split())
    assert "--checkpoint-dir DIRECTORY" in text and "resumes from the newest checkpoint" in text
