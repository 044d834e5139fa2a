"""What a subscription asks for: the body of ``POST /subscriptions`` (and of ``PUT``), validated.

The web app's form and the CLI send the same body (``services.web.forms`` builds it from
the form), so one model checks every way in; :func:`parse_request` turns its problems into
one message that names each field.
"""

from __future__ import annotations

import re
from typing import Any, Literal
from urllib.parse import urlsplit

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from services.alerts.filters import author_key
from services.core.errors import InvalidSubscription, describe_validation_error
from services.core.schemas import split_arxiv_id

MAX_INTERESTS = 50  # queries + seed papers of one subscription
MAX_QUERY_CHARS = 2000
MAX_NAME_CHARS = 200
MAX_CATEGORIES = 20
MAX_TERMS = 50  # include or exclude terms
MAX_TERM_CHARS = 100
MAX_AUTHORS = 100
MAX_AUTHOR_CHARS = 200
MAX_EMAIL_CHARS = 254
EMAIL_RE = re.compile(
    r"^[^@\s<>\"',;]+@[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]*[A-Za-z0-9])?)+$"
)
Digest = Literal["off", "daily", "weekly"]
DEFAULT_THRESHOLD = 0.05  # ~ the 99th percentile of unrelated papers (docs/alerts.md)
DEFAULT_MIN_RELEVANCE = 0.0  # calibrated relevance an alert needs (docs/alerts.md)


class SubscriptionRequest(BaseModel):
    """The body of ``POST /subscriptions``."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)

    name: str = ""
    queries: list[str] = Field(default_factory=list)
    arxiv_ids: list[str] = Field(default_factory=list)
    threshold: float = DEFAULT_THRESHOLD
    min_relevance: float = DEFAULT_MIN_RELEVANCE
    categories: list[str] = Field(default_factory=list)
    webhook: str | None = None
    webhook_secret: str | None = None
    digest: Digest = "off"
    email: str | None = None  # where digests go
    include_terms: list[str] = Field(default_factory=list)
    exclude_terms: list[str] = Field(default_factory=list)
    authors: list[str] = Field(default_factory=list)  # followed authors: always alert
    cross_lists: bool = True  # False: only papers whose primary category is in categories

    @field_validator("include_terms", "exclude_terms")
    @classmethod
    def _terms(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_TERMS:
            raise ValueError(f"at most {MAX_TERMS} terms, got {len(value)}")
        for i, term in enumerate(value):
            if not term.strip():
                raise ValueError(f"term {i} is empty")
            if len(term) > MAX_TERM_CHARS:
                raise ValueError(f"term {i} has {len(term)} characters, max {MAX_TERM_CHARS}")
        return list(dict.fromkeys(" ".join(t.split()) for t in value))

    @field_validator("authors")
    @classmethod
    def _authors(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_AUTHORS:
            raise ValueError(f"at most {MAX_AUTHORS} authors, got {len(value)}")
        for i, name in enumerate(value):
            if len(name) > MAX_AUTHOR_CHARS:
                raise ValueError(f"author {i} has {len(name)} characters, max {MAX_AUTHOR_CHARS}")
            if not author_key(name):
                raise ValueError(f"author {i} ({name!r}) has no name in it")
        return list(dict.fromkeys(" ".join(n.split()) for n in value))

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        if not value:
            return None
        if len(value) > MAX_EMAIL_CHARS or not EMAIL_RE.match(value):
            raise ValueError(f"not an e-mail address: {value[:80]!r} (expected name@example.org)")
        return value

    @field_validator("cross_lists", mode="before")
    @classmethod
    def _cross_lists(cls, value: Any) -> bool:
        if not isinstance(value, bool):
            raise ValueError(f"must be true or false, got {value!r}")
        return value

    @field_validator("name")
    @classmethod
    def _name(cls, value: str) -> str:
        if len(value) > MAX_NAME_CHARS:
            raise ValueError(f"at most {MAX_NAME_CHARS} characters, got {len(value)}")
        return value

    @field_validator("queries")
    @classmethod
    def _queries(cls, value: list[str]) -> list[str]:
        for i, query in enumerate(value):
            if not query.strip():
                raise ValueError(f"query {i} is empty")
            if len(query) > MAX_QUERY_CHARS:
                raise ValueError(
                    f"query {i} has {len(query)} characters, over the limit of {MAX_QUERY_CHARS}"
                )
        return list(dict.fromkeys(q.strip() for q in value))

    @field_validator("arxiv_ids")
    @classmethod
    def _arxiv_ids(cls, value: list[str]) -> list[str]:
        bare: list[str] = []
        for raw in value:
            try:
                bare.append(split_arxiv_id(raw)[0])
            except ValueError as exc:
                raise ValueError(str(exc)) from None
        return list(dict.fromkeys(bare))

    @field_validator("threshold", "min_relevance", mode="before")
    @classmethod
    def _threshold(cls, value: Any) -> float:
        if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
            raise ValueError(f"must be a number between 0 and 1, got {value!r}")
        return float(value)

    @field_validator("categories")
    @classmethod
    def _categories(cls, value: list[str]) -> list[str]:
        if len(value) > MAX_CATEGORIES:
            raise ValueError(f"at most {MAX_CATEGORIES} categories, got {len(value)}")
        for category in value:
            if not 0 < len(category) <= 64:
                raise ValueError(f"category {category!r} must have 1 to 64 characters")
        return list(dict.fromkeys(value))

    @field_validator("webhook")
    @classmethod
    def _webhook(cls, value: str | None) -> str | None:
        if not value:
            return None
        parts = urlsplit(value)
        if parts.scheme not in ("http", "https") or not parts.hostname:
            raise ValueError(f"must be an http(s) URL with a host, got {value!r}")
        if len(value) > 2000:
            raise ValueError("URL is too long (max 2000 characters)")
        return value

    @field_validator("webhook_secret")
    @classmethod
    def _secret(cls, value: str | None) -> str | None:
        if value is not None and not 16 <= len(value) <= 256:
            raise ValueError("must have 16 to 256 characters (omit it to get a generated one)")
        return value


def parse_request(body: Any) -> SubscriptionRequest:
    """Validate a request body.

    Raises:
        InvalidSubscription: with every problem, each naming its field.
    """
    if not isinstance(body, dict):
        raise InvalidSubscription(f"body must be a JSON object, got {type(body).__name__}")
    try:
        request = SubscriptionRequest.model_validate(body)
    except ValidationError as exc:
        problems = describe_validation_error(
            exc, root="body", fields_hint=SubscriptionRequest.model_fields
        )
        raise InvalidSubscription("; ".join(problems)) from None
    interests = len(request.queries) + len(request.arxiv_ids)
    if interests == 0 and not request.authors:
        raise InvalidSubscription(
            "a subscription needs at least one of queries, arxiv_ids or authors"
        )
    if interests > MAX_INTERESTS:
        raise InvalidSubscription(
            f"too many interests: {interests} queries and arxiv_ids, max {MAX_INTERESTS}"
        )
    if request.webhook_secret and not request.webhook:
        raise InvalidSubscription("webhook_secret given without webhook")
    if request.digest != "off" and not request.email:
        raise InvalidSubscription(f"digest {request.digest!r} needs an email address")
    return request


def request_fields(request: SubscriptionRequest) -> dict[str, Any]:
    """The metadata fields that come straight from the request."""
    return {
        "name": request.name,
        "threshold": request.threshold,
        "min_relevance": request.min_relevance,
        "categories": request.categories,
        "queries": request.queries,
        "arxiv_ids": request.arxiv_ids,
        "digest": request.digest,
        "email": request.email,
        "include_terms": request.include_terms,
        "exclude_terms": request.exclude_terms,
        "authors": request.authors,
        "cross_lists": request.cross_lists,
    }
