"""The web app in-process: real pages on a local aiohttp server over an in-memory Qdrant.

Covers what a browser relies on: pages render, forms carry CSRF tokens and are refused
without them or from another site, another owner's subscription is a 404, cookie flags.
"""

from __future__ import annotations

import asyncio
import re
from collections.abc import Awaitable, Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from aiohttp import ClientSession, CookieJar
from aiohttp.test_utils import TestServer

from benchmarks.web import Site, alert_payloads, index_papers
from services.alerts.owners import mint_secret
from services.web.security import CSRF_COOKIE, OWNER_COOKIE, csrf_ok, csrf_token, same_origin

TOKEN = re.compile(r'name="csrf" value="([0-9a-f]+)"')


class Browser:
    """A cookie-keeping client of one served site."""

    def __init__(self, server: TestServer) -> None:
        self.server = server
        self.http = ClientSession(cookie_jar=CookieJar(unsafe=True))  # 127.0.0.1 keeps cookies
        self.last: Any = None

    async def get(self, path: str) -> tuple[int, str]:
        async with self.http.get(self.server.make_url(path), allow_redirects=False) as r:
            self.last = r
            return r.status, await r.text()

    async def token(self, path: str = "/") -> str:
        status, html = await self.get(path)
        assert status == 200, html
        return TOKEN.findall(html)[0]

    async def post(
        self, path: str, data: dict[str, str], headers: dict[str, str] | None = None
    ) -> tuple[int, str]:
        async with self.http.post(
            self.server.make_url(path), data=data, headers=headers, allow_redirects=False
        ) as r:
            self.last = r
            return r.status, await r.text()

    def cookie(self, name: str) -> str | None:
        found = [c for c in self.http.cookie_jar if c.key == name]
        return found[0].value if found else None


@pytest.fixture
def site(tmp_path: Path, sample_records: list[dict[str, Any]]) -> Site:
    made = Site(tmp_path, dim=16)
    index_papers(made.store, made.encoder, sample_records[:30])
    return made


Scenario = Callable[[Site, TestServer], Awaitable[None]]


def serve(site: Site, scenario: Scenario) -> None:
    async def go() -> None:
        server = TestServer(site.app, host="127.0.0.1")
        await server.start_server()
        try:
            await scenario(site, server)
        finally:
            await server.close()

    asyncio.run(go())


async def create(browser: Browser, **fields: str) -> tuple[int, str]:
    token = await browser.token("/")
    return await browser.post("/app/subscriptions", {"csrf": token, **fields})


def sub_id_of(html: str) -> str:
    return re.findall(r"/app/subscriptions/([0-9a-f]{32})", html)[0]


def test_pages_render(site: Site, sample_records: list[dict[str, Any]]) -> None:
    paper = sample_records[0]

    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            status, html = await browser.get("/")
            assert status == 200 and "Your subscriptions" in html and "New subscription" in html
            assert 'for="f-arxiv"' in html and 'id="f-arxiv"' in html  # labelled inputs
            assert browser.last.headers["Cache-Control"] == "no-store"
            status, html = await browser.get("/app/search?q=star+clusters")
            assert status == 200 and "result" in html and "/app/papers/" in html
            status, html = await browser.get("/app/search?q=x&since=nonsense")
            assert status == 400 and "since must be an ISO date" in html
            status, html = await browser.get(f"/app/papers/{paper['arxiv_id']}")
            assert status == 200 and paper["title"] in html and "Similar papers" in html
            assert f"https://arxiv.org/pdf/{paper['arxiv_id']}" in html
            status, html = await browser.get("/app/papers/2101.99999")
            assert status == 404 and "Not found" in html
            status, html = await browser.get("/app/status")
            assert status == 200 and "Papers indexed" in html and "<td>30</td>" in html
            status, css = await browser.get("/app/static/style.css")
            assert status == 200 and ":focus-visible" in css
            status, body = await browser.get("/search?q=star")  # the JSON API is untouched
            assert status == 404  # (this site serves only the pages)

    serve(site, scenario)


def test_create_shows_the_key_once_and_sets_a_safe_cookie(
    site: Site, sample_records: list[dict[str, Any]]
) -> None:
    a, b = sample_records[0], sample_records[1]

    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            status, html = await create(
                browser, arxiv_ids=f"{a['arxiv_id']}, {b['arxiv_id']}", queries="star clusters"
            )
            assert status == 201, html
            cookie = browser.last.cookies[OWNER_COOKIE]
            assert cookie["httponly"] and cookie["samesite"] == "Lax" and cookie["path"] == "/"
            assert not cookie["secure"]  # plain http, no https public URL
            secret = browser.cookie(OWNER_COOKIE)
            assert secret and secret in html and "keep this key" in html.lower()
            assert a["title"] in html and b["title"] in html  # resolved titles
            sub_id = sub_id_of(html)
            status, html = await browser.get("/")
            assert sub_id in html and secret not in html  # shown once
            # A second subscription joins the same owner and shows no key.
            status, html = await create(browser, queries="dark matter")
            assert status == 201 and "Your key" not in html
            assert browser.cookie(OWNER_COOKIE) == secret
            status, html = await browser.get("/")
            assert len(set(re.findall(r"/app/subscriptions/([0-9a-f]{32})", html))) == 2

    serve(site, scenario)


def test_cookie_is_secure_behind_an_https_public_url(site: Site) -> None:
    site.pages.public_url = "https://astro.example.org"

    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            await browser.get("/")
            assert browser.last.cookies[CSRF_COOKIE]["secure"]
            # secure cookies are not sent back over http: post the token by hand
            nonce = browser.last.cookies[CSRF_COOKIE].value
            token = csrf_token(site.pages.key, nonce, None)
            status, _ = await browser.post(
                "/app/subscriptions",
                {"csrf": token, "queries": "galaxies"},
                headers={"Cookie": f"{CSRF_COOKIE}={nonce}"},
            )
            assert status == 201
            cookie = browser.last.cookies[OWNER_COOKIE]
            assert cookie["secure"] and cookie["httponly"] and cookie["samesite"] == "Lax"

    serve(site, scenario)


def test_unknown_arxiv_ids_are_a_form_error_not_a_500(site: Site) -> None:
    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            status, html = await create(browser, arxiv_ids="2101.99999", queries="")
            assert status == 422
            assert "not indexed here yet: 2101.99999" in html and 'role="alert"' in html
            assert "2101.99999</textarea>" in html  # what was typed is kept
            assert browser.cookie(OWNER_COOKIE) is None  # nothing created, no key minted
            status, html = await create(browser, queries="x", threshold="high")
            assert status == 400 and "threshold" in html

    serve(site, scenario)


def test_posts_without_a_valid_token_or_from_another_site_are_refused(site: Site) -> None:
    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            token = await browser.token("/")
            form = {"queries": "dark matter"}
            assert (await browser.post("/app/subscriptions", form))[0] == 403
            assert (await browser.post("/app/subscriptions", {**form, "csrf": "0" * 64}))[0] == 403
            assert (await browser.post("/app/subscriptions", {**form, "csrf": token[:-1]}))[
                0
            ] == 403
            evil = {"Origin": "https://evil.example"}
            status, html = await browser.post(
                "/app/subscriptions", {**form, "csrf": token}, headers=evil
            )
            assert status == 403 and "another site" in html
            status, _ = await browser.post(
                "/app/subscriptions",
                {**form, "csrf": token},
                headers={"Referer": "https://evil.example/page"},
            )
            assert status == 403
            async with browser.http.post(
                server.make_url("/app/subscriptions"), json={"queries": ["x"], "csrf": token}
            ) as r:
                assert r.status == 403
            # Another browser's token does not work in this one.
            other = Browser(server)
            async with other.http:
                theirs = await other.token("/")
            assert (await browser.post("/app/subscriptions", {**form, "csrf": theirs}))[0] == 403
            assert (await browser.post("/app/key", {"key": mint_secret()}))[0] == 403
            assert await site.subs.list_all() == []
            status, _ = await browser.post(
                "/app/subscriptions",
                {**form, "csrf": token},
                headers={"Origin": str(server.make_url("/")).rstrip("/")},
            )
            assert status == 201

    serve(site, scenario)


def test_another_owners_subscription_is_a_404_everywhere(
    site: Site, sample_records: list[dict[str, Any]]
) -> None:
    async def scenario(site: Site, server: TestServer) -> None:
        owner, other = Browser(server), Browser(server)
        async with owner.http, other.http:
            status, html = await create(owner, queries="star clusters")
            sub_id = sub_id_of(html)
            base = f"/app/subscriptions/{sub_id}"
            assert (await owner.get(base))[0] == 200
            token = await other.token("/")  # other has a CSRF cookie but another key
            await other.post("/app/key", {"csrf": token, "key": mint_secret()})
            token = await other.token("/")
            anonymous = Browser(server)
            async with anonymous.http:
                for who in (other, anonymous):
                    for path in (base, f"{base}/delete", f"{base}/edit"):
                        status, html = await who.get(path)
                        assert status == 404 and "belongs to someone else" in html, path
                mine = {"csrf": token}
                for path, data in (
                    (f"{base}/delete", mine),
                    (
                        f"{base}/feedback",
                        {**mine, "arxiv_id": sample_records[0]["arxiv_id"], "label": "relevant"},
                    ),
                    (f"{base}/edit", {**mine, "queries": "hijacked"}),
                ):
                    assert (await other.post(path, data))[0] == 404, path
                assert (await other.get("/app/subscriptions/not-an-id"))[0] == 404
            assert (await owner.get(base))[0] == 200
            assert len(await site.subs.list_all()) == 1

    serve(site, scenario)


def test_alerts_page_lists_marks_hides_and_pages(
    site: Site, sample_records: list[dict[str, Any]]
) -> None:
    seed = sample_records[0]
    alerted = sample_records[1:26]  # 25: two pages

    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            status, html = await create(
                browser, queries="star clusters", arxiv_ids=seed["arxiv_id"]
            )
            sub_id = sub_id_of(html)
            payloads = alert_payloads(
                sub_id, ["star clusters", seed["arxiv_id"]], alerted, np.random.default_rng(1)
            )
            payloads[0]["relevance"] = None  # stored before calibration existed
            await site.store.run(site.subs.put_alerts_sync, payloads)
            base = f"/app/subscriptions/{sub_id}"
            status, html = await browser.get(f"{base}?sort=time")
            assert status == 200
            first = alerted[0]
            assert html.count('<li class="alert') == 20 and "Next page" in html
            assert first["title"] in html and "Not rated yet" in html
            assert re.search(r"(Very strong|Strong|Medium|Weak) match", html)
            assert re.search(r"class=\"fill w(80|85|90|95|100)\"", html)  # relevance 0.8-1
            assert "matches your query “star clusters”" in html
            assert f"matches your paper {seed['arxiv_id']} “{seed['title'][:60]}" in html
            assert "/feed.atom" in html
            status, page2 = await browser.get(f"{base}?sort=time&page=2")
            assert page2.count('<li class="alert') == 5 and "Previous page" in page2
            status, _ = await browser.get(f"{base}?sort=nonsense")
            assert status == 400

            token = TOKEN.findall(html)[0]
            back = f"{base}?sort=time&page=1"
            form = {"csrf": token, "arxiv_id": first["arxiv_id"], "back": back}
            status, _ = await browser.post(f"{base}/feedback", {**form, "label": "not_relevant"})
            assert status == 303 and browser.last.headers["Location"].startswith(back + "#paper-")
            status, html = await browser.get(back)
            assert (
                first["title"] not in html and "1 paper you marked not relevant is hidden" in html
            )
            labels = await site.store.run(site.feedback.list_sync, [sub_id])
            assert [(x["arxiv_id"], x["label"]) for x in labels] == [
                (first["arxiv_id"], "not_relevant")
            ]
            second = alerted[1]["arxiv_id"]
            status, _ = await browser.post(
                f"{base}/feedback", {**form, "arxiv_id": second, "label": "read"}
            )
            assert status == 303
            status, html = await browser.get(f"{base}?sort=time&show=all")
            assert first["title"] in html and "marked not relevant" in html
            assert re.search(rf'class="alert read" id="paper-{re.escape(second)}"', html)
            # read is kept apart from the relevance labels
            assert len(await site.store.run(site.feedback.list_sync, [sub_id])) == 1
            status, html = await browser.post(f"{base}/feedback", {**form, "label": "meh"})
            assert status == 400
            status, _ = await browser.post(
                f"{base}/feedback", {**form, "back": "https://evil.example/", "label": "relevant"}
            )
            assert browser.last.headers["Location"].startswith(base + "#")

    serve(site, scenario)


def test_delete_asks_first_then_removes(site: Site) -> None:
    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            status, html = await create(browser, queries="star clusters", name="clusters")
            base = f"/app/subscriptions/{sub_id_of(html)}"
            status, html = await browser.get(f"{base}/delete")
            assert status == 200 and "Delete clusters?" in html and "cannot be undone" in html
            assert len(await site.subs.list_all()) == 1  # asking deletes nothing
            token = TOKEN.findall(html)[0]
            status, _ = await browser.post(f"{base}/delete", {"csrf": token})
            assert status == 303
            assert await site.subs.list_all() == []
            assert (await browser.get(base))[0] == 404

    serve(site, scenario)


def test_use_my_key_opens_the_subscriptions_in_another_browser(site: Site) -> None:
    async def scenario(site: Site, server: TestServer) -> None:
        first, second = Browser(server), Browser(server)
        async with first.http, second.http:
            status, html = await create(first, queries="star clusters")
            secret = first.cookie(OWNER_COOKIE)
            assert secret
            token = await second.token("/")
            status, html = await second.post("/app/key", {"csrf": token, "key": "short"})
            assert status == 400 and "paste the whole key" in html
            status, _ = await second.post("/app/key", {"csrf": token, "key": secret})
            assert status == 303
            status, html = await second.get("/")
            assert sub_id_of(html) in html

    serve(site, scenario)


def test_csrf_and_origin_rules() -> None:
    key = b"k" * 32
    token = csrf_token(key, "nonce", "owner")
    assert csrf_ok(key, "nonce", "owner", token)
    assert not csrf_ok(key, "nonce", None, token)  # bound to the owner
    assert not csrf_ok(key, "other", "owner", token)
    assert not csrf_ok(key, None, "owner", token)
    assert not csrf_ok(key, "nonce", "owner", None)
    hosts = {"127.0.0.1:6066"}
    assert same_origin(None, None, hosts)
    assert same_origin("http://127.0.0.1:6066", None, hosts)
    assert same_origin(None, "http://127.0.0.1:6066/app/search?q=x", hosts)
    assert not same_origin("null", None, hosts)
    assert not same_origin("http://127.0.0.1:6067", None, hosts)
    assert not same_origin(None, "https://evil.example/", hosts)


def test_edit_keeps_the_subscription_and_rotating_the_feed_link_revokes_the_old(
    site: Site,
) -> None:
    async def scenario(site: Site, server: TestServer) -> None:
        browser = Browser(server)
        async with browser.http:
            status, html = await create(
                browser, queries="star clusters", authors="Smith, J.\nDoe, A.", digest="off"
            )
            assert status == 201, html
            sub_id = sub_id_of(html)
            base = f"/app/subscriptions/{sub_id}"
            status, html = await browser.get(f"{base}/edit")
            assert status == 200 and "star clusters</textarea>" in html
            assert "Smith, J.\nDoe, A.</textarea>" in html
            token = TOKEN.findall(html)[0]
            form = {"csrf": token, "queries": "open clusters\ngaia", "digest": "weekly"}
            status, html = await browser.post(f"{base}/edit", form)
            assert status == 400 and "email" in html  # a digest needs an address
            assert "open clusters\ngaia</textarea>" in html  # what was typed is kept
            status, _ = await browser.post(f"{base}/edit", {**form, "email": "me@example.org"})
            assert status == 303 and browser.last.headers["Location"] == base
            meta = await site.subs.get_meta(sub_id)
            assert (meta.queries, meta.digest, meta.email) == (
                ["open clusters", "gaia"],
                "weekly",
                "me@example.org",
            )
            assert meta.authors == [] and meta.owner  # the form is the whole request
            status, html = await browser.get(base)
            old_link = re.findall(r'href="(/subscriptions/[^"]+/feed\.atom\?token=[^"]+)"', html)
            assert old_link and "weekly to me@example.org" in html
            status, _ = await browser.post(f"{base}/feed-token", {"csrf": token})
            assert status == 303
            status, html = await browser.get(base)
            assert old_link[0] not in html and "/feed.atom?token=" in html

    serve(site, scenario)
