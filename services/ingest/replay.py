"""Reading a saved listing for ``--replay``: API Atom, announcement RSS/Atom, OAI-PMH or JSONL."""

from __future__ import annotations

import gzip
import json
import zlib
from pathlib import Path

from services.ingest.atom import parse_atom
from services.ingest.oai import parse_oai
from services.ingest.records import MalformedPage, Page, build_listing, local_name, parse_xml
from services.ingest.rss import parse_feed

ATOM_FEED = "{http://www.w3.org/2005/Atom}feed"
# A saved listing is at most tens of MB (a year of astro-ph as JSON lines is ~20 MB);
# the cap keeps a gzip bomb from unpacking into gigabytes of memory.
MAX_REPLAY_BYTES = 256 * 1024**2
ANNOUNCE_TYPE = "{http://arxiv.org/schemas/atom}announce_type"


def read_replay(path: Path) -> tuple[str, Page]:
    """Parse a saved file, recognising its format by content (gzip is unpacked).

    Returns:
        The format name (``atom``, ``rss``, ``oai``, ``jsonl``) and the page of listings.

    Raises:
        MalformedPage: the file is none of the supported formats, is a broken gzip file,
            or holds more than :data:`MAX_REPLAY_BYTES` (unpacked).
    """
    data = read_capped(path, MAX_REPLAY_BYTES)
    head = data.lstrip(b"\xef\xbb\xbf \t\r\n")[:1]
    if head == b"<":
        return _read_xml(data)
    if head == b"{":
        return "jsonl", parse_jsonl(data)
    raise MalformedPage(f"{path}: not XML (Atom, RSS, OAI-PMH) nor JSON lines")


def read_capped(path: Path, limit: int) -> bytes:
    """The file's bytes, gzip unpacked as a stream, refused once past ``limit`` bytes.

    Raises:
        MalformedPage: past ``limit``, or a broken gzip file.
    """
    with path.open("rb") as raw:
        packed = raw.read(2) == b"\x1f\x8b"
        raw.seek(0)
        try:
            if packed:
                with gzip.GzipFile(fileobj=raw) as unpacked:
                    data = unpacked.read(limit + 1)
            else:
                data = raw.read(limit + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise MalformedPage(f"{path}: broken gzip file ({exc})") from None
    if len(data) > limit:
        what = "unpacks to" if packed else "holds"
        raise MalformedPage(
            f"{path}: {what} more than {limit // 1024**2} MiB; a saved listing is far smaller "
            "(split the file, or replay its parts)"
        )
    return data


def _read_xml(data: bytes) -> tuple[str, Page]:
    root = parse_xml(data)
    name = local_name(root.tag)
    if name == "rss":
        return "rss", parse_feed(data)
    if name == "OAI-PMH":
        return "oai", parse_oai(data)
    if root.tag == ATOM_FEED:
        # The announcement feed's Atom flavour marks entries with arxiv:announce_type.
        if root.find(f".//{ANNOUNCE_TYPE}") is not None:
            return "rss", parse_feed(data)
        return "atom", parse_atom(data)
    raise MalformedPage(f"unsupported XML document <{name}>")


def parse_jsonl(data: bytes) -> Page:
    """Papers in the ``shared/data/astro-ph`` JSON-lines format; unusable lines are skipped."""
    page = Page()
    for lineno, line in enumerate(data.decode("utf-8").splitlines(), start=1):
        if not line.strip():
            continue
        page.entries += 1
        try:
            fields = json.loads(line)
        except json.JSONDecodeError as exc:
            page.skipped.append((f"line {lineno}", f"invalid JSON: {exc.msg}"))
            continue
        if not isinstance(fields, dict):
            page.skipped.append((f"line {lineno}", "invalid record: not a JSON object"))
            continue
        date = str(fields.get("published") or fields.get("announced") or "")[:10]
        listing = build_listing(fields, f"line {lineno}", page.skipped, version_date=date or None)
        if listing is not None:
            page.listings.append(listing)
    return page
