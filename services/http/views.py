"""The HTTP boundary: one view base that answers JSON, one table from errors to statuses, the routes.

Domain code raises transport-neutral errors (``services.core.errors``); :data:`STATUS`
maps them to HTTP statuses in one place. Faust's ``WebError`` carries its own status.
What aiohttp answers before a view runs (unknown route, wrong method) is turned into the
same JSON shape by :func:`json_errors`, so every answer is ``{"error": "..."}``; a body
is checked (media type, size, encoding, depth) by :meth:`JsonView.json_body` before it is
parsed. One answer stays aiohttp's text/plain 400: a request line over
:data:`MAX_REQUEST_LINE_BYTES`, refused by the HTTP parser before any application code.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Awaitable, Callable
from typing import Any

import faust
from aiohttp import web
from faust.web import Request, Response, View
from faust.web.exceptions import WebError

from services.core import metrics
from services.core.errors import (
    AstrostreamError,
    DependencyUnavailable,
    InvalidRequest,
    NotFound,
    UnknownPaper,
)
from services.http.body import UnsupportedMediaType, check_media_type, parse_json
from services.http.reads import Reads

log = logging.getLogger(__name__)

MAX_BODY_BYTES = 1024**2
# aiohttp answers a longer request line itself, in text/plain, before any middleware runs;
# 8190 bytes (its default) would turn a long but harmless ?q= into that text answer.
MAX_REQUEST_LINE_BYTES = 256 * 1024

# First match wins: subclasses before their bases.
STATUS: tuple[tuple[type[AstrostreamError], int], ...] = (
    (UnsupportedMediaType, 415),
    (UnknownPaper, 422),
    (NotFound, 404),
    (InvalidRequest, 400),
    (DependencyUnavailable, 503),
    (AstrostreamError, 400),
)


def status_of(exc: AstrostreamError) -> int:
    return next(status for kind, status in STATUS if isinstance(exc, kind))


def error_body(status: int, message: str) -> web.Response:
    return web.json_response({"error": message}, status=status)


@web.middleware
async def json_errors(request: web.Request, handler: Callable[..., Awaitable[Any]]) -> Any:
    """aiohttp's own 404/405 (raised before any view runs), and anything unhandled, as JSON."""
    try:
        return await handler(request)
    except web.HTTPException as exc:
        if exc.status < 400 or exc.content_type == "application/json":
            raise
        message = {
            404: f"no such route: {request.path}",
            405: f"{request.method} is not allowed on {request.path}",
        }.get(exc.status, exc.reason)
        headers = {"Allow": exc.headers["Allow"]} if "Allow" in exc.headers else None
        metrics.HTTP_REQUESTS.labels("other", str(exc.status)).inc()
        return web.json_response({"error": message}, status=exc.status, headers=headers)
    except Exception as exc:  # outside any JsonView (a view maps its own errors)
        log.exception("%s %s failed", request.method, request.path)
        metrics.HTTP_REQUESTS.labels("other", "500").inc()
        return error_body(500, f"internal error ({type(exc).__name__}); see the worker log")


def web_application_options() -> dict[str, Any]:
    """The aiohttp application settings of the API: JSON errors, body and line limits."""
    return {
        "middlewares": [json_errors],
        "client_max_size": MAX_BODY_BYTES,
        "handler_args": {"max_line_size": MAX_REQUEST_LINE_BYTES},
    }


class JsonView(View):
    """A view that always answers JSON, maps errors through :data:`STATUS` and counts requests."""

    route_name = "other"

    async def dispatch(self, request: Any) -> Any:
        started = time.perf_counter()
        handler = self.methods[request.method.lower()]
        try:
            response = await handler(request, **(request.match_info or {}))
        except WebError as exc:
            response = self.error(int(exc.code), str(exc.detail))
        except web.HTTPException as exc:  # raised by aiohttp inside a view
            response = self.error(exc.status, exc.reason)
        except DependencyUnavailable as exc:
            response = self.error(
                503, str(exc), headers={"Retry-After": str(int(exc.retry_after_s) or 1)}
            )
        except AstrostreamError as exc:
            response = self.error(status_of(exc), str(exc))
        except Exception as exc:
            log.exception("%s %s failed", request.method, request.path)
            response = self.error(500, f"internal error ({type(exc).__name__}); see the worker log")
        status = getattr(response, "status", 200)
        metrics.HTTP_REQUESTS.labels(self.route_name, str(status)).inc()
        metrics.HTTP_SECONDS.labels(self.route_name).observe(time.perf_counter() - started)
        return response

    async def json_body(self, request: Any) -> Any:
        """The request's JSON body: 415 unless sent as JSON, 413 past 1 MiB, 400 if malformed."""
        check_media_type(request.headers.get("Content-Type", ""))
        try:
            raw = await request.read()
        except web.HTTPRequestEntityTooLarge:
            raise WebError(
                f"body too large (max {MAX_BODY_BYTES // 1024**2} MiB)", code=413
            ) from None
        return parse_json(raw)


def register_probes(
    app: faust.App,
    readiness: Callable[[], Awaitable[dict[str, str]]],
    model_version: Callable[[], str],
    started_at: float,
) -> None:
    """``/health``, ``/ready`` and ``/metrics``: served by every role."""

    @app.page("/health", name="health")
    class Health(JsonView):
        route_name = "health"

        async def get(self, request: Request) -> Response:
            return self.json({"status": "alive", "uptime_s": round(time.time() - started_at, 1)})

    @app.page("/ready", name="ready")
    class Ready(JsonView):
        route_name = "ready"

        async def get(self, request: Request) -> Response:
            problems = await readiness()
            if problems:
                return self.json({"ready": False, "problems": problems}, status=503)
            return self.json({"ready": True, "model_version": model_version()})

    @app.page("/metrics", name="metrics")
    class Metrics(JsonView):
        route_name = "metrics"

        async def get(self, request: Request) -> Response:
            body, content_type = metrics.exposition()
            # aiohttp refuses a charset inside content_type=, so set the header as is.
            return web.Response(body=body, headers={"Content-Type": content_type})  # type: ignore[return-value]


def register_reads(app: faust.App, reads: Reads) -> None:
    """``/stats``, ``/search`` and the paper routes (api role)."""

    @app.page("/stats", name="stats")
    class Stats(JsonView):
        route_name = "stats"

        async def get(self, request: Request) -> Response:
            return self.json(await reads.stats())

    @app.page("/search", name="search")
    class Search(JsonView):
        route_name = "search"

        async def get(self, request: Request) -> Response:
            return self.json(await reads.search(request.query))  # type: ignore[attr-defined]

    @app.page("/papers/{arxiv_id:.+}/similar", name="similar")
    class Similar(JsonView):
        route_name = "similar"

        async def get(self, request: Request, arxiv_id: str) -> Response:
            return self.json(await reads.similar(arxiv_id, request.query))  # type: ignore[attr-defined]

    # Registered after /similar: aiohttp takes the first route that matches.
    @app.page("/papers/{arxiv_id:.+}", name="paper")
    class PaperView(JsonView):
        route_name = "paper"

        async def get(self, request: Request, arxiv_id: str) -> Response:
            return self.json(await reads.paper(arxiv_id))
