"""The announcement-feed parser (RSS 2.0 and Atom flavours) on real-format feeds."""

from __future__ import annotations

import datetime as dt

import pytest
from ingest_support import load_records, sample

from services.ingest.records import MalformedPage, listing_digest, split_authors
from services.ingest.rss import parse_feed

EXPECTED = [
    ("2512.12304", 1, "new"),
    ("2512.13743", 1, "new"),
    ("2512.12015", 1, "cross"),
    ("2512.12644", 2, "replace"),
    ("2512.12258", 3, "replace-cross"),
]


@pytest.mark.parametrize("name", ["feed.rss.xml", "feed.atom.xml"])
def test_feed_items(name: str) -> None:
    records = {r["arxiv_id"]: r for r in load_records()}
    page = parse_feed(sample(name))
    got = [(x.paper.arxiv_id, x.paper.version, x.announce_type) for x in page.listings]
    assert got == EXPECTED
    for listing in page.listings:
        paper, record = listing.paper, records[listing.paper.arxiv_id]
        assert listing.exact_version
        assert paper.announced == dt.date(2025, 12, 16)
        assert paper.title == " ".join(record["title"].split())
        assert paper.authors == record["authors"]
        assert paper.categories == record["categories"]  # primary first
        assert not paper.abstract.startswith("arXiv:")
        assert " ".join(paper.abstract.split()) == " ".join(record["abstract"].split())


def test_rss_item_without_abstract_is_skipped() -> None:
    page = parse_feed(sample("feed.rss.xml"))
    assert page.entries == 6 and len(page.listings) == 5
    assert page.skipped == [("2512.13000", "empty abstract")]
    assert page.feed_date == "Tue, 16 Dec 2025 00:00:00 -0500"


def test_both_flavours_give_the_same_digests() -> None:
    rss = parse_feed(sample("feed.rss.xml"))
    atom = parse_feed(sample("feed.atom.xml"))
    assert [listing_digest(x.paper) for x in rss.listings] == [
        listing_digest(x.paper) for x in atom.listings
    ]


def test_empty_feed_is_a_valid_page() -> None:
    page = parse_feed(sample("feed_empty.rss.xml"))
    assert (page.entries, page.listings, page.skipped) == (0, [], [])
    assert page.feed_date == "Sat, 20 Dec 2025 00:00:00 -0500"


def test_version_from_guid_when_description_has_no_preamble() -> None:
    text = sample("feed.rss.xml").replace(
        b"arXiv:2512.12644v2 Announce Type: replace \nAbstract: ", b""
    )
    page = parse_feed(text)
    listing = next(x for x in page.listings if x.paper.arxiv_id == "2512.12644")
    assert (listing.paper.version, listing.announce_type) == (2, "replace")
    assert listing.paper.abstract.startswith("In two papers, A. Lapi et al.")


def test_item_without_version_anywhere_is_inexact() -> None:
    text = (
        sample("feed.rss.xml")
        .replace(b"arXiv:2512.12304v1 Announce Type: new \nAbstract: ", b"")
        .replace(b"oai:arXiv.org:2512.12304v1", b"")
    )
    listing = parse_feed(text).listings[0]
    assert (listing.paper.arxiv_id, listing.paper.version) == ("2512.12304", 1)
    assert not listing.exact_version


def test_item_without_any_id_is_skipped() -> None:
    text = sample("feed_empty.rss.xml").replace(
        b"</skipDays>",
        b"</skipDays><item><title>t</title><description>d</description></item>",
    )
    page = parse_feed(text)
    assert page.entries == 1 and not page.listings
    assert page.skipped[0][1].startswith("no arXiv id")


@pytest.mark.parametrize("name", ["malformed.xml", "external.xml", "oai_page1.xml"])
def test_malformed_or_unsafe(name: str) -> None:
    with pytest.raises(MalformedPage):
        parse_feed(sample(name))


@pytest.mark.parametrize(
    ("text", "names"),
    [
        ("A. Smith, B. Jones", ["A. Smith", "B. Jones"]),
        ("A. Smith, B. Jones and C. Lee", ["A. Smith", "B. Jones", "C. Lee"]),
        ("A. Smith, B. Jones, and C. Lee", ["A. Smith", "B. Jones", "C. Lee"]),
        ("A.\n  Smith,  B. Jones", ["A. Smith", "B. Jones"]),
        ("J. W. Davidson Jr.", ["J. W. Davidson Jr."]),
        ("", []),
    ],
)
def test_split_authors(text: str, names: list[str]) -> None:
    assert split_authors(text) == names
