"""What every command shares: settings that exit with one line, logging, calls to a running API."""

from __future__ import annotations

import json
import urllib.error
import urllib.parse
import urllib.request
from typing import Any

import click

from services.core.apitoken import client_token
from services.core.errors import AstrostreamError
from services.core.settings import Settings, load_settings


def settings_or_exit(**overrides: Any) -> Settings:
    try:
        return load_settings(**overrides)
    except AstrostreamError as exc:
        raise click.ClickException(str(exc)) from None


def api_request(
    settings: Settings,
    method: str,
    path: str,
    body: Any = None,
    params: dict[str, Any] | None = None,
    owner_key: str | None = None,
) -> Any:
    """Call the running API; raise a ClickException with its JSON error message.

    ``owner_key``: act for the owner of that key (a web page's key): with the operator token
    as ``X-Owner``, without one as the bearer secret itself.
    """
    query = urllib.parse.urlencode({k: v for k, v in (params or {}).items() if v is not None})
    url = f"{settings.http_base}{path}" + (f"?{query}" if query else "")
    data = json.dumps(body).encode() if body is not None else None
    headers = {"Content-Type": "application/json", "Accept": "application/json"}
    token = client_token(settings)
    if token is not None:
        headers["Authorization"] = f"Bearer {token.get_secret_value()}"
        if owner_key:
            headers["X-Owner"] = owner_key
    elif owner_key:
        headers["Authorization"] = f"Bearer {owner_key}"
    request = urllib.request.Request(url, data=data, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=60) as response:
            payload = response.read()
            return json.loads(payload) if payload else None
    except urllib.error.HTTPError as exc:
        try:
            message = json.loads(exc.read()).get("error", exc.reason)
        except (ValueError, AttributeError):
            message = exc.reason
        raise click.ClickException(f"{method} {path}: {exc.code} {message}") from None
    except urllib.error.URLError as exc:
        raise click.ClickException(
            f"no API at {settings.http_base} ({exc.reason}); is `astrostream up` running? "
            "(or set ASTRO_API_URL)"
        ) from None
