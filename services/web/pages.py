"""The web app's routes: ``/`` and pages under ``/app/`` on the worker's aiohttp server.

Handlers are plain aiohttp handlers wrapped by ``route``, which answers every domain error
with an HTML page of the right status (404 for a subscription that is not yours, as for one
that does not exist) and counts requests like the JSON views do. Every POST passes ``form``:
same-origin check and CSRF token, else 403 (both in ``services.web.plumbing``). Creating,
changing and deleting go through the one lifecycle
(:class:`services.alerts.lifecycle.SubscriptionService`), as the API's do.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any, Literal, cast
from urllib.parse import urlencode

import aiohttp_jinja2
import jinja2
from aiohttp import web

from services.alerts.feedback import FeedbackStore, parse_feedback
from services.alerts.hook import MAX_ALERTS_LIMIT
from services.alerts.lifecycle import SubscriptionService
from services.alerts.marks import ReadMarks
from services.alerts.owners import MIN_SECRET_CHARS, is_owner, mint_secret, owner_id
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionMeta
from services.core.errors import InvalidRequest, NotFound, UnknownPaper
from services.http.params import int_param
from services.http.reads import Reads
from services.web import present
from services.web.forms import empty_values, features, form_values, request_body
from services.web.plumbing import MAX_SECRET_CHARS, TOKEN_OWNER, Plumbing
from services.web.security import OWNER_COOKIE, server_key
from services.web.status import lag_summary

STATIC = Path(__file__).parent / "static"
PAGE_SIZE = 20


class Pages(Plumbing):
    """Everything the pages need, and the routes.

    Args:
        service: creates, changes and deletes subscriptions (``service.subs`` reads them).
        feedback, marks, reads: the stores the JSON API uses too.
        readiness: the worker's readiness check (problems by component).
        key: the CSRF key (:func:`services.web.security.server_key`).
        allow_private: whether webhooks may point to private addresses.
        public_url: where people reach the app (``https://…`` makes cookies ``Secure``).
    """

    def __init__(
        self,
        *,
        service: SubscriptionService,
        feedback: FeedbackStore,
        marks: ReadMarks,
        reads: Reads,
        readiness: Callable[[], Awaitable[dict[str, str]]],
        key: bytes,
        allow_private: bool,
        public_url: str | None = None,
        roles: frozenset[str] = frozenset(),
    ) -> None:
        self.service = service
        self.subs = service.subs
        self.feedback = feedback
        self.marks = marks
        self.reads = reads
        self.readiness = readiness
        self.key = key
        self.allow_private = allow_private
        self.public_url = public_url
        self.roles = roles

    def register(self, app: web.Application) -> None:
        aiohttp_jinja2.setup(
            app,
            loader=jinja2.PackageLoader("services.web", "templates"),
            autoescape=jinja2.select_autoescape(["html"]),
            trim_blocks=True,
            lstrip_blocks=True,
        )
        r = app.router
        r.add_get("/", self.route("web_home", self.home))
        r.add_post("/app/subscriptions", self.route("web_create", self.create))
        r.add_post("/app/key", self.route("web_key", self.use_key))
        r.add_post("/app/forget", self.route("web_key", self.forget_key))
        r.add_get("/app/subscriptions/{sub_id}", self.route("web_alerts", self.alerts))
        r.add_post("/app/subscriptions/{sub_id}/feedback", self.route("web_feedback", self.mark))
        r.add_get("/app/subscriptions/{sub_id}/edit", self.route("web_edit", self.edit))
        r.add_post("/app/subscriptions/{sub_id}/edit", self.route("web_edit", self.save))
        r.add_post(
            "/app/subscriptions/{sub_id}/feed-token", self.route("web_feed", self.new_feed_link)
        )
        r.add_get("/app/subscriptions/{sub_id}/delete", self.route("web_delete", self.confirm))
        r.add_post("/app/subscriptions/{sub_id}/delete", self.route("web_delete", self.delete))
        r.add_get("/app/search", self.route("web_search", self.search))
        r.add_get("/app/papers/{arxiv_id:.+}", self.route("web_paper", self.paper))
        r.add_get("/app/status", self.route("web_status", self.status))
        r.add_static("/app/static", STATIC, append_version=False)

    async def owned(self, request: web.Request) -> SubscriptionMeta:
        """The subscription of the URL if this browser's key owns it; NotFound otherwise."""
        raw = request.match_info["sub_id"]
        meta = await self.subs.get_meta(raw)
        if not is_owner(meta.owner, self.secret(request)):
            raise NotFound(f"subscription {raw} does not exist")
        return meta

    async def titles(self, arxiv_ids: list[str]) -> dict[str, str]:
        store = self.subs.store
        found = await store.run(store.papers_by_id, arxiv_ids)
        return {a: str((r.payload or {}).get("title", "")) for a, r in found.items()}

    # subscriptions ---------------------------------------------------------
    def home_page(
        self,
        request: web.Request,
        subscriptions: list[dict[str, Any]],
        values: Mapping[str, str] | None = None,
        errors: list[str] | None = None,
        key_error: str | None = None,
        status: int = 200,
    ) -> web.Response:
        return self.render(
            request,
            "home.html",
            {
                "subscriptions": subscriptions,
                "values": values or empty_values(),
                "features": features(),
                "errors": errors or [],
                "key_error": key_error,
            },
            status=status,
        )

    async def mine(self, request: web.Request) -> list[dict[str, Any]]:
        owner = self.owner(request)
        return await self.subs.list_all(owner=owner) if owner else []

    async def home(self, request: web.Request) -> web.StreamResponse:
        return self.home_page(request, await self.mine(request))

    async def create(self, request: web.Request) -> web.StreamResponse:
        form = await self.form(request)
        values = {**empty_values(), **{k: str(v) for k, v in form.items() if k != "csrf"}}
        minted = self.secret(request) is None
        secret = self.secret(request) or mint_secret()
        try:
            created = await self.service.create(
                parse_request(request_body(form)), self.allow_private, owner=owner_id(secret)
            )
        except UnknownPaper as exc:
            message = (
                f"These arXiv ids are not indexed here yet: {', '.join(exc.arxiv_ids)}. "
                "Check them, or add them once the papers are ingested."
            )
            return self.home_page(request, await self.mine(request), values, [message], status=422)
        except InvalidRequest as exc:
            return self.home_page(request, await self.mine(request), values, [str(exc)], status=400)
        titles = await self.titles(created["arxiv_ids"])
        if minted:  # the new owner's page renders with the new key's token
            request[TOKEN_OWNER] = owner_id(secret)
        response = self.render(
            request,
            "created.html",
            {"sub": created, "titles": titles, "secret": secret if minted else None},
            status=201,
        )
        if minted:
            self.set_cookie(request, response, OWNER_COOKIE, secret)
        return response

    async def use_key(self, request: web.Request) -> web.StreamResponse:
        form = await self.form(request)
        key = str(form.get("key") or "").strip()
        if not MIN_SECRET_CHARS <= len(key) <= MAX_SECRET_CHARS:
            return self.home_page(
                request,
                await self.mine(request),
                key_error=f"A key has {MIN_SECRET_CHARS} to {MAX_SECRET_CHARS} characters; "
                "paste the whole key you were shown.",
                status=400,
            )
        response = self.redirect("/")
        self.set_cookie(request, response, OWNER_COOKIE, key)
        return response

    async def forget_key(self, request: web.Request) -> web.StreamResponse:
        await self.form(request)
        response = self.redirect("/")
        response.del_cookie(OWNER_COOKIE, path="/")
        return response

    async def alerts(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        query = request.query
        sort = query.get("sort") or "score"
        if sort not in ("score", "time"):
            raise InvalidRequest(f"sort must be 'score' or 'time', got {sort!r}")
        page = int_param(query, "page", 1, 1, MAX_ALERTS_LIMIT // PAGE_SIZE)
        show_all = query.get("show") == "all"
        store = self.subs.store
        labels = {
            str(x["arxiv_id"]): str(x["label"])
            for x in await store.run(self.feedback.list_sync, [meta.id])
        }
        read = await store.run(self.marks.read_sync, meta.id)
        muted = {a for a, label in labels.items() if label == "not_relevant"}
        limit = min(MAX_ALERTS_LIMIT, page * PAGE_SIZE + 1 + (0 if show_all else len(muted)))
        found = await self.subs.list_alerts(meta.id, limit, cast(Literal["score", "time"], sort))
        visible = [a for a in found if show_all or a["arxiv_id"] not in muted]
        shown = visible[(page - 1) * PAGE_SIZE : page * PAGE_SIZE]
        papers = await store.run(
            store.papers_by_id, list({a["arxiv_id"] for a in shown} | set(meta.arxiv_ids))
        )
        payloads = {a: r.payload or {} for a, r in papers.items()}
        seeds = {a: str(payloads.get(a, {}).get("title", "")) for a in meta.arxiv_ids}
        items = [
            present.alert_item(
                a,
                payloads.get(a["arxiv_id"]),
                labels.get(a["arxiv_id"]),
                a["arxiv_id"] in read,
                seeds,
            )
            for a in shown
        ]
        base = f"/app/subscriptions/{meta.id}"

        def link(**changes: Any) -> str:
            params = {
                "sort": sort,
                "page": page,
                **({"show": "all"} if show_all else {}),
                **changes,
            }
            params = {k: v for k, v in params.items() if v is not None}
            return f"{base}?{urlencode(params)}"

        feed = f"/subscriptions/{meta.id}/feed.atom" + (
            f"?{urlencode({'token': meta.feed_token})}" if meta.feed_token else ""
        )
        return self.render(
            request,
            "alerts.html",
            {
                "sub": meta.public(),
                "seeds": seeds,
                "items": items,
                "sort": sort,
                "page": page,
                "show_all": show_all,
                "hidden": 0 if show_all else len([a for a in found if a["arxiv_id"] in muted]),
                "prev_url": link(page=page - 1) if page > 1 else None,
                "next_url": link(page=page + 1) if len(visible) > page * PAGE_SIZE else None,
                "sort_urls": {s: link(sort=s, page=1) for s in ("score", "time")},
                "show_all_url": link(show="all", page=1),
                "show_fewer_url": f"{base}?{urlencode({'sort': sort})}",
                "here": link(),
                "feed_url": feed,
                "features": features(),
            },
        )

    async def mark(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        form = await self.form(request)
        label = str(form.get("label") or "")
        store = self.subs.store
        arxiv_id = str(form.get("arxiv_id") or "")
        if label == "read":
            checked = parse_feedback({"arxiv_id": arxiv_id, "label": "relevant"})
        else:
            checked = parse_feedback({"arxiv_id": arxiv_id, "label": label})
        if checked.arxiv_id not in await store.run(store.papers_by_id, [checked.arxiv_id]):
            raise UnknownPaper([checked.arxiv_id])
        if label == "read":
            await store.run(self.marks.mark_sync, meta.id, checked.arxiv_id)
        else:
            await store.run(self.feedback.put_sync, meta.id, checked)
        back = str(form.get("back") or "")
        base = f"/app/subscriptions/{meta.id}"
        if not back.startswith(base + "?"):  # only back to this page, never elsewhere
            back = base
        return self.redirect(f"{back}#paper-{checked.arxiv_id}")

    async def edit(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        return self.render(
            request,
            "edit.html",
            {"sub": meta.public(), "values": form_values(meta.public()), "features": features()},
        )

    async def save(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        form = await self.form(request)
        values = {**empty_values(), **{k: str(v) for k, v in form.items() if k != "csrf"}}
        body = request_body(form)
        if (
            meta.webhook
        ):  # set through the API; the form does not show it, so keep it (and its secret)
            body["webhook"] = meta.webhook.url
        try:
            await self.service.update(meta.id, parse_request(body), self.allow_private)
        except InvalidRequest as exc:
            return self.render(
                request,
                "edit.html",
                {
                    "sub": meta.public(),
                    "values": values,
                    "features": features(),
                    "errors": [str(exc)],
                },
                status=422 if isinstance(exc, UnknownPaper) else 400,
            )
        return self.redirect(f"/app/subscriptions/{meta.id}")

    async def new_feed_link(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        await self.form(request)
        await self.service.rotate_feed_token(meta.id)
        return self.redirect(f"/app/subscriptions/{meta.id}#feed")

    async def confirm(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        return self.render(request, "delete.html", {"sub": meta.public()})

    async def delete(self, request: web.Request) -> web.StreamResponse:
        meta = await self.owned(request)
        await self.form(request)
        await self.service.delete(meta.id)
        return self.redirect("/")

    # reading ---------------------------------------------------------------
    async def search(self, request: web.Request) -> web.StreamResponse:
        query = request.query
        values = {k: query.get(k, "") for k in ("q", "category", "since")}
        results: list[dict[str, Any]] | None = None
        error = None
        if values["q"].strip():
            try:
                found = await self.reads.search(query)
                results = [present.search_item(r) for r in found["results"]]
            except InvalidRequest as exc:
                error = str(exc)
        return self.render(
            request,
            "search.html",
            {"values": values, "results": results, "error": error},
            status=400 if error else 200,
        )

    async def paper(self, request: web.Request) -> web.StreamResponse:
        arxiv_id = request.match_info["arxiv_id"]
        paper = await self.reads.paper(arxiv_id)
        similar = await self.reads.similar(arxiv_id, {"limit": "8"})
        return self.render(
            request,
            "paper.html",
            {
                "paper": paper,
                "authors": present.authors_line(paper.get("authors")),
                "similar": [present.search_item(r) for r in similar["results"]],
                **present.arxiv_links(str(paper.get("arxiv_id")), paper.get("version")),
            },
        )

    async def status(self, request: web.Request) -> web.StreamResponse:
        stats = await self.reads.stats()
        problems = await self.readiness()
        lag = lag_summary()
        if "ingest" not in self.roles:
            ingest = "not run by this worker (start one with ASTRO_ROLES including ingest)"
        else:
            ingest = problems.get("ingest") or "running"
        return self.render(
            request,
            "status.html",
            {
                "stats": stats,
                "problems": problems,
                "ingest": ingest,
                "roles": sorted(self.roles),
                "lag": {
                    "end_to_end": present.seconds(lag["end_to_end_s"]),
                    "batches": lag["batches_measured"],
                    "waiting": lag["records_waiting"],
                    "last_batch": present.seconds(lag["last_batch_age_s"]),
                },
            },
            status=200,
        )


def register_web(
    app: web.Application,
    *,
    service: SubscriptionService,
    feedback: FeedbackStore,
    reads: Reads,
    readiness: Callable[[], Awaitable[dict[str, str]]],
    data_dir: Path,
    allow_private: bool,
    public_url: str | None = None,
    roles: frozenset[str] = frozenset(),
) -> Pages:
    """Serve the pages on ``app`` (the worker's aiohttp application; api role)."""
    marks = ReadMarks(service.subs.binding)
    marks.ensure_sync()
    pages = Pages(
        service=service,
        feedback=feedback,
        marks=marks,
        reads=reads,
        readiness=readiness,
        key=server_key(data_dir),
        allow_private=allow_private,
        public_url=public_url,
        roles=roles,
    )
    pages.register(app)
    return pages
