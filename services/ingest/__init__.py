"""Continuous arXiv ingestion: polite polling of the API, announcement feed and OAI-PMH, deduped.

Pure parsers (``atom``, ``rss``, ``oai``, ``replay``), the polite HTTP client (``client``), the
dedupe state (``state``), the loop (``poller``), the worker role (``worker``) and the
``astrostream ingest`` command (``command``).
"""

from services.ingest.poller import PaperSink, PollResult, poll_once, replay_file, run_forever
from services.ingest.worker import install, serve

__all__ = [
    "PaperSink",
    "PollResult",
    "install",
    "poll_once",
    "replay_file",
    "run_forever",
    "serve",
]
