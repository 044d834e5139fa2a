"""The operator token: ``ASTRO_API_TOKEN``, or one generated once and kept in the data folder.

A worker started without ``ASTRO_API_TOKEN`` (``astrostream up``, ``make run``) writes a random
token to ``<data_dir>/api-token`` (mode 0600) and accepts it as the operator token; the CLI
on the same machine reads the same file, so ``astrostream subscribe …`` keeps working without
configuration. Deployments with several workers set ``ASTRO_API_TOKEN`` so they all agree.
"""

from __future__ import annotations

import logging
import os
import secrets
from pathlib import Path

from pydantic import SecretStr

from services.core.settings import Settings

log = logging.getLogger(__name__)

TOKEN_FILE = "api-token"


def token_path(settings: Settings) -> Path:
    return settings.data_dir / TOKEN_FILE


def operator_token(settings: Settings) -> SecretStr:
    """``ASTRO_API_TOKEN``, else the data folder's token, created (0600) on first use."""
    if settings.api_token is not None:
        return settings.api_token
    path = token_path(settings)
    existing = read_token_file(path)
    if existing is not None:
        return existing
    path.parent.mkdir(parents=True, exist_ok=True)
    token = secrets.token_urlsafe(32)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:  # another process won the race: use its token
        found = read_token_file(path)
        if found is None:
            raise
        return found
    with os.fdopen(fd, "w") as out:
        out.write(token + "\n")
    log.info("operator token generated in %s (set ASTRO_API_TOKEN to choose one)", path)
    return SecretStr(token)


def client_token(settings: Settings) -> SecretStr | None:
    """What the CLI sends: ``ASTRO_API_TOKEN``, else the local data folder's token, if any."""
    if settings.api_token is not None:
        return settings.api_token
    return read_token_file(token_path(settings))


def read_token_file(path: Path) -> SecretStr | None:
    try:
        text = path.read_text().strip()
    except (FileNotFoundError, PermissionError, IsADirectoryError):
        return None
    return SecretStr(text) if text else None
