"""Exception hierarchy: bad records are dead-lettered, unavailable dependencies are retried."""

from __future__ import annotations

from collections.abc import Callable, Iterable

from pydantic import ValidationError


class AstrostreamError(Exception):
    """Root of every error raised on purpose by astrostream."""


class ConfigError(AstrostreamError):
    """The configuration is invalid; the message names the variable to fix."""


class BadRecord(AstrostreamError):
    """A record can never be processed: dead-letter it and move on.

    Args:
        reason: human-readable reason, stored in the dead-letter record.
    """

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


class DependencyUnavailable(AstrostreamError):
    """A dependency (Qdrant, broker, HTTP source) is down: back off and retry, don't commit."""

    def __init__(self, message: str, retry_after_s: float = 1.0) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class VectorStoreUnavailable(DependencyUnavailable):
    """Qdrant did not acknowledge a request."""


class NotFound(AstrostreamError):
    """A requested object (paper, subscription) does not exist."""


class InvalidRequest(AstrostreamError):
    """A request (HTTP parameters, a body, a CLI argument) is invalid; the message says why."""


class InvalidSubscription(InvalidRequest):
    """A subscription request is invalid: every problem, each naming its field."""


class UnknownPaper(InvalidRequest):
    """A request names arXiv ids that are not indexed (yet).

    Args:
        arxiv_ids: the ids that are missing.
    """

    def __init__(self, arxiv_ids: list[str]) -> None:
        super().__init__(f"unknown arXiv id(s): {', '.join(arxiv_ids)} (not indexed yet)")
        self.arxiv_ids = arxiv_ids


def describe_validation_error(
    exc: ValidationError,
    *,
    limit: int | None = None,
    root: str = "record",
    field_name: Callable[[tuple[int | str, ...]], str] | None = None,
    fields_hint: Iterable[str] | None = None,
) -> list[str]:
    """One ``"field: message"`` line per problem of a pydantic ``ValidationError``.

    Args:
        exc: the error.
        limit: keep only the first ``limit`` problems.
        root: the name of a problem with the whole object (an empty location).
        field_name: turns a location into the name the user knows (default ``a.b.0``).
        fields_hint: the accepted fields, named in the message of an unknown field.

    Returns:
        The problems in pydantic's order, without pydantic's ``"Value error, "`` prefix.
    """
    lines = []
    for err in exc.errors()[:limit]:
        where = (field_name or _dotted)(tuple(err["loc"])) or root
        message = str(err["msg"]).removeprefix("Value error, ")
        if fields_hint is not None and err["type"] == "extra_forbidden":
            message = f"unknown field (expected {', '.join(fields_hint)})"
        lines.append(f"{where}: {message}")
    return lines


def _dotted(loc: tuple[int | str, ...]) -> str:
    return ".".join(str(p) for p in loc)
