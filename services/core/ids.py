"""Deterministic identifiers: a replay overwrites the same points and alerts, never duplicates them."""

from __future__ import annotations

import hashlib
import uuid

NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/astrostream/astrostream")


def sentence_point_id(arxiv_id: str, version: int, sentence_index: int) -> str:
    """UUIDv5 of ``arxiv_id:version:sentence_index`` (the contract's sentence point id)."""
    return str(uuid.uuid5(NAMESPACE, f"{arxiv_id}:{version}:{sentence_index}"))


def paper_point_id(arxiv_id: str) -> str:
    """One point per paper, whatever its version: a new version overwrites the old one."""
    return str(uuid.uuid5(NAMESPACE, f"paper:{arxiv_id}"))


def interest_point_id(subscription_id: str, interest_index: int) -> str:
    return str(uuid.uuid5(NAMESPACE, f"interest:{subscription_id}:{interest_index}"))


def alert_id(subscription_id: str, arxiv_id: str) -> str:
    """Same subscription + paper ⇒ same alert id, across re-deliveries and new versions."""
    return str(uuid.uuid5(NAMESPACE, f"alert:{subscription_id}:{arxiv_id}"))


def content_digest(*parts: str) -> str:
    """Short digest of a paper's text, to tell an unchanged re-delivery from a changed one."""
    h = hashlib.sha256()
    for part in parts:
        h.update(part.encode("utf-8", "surrogatepass"))
        h.update(b"\x00")
    return h.hexdigest()[:32]
