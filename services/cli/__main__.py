"""``python -m services.cli``: the same as the ``astrostream`` command."""

from services.cli.commands import main

main()
