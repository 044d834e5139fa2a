"""Exception hierarchy: bad records are dead-lettered, unavailable dependencies are retried."""

from __future__ import annotations


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
