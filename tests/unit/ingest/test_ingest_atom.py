"""The arXiv API Atom parser and query builder, on a real response and real-format pages."""

from __future__ import annotations

import datetime as dt

import pytest
from ingest_support import load_records, sample

from services.core.settings import DEFAULT_CATEGORIES
from services.ingest.atom import api_params, category_query, parse_atom, submitted_window
from services.ingest.records import MalformedPage, SourceError, listing_digest


def test_real_api_response() -> None:
    page = parse_atom(sample("astro-ph_0601001.atom.xml"))
    assert (page.total_results, page.start_index, page.entries) == (1, 0, 1)
    (listing,) = page.listings
    paper = listing.paper
    assert (paper.arxiv_id, paper.version, listing.exact_version) == ("astro-ph/0601001", 1, True)
    assert paper.title.startswith("Frequency of Hot Jupiters and Very Hot Jupiters")
    assert paper.authors == ["Andrew Gould", "Susan Dorsher", "B. Scott Gaudi", "Andrzej Udalski"]
    assert paper.categories == ["astro-ph"]
    assert paper.published == dt.datetime(2006, 1, 2, 14, 57, 58, tzinfo=dt.UTC)
    assert listing.version_date == "2006-01-02"
    assert paper.abstract.startswith("We derive the frequencies of hot Jupiters")
    assert "V_max<17.5" in paper.abstract  # entities decoded, text kept as given
    assert paper.comment is not None and paper.comment.startswith("62 pages including 16 figures")


def test_page_of_real_records() -> None:
    records = {r["arxiv_id"]: r for r in load_records()}
    page = parse_atom(sample("api_page.atom.xml"))
    assert (page.total_results, page.start_index, page.entries) == (9, 3, 4)
    by_id = {x.paper.arxiv_id: x for x in page.listings}
    assert list(by_id) == ["2512.11960", "2512.12015", "2512.12304", "2512.13574"]

    revised = by_id["2512.12015"]
    assert revised.paper.version == 2 and revised.exact_version
    assert revised.version_date == "2025-12-15"
    assert revised.paper.published == dt.datetime(2025, 12, 12, 19, 0, 1, tzinfo=dt.UTC)
    # Primary category first (a gr-qc paper cross-listed to astro-ph), no duplicates.
    assert revised.paper.categories == ["gr-qc", "astro-ph.CO", "astro-ph.HE", "hep-th"]

    assert by_id["2512.13574"].paper.comment is None
    many = by_id["2512.11960"].paper
    assert len(many.authors) == len(records["2512.11960"]["authors"]) == 37
    for arxiv_id, listing in by_id.items():
        record = records[arxiv_id]
        assert listing.paper.title == " ".join(record["title"].split())
        assert listing.paper.authors == record["authors"]
        assert " ".join(listing.paper.abstract.split()) == " ".join(record["abstract"].split())


def test_title_whitespace_is_collapsed_but_abstract_kept() -> None:
    text = sample("api_page.atom.xml").replace(
        b"<title>Local Nonlinear Transforms", b"<title>\n  Local   Nonlinear\n  Transforms"
    )
    text = text.replace(b"<summary>To eliminate", b"<summary>  To eliminate\ngravitational")
    page = parse_atom(text)
    paper = next(x.paper for x in page.listings if x.paper.arxiv_id == "2512.12304")
    assert paper.title.startswith("Local Nonlinear Transforms effectively")
    assert paper.abstract.startswith("To eliminate\ngravitational")


def test_api_error_entry_raises_source_error() -> None:
    error = b"""<?xml version="1.0" encoding="UTF-8"?>
<feed xmlns="http://www.w3.org/2005/Atom">
  <title type="html">ArXiv Query: search_query=&amp;id_list=1234.12345</title>
  <opensearch:totalResults xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/">1</opensearch:totalResults>
  <entry>
    <id>http://arxiv.org/api/errors#incorrect_id_format_for_1234.12345</id>
    <title>Error</title>
    <summary>incorrect id format for 1234.12345</summary>
  </entry>
</feed>"""
    with pytest.raises(SourceError, match=r"incorrect id format for 1234\.12345"):
        parse_atom(error)


def test_empty_page() -> None:
    page = parse_atom(sample("api_empty.atom.xml"))
    assert (page.total_results, page.entries, page.listings) == (0, 0, [])


def test_entry_without_abstract_is_skipped() -> None:
    text = sample("api_page.atom.xml")
    start = text.index(b"<summary>")
    end = text.index(b"</summary>") + len(b"</summary>")
    page = parse_atom(text[:start] + b"<summary>  </summary>" + text[end:])
    assert page.entries == 4 and len(page.listings) == 3
    assert page.skipped == [("2512.11960", "empty abstract")]


@pytest.mark.parametrize(
    ("name", "why"),
    [
        ("malformed.xml", "not well-formed"),
        ("entities.xml", "DTDForbidden"),
        ("external.xml", "DTDForbidden"),
        ("feed.rss.xml", "expected an Atom <feed>"),
    ],
)
def test_untrusted_or_wrong_documents_are_malformed(name: str, why: str) -> None:
    with pytest.raises(MalformedPage, match=why):
        parse_atom(sample(name))


def test_atom_without_opensearch_is_not_an_api_page() -> None:
    with pytest.raises(MalformedPage, match="totalResults"):
        parse_atom(sample("feed.atom.xml"))


def test_category_query() -> None:
    assert category_query(DEFAULT_CATEGORIES.split(",")) == "cat:astro-ph*"
    assert category_query(["astro-ph.GA"]) == "cat:astro-ph.GA"
    assert category_query([*DEFAULT_CATEGORIES.split(","), "gr-qc"]) == (
        "(cat:astro-ph* OR cat:gr-qc)"
    )
    assert category_query(["astro-ph.CO", "astro-ph.GA"]) == "(cat:astro-ph.CO OR cat:astro-ph.GA)"
    with pytest.raises(ValueError, match="ASTRO_CATEGORIES"):
        category_query([])


def test_api_params() -> None:
    since = dt.datetime(2025, 12, 13, 22, 30, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    assert submitted_window(since) == "submittedDate:[202512140330 TO 999912312359]"
    params = api_params(["astro-ph.GA"], since, start=400, max_results=200)
    assert params == {
        "search_query": "cat:astro-ph.GA AND submittedDate:[202512140330 TO 999912312359]",
        "sortBy": "submittedDate",
        "sortOrder": "ascending",
        "start": "400",
        "max_results": "200",
    }
    assert (
        "submittedDate"
        not in api_params(["astro-ph"], None, start=0, max_results=1)["search_query"]
    )


def test_digest_ignores_wrapping_and_category_order() -> None:
    page = parse_atom(sample("api_page.atom.xml"))
    paper = page.listings[0].paper
    rewrapped = paper.model_copy(
        update={
            "abstract": paper.abstract.replace(" ", "\n", 5),
            "categories": list(reversed(paper.categories)),
            "comment": "changed",
        }
    )
    assert listing_digest(rewrapped) == listing_digest(paper)
    assert listing_digest(paper.model_copy(update={"title": "Another"})) != listing_digest(paper)


def test_digest_sees_authors_and_categories() -> None:
    paper = parse_atom(sample("api_page.atom.xml")).listings[0].paper
    authors = paper.model_copy(update={"authors": [*paper.authors, "A. Newcomer"]})
    crosslist = paper.model_copy(update={"categories": [*paper.categories, "physics.optics"]})
    assert listing_digest(authors) != listing_digest(paper)
    assert listing_digest(crosslist) != listing_digest(paper)
    # Where the author list ends and the category list starts is part of the digest.
    moved = paper.model_copy(
        update={"authors": paper.authors[:-1], "categories": [paper.authors[-1], *paper.categories]}
    )
    assert listing_digest(moved) != listing_digest(paper)
