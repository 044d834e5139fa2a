"""Replaying saved Atom / RSS / OAI-PMH / JSONL files, deduplicated unless forced."""

from __future__ import annotations

import asyncio
import gzip
import json
import time
import tracemalloc
from pathlib import Path
from typing import Any

import pytest
from ingest_support import ARXIV_DATA, MemorySink

from services.core.settings import Settings
from services.ingest.poller import replay_file
from services.ingest.records import MalformedPage
from services.ingest.replay import MAX_REPLAY_BYTES, read_replay


@pytest.mark.parametrize(
    ("name", "kind", "usable", "skipped"),
    [
        ("astro-ph_0601001.atom.xml", "atom", 1, 0),
        ("api_page.atom.xml", "atom", 4, 0),
        ("feed.rss.xml", "rss", 5, 1),
        ("feed.atom.xml", "rss", 5, 0),
        ("oai_page1.xml", "oai", 3, 1),
        ("oai_raw.xml", "oai", 1, 0),
        ("papers.jsonl", "jsonl", 12, 0),
    ],
)
def test_formats_are_recognised(name: str, kind: str, usable: int, skipped: int) -> None:
    found, page = read_replay(ARXIV_DATA / name)
    assert (found, len(page.listings), len(page.skipped)) == (kind, usable, skipped)


def test_gzipped_jsonl_with_bad_lines(tmp_path: Path, records: list[dict[str, Any]]) -> None:
    lines = [json.dumps(records[0]), "{not json", json.dumps({**records[1], "abstract": ""})]
    path = tmp_path / "papers.jsonl.gz"
    path.write_bytes(gzip.compress("\n".join(lines).encode()))
    kind, page = read_replay(path)
    assert kind == "jsonl" and [x.paper.arxiv_id for x in page.listings] == ["2512.12304"]
    assert [why.split(":")[0] for _, why in page.skipped] == ["invalid JSON", "empty abstract"]


def test_unknown_file_is_refused(tmp_path: Path) -> None:
    (tmp_path / "x.txt").write_text("hello")
    (tmp_path / "x.html").write_text("<html><body>maintenance</body></html>")
    with pytest.raises(MalformedPage, match="not XML"):
        read_replay(tmp_path / "x.txt")
    with pytest.raises(MalformedPage, match="unsupported XML document <html>"):
        read_replay(tmp_path / "x.html")


def test_replay_dedupes_unless_forced(settings: Settings, sink: MemorySink) -> None:
    path = ARXIV_DATA / "feed.rss.xml"
    first = asyncio.run(replay_file(settings, sink, path))
    again = asyncio.run(replay_file(settings, sink, path))
    forced = asyncio.run(replay_file(settings, sink, path, force=True))
    assert (first.published, first.skipped) == (5, 1)
    assert (again.published, again.duplicates) == (0, 5)
    assert forced.published == 5 and forced.reasons["forced"] == 5
    assert len(sink.papers) == 10


def test_replay_then_feed_of_the_same_papers_is_deduplicated(
    settings: Settings, sink: MemorySink
) -> None:
    """A paper replayed from JSONL is not published again when the feed lists it."""
    asyncio.run(replay_file(settings, sink, ARXIV_DATA / "papers.jsonl"))
    result = asyncio.run(replay_file(settings, sink, ARXIV_DATA / "feed.atom.xml"))
    # 2512.12304, .13743 and .12015 are unchanged v1 (.12015 now with the same categories);
    # .12644 v2 and .12258 v3 are new versions.
    assert (result.published, result.duplicates) == (2, 3)
    assert sorted(sink.keys[-2:]) == [("2512.12258", 3), ("2512.12644", 2)]


def test_gzip_bomb_is_refused_without_unpacking_it(tmp_path: Path) -> None:
    """272 MiB of zeros in a 270 kB file: refused at the cap, never held whole in memory."""
    member = gzip.compress(bytes(16 * 1024**2), compresslevel=9)
    bomb = tmp_path / "bomb.xml.gz"
    bomb.write_bytes(member * 17)  # gzip allows concatenated members
    assert bomb.stat().st_size < 1024**2
    tracemalloc.start()
    started = time.perf_counter()
    try:
        with pytest.raises(
            MalformedPage, match=f"unpacks to more than {MAX_REPLAY_BYTES // 1024**2} MiB"
        ):
            read_replay(bomb)
        peak = tracemalloc.get_traced_memory()[1]
    finally:
        tracemalloc.stop()
    assert peak < 1.5 * MAX_REPLAY_BYTES
    assert time.perf_counter() - started < 30


def test_broken_gzip_is_a_clear_error(tmp_path: Path) -> None:
    path = tmp_path / "cut.jsonl.gz"
    path.write_bytes(gzip.compress(b'{"arxiv_id": "2501.00001"}\n' * 1000)[:100])
    with pytest.raises(MalformedPage, match="broken gzip file"):
        read_replay(path)
