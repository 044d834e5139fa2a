"""arXiv OAI-PMH (``ListRecords``, set ``physics:astro-ph``): request parameters and parsing, no I/O.

Versions: the ``arXiv`` metadata format (what we harvest, as the issue asks: it carries structured
authors) has no version number, only ``<created>`` (v1) and ``<updated>`` (latest version, absent
while there is only v1). So a record without ``<updated>`` is exactly version 1; one with it is
*at least* version 2 (``exact_version=False``) and ``version_date`` is the ``<updated>`` date:
the dedupe state treats a later ``updated`` than the one it stored as a new version. The
``arXivRaw`` format lists every ``<version>``; when a harvested or replayed file uses it, the
version is exact (the count of those elements).
"""

from __future__ import annotations

import datetime as dt
from xml.etree.ElementTree import Element

from services.core.schemas import split_arxiv_id
from services.ingest.records import (
    Listing,
    MalformedPage,
    Page,
    SourceError,
    build_listing,
    collapse_ws,
    local_name,
    parse_date,
    parse_xml,
    split_authors,
    text_of,
    unique,
)

OAI = "{http://www.openarchives.org/OAI/2.0/}"
ARXIV = "{http://arxiv.org/OAI/arXiv/}"
ARXIV_RAW = "{http://arxiv.org/OAI/arXivRaw/}"

ASTRO_PH_SET = "physics:astro-ph"


class OaiError(SourceError):
    """An OAI-PMH ``<error>`` other than ``noRecordsMatch`` (``badResumptionToken``, ...)."""


def list_records_params(
    *,
    from_date: dt.date | None = None,
    token: str | None = None,
    set_spec: str = ASTRO_PH_SET,
    metadata_prefix: str = "arXiv",
) -> dict[str, str]:
    """Parameters of a ``ListRecords`` request; with a resumption token, nothing else is allowed."""
    if token:
        return {"verb": "ListRecords", "resumptionToken": token}
    params = {"verb": "ListRecords", "set": set_spec, "metadataPrefix": metadata_prefix}
    if from_date is not None:
        params["from"] = from_date.isoformat()
    return params


def parse_oai(data: str | bytes) -> Page:
    """Parse one ``ListRecords`` response.

    ``noRecordsMatch`` is an empty page; deleted records are skipped; the resumption token is
    ``None`` on the last page.

    Raises:
        MalformedPage: not an OAI-PMH ListRecords response.
        OaiError: any other OAI-PMH error (the code is in ``.code``).
    """
    root = parse_xml(data)
    if root.tag != f"{OAI}OAI-PMH":
        raise MalformedPage(f"expected <OAI-PMH>, got <{local_name(root.tag)}>")
    error = root.find(f"{OAI}error")
    if error is not None:
        code = error.get("code", "unknown")
        if code == "noRecordsMatch":
            return Page()
        raise OaiError(f"OAI-PMH error {code}: {collapse_ws(text_of(error))}", code=code)
    records = root.find(f"{OAI}ListRecords")
    if records is None:
        raise MalformedPage("OAI-PMH response without <ListRecords>")
    page = Page()
    for position, record in enumerate(records.iterfind(f"{OAI}record")):
        page.entries += 1
        listing = _record(record, position, page.skipped)
        if listing is not None:
            page.listings.append(listing)
    token = records.find(f"{OAI}resumptionToken")
    if token is not None:
        page.resumption_token = (token.text or "").strip() or None
        size = token.get("completeListSize")
        page.complete_list_size = int(size) if size and size.isdigit() else None
    return page


def _record(record: Element, position: int, skipped: list[tuple[str, str]]) -> Listing | None:
    header = record.find(f"{OAI}header")
    identifier = (header.findtext(f"{OAI}identifier") if header is not None else None) or ""
    where = identifier.removeprefix("oai:arXiv.org:") or f"record {position}"
    if header is not None and header.get("status") == "deleted":
        skipped.append((where, "deleted"))
        return None
    datestamp = (header.findtext(f"{OAI}datestamp") or "").strip() if header is not None else ""
    metadata = record.find(f"{OAI}metadata")
    if metadata is None or len(metadata) == 0:
        skipped.append((where, "no metadata"))
        return None
    body = metadata[0]
    if body.tag == f"{ARXIV}arXiv":
        return _arxiv(body, where, datestamp or None, skipped)
    if body.tag == f"{ARXIV_RAW}arXivRaw":
        return _arxiv_raw(body, where, datestamp or None, skipped)
    skipped.append((where, f"unsupported metadata format <{local_name(body.tag)}>"))
    return None


def _arxiv(
    body: Element, where: str, datestamp: str | None, skipped: list[tuple[str, str]]
) -> Listing | None:
    ns = ARXIV
    arxiv_id = _bare_id(body.findtext(f"{ns}id"), where, skipped)
    if arxiv_id is None:
        return None
    authors = []
    for author in body.iterfind(f"{ns}authors/{ns}author"):
        parts = [author.findtext(f"{ns}{p}") or "" for p in ("forenames", "keyname", "suffix")]
        authors.append(collapse_ws(" ".join(parts)))
    created = parse_date(body.findtext(f"{ns}created"))
    updated = parse_date(body.findtext(f"{ns}updated"))
    fields = _common(body, ns, arxiv_id, authors, created)
    revised = updated is not None and updated != created
    fields["version"] = 2 if revised else 1  # a lower bound when revised: see the module doc
    version_day = updated if revised else created
    return build_listing(
        fields,
        arxiv_id,
        skipped,
        exact_version=not revised,
        version_date=version_day.isoformat() if version_day else None,
        datestamp=datestamp,
    )


def _arxiv_raw(
    body: Element, where: str, datestamp: str | None, skipped: list[tuple[str, str]]
) -> Listing | None:
    ns = ARXIV_RAW
    arxiv_id = _bare_id(body.findtext(f"{ns}id"), where, skipped)
    if arxiv_id is None:
        return None
    versions = list(body.iterfind(f"{ns}version"))
    dates = [parse_date(v.findtext(f"{ns}date")) for v in versions]
    fields = _common(body, ns, arxiv_id, split_authors(body.findtext(f"{ns}authors") or ""), None)
    fields["version"] = max(len(versions), 1)
    fields["published"] = dates[0] if dates else None
    return build_listing(
        fields,
        arxiv_id,
        skipped,
        exact_version=bool(versions),
        version_date=dates[-1].isoformat() if dates and dates[-1] else None,
        datestamp=datestamp,
    )


def _common(
    body: Element, ns: str, arxiv_id: str, authors: list[str], created: dt.date | None
) -> dict[str, object]:
    return {
        "arxiv_id": arxiv_id,
        "title": collapse_ws(text_of(body.find(f"{ns}title"))),
        "abstract": text_of(body.find(f"{ns}abstract")).strip(),
        "authors": unique(authors),
        "categories": unique((body.findtext(f"{ns}categories") or "").split()),
        "published": created,
        "comment": collapse_ws(text_of(body.find(f"{ns}comments"))) or None,
    }


def _bare_id(raw: str | None, where: str, skipped: list[tuple[str, str]]) -> str | None:
    try:
        return split_arxiv_id(raw or "")[0]
    except ValueError:
        skipped.append((where, f"unrecognised id {raw!r}"))
        return None
