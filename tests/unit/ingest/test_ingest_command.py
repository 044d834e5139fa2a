"""``astrostream ingest`` argument checks (the runs themselves are integration tests)."""

from __future__ import annotations

import pytest
from click.testing import CliRunner
from ingest_support import ARXIV_DATA

from services.ingest.command import ingest


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--since", "2025-12-01", "--source", "rss"], "--since needs --source api or oai"),
        (["--force"], "--force only applies to --replay"),
        (["--replay", str(ARXIV_DATA / "feed.rss.xml"), "--once"], "takes no --once"),
        (["--since", "yesterday"], "Invalid value for '--since'"),
        (["--source", "ftp"], "Invalid value for '--source'"),
        (["--replay", "/nonexistent.xml"], "does not exist"),
    ],
)
def test_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(ingest, args)
    assert result.exit_code == 2
    assert message in result.output


def test_help_lists_the_options() -> None:
    result = CliRunner().invoke(ingest, ["--help"])
    assert result.exit_code == 0
    for option in ("--once", "--since", "--replay", "--source", "--min-interval"):
        assert option in result.output


def test_bad_configuration_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ASTRO_INGEST_MIN_INTERVAL_S", "-1")
    result = CliRunner().invoke(ingest, ["--once"])
    assert result.exit_code == 1
    assert "ASTRO_INGEST_MIN_INTERVAL_S" in result.output
