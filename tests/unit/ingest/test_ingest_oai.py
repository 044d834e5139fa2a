"""The OAI-PMH ListRecords parser (arXiv and arXivRaw formats) and request parameters."""

from __future__ import annotations

import datetime as dt

import pytest
from ingest_support import load_records, sample

from services.ingest.atom import parse_atom
from services.ingest.oai import OaiError, list_records_params, parse_oai
from services.ingest.records import MalformedPage, listing_digest
from services.ingest.rss import parse_feed


def test_first_page_with_resumption_token_and_deleted_record() -> None:
    page = parse_oai(sample("oai_page1.xml"))
    assert page.entries == 4
    assert [x.paper.arxiv_id for x in page.listings] == ["2512.13221", "2512.12027", "2512.13756"]
    assert page.skipped == [("2512.10001", "deleted")]
    assert (page.resumption_token, page.complete_list_size) == ("6960524|1001", 5)
    first = page.listings[0]
    assert first.exact_version and first.paper.version == 1
    assert first.paper.published == dt.date(2025, 12, 15)
    assert (first.datestamp, first.version_date) == ("2025-12-15", "2025-12-15")


def test_last_page_and_a_revised_record() -> None:
    records = {r["arxiv_id"]: r for r in load_records()}
    page = parse_oai(sample("oai_page2.xml"))
    assert page.resumption_token is None  # empty token: the list is complete
    plain, revised = page.listings
    # keyname + forenames give back the names as arXiv lists them elsewhere.
    assert plain.paper.authors == records["2512.13818"]["authors"]
    assert plain.paper.title == " ".join(records["2512.13818"]["title"].split())
    assert plain.paper.categories == ["astro-ph.CO", "astro-ph.GA"]
    # Wrapped as OAI-PMH wraps it; leading blanks stripped; same words as the record.
    assert "\n" in plain.paper.abstract and not plain.paper.abstract.startswith(" ")
    assert plain.paper.abstract.split() == records["2512.13818"]["abstract"].split()
    # <updated> present: a later version whose number the format does not give.
    assert revised.paper.arxiv_id == "2512.12644"
    assert (revised.paper.version, revised.exact_version) == (2, False)
    assert revised.version_date == "2025-12-15"
    assert revised.paper.published == dt.date(2025, 12, 1)


def test_arxiv_raw_gives_exact_versions() -> None:
    page = parse_oai(sample("oai_raw.xml"))
    (listing,) = page.listings
    assert (listing.paper.version, listing.exact_version) == (3, True)
    assert listing.version_date == "2025-12-15"
    assert listing.paper.published == dt.date(2025, 11, 20)
    assert listing.paper.authors == ["Amelia Drew", "Ivan Rybak"]
    assert listing.paper.categories[0] == "hep-ph"
    assert page.resumption_token is None and page.complete_list_size == 1


def test_no_records_match_is_an_empty_page() -> None:
    page = parse_oai(sample("oai_norecords.xml"))
    assert (page.entries, page.listings, page.resumption_token) == (0, [], None)


def test_other_oai_errors_raise_with_their_code() -> None:
    with pytest.raises(OaiError, match="badResumptionToken") as caught:
        parse_oai(sample("oai_badtoken.xml"))
    assert caught.value.code == "badResumptionToken"


@pytest.mark.parametrize("name", ["malformed.xml", "entities.xml", "feed.rss.xml"])
def test_malformed(name: str) -> None:
    with pytest.raises(MalformedPage):
        parse_oai(sample(name))


def test_list_records_params() -> None:
    assert list_records_params(from_date=dt.date(2025, 12, 15)) == {
        "verb": "ListRecords",
        "set": "physics:astro-ph",
        "metadataPrefix": "arXiv",
        "from": "2025-12-15",
    }
    # With a resumption token OAI-PMH forbids every other argument.
    assert list_records_params(from_date=dt.date(2025, 12, 15), token="6960524|1001") == {
        "verb": "ListRecords",
        "resumptionToken": "6960524|1001",
    }


def test_same_paper_has_the_same_digest_from_every_source() -> None:
    """Wrapped (OAI-PMH) and unwrapped (API, feed) copies of one version dedupe together."""
    api = {x.paper.arxiv_id: x.paper for x in parse_atom(sample("api_page.atom.xml")).listings}
    feed = {x.paper.arxiv_id: x.paper for x in parse_feed(sample("feed.rss.xml")).listings}
    oai = {x.paper.arxiv_id: x.paper for x in parse_oai(sample("oai_page2.xml")).listings}
    assert listing_digest(api["2512.12304"]) == listing_digest(feed["2512.12304"])
    assert listing_digest(oai["2512.12644"]) == listing_digest(feed["2512.12644"])
