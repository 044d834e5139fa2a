"""Reading paper JSONL(.gz) files (the format of ``shared/data/astro-ph/*.jsonl.gz``)."""

from __future__ import annotations

import gzip
from collections.abc import Iterator
from pathlib import Path

from pydantic import ValidationError

from services.core.errors import BadRecord, describe_validation_error
from services.core.schemas import Paper


def open_text(path: Path) -> Iterator[str]:
    """Lines of a text file, gunzipped when it ends in ``.gz``."""
    opener = gzip.open if path.suffix == ".gz" else open
    with opener(path, "rt", encoding="utf-8") as handle:  # type: ignore[operator]
        yield from handle


def read_papers_jsonl(path: Path) -> Iterator[Paper]:
    """Validated papers of a JSONL(.gz) file.

    Raises:
        BadRecord: naming the file and line of the first invalid record.
    """
    for lineno, line in enumerate(open_text(path), start=1):
        if not line.strip():
            continue
        try:
            yield Paper.model_validate_json(line)
        except ValidationError as exc:
            raise BadRecord(
                f"{path}:{lineno}: {describe_validation_error(exc, limit=1)[0]}"
            ) from None
