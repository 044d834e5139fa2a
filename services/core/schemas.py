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
        raise ValueError(
            f"not an arXiv id: {clip(raw, 80)!r} (expected e.g. 2505.07925 or astro-ph/0601001)"
        )
    version = match.group("v")
    return match.group("id"), int(version) if version else None


MAX_ERROR_CHARS = 2000
# The raw value a dead letter keeps: even if JSON escaping grows every byte sixfold, the
# letter stays under the producer's 1 MB request limit.
MAX_DEADLETTER_VALUE_BYTES = 128 * 1024
MAX_DEADLETTER_KEY_BYTES = 1024


def clip(text: str, limit: int) -> str:
    """``text`` cut to about ``limit`` characters, saying how long it was."""
    if len(text) <= limit:
        return text
    return f"{text[:limit]}… ({len(text)} characters in all)"


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
    """A record that could not be processed, with where it came from and why.

    ``value`` keeps at most :data:`MAX_DEADLETTER_VALUE_BYTES` of the raw value, so the
    letter itself always fits the producer's limit; ``value_bytes`` is the raw value's
    size and ``truncated`` says whether ``value`` is only its beginning.
    """

    stage: str
    error: str
    source_topic: str
    partition: int | None = None
    offset: int | None = None
    key: str | None = None
    value: str
    value_encoding: str = "utf-8"
    value_bytes: int | None = None
    truncated: bool = False
    at: dt.datetime = Field(default_factory=utcnow)

    @field_validator("error")
    @classmethod
    def _bounded_error(cls, value: str) -> str:
        return clip(value, MAX_ERROR_CHARS)

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
        max_value_bytes: int = MAX_DEADLETTER_VALUE_BYTES,
    ) -> DeadLetter:
        """Build a dead letter keeping the raw value as text, or base64 when it is not UTF-8.

        The value is cut to ``max_value_bytes`` (and the key to
        :data:`MAX_DEADLETTER_KEY_BYTES`) so that the letter can always be published.
        """
        raw = value if value is not None else b""
        raw = raw.encode("utf-8") if isinstance(raw, str) else raw
        text, encoding = _as_text(raw, max_value_bytes)
        key_text = None
        if key is not None:
            key_raw = key.encode("utf-8") if isinstance(key, str) else key
            key_text = _as_text(key_raw, MAX_DEADLETTER_KEY_BYTES)[0]
        return cls(
            stage=stage,
            error=error,
            source_topic=topic,
            partition=partition,
            offset=offset,
            key=key_text,
            value=text,
            value_encoding=encoding,
            value_bytes=len(raw),
            truncated=len(raw) > max_value_bytes,
        )


def _as_text(raw: bytes, limit: int) -> tuple[str, str]:
    """The first ``limit`` bytes of ``raw`` as text, or as base64 when they are not UTF-8."""
    head = raw[:limit]
    try:
        return head.decode("utf-8"), "utf-8"
    except UnicodeDecodeError as exc:
        # A cut through a multi-byte character is still text: drop the partial character.
        if (
            len(raw) > limit
            and exc.start >= len(head) - 3
            and exc.reason == "unexpected end of data"
        ):
            return head[: exc.start].decode("utf-8"), "utf-8"
        return base64.b64encode(head).decode("ascii"), "base64"


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
    # Calibrated relevance in [0, 1] that a person can read (see docs/alerts.md); None in
    # alerts stored before it existed.
    relevance: float | None = None
    # Why it alerted: "author you follow" or "related to your interests" (None: older alerts).
    reason: str | None = None
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
