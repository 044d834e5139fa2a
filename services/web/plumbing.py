"""The web app's plumbing: errors as HTML pages, cookies, rendering, CSRF-checked forms.

:class:`Plumbing` is the base of :class:`services.web.pages.Pages`: :meth:`~Plumbing.route`
answers every domain error with an HTML page of the right status (404 for a subscription
that is not yours, as for one that does not exist) and counts requests like the JSON views
do; :meth:`~Plumbing.form` lets a POST through only with a same-origin check and a valid CSRF
token (else 403).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable, Mapping
from typing import Any, cast
from urllib.parse import urlsplit

import aiohttp_jinja2
from aiohttp import web
from multidict import MultiDictProxy

from services.alerts.owners import owner_id
from services.core import metrics
from services.core.errors import AstrostreamError, DependencyUnavailable, NotFound
from services.web.security import (
    COOKIE_MAX_AGE_S,
    CSRF_COOKIE,
    OWNER_COOKIE,
    csrf_ok,
    csrf_token,
    is_https,
    new_nonce,
    same_origin,
)

log = logging.getLogger(__name__)

MAX_SECRET_CHARS = 256
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
# Per request: this browser's CSRF nonce, whether it is new (set its cookie), and the owner a
# page's token is for when the request itself just minted the key.
NONCE = web.RequestKey("csrf_nonce", str)
NONCE_NEW = web.RequestKey("csrf_new", bool)
TOKEN_OWNER = web.RequestKey("csrf_owner", str)


class Forbidden(AstrostreamError):
    """A POST without a valid CSRF token, or from another site."""


class Plumbing:
    """What every page handler relies on (the routes are :class:`services.web.pages.Pages`).

    Attributes:
        key: the CSRF key (:func:`services.web.security.server_key`).
        public_url: where people reach the app (``https://…`` makes cookies ``Secure``).
    """

    key: bytes
    public_url: str | None

    def route(self, name: str, handler: Handler) -> Handler:
        """``handler`` with errors as HTML pages and the request counted under ``name``."""

        async def run(request: web.Request) -> web.StreamResponse:
            started = time.perf_counter()
            try:
                response = await handler(request)
            except Forbidden as exc:
                response = self.problem(request, 403, "Refused", str(exc))
            except NotFound:
                response = self.problem(
                    request,
                    404,
                    "Not found",
                    "There is nothing here, or it belongs to someone else. If it is yours, "
                    "open it in the browser that holds your key, or paste your key on the "
                    "home page.",
                )
            except DependencyUnavailable as exc:
                response = self.problem(request, 503, "Try again shortly", str(exc))
            except AstrostreamError as exc:
                response = self.problem(request, 400, "That did not work", str(exc))
            except Exception as exc:
                log.exception("%s %s failed", request.method, request.path)
                response = self.problem(
                    request, 500, "Something broke", f"{type(exc).__name__}; see the worker log."
                )
            metrics.HTTP_REQUESTS.labels(name, str(response.status)).inc()
            metrics.HTTP_SECONDS.labels(name).observe(time.perf_counter() - started)
            return response

        return run

    def secret(self, request: web.Request) -> str | None:
        secret = request.cookies.get(OWNER_COOKIE)
        return secret if secret and len(secret) <= MAX_SECRET_CHARS else None

    def owner(self, request: web.Request) -> str | None:
        secret = self.secret(request)
        return owner_id(secret) if secret else None

    def nonce(self, request: web.Request) -> str:
        if NONCE not in request:
            given = request.cookies.get(CSRF_COOKIE)
            request[NONCE] = given or new_nonce()
            request[NONCE_NEW] = not given
        return request[NONCE]

    def secure(self, request: web.Request) -> bool:
        return is_https(request.scheme, self.public_url)

    def set_cookie(
        self, request: web.Request, response: web.StreamResponse, name: str, value: str
    ) -> None:
        response.set_cookie(
            name,
            value,
            max_age=COOKIE_MAX_AGE_S,
            path="/",
            httponly=True,
            samesite="Lax",
            secure=self.secure(request),
        )

    def render(
        self, request: web.Request, template: str, context: Mapping[str, Any], status: int = 200
    ) -> web.Response:
        nonce = self.nonce(request)
        page = {
            "csrf": csrf_token(self.key, nonce, request.get(TOKEN_OWNER) or self.owner(request)),
            "has_key": self.secret(request) is not None,
            "path": request.path,
            **context,
        }
        response = aiohttp_jinja2.render_template(template, request, page, status=status)
        response.headers["Cache-Control"] = "no-store"
        response.headers["X-Content-Type-Options"] = "nosniff"
        response.headers["X-Frame-Options"] = "DENY"
        response.headers["Referrer-Policy"] = "same-origin"
        response.headers["Content-Security-Policy"] = (
            "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
            "form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
        )
        if request.get(NONCE_NEW):
            self.set_cookie(request, response, CSRF_COOKIE, nonce)
        return response

    def problem(self, request: web.Request, status: int, title: str, message: str) -> web.Response:
        return self.render(
            request, "problem.html", {"title": title, "message": message}, status=status
        )

    def redirect(self, location: str) -> web.Response:
        return web.Response(status=303, headers={"Location": location})

    def allowed_hosts(self, request: web.Request) -> set[str]:
        hosts = {request.host.lower()}
        if self.public_url:
            hosts.add(urlsplit(self.public_url).netloc.lower())
        return hosts

    async def form(self, request: web.Request) -> MultiDictProxy[str]:
        """The posted form, once it proved to come from our own page (else :class:`Forbidden`)."""
        headers = request.headers
        if not same_origin(
            headers.get("Origin"), headers.get("Referer"), self.allowed_hosts(request)
        ):
            raise Forbidden("This form was sent from another site.")
        posted = await request.post()
        token = posted.get("csrf")
        if not csrf_ok(
            self.key,
            request.cookies.get(CSRF_COOKIE),
            self.owner(request),
            token if isinstance(token, str) else None,
        ):
            raise Forbidden(
                "The form's security token is missing or out of date. Go back, reload the page "
                "and send it again."
            )
        return cast(MultiDictProxy[str], posted)
