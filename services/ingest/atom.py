"""The arXiv API (Atom 1.0 + opensearch): query building and page parsing, no I/O."""

from __future__ import annotations

import datetime as dt
from collections.abc import Sequence
from xml.etree.ElementTree import Element

from services.core.schemas import split_arxiv_id
from services.core.settings import DEFAULT_CATEGORIES
from services.ingest.records import (
    Listing,
    MalformedPage,
    Page,
    SourceError,
    build_listing,
    collapse_ws,
    local_name,
    parse_datetime,
    parse_xml,
    text_of,
    unique,
)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
OPENSEARCH = "{http://a9.com/-/spec/opensearch/1.1/}"

ASTRO_PH = frozenset(DEFAULT_CATEGORIES.split(","))
# The API serves at most this many results per query; deeper paging restarts the date window.
MAX_OFFSET = 10_000
OPEN_END = "999912312359"


def category_query(categories: Sequence[str]) -> str:
    """``cat:`` terms for the API: the whole astro-ph family collapses to ``cat:astro-ph*``.

    ``cat:`` matches primary and cross-listed categories alike.
    """
    cats = unique(categories)
    terms: list[str] = []
    if set(cats) >= ASTRO_PH:
        terms.append("cat:astro-ph*")
        cats = [c for c in cats if c not in ASTRO_PH]
    terms += [f"cat:{c}" for c in cats]
    if not terms:
        raise ValueError("no categories to query: set ASTRO_CATEGORIES (e.g. astro-ph.GA)")
    return terms[0] if len(terms) == 1 else "(" + " OR ".join(terms) + ")"


def submitted_window(since: dt.datetime, until: dt.datetime | None = None) -> str:
    """``submittedDate:[YYYYMMDDHHMM TO YYYYMMDDHHMM]`` in UTC; open-ended without ``until``."""
    start = _utc(since).strftime("%Y%m%d%H%M")
    end = _utc(until).strftime("%Y%m%d%H%M") if until is not None else OPEN_END
    return f"submittedDate:[{start} TO {end}]"


def api_params(
    categories: Sequence[str],
    since: dt.datetime | None,
    *,
    start: int,
    max_results: int,
) -> dict[str, str]:
    """Query parameters of one API page, oldest submissions first.

    Ascending order keeps paging stable while arXiv adds papers: new ones land on later pages.
    """
    query = category_query(categories)
    if since is not None:
        query = f"{query} AND {submitted_window(since)}"
    return {
        "search_query": query,
        "sortBy": "submittedDate",
        "sortOrder": "ascending",
        "start": str(start),
        "max_results": str(max_results),
    }


def parse_atom(data: str | bytes) -> Page:
    """Parse one arXiv API response.

    Returns:
        The page; each listing's paper has ``published`` from ``<published>`` (first version),
        ``version_date`` from ``<updated>`` (this version), categories primary first.

    Raises:
        MalformedPage: not an Atom feed.
        SourceError: the API answered with its error entry (bad query, bad id).
    """
    root = parse_xml(data)
    if root.tag != f"{ATOM}feed":
        raise MalformedPage(f"expected an Atom <feed>, got <{local_name(root.tag)}>")
    page = Page(
        total_results=_int(root.findtext(f"{OPENSEARCH}totalResults")),
        start_index=_int(root.findtext(f"{OPENSEARCH}startIndex")),
    )
    for position, entry in enumerate(root.iterfind(f"{ATOM}entry")):
        page.entries += 1
        listing = _entry(entry, position, page.skipped)
        if listing is not None:
            page.listings.append(listing)
    if page.total_results is None:
        raise MalformedPage("Atom feed without opensearch:totalResults (not an arXiv API page)")
    return page


def _entry(entry: Element, position: int, skipped: list[tuple[str, str]]) -> Listing | None:
    raw_id = (entry.findtext(f"{ATOM}id") or "").strip()
    if "/api/errors" in raw_id:
        message = collapse_ws(entry.findtext(f"{ATOM}summary") or raw_id)
        raise SourceError(f"arXiv API error: {message}")
    try:
        arxiv_id, version = split_arxiv_id(raw_id.split("/abs/", 1)[-1])
    except ValueError:
        skipped.append((f"entry {position}", f"unrecognised id {raw_id!r}"))
        return None
    primary = entry.find(f"{ARXIV}primary_category")
    categories = unique(
        [primary.get("term", "") if primary is not None else ""]
        + [c.get("term", "") for c in entry.iterfind(f"{ATOM}category")]
    )
    updated = parse_datetime(entry.findtext(f"{ATOM}updated"))
    fields = {
        "arxiv_id": arxiv_id,
        "version": version or 1,
        "title": collapse_ws(text_of(entry.find(f"{ATOM}title"))),
        "abstract": text_of(entry.find(f"{ATOM}summary")).strip(),
        "authors": unique(
            collapse_ws(a.findtext(f"{ATOM}name") or "") for a in entry.iterfind(f"{ATOM}author")
        ),
        "categories": categories,
        "published": parse_datetime(entry.findtext(f"{ATOM}published")),
        "comment": collapse_ws(text_of(entry.find(f"{ARXIV}comment"))) or None,
    }
    return build_listing(
        fields,
        arxiv_id,
        skipped,
        exact_version=version is not None,
        version_date=updated.date().isoformat() if updated else None,
    )


def _int(text: str | None) -> int | None:
    try:
        return int(text.strip()) if text else None
    except ValueError:
        return None


def _utc(when: dt.datetime) -> dt.datetime:
    return when.astimezone(dt.UTC) if when.tzinfo else when.replace(tzinfo=dt.UTC)
