"""Whose subscription it is: owner secrets, stored only as hashes, compared in constant time.

Creating a subscription without a secret mints one (shown once); a client that already has
one sends it (``Authorization: Bearer <secret>`` or, in the web app, an http-only cookie) and
the new subscription joins that owner's. The metadata keeps only :func:`owner_id`, the
SHA-256 of the secret, so a leaked Qdrant snapshot does not hand out access.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets

SECRET_PREFIX = "ast_"  # recognisable in logs and secret scanners
SECRET_BYTES = 32
MIN_SECRET_CHARS = 24  # a client-chosen secret shorter than this is refused


def mint_secret() -> str:
    """A new owner secret: 256 random bits, URL-safe."""
    return SECRET_PREFIX + secrets.token_urlsafe(SECRET_BYTES)


def owner_id(secret: str) -> str:
    """The stored form of a secret (hex SHA-256): what ``SubscriptionMeta.owner`` holds."""
    return hashlib.sha256(secret.encode("utf-8")).hexdigest()


def is_owner(stored: str | None, secret: str | None) -> bool:
    """Whether ``secret`` hashes to ``stored``, compared in constant time; never for None."""
    if not stored or not secret:
        return False
    return hmac.compare_digest(owner_id(secret).encode(), stored.encode())
