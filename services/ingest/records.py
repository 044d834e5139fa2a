"""What the three arXiv parsers produce: listings, pages, safe XML parsing, text clean-up, digests."""

from __future__ import annotations

import datetime as dt
import email.utils
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any
from xml.etree.ElementTree import Element, ParseError

import defusedxml.ElementTree as safe_et
from defusedxml import DefusedXmlException
from pydantic import ValidationError

from services.core.errors import AstrostreamError, describe_validation_error
from services.core.ids import content_digest
from services.core.schemas import Paper


class MalformedPage(AstrostreamError):
    """A fetched page is not the XML we expect: log it with its URL and skip it."""


class SourceError(AstrostreamError):
    """The source answered with an error that retrying will not fix (HTTP 4xx, an API error).

    Args:
        message: what the source said, naming the URL.
        code: a machine-readable code where the source gives one (OAI-PMH error codes).
    """

    def __init__(self, message: str, code: str | None = None) -> None:
        super().__init__(message)
        self.code = code


@dataclass(frozen=True)
class Listing:
    """One paper as a source lists it, with what the source tells about its version.

    Attributes:
        paper: the validated paper (version 1 when the source does not say).
        exact_version: False when the source gives no version number (OAI-PMH ``arXiv`` format):
            the version is then a lower bound and ``version_date`` decides (see ``state.decide``).
        version_date: ISO date (``YYYY-MM-DD``) of this version's submission, when known.
        announce_type: ``new`` / ``cross`` / ``replace`` / ``replace-cross`` (announcement feed).
        datestamp: the OAI-PMH header datestamp, the harvesting cursor of that source.
    """

    paper: Paper
    exact_version: bool = True
    version_date: str | None = None
    announce_type: str | None = None
    datestamp: str | None = None


@dataclass
class Page:
    """One parsed response page.

    Attributes:
        listings: usable papers, in page order.
        entries: how many entries/items/records the page held, usable or not (paging counts these).
        skipped: ``(where, reason)`` of entries that cannot be published (empty abstract, ...).
        total_results / start_index: arXiv API paging (opensearch).
        resumption_token / complete_list_size: OAI-PMH paging; an empty token ends the list.
        feed_date: the feed's own date (announcement feed), for logs and the cursor.
    """

    listings: list[Listing] = field(default_factory=list)
    entries: int = 0
    skipped: list[tuple[str, str]] = field(default_factory=list)
    total_results: int | None = None
    start_index: int | None = None
    resumption_token: str | None = None
    complete_list_size: int | None = None
    feed_date: str | None = None


def parse_xml(data: str | bytes) -> Element:
    """Parse untrusted XML: no DTD, no entity expansion, no external references.

    Raises:
        MalformedPage: when the text is not well-formed XML or uses a forbidden construct.
    """
    if not data or not data.strip():
        raise MalformedPage("empty response body")
    try:
        root: Element = safe_et.fromstring(data, forbid_dtd=True)
    except (ParseError, DefusedXmlException) as exc:
        raise MalformedPage(f"not well-formed XML: {type(exc).__name__}: {exc}") from None
    return root


def local_name(tag: str) -> str:
    """``{http://www.w3.org/2005/Atom}feed`` -> ``feed``."""
    return tag.rsplit("}", 1)[-1]


def text_of(element: Element | None) -> str:
    """All text inside ``element`` (empty string when absent)."""
    return "".join(element.itertext()) if element is not None else ""


def collapse_ws(text: str) -> str:
    """Collapse runs of whitespace (arXiv wraps titles and author lists at ~80 columns)."""
    return " ".join(text.split())


def unique(values: Iterable[str]) -> list[str]:
    """Non-empty values, first occurrence kept, order preserved (primary category first)."""
    return list(dict.fromkeys(v for v in (s.strip() for s in values) if v))


_AUTHOR_SEP = re.compile(r"\s*,\s*(?:and\s+)?|\s+and\s+")


def split_authors(text: str) -> list[str]:
    """Split ``"A. Smith, B. Jones and C. Lee"`` into names (announcement feed, arXivRaw)."""
    return unique(_AUTHOR_SEP.split(collapse_ws(text)))


def parse_datetime(text: str | None) -> dt.datetime | None:
    """ISO 8601 (``2006-01-02T14:57:58Z``) or RFC 822 (``Mon, 12 May 2025 00:00:00 -0400``)."""
    if not text or not text.strip():
        return None
    text = text.strip()
    try:
        return dt.datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError:
        pass
    try:
        return email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError):
        return None


def parse_date(text: str | None) -> dt.date | None:
    """A date from ``YYYY-MM-DD`` or any format :func:`parse_datetime` reads (its local date)."""
    when = parse_datetime(text)
    return when.date() if when is not None else None


def build_listing(
    fields: dict[str, Any], where: str, skipped: list[tuple[str, str]], **extra: Any
) -> Listing | None:
    """Validate ``fields`` into a Paper wrapped in a Listing; record why when it is unusable.

    A paper without an abstract cannot be embedded, so it is skipped (with its id in ``skipped``)
    rather than published.
    """
    if not str(fields.get("abstract") or "").strip():
        skipped.append((where, "empty abstract"))
        return None
    try:
        paper = Paper.model_validate(fields)
    except ValidationError as exc:
        skipped.append((where, f"invalid {describe_validation_error(exc, limit=1)[0]}"))
        return None
    return Listing(paper=paper, **extra)


# Separates the items of a list part, so that no author list and category list share a digest.
UNIT_SEP = "\x1f"


def listing_digest(paper: Paper) -> str:
    """:func:`services.core.ids.content_digest` of what is embedded and filtered on.

    That is title, abstract, authors and categories. Whitespace is collapsed and categories
    sorted so that the same version listed by two sources (wrapped vs unwrapped abstracts,
    category order) has the same digest. Comments and dates are left out: changing them does
    not change the vectors.
    """
    return content_digest(
        collapse_ws(paper.title),
        collapse_ws(paper.abstract),
        UNIT_SEP.join(collapse_ws(a) for a in paper.authors),
        UNIT_SEP.join(sorted(paper.categories)),
    )


def in_categories(paper: Paper, wanted: Sequence[str]) -> bool:
    """True when any of the paper's categories (primary or cross-list) is wanted."""
    return not wanted or any(c in wanted for c in paper.categories)
