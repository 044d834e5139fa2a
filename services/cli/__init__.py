"""The ``astrostream`` command line (the top layer: it may import every other package)."""

from services.cli.commands import main

__all__ = ["main"]
