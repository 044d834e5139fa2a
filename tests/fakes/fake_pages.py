"""arXiv's response formats (API Atom, announcement RSS/Atom, OAI-PMH) written from papers.

What :mod:`fakes.fake_arxiv` serves, and how the sample pages in ``tests/data/arxiv``
were made from real records. Abstracts are unwrapped in the API and the feed, wrapped at 79
columns by OAI-PMH, as arXiv does.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import textwrap
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any
from xml.sax.saxutils import escape, quoteattr

RSS_DAY = dt.time(0, 0)


@dataclass(frozen=True)
class FakePaper:
    """One version of a paper as the fake serves it (fields of ``shared/data/astro-ph``)."""

    arxiv_id: str
    version: int
    title: str
    abstract: str
    authors: list[str]
    categories: list[str]
    published: dt.datetime  # first version submitted
    updated: dt.datetime  # this version submitted
    comment: str = ""
    announce_type: str = "new"

    @classmethod
    def from_record(cls, record: Mapping[str, Any], published: dt.datetime) -> FakePaper:
        return cls(
            arxiv_id=record["arxiv_id"],
            version=int(record.get("version") or 1),
            title=record["title"],
            abstract=record["abstract"],
            authors=list(record.get("authors") or []),
            categories=list(record.get("categories") or []),
            published=published,
            updated=published,
            comment=record.get("comment") or "",
        )

    def revised(self, when: dt.datetime, **changes: Any) -> FakePaper:
        """The next version, submitted at ``when`` (announced as a replacement)."""
        kind = "replace" if self.announce_type in ("new", "replace") else "replace-cross"
        return replace(self, version=self.version + 1, updated=when, announce_type=kind, **changes)

    @property
    def vid(self) -> str:
        return f"{self.arxiv_id}v{self.version}"


def _flat(text: str) -> str:
    return " ".join(text.split())


def _iso(when: dt.datetime) -> str:
    return when.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _rfc822(day: dt.date) -> str:
    moment = dt.datetime.combine(day, RSS_DAY, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    return moment.strftime("%a, %d %b %Y %H:%M:%S -0500")


def render_api(papers: Sequence[FakePaper], *, total: int, start: int, page_size: int) -> str:
    """An arXiv API response page (Atom 1.0 with opensearch counts)."""
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        '<feed xmlns:opensearch="http://a9.com/-/spec/opensearch/1.1/" '
        'xmlns:arxiv="http://arxiv.org/schemas/atom" xmlns="http://www.w3.org/2005/Atom">',
        f"  <id>https://arxiv.org/api/{hashlib.sha1(str(start).encode()).hexdigest()[:27]}</id>",
        f"  <title>arXiv Query: start={start}&amp;max_results={page_size}</title>",
        f"  <updated>{_iso(dt.datetime.now(dt.UTC))}</updated>",
        f"  <opensearch:itemsPerPage>{page_size}</opensearch:itemsPerPage>",
        f"  <opensearch:totalResults>{total}</opensearch:totalResults>",
        f"  <opensearch:startIndex>{start}</opensearch:startIndex>",
    ]
    for p in papers:
        out += [
            "  <entry>",
            f"    <id>http://arxiv.org/abs/{p.vid}</id>",
            f"    <title>{escape(p.title)}</title>",
            f"    <updated>{_iso(p.updated)}</updated>",
            f'    <link href="https://arxiv.org/abs/{p.vid}" rel="alternate" type="text/html"/>',
            f'    <link href="https://arxiv.org/pdf/{p.vid}" rel="related" '
            'type="application/pdf" title="pdf"/>',
            f"    <summary>{escape(_flat(p.abstract))}</summary>",
            *(
                f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>'
                for c in p.categories
            ),
            f"    <published>{_iso(p.published)}</published>",
            *([f"    <arxiv:comment>{escape(p.comment)}</arxiv:comment>"] if p.comment else []),
            f'    <arxiv:primary_category term="{p.categories[0]}"/>',
            *(f"    <author>\n      <name>{escape(a)}</name>\n    </author>" for a in p.authors),
            "  </entry>",
        ]
    out.append("</feed>\n")
    return "\n".join(out)


def render_rss(papers: Iterable[FakePaper], day: dt.date, archive: str = "astro-ph") -> str:
    """The daily announcement feed, RSS 2.0 flavour (``rss.arxiv.org/rss/astro-ph``)."""
    stamp = _rfc822(day)
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        '<rss xmlns:arxiv="http://arxiv.org/schemas/atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xmlns:atom="http://www.w3.org/2005/Atom" '
        'xmlns:content="http://purl.org/rss/1.0/modules/content/" version="2.0">',
        "  <channel>",
        f"    <title>{archive} updates on arXiv.org</title>",
        f"    <link>http://rss.arxiv.org/rss/{archive}</link>",
        f"    <description>{archive} updates on the arXiv.org e-print archive.</description>",
        f'    <atom:link href="http://rss.arxiv.org/rss/{archive}" rel="self" '
        'type="application/rss+xml"/>',
        "    <docs>http://www.rssboard.org/rss-specification</docs>",
        "    <language>en-us</language>",
        f"    <lastBuildDate>{stamp}</lastBuildDate>",
        "    <managingEditor>rss-help@arxiv.org</managingEditor>",
        f"    <pubDate>{stamp}</pubDate>",
        "    <skipDays>\n      <day>Saturday</day>\n      <day>Sunday</day>\n    </skipDays>",
    ]
    for p in papers:
        description = (
            f"arXiv:{p.vid} Announce Type: {p.announce_type} \nAbstract: {_flat(p.abstract)}"
        )
        out += [
            "    <item>",
            f"      <title>{escape(p.title)}</title>",
            f"      <link>https://arxiv.org/abs/{p.arxiv_id}</link>",
            f"      <description>{escape(description)}</description>",
            f'      <guid isPermaLink="false">oai:arXiv.org:{p.vid}</guid>',
            *(f"      <category>{c}</category>" for c in p.categories),
            f"      <pubDate>{stamp}</pubDate>",
            f"      <arxiv:announce_type>{p.announce_type}</arxiv:announce_type>",
            "      <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>",
            f"      <dc:creator>{escape(', '.join(p.authors))}</dc:creator>",
            "    </item>",
        ]
    out += ["  </channel>", "</rss>\n"]
    return "\n".join(out)


def render_atom_feed(papers: Iterable[FakePaper], day: dt.date, archive: str = "astro-ph") -> str:
    """The daily announcement feed, Atom flavour (``rss.arxiv.org/atom/astro-ph``)."""
    stamp = dt.datetime.combine(day, RSS_DAY, tzinfo=dt.timezone(dt.timedelta(hours=-5)))
    out = [
        "<?xml version='1.0' encoding='UTF-8'?>",
        '<feed xmlns="http://www.w3.org/2005/Atom" xmlns:arxiv="http://arxiv.org/schemas/atom" '
        'xmlns:dc="http://purl.org/dc/elements/1.1/" xml:lang="en-us">',
        f"  <id>http://rss.arxiv.org/atom/{archive}</id>",
        f"  <title>{archive} updates on arXiv.org</title>",
        f"  <updated>{stamp.isoformat()}</updated>",
        f'  <link href="http://rss.arxiv.org/atom/{archive}" rel="self" '
        'type="application/atom+xml"/>',
        f"  <subtitle>{archive} updates on the arXiv.org e-print archive.</subtitle>",
    ]
    for p in papers:
        summary = f"arXiv:{p.vid} Announce Type: {p.announce_type} \nAbstract: {_flat(p.abstract)}"
        out += [
            "  <entry>",
            f"    <id>oai:arXiv.org:{p.vid}</id>",
            f"    <title>{escape(p.title)}</title>",
            f"    <updated>{stamp.isoformat()}</updated>",
            f'    <link href="https://arxiv.org/abs/{p.arxiv_id}" rel="alternate" '
            'type="text/html"/>',
            f"    <summary>{escape(summary)}</summary>",
            *(
                f'    <category term="{c}" scheme="http://arxiv.org/schemas/atom"/>'
                for c in p.categories
            ),
            f"    <published>{stamp.isoformat()}</published>",
            f"    <arxiv:announce_type>{p.announce_type}</arxiv:announce_type>",
            "    <dc:rights>http://creativecommons.org/licenses/by/4.0/</dc:rights>",
            f"    <dc:creator>{escape(', '.join(p.authors))}</dc:creator>",
            "  </entry>",
        ]
    out.append("</feed>\n")
    return "\n".join(out)


def _oai_head(request: Mapping[str, str]) -> list[str]:
    attrs = "".join(f" {k}={quoteattr(v)}" for k, v in request.items())
    return [
        '<?xml version="1.0" encoding="UTF-8"?>',
        '<OAI-PMH xmlns="http://www.openarchives.org/OAI/2.0/" '
        'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
        'xsi:schemaLocation="http://www.openarchives.org/OAI/2.0/ '
        'http://www.openarchives.org/OAI/2.0/OAI-PMH.xsd">',
        f"<responseDate>{_iso(dt.datetime.now(dt.UTC))}</responseDate>",
        f"<request{attrs}>http://export.arxiv.org/oai2</request>",
    ]


def render_oai(
    papers: Sequence[FakePaper],
    request: Mapping[str, str],
    *,
    token: str | None = None,
    cursor: int = 0,
    complete_size: int | None = None,
) -> str:
    """A ``ListRecords`` page in the ``arXiv`` metadata format (wrapped as arXiv wraps it)."""
    out = [*_oai_head(request), "<ListRecords>"]
    for p in papers:
        authors = "".join(_oai_author(a) for a in p.authors)
        updated = f"<updated>{p.updated:%Y-%m-%d}</updated>" if p.version > 1 else ""
        title = "\n  ".join(textwrap.wrap(escape(p.title), 76)) or ""
        abstract = "\n".join(textwrap.wrap(escape(p.abstract), 79))
        comments = f"<comments>{escape(p.comment)}</comments>" if p.comment else ""
        out += [
            "<record>",
            "<header>",
            f" <identifier>oai:arXiv.org:{p.arxiv_id}</identifier>",
            f" <datestamp>{p.updated:%Y-%m-%d}</datestamp>",
            " <setSpec>physics:astro-ph</setSpec>",
            "</header>",
            "<metadata>",
            ' <arXiv xmlns="http://arxiv.org/OAI/arXiv/" '
            'xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance" '
            'xsi:schemaLocation="http://arxiv.org/OAI/arXiv/ http://arxiv.org/OAI/arXiv.xsd">',
            f"<id>{p.arxiv_id}</id><created>{p.published:%Y-%m-%d}</created>{updated}"
            f"<authors>{authors}</authors><title>{title}</title>"
            f"<categories>{' '.join(p.categories)}</categories>{comments}"
            "<license>http://creativecommons.org/licenses/by/4.0/</license>"
            f"<abstract>  {abstract}\n</abstract></arXiv>",
            "</metadata>",
            "</record>",
        ]
    if token is not None or cursor:
        size = f' completeListSize="{complete_size}"' if complete_size is not None else ""
        out.append(f'<resumptionToken cursor="{cursor}"{size}>{token or ""}</resumptionToken>')
    out += ["</ListRecords>", "</OAI-PMH>\n"]
    return "\n".join(out)


def render_oai_error(request: Mapping[str, str], code: str, message: str) -> str:
    return "\n".join(
        [*_oai_head(request), f'<error code="{code}">{escape(message)}</error>', "</OAI-PMH>\n"]
    )


def _oai_author(name: str) -> str:
    forenames, _, keyname = name.rpartition(" ")
    fore = f"<forenames>{escape(forenames)}</forenames>" if forenames else ""
    return f"<author><keyname>{escape(keyname)}</keyname>{fore}</author>"
