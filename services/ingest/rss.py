"""arXiv's daily announcement feed (rss.arxiv.org, RSS 2.0 or Atom flavour): parsing, no I/O.

Each item is one announcement: ``new`` (first listing), ``cross`` (a cross-list of a paper from
another archive), ``replace`` / ``replace-cross`` (a new version). The description reads
``arXiv:2505.07925v2 Announce Type: replace \\nAbstract: ...``; the version comes from there
(or from the guid ``oai:arXiv.org:2505.07925v2``), the announce type from
``<arxiv:announce_type>``.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from xml.etree.ElementTree import Element

from services.core.schemas import split_arxiv_id
from services.ingest.records import (
    Listing,
    MalformedPage,
    Page,
    build_listing,
    collapse_ws,
    local_name,
    parse_date,
    parse_xml,
    split_authors,
    text_of,
    unique,
)

ATOM = "{http://www.w3.org/2005/Atom}"
ARXIV = "{http://arxiv.org/schemas/atom}"
DC = "{http://purl.org/dc/elements/1.1/}"

ANNOUNCE_TYPES = frozenset({"new", "cross", "replace", "replace-cross"})

_PREAMBLE = re.compile(
    r"^\s*arXiv:(?P<id>\S+?)\s+Announce\s+Type:\s*(?P<type>[A-Za-z-]+)\s*(?:Abstract:\s*)?",
    re.IGNORECASE,
)


def parse_feed(data: str | bytes) -> Page:
    """Parse one announcement feed, RSS 2.0 (``<rss><channel><item>``) or Atom (``<feed><entry>``).

    An empty channel is a valid page (arXiv announces nothing at weekends and holidays).

    Raises:
        MalformedPage: the document is neither flavour.
    """
    root = parse_xml(data)
    read: Callable[[Element, int, list[tuple[str, str]]], Listing | None]
    if local_name(root.tag) == "rss":
        channel = root.find("channel")
        if channel is None:
            raise MalformedPage("RSS document without <channel>")
        page = Page(feed_date=_first_text(channel, "pubDate", "lastBuildDate"))
        items = list(channel.iterfind("item"))
        read = _rss_item
    elif root.tag == f"{ATOM}feed":
        page = Page(feed_date=_first_text(root, f"{ATOM}updated"))
        items = list(root.iterfind(f"{ATOM}entry"))
        read = _atom_entry
    else:
        raise MalformedPage(f"expected an RSS or Atom feed, got <{local_name(root.tag)}>")
    for position, item in enumerate(items):
        page.entries += 1
        listing = read(item, position, page.skipped)
        if listing is not None:
            page.listings.append(listing)
    return page


def _rss_item(item: Element, position: int, skipped: list[tuple[str, str]]) -> Listing | None:
    return _listing(
        position,
        skipped,
        title=text_of(item.find("title")),
        description=text_of(item.find("description")),
        ids=[item.findtext("guid") or "", item.findtext("link") or ""],
        announce_type=item.findtext(f"{ARXIV}announce_type"),
        authors=split_authors(text_of(item.find(f"{DC}creator"))),
        categories=[c.text or "" for c in item.iterfind("category")],
        date=item.findtext("pubDate"),
    )


def _atom_entry(entry: Element, position: int, skipped: list[tuple[str, str]]) -> Listing | None:
    links = [link.get("href", "") for link in entry.iterfind(f"{ATOM}link")]
    names = [collapse_ws(a.findtext(f"{ATOM}name") or "") for a in entry.iterfind(f"{ATOM}author")]
    creators = text_of(entry.find(f"{DC}creator"))
    return _listing(
        position,
        skipped,
        title=text_of(entry.find(f"{ATOM}title")),
        description=text_of(entry.find(f"{ATOM}summary")),
        ids=[entry.findtext(f"{ATOM}id") or "", *links],
        announce_type=entry.findtext(f"{ARXIV}announce_type"),
        # One <author> holding "A, B, C" and several <author>s both occur: split either way.
        authors=unique(n for name in names for n in split_authors(name)) or split_authors(creators),
        categories=[c.get("term", "") for c in entry.iterfind(f"{ATOM}category")],
        date=entry.findtext(f"{ATOM}published") or entry.findtext(f"{ATOM}updated"),
    )


def _listing(
    position: int,
    skipped: list[tuple[str, str]],
    *,
    title: str,
    description: str,
    ids: list[str],
    announce_type: str | None,
    authors: list[str],
    categories: list[str],
    date: str | None,
) -> Listing | None:
    preamble = _PREAMBLE.match(description)
    abstract = description[preamble.end() :] if preamble else description
    candidates = ([preamble.group("id")] if preamble else []) + [i.strip() for i in ids]
    found = _arxiv_id(candidates)
    if found is None:
        skipped.append((f"item {position}", f"no arXiv id in {[c for c in candidates if c]}"))
        return None
    arxiv_id, version = found
    kind = (announce_type or (preamble.group("type") if preamble else "") or "").strip().lower()
    fields = {
        "arxiv_id": arxiv_id,
        "version": version or 1,
        "title": collapse_ws(title),
        "abstract": abstract.strip(),
        "authors": authors,
        "categories": unique(categories),
        "announced": parse_date(date),
    }
    return build_listing(
        fields,
        arxiv_id,
        skipped,
        exact_version=version is not None,
        announce_type=kind if kind in ANNOUNCE_TYPES else None,
    )


def _arxiv_id(candidates: list[str]) -> tuple[str, int | None] | None:
    """The first versioned id among the candidates, else the first bare one."""
    bare: tuple[str, int | None] | None = None
    for raw in candidates:
        if not raw:
            continue
        text = raw.rsplit("/abs/", 1)[-1].removeprefix("oai:arXiv.org:").removeprefix("arXiv:")
        try:
            arxiv_id, version = split_arxiv_id(text)
        except ValueError:
            continue
        if version is not None:
            return arxiv_id, version
        bare = bare or (arxiv_id, None)
    return bare


def _first_text(element: Element, *paths: str) -> str | None:
    for path in paths:
        text = element.findtext(path)
        if text and text.strip():
            return text.strip()
    return None
