"""Document-frequency tables: the prior IDF of the alerts' lexical signal, built from a paper dump.

A worker that has seen few papers has a meaningless IDF (after one paper every term is as
rare as every other). The matcher therefore starts from a table of document frequencies
counted over a historical corpus and keeps adding the papers it indexes. The project ships
one built from astro-ph papers announced before 2025-12-01
(``services/data/astro-ph-df.tsv.gz``); build another for a different field with

    python -m services.alerts.lexicon --papers papers.jsonl.gz --out my-df.tsv.gz [--before DATE]

and point ``ASTRO_ALERT_DF_TABLE`` at it. Format: gzip'd UTF-8 text, a ``#docs<TAB>N``
header, then ``term<TAB>df`` lines (terms as ``services.alerts.matcher.tokens`` makes them).
"""

from __future__ import annotations

import argparse
import gzip
from collections.abc import Iterable, Iterator
from pathlib import Path

from services.alerts.matcher import CorpusStats, term_counts
from services.core.errors import AstrostreamError, ConfigError
from services.core.papers import read_papers_jsonl

BUNDLED_DF_TABLE = Path(__file__).parent / "data" / "astro-ph-df.tsv.gz"
MIN_DF = 2  # terms seen once say nothing a missing term doesn't (both get the top IDF)


def build(texts: Iterable[str], min_df: int = MIN_DF) -> CorpusStats:
    """Document frequencies of ``texts``, without terms rarer than ``min_df``."""
    stats = CorpusStats()
    for text in texts:
        stats.add(term_counts(text))
    for term in [t for t, n in stats.df.items() if n < min_df]:
        del stats.df[term]
    return stats


def save(stats: CorpusStats, path: Path) -> None:
    lines = [f"#docs\t{stats.docs}"] + [f"{t}\t{n}" for t, n in sorted(stats.df.items())]
    data = ("\n".join(lines) + "\n").encode("utf-8")
    with path.open("wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as handle:
        handle.write(data)  # mtime 0: the same corpus gives the same bytes


def load(path: Path) -> CorpusStats:
    """Read a table written by :func:`save`.

    Raises:
        ConfigError: the file is missing or not a document-frequency table.
    """
    stats = CorpusStats()
    try:
        with gzip.open(path, "rt", encoding="utf-8") as handle:
            header = handle.readline().rstrip("\n").split("\t")
            if len(header) != 2 or header[0] != "#docs" or not header[1].isdigit():
                raise ValueError("first line is not '#docs<TAB>N'")
            stats.docs = int(header[1])
            for number, line in enumerate(handle, start=2):
                term, _, df = line.rstrip("\n").rpartition("\t")
                if not term or not df.isdigit():
                    raise ValueError(f"line {number} is not 'term<TAB>df'")
                stats.df[term] = int(df)
    except (OSError, EOFError, UnicodeDecodeError, ValueError) as exc:
        raise ConfigError(
            f"ASTRO_ALERT_DF_TABLE={path}: not a document-frequency table ({exc}); "
            "build one with `python -m services.alerts.lexicon` or set it to 'none'"
        ) from exc
    return stats


def prior(setting: str) -> CorpusStats | None:
    """The table ``ASTRO_ALERT_DF_TABLE`` names: 'bundled', 'none' (no prior) or a path."""
    if setting == "none":
        return None
    return load(BUNDLED_DF_TABLE if setting == "bundled" else Path(setting))


def _texts(path: Path, before: str | None) -> Iterator[str]:
    """Title + abstract of each paper in a JSONL(.gz) file, announced before ``before``."""
    for paper in read_papers_jsonl(path):
        if before is None or (paper.date or "") < before:
            yield f"{paper.title} {paper.abstract}"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n")[0])
    parser.add_argument("--papers", type=Path, required=True, help="paper JSONL(.gz)")
    parser.add_argument("--out", type=Path, default=BUNDLED_DF_TABLE)
    parser.add_argument("--before", help="only papers announced before this date (YYYY-MM-DD)")
    parser.add_argument("--min-df", type=int, default=MIN_DF)
    args = parser.parse_args(argv)
    try:
        stats = build(_texts(args.papers, args.before), args.min_df)
    except AstrostreamError as exc:  # names the file and line of a bad record
        parser.exit(1, f"nothing written: {exc}\n")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    save(stats, args.out)
    print(f"{args.out}: {stats.docs} papers, {len(stats.df)} terms")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
