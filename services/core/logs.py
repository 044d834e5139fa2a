"""The one logging setup of every command and worker: timestamped lines on standard error."""

from __future__ import annotations

import logging
import sys

FORMAT = "%(asctime)s %(levelname)s %(name)s: %(message)s"


def setup_logging(level: str = "info") -> None:
    """Log at ``level`` (a name such as ``info``) to stderr, unless logging is already set up."""
    if not logging.getLogger().handlers:
        logging.basicConfig(level=level.upper(), format=FORMAT, stream=sys.stderr)
