"""Request bodies: JSON parsed only after its size, media type, encoding and depth are checked.

Pure functions, no web framework: the views call :func:`check_media_type` before reading
the body and :func:`parse_json` after.
"""

from __future__ import annotations

import json
import re
from typing import Any

from services.core.errors import InvalidRequest

MAX_JSON_DEPTH = 32
JSON_MEDIA_TYPE = "application/json"

# A JSON string (escapes included), and anything that is not a bracket once strings are gone.
_STRING = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


class UnsupportedMediaType(InvalidRequest):
    """A request body that is not ``application/json`` (answered 415)."""


def check_media_type(content_type: str) -> None:
    """Refuse a body that does not say it is JSON.

    ``text/plain``, form and multipart bodies are what a cross-site form can send without a
    CORS preflight, so accepting them would let any web page write through a browser.

    Raises:
        UnsupportedMediaType: naming the type that was sent.
    """
    if content_type.split(";", 1)[0].strip().lower() != JSON_MEDIA_TYPE:
        raise UnsupportedMediaType(
            f"Content-Type must be {JSON_MEDIA_TYPE}, got {content_type or 'none'!r}"
        )


def nesting_depth(text: str, limit: int = MAX_JSON_DEPTH) -> int:
    """How deeply ``text``'s arrays and objects nest, counted without recursion.

    Stops counting once past ``limit`` (the answer is then ``limit + 1``).
    """
    depth = deepest = 0
    for char in _NOT_BRACKET.sub("", _STRING.sub("", text)):
        if char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > limit:
                break
        else:
            depth -= 1
    return deepest


def parse_json(raw: bytes, max_depth: int = MAX_JSON_DEPTH) -> Any:
    """Parse a request body that must be UTF-8 JSON nested at most ``max_depth`` deep.

    The depth is checked before :func:`json.loads`, which recurses and would otherwise
    fail with a RecursionError on ``[[[[...``.

    Raises:
        InvalidRequest: empty, not UTF-8, too deep, or not JSON, saying which.
    """
    if not raw.strip():
        raise InvalidRequest("body is empty: expected a JSON object")
    try:
        text = raw.decode("utf-8")
    except UnicodeDecodeError as exc:
        raise InvalidRequest(f"body is not UTF-8: {exc}") from None
    if nesting_depth(text, max_depth) > max_depth:
        raise InvalidRequest(f"body nests arrays or objects deeper than {max_depth} levels")
    try:
        return json.loads(text)
    except ValueError as exc:  # JSONDecodeError, and integers too long to convert
        raise InvalidRequest(f"body is not valid JSON: {exc}") from None
