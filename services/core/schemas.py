"""Message schemas of the public contract: Paper, Alert, DeadLetter, ModelUpdate."""

from __future__ import annotations

import base64
import datetime as dt
import re
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from services.core.clock import utcnow

# New-style (2505.07925, 0704.0001) and old-style (astro-ph/0601001, hep-th/9901001v2) ids.
ARXIV_ID_RE = re.compile(
    r"^(?P<id>(?:\d{4}\.\d{4,5})|(?:[a-z][a-z.-]*(?:\.[A-Z]{2})?/\d{7}))(?:v(?P<v>\d+))?$"
)


def split_arxiv_id(raw: str) -> tuple[str, int | None]:
    """Split ``2505.07925v2`` into ``("2505.07925", 2)``; the version is None when absent.

    Raises:
        ValueError: when ``raw`` is not an arXiv identifier.
    """
    match = ARXIV_ID_RE.match(raw.strip())
    if not match:
        raise ValueError(f"not an arXiv id: {raw!r} (expected e.g. 2505.07925 or astro-ph/0601001)")
    version = match.group("v")
    return match.group("id"), int(version) if version else None


class Paper(BaseModel):
    """A paper on ``astro.papers`` (the format of ``shared/data/astro-ph/*.jsonl.gz``)."""

    model_config = ConfigDict(extra="ignore", frozen=True, str_strip_whitespace=True)

    arxiv_id: str
    version: int = Field(1, ge=1, le=1000)
    title: str = Field(min_length=1, max_length=2000)
    abstract: str = Field(min_length=1)
    authors: list[str] = Field(default_factory=list, max_length=5000)
    categories: list[str] = Field(default_factory=list, max_length=100)
    announced: dt.date | dt.datetime | None = None
    published: dt.date | dt.datetime | None = None
    comment: str | None = None

    @model_validator(mode="before")
    @classmethod
    def _version_from_id(cls, data: Any) -> Any:
        # A producer may send "2505.07925v2": keep the bare id, take the version from it.
        if isinstance(data, dict) and isinstance(data.get("arxiv_id"), str):
            try:
                bare, version = split_arxiv_id(data["arxiv_id"])
            except ValueError:
                return data
            data = {**data, "arxiv_id": bare}
            if version is not None and data.get("version") in (None, version):
                data["version"] = version
        return data

    @field_validator("arxiv_id")
    @classmethod
    def _valid_id(cls, value: str) -> str:
        return split_arxiv_id(value)[0]

    @property
    def primary_category(self) -> str | None:
        return self.categories[0] if self.categories else None

    @property
    def date(self) -> str | None:
        """Announcement (or publication) date as ISO text, for payloads and filters."""
        when = self.announced or self.published
        return when.isoformat() if when is not None else None


class DeadLetter(BaseModel):
    """A record that could not be processed, with where it came from and why."""

    stage: str
    error: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str
    value_encoding: str = "utf-8"
    at: dt.datetime = Field(default_factory=utcnow)

    @classmethod
    def from_raw(
        cls,
        *,
        stage: str,
        error: str,
        topic: str,
        partition: int | None,
        offset: int | None,
        key: bytes | str | None,
        value: bytes | str | None,
    ) -> DeadLetter:
        """Build a dead letter keeping the raw value as text, or base64 when it is not UTF-8."""
        text, encoding = _as_text(value if value is not None else b"")
        key_text = None if key is None else _as_text(key)[0]
        return cls(
            stage=stage,
            error=error,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key_text,
            value=text,
            value_encoding=encoding,
        )


def _as_text(raw: bytes | str) -> tuple[str, str]:
    if isinstance(raw, str):
        return raw, "utf-8"
    try:
        return raw.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        return base64.b64encode(raw).decode("ascii"), "base64"


class Match(BaseModel):
    """Evidence of an alert: which sentence matched which interest."""

    sentence: str
    sentence_index: int
    interest: str
    score: float


class Alert(BaseModel):
    """A paper related to a subscription, published on ``astro.alerts``."""

    alert_id: str
    subscription_id: str
    arxiv_id: str
    version: int = 1
    title: str
    score: float
    matches: list[Match] = Field(default_factory=list)
    model_version: str
    created_at: dt.datetime = Field(default_factory=utcnow)


class ModelUpdate(BaseModel):
    """A promoted model announced on ``astro.models``; workers re-embed and switch aliases."""

    name: str
    version: str
    path: str
    metrics: dict[str, float] = Field(default_factory=dict)
    created_at: dt.datetime = Field(default_factory=utcnow)
