"""Who the browser is and whether a form post is genuine: owner cookie, CSRF tokens, origins.

Pure functions and a small key file, no web framework. The owner secret lives in an
http-only cookie; a form carries ``csrf_token(key, nonce, owner)``, an HMAC of the browser's
CSRF nonce (its own cookie) and its owner id under a server key kept in the data folder, so
another site can neither read nor forge it. Every comparison is constant time.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
from pathlib import Path
from urllib.parse import urlsplit

OWNER_COOKIE = "astro_owner"
CSRF_COOKIE = "astro_csrf"
KEY_FILE = "web-secret.key"
COOKIE_MAX_AGE_S = 400 * 24 * 3600  # the longest browsers keep a cookie


def server_key(data_dir: Path) -> bytes:
    """The server's CSRF key: read from ``data_dir``, created there (mode 0600) the first time.

    Kept on disk so a restart does not invalidate the forms people have open.
    """
    path = data_dir / KEY_FILE
    try:
        key = path.read_bytes()
        if len(key) >= 32:
            return key
    except FileNotFoundError:
        pass
    data_dir.mkdir(parents=True, exist_ok=True)
    key = secrets.token_bytes(32)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(key)
    return key


def new_nonce() -> str:
    return secrets.token_urlsafe(24)


def csrf_token(key: bytes, nonce: str, owner: str | None) -> str:
    """The token a form must carry for this browser (its nonce) and owner (or none yet)."""
    message = f"csrf:{nonce}:{owner or ''}".encode()
    return hmac.new(key, message, hashlib.sha256).hexdigest()


def csrf_ok(key: bytes, nonce: str | None, owner: str | None, given: str | None) -> bool:
    """Whether ``given`` is this browser's token; constant time, never for a missing part."""
    if not nonce or not given:
        return False
    return hmac.compare_digest(csrf_token(key, nonce, owner).encode(), given.encode())


def same_origin(origin: str | None, referer: str | None, allowed_hosts: set[str]) -> bool:
    """Whether the post comes from one of our pages (by Origin, else Referer; absent: yes).

    Browsers send Origin on every cross-site POST; a present ``null`` or foreign host is a
    forged form. Neither header (an old client, a privacy proxy) falls back to the token.
    """
    source = origin if origin else referer
    if not source:
        return True
    if source == "null":
        return False
    host = urlsplit(source).netloc.lower()
    return bool(host) and host in allowed_hosts


def is_https(scheme: str, public_url: str | None) -> bool:
    """Cookies get ``Secure`` when the page was served over https or the public URL is https."""
    return scheme == "https" or bool(public_url and public_url.lower().startswith("https://"))
