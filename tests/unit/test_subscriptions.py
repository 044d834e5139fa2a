"""Unit tests of subscription validation and storage, and of the matcher hook, on in-memory Qdrant."""

from __future__ import annotations

import asyncio
import json
import uuid
import zlib
from typing import Any

import numpy as np
import pytest

from services.alerts.hook import AlertMatcher
from services.alerts.lifecycle import SubscriptionService
from services.alerts.request import MAX_INTERESTS, parse_request
from services.alerts.subscriptions import SubscriptionStore, check_subscription_id
from services.alerts.webhooks import WebhookSender
from services.core.errors import InvalidSubscription, NotFound, UnknownPaper
from services.core.ids import paper_point_id, sentence_point_id
from services.core.schemas import Alert, Paper
from services.core.settings import load_settings
from services.embed.pipeline import IndexedPaper, RawRecord, paper_payload, sentence_payload
from services.store.binding import Binding
from services.store.vectorstore import VectorStore

DIM = 8


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ({}, "at least one of queries, arxiv_ids or authors"),
        ({"include_terms": ["bars"]}, "at least one of queries, arxiv_ids or authors"),
        ({"queries": ["x"], "digest": "daily"}, "needs an email address"),
        ({"queries": ["x"], "digest": "hourly"}, "digest"),
        ({"queries": ["x"], "email": "not-an-address"}, "email: not an e-mail address"),
        ({"queries": ["x"], "include_terms": [" "]}, "include_terms: term 0 is empty"),
        ({"queries": ["x"], "exclude_terms": ["t"] * 51}, "exclude_terms: at most 50 terms"),
        ({"queries": ["x"], "exclude_terms": ["t" * 101]}, "max 100"),
        ({"authors": ["..."]}, "authors: author 0"),
        ({"authors": ["A. B"] * 101}, "at most 100 authors"),
        ({"queries": ["x"], "cross_lists": "no"}, "cross_lists: must be true or false"),
        ({"queries": [], "arxiv_ids": []}, "at least one"),
        ({"queries": ["x"] * 2 + [f"q{i}" for i in range(MAX_INTERESTS)]}, "too many interests"),
        ({"queries": ["a" * 2001]}, "queries: query 0 has 2001 characters"),
        ({"queries": ["ok", ""]}, "query 1 is empty"),
        ({"queries": ["x"], "threshold": -0.1}, "threshold: must be a number between 0 and 1"),
        ({"queries": ["x"], "threshold": True}, "threshold"),
        ({"arxiv_ids": ["2501.1"]}, "not an arXiv id"),
        ({"queries": ["x"], "name": "n" * 201}, "name: at most 200"),
        ({"queries": ["x"], "categories": [""]}, "categories"),
        ({"queries": ["x"], "webhook": "gopher://x"}, "webhook: must be an http(s) URL"),
        ({"queries": ["x"], "webhook_secret": "s" * 20}, "webhook_secret given without webhook"),
        ({"queries": ["x"], "colour": "blue"}, "colour: unknown field"),
        ("just text", "body must be a JSON object"),
    ],
)
def test_invalid_requests_are_refused_with_the_reason(body: Any, message: str) -> None:
    with pytest.raises(InvalidSubscription) as err:
        parse_request(body)
    assert message in str(err.value)


def test_valid_request_is_normalised() -> None:
    request = parse_request(
        {"queries": [" dark matter ", "dark matter"], "arxiv_ids": ["2501.00001v2", "2501.00001"]}
    )
    assert request.queries == ["dark matter"]
    assert request.arxiv_ids == ["2501.00001"]
    assert 0 <= request.threshold <= 1


def test_subscription_ids() -> None:
    sub = uuid.uuid4()
    assert check_subscription_id(str(sub)) == sub.hex == check_subscription_id(sub.hex)
    with pytest.raises(NotFound):
        check_subscription_id("../etc")


class FakeEncoder:
    """Deterministic unit vectors seeded by the text's CRC-32: enough for storage logic.

    ``hash()`` of a str is salted per process (PYTHONHASHSEED), so it would give other vectors
    in every run.
    """

    dim = DIM

    async def aencode(self, texts: list[str]) -> np.ndarray:
        rows = [np.random.default_rng(zlib.crc32(t.encode())).normal(size=DIM) for t in texts]
        vectors = np.asarray(rows, dtype=np.float32)
        return vectors / np.linalg.norm(vectors, axis=1, keepdims=True)


def unit(*values: float) -> np.ndarray:
    v = np.zeros(DIM, dtype=np.float32)
    v[: len(values)] = values
    return v / np.linalg.norm(v)


def index(store: VectorStore, paper: Paper, sentences: list[str], vectors: np.ndarray) -> None:
    """Write a paper the way the embed stage does (sentences, then the paper point)."""
    store.upsert(
        store.sentences,
        [sentence_point_id(paper.arxiv_id, paper.version, i) for i in range(len(sentences))],
        vectors,
        [sentence_payload(paper, i, s, store.model_version) for i, s in enumerate(sentences)],
    )
    mean = vectors.mean(axis=0)
    store.upsert(
        store.papers,
        [paper_point_id(paper.arxiv_id)],
        (mean / np.linalg.norm(mean))[None, :],
        [{**paper_payload(paper, store.model_version), "digest": "d"}],
    )


def paper(arxiv_id: str, title: str, categories: list[str] | None = None) -> Paper:
    return Paper(
        arxiv_id=arxiv_id,
        title=title,
        abstract="x",
        categories=categories or ["astro-ph.GA"],
        authors=["A. Author"],
    )


@pytest.fixture
def subs() -> SubscriptionStore:
    settings = load_settings(qdrant_path=":memory:")
    store = VectorStore(settings, DIM, "test")
    store.ensure_collections()
    subscriptions = SubscriptionStore(Binding(FakeEncoder(), store))
    subscriptions.ensure_sync()
    return subscriptions


def test_create_read_list_delete(subs: SubscriptionStore) -> None:
    seed = paper("2501.00001", "Bars in disc galaxies")
    index(
        subs.store,
        seed,
        ["Bars drive gas inwards.", "We simulate discs."],
        np.vstack([unit(1), unit(0, 1)]),
    )

    async def go() -> None:
        with pytest.raises(UnknownPaper) as err:
            await SubscriptionService(subs).create(
                parse_request({"arxiv_ids": ["2501.00001", "2501.09999"]}), False
            )
        assert err.value.arxiv_ids == ["2501.09999"]
        assert str(err.value) == "unknown arXiv id(s): 2501.09999 (not indexed yet)"
        created = await SubscriptionService(subs).create(
            parse_request(
                {"name": "bars", "queries": ["galactic bars"], "arxiv_ids": ["2501.00001"]}
            ),
            False,
        )
        assert created["interest_vectors"] == 3  # one query + two seed sentences
        assert created["webhook"] is None and "webhook_secret" not in created
        assert await subs.get(created["id"]) == created
        assert [s["id"] for s in await subs.list_all()] == [created["id"]]
        assert subs.count_sync() == 1
        assert subs.store.count(subs.store.subscriptions) == 3
        assert await subs.list_alerts(created["id"], 10, "score") == []
        assert await SubscriptionService(subs).delete(created["id"]) == {"deleted": created["id"]}
        assert subs.store.count(subs.store.subscriptions) == 0
        with pytest.raises(NotFound):
            await subs.get(created["id"])

    asyncio.run(go())


def test_matcher_alerts_once_with_evidence_and_skips_seeds(subs: SubscriptionStore) -> None:
    store = subs.store
    seed = paper("2501.00001", "Bars in disc galaxies")
    index(
        store,
        seed,
        ["Bars drive gas inwards.", "Discs are cold."],
        np.vstack([unit(1), unit(0, 1)]),
    )
    published: list[Alert] = []

    async def publish(alerts: list[Alert]) -> None:
        published.extend(alerts)

    def indexed(p: Paper, sentences: list[str], vectors: np.ndarray, digest: str) -> IndexedPaper:
        record = RawRecord("t", 0, 0, None, None)
        return IndexedPaper(p, record, sentences, vectors, vectors.mean(axis=0), digest)

    async def go() -> None:
        everything = await SubscriptionService(subs).create(
            parse_request({"arxiv_ids": [seed.arxiv_id], "threshold": 0}), False
        )
        only_co = await SubscriptionService(subs).create(
            parse_request(
                {"arxiv_ids": [seed.arxiv_id], "threshold": 0, "categories": ["astro-ph.CO"]}
            ),
            False,
        )
        matcher = AlertMatcher(subs, publish, WebhookSender())
        new = paper("2502.00002", "Bars and gas inflow")
        sentences = ["Gas flows inwards along the bar.", "Unrelated sentence."]
        vectors = np.vstack([unit(1, 0.1), unit(0, 0, 1)])
        alerts = await matcher.match([indexed(new, sentences, vectors, "d1")])
        assert [a.subscription_id for a in alerts] == [everything["id"]]  # category filter
        alert = alerts[0]
        assert alert.matches[0].sentence == "Gas flows inwards along the bar."
        assert alert.matches[0].interest == seed.arxiv_id
        assert alert.matches[0].score == pytest.approx(float(unit(1) @ unit(1, 0.1)), abs=1e-5)

        # Re-delivery and an unchanged new version publish nothing more.
        assert await matcher.match([indexed(new, sentences, vectors, "d1")]) == []
        v2 = new.model_copy(update={"version": 2})
        assert await matcher.match([indexed(v2, sentences, vectors, "d1")]) == []
        # A changed version updates the stored alert in place, still without publishing.
        changed = np.vstack([unit(1), unit(0, 1)])
        assert await matcher.match([indexed(v2, sentences, changed, "d2")]) == []
        stored = await subs.list_alerts(everything["id"], 10, "score")
        assert len(stored) == 1 and stored[0]["version"] == 2
        assert stored[0]["matches"][0]["score"] == pytest.approx(1.0, abs=1e-5)  # new evidence
        assert len(published) == 1

        # The seed paper itself (a new version of it) never alerts its own subscription.
        reseed = seed.model_copy(update={"version": 2})
        assert (
            await matcher.match(
                [indexed(reseed, ["Bars drive gas inwards."], unit(1)[None, :], "d3")]
            )
            == []
        )
        assert await subs.list_alerts(only_co["id"], 10, "time") == []

    asyncio.run(go())


def test_new_alerts_are_posted_to_the_webhook_signed(subs: SubscriptionStore) -> None:
    from aiohttp import web

    from services.alerts.webhooks import SIGNATURE_HEADER, verify

    seed = paper("2501.00001", "Bars in disc galaxies")
    index(subs.store, seed, ["Bars drive gas inwards."], unit(1)[None, :])
    received: list[tuple[bytes, str]] = []

    async def hook(request: web.Request) -> web.Response:
        received.append((await request.read(), request.headers[SIGNATURE_HEADER]))
        return web.Response(status=204)

    async def go() -> None:
        app = web.Application()
        app.router.add_post("/hook", hook)
        runner = web.AppRunner(app)
        await runner.setup()
        site = web.TCPSite(runner, "127.0.0.1", 0)
        await site.start()
        port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
        body = {
            "arxiv_ids": [seed.arxiv_id],
            "threshold": 0,
            "webhook": f"http://127.0.0.1:{port}/hook",
        }
        with pytest.raises(InvalidSubscription, match="private or loopback"):
            await SubscriptionService(subs).create(parse_request(body), allow_private=False)
        created = await SubscriptionService(subs).create(parse_request(body), allow_private=True)
        secret = created["webhook_secret"]
        sender = WebhookSender(allow_private=True)

        async def publish(alerts: list[Alert]) -> None:
            return None

        matcher = AlertMatcher(subs, publish, sender)
        new = paper("2502.00002", "Bars and gas inflow")
        record = RawRecord("t", 0, 0, None, None)
        vectors = unit(1, 0.2)[None, :]
        item = IndexedPaper(new, record, ["Gas flows along the bar."], vectors, vectors[0], "d")
        alerts = await matcher.match([item])
        await sender.drain(timeout=10)
        await sender.close()
        await runner.cleanup()
        assert len(alerts) == 1 and len(received) == 1
        raw, signature = received[0]
        assert verify(raw, secret, signature)
        assert Alert.model_validate_json(raw).alert_id == alerts[0].alert_id

    asyncio.run(go())


# A metadata payload exactly as written before SubscriptionMeta existed (dicts throughout).
STORED_META = {
    "id": "0123456789abcdef0123456789abcdef",
    "name": "bars",
    "created_at": "2026-03-01T12:30:05.123456+00:00",
    "threshold": 0.2,
    "min_relevance": 0.9,
    "categories": ["astro-ph.GA"],
    "queries": ["galactic bars"],
    "arxiv_ids": ["2501.00001"],
    "interests": [
        {"interest": "galactic bars", "kind": "query", "terms": [["bar", 1], ["galact", 1]]},
        {"interest": "2501.00001", "kind": "paper", "terms": [["disc", 2]]},
    ],
    "points": 3,
    "model_version": "test",
    "webhook": {"url": "https://example.org/hook", "secret": "s" * 64},
    "owner": "0" * 64,
}


def test_stored_metadata_reads_back_and_writes_the_same_json(subs: SubscriptionStore) -> None:
    from qdrant_client import models as qm

    sub_id = STORED_META["id"]
    subs.store.client.upsert(
        subs.meta, [qm.PointStruct(id=sub_id, vector={}, payload=STORED_META)], wait=True
    )
    meta = subs.meta_sync([sub_id])[sub_id]
    assert meta.webhook is not None and meta.webhook.secret == "s" * 64
    assert dict(meta.interests[0].terms) == {"bar": 1, "galact": 1}
    payload = meta.payload()
    assert json.dumps({k: payload[k] for k in STORED_META}) == json.dumps(STORED_META)
    # Fields added later read back as their defaults.
    assert meta.feed_token is None and meta.digest == "off" and meta.cross_lists is True
    shown = asyncio.run(subs.get(sub_id))
    assert shown["webhook"] == "https://example.org/hook" and "webhook_secret" not in shown
    assert shown["interest_vectors"] == 3 and "interests" not in shown
    assert "owner" not in shown and meta.owner == "0" * 64


def test_owner_secrets_hash_and_compare() -> None:
    from services.alerts import owners

    secret = owners.mint_secret()
    other = owners.mint_secret()
    assert secret.startswith(owners.SECRET_PREFIX) and secret != other
    stored = owners.owner_id(secret)
    assert len(stored) == 64 and secret not in stored
    assert owners.is_owner(stored, secret)
    assert not owners.is_owner(stored, other)
    assert not owners.is_owner(None, secret) and not owners.is_owner(stored, None)


def test_list_all_filters_by_owner(subs: SubscriptionStore) -> None:
    from services.alerts import owners

    alice, bob = owners.owner_id("a" * 32), owners.owner_id("b" * 32)

    async def go() -> tuple[list[str], list[str], list[str]]:
        a = await SubscriptionService(subs).create(
            parse_request({"queries": ["galactic bars"]}), False, owner=alice
        )
        b = await SubscriptionService(subs).create(
            parse_request({"queries": ["dark matter halos"]}), False, owner=bob
        )
        mine = [s["id"] for s in await subs.list_all(owner=alice)]
        theirs = [s["id"] for s in await subs.list_all(owner=bob)]
        everyone = [s["id"] for s in await subs.list_all()]
        assert (await subs.get_meta(a["id"])).owner == alice
        return mine, theirs, [x for x in everyone if x in (a["id"], b["id"])]

    mine, theirs, everyone = asyncio.run(go())
    assert len(mine) == 1 and len(theirs) == 1 and mine != theirs
    assert sorted(everyone) == sorted(mine + theirs)


def test_update_keeps_identity_and_re_embeds_only_changed_interests(
    subs: SubscriptionStore,
) -> None:
    from services.alerts import owners

    seed = paper("2501.00001", "Bars in disc galaxies")
    index(subs.store, seed, ["Bars drive gas.", "Discs."], np.vstack([unit(1), unit(0, 1)]))
    alice = owners.owner_id("a" * 32)

    async def go() -> None:
        created = await SubscriptionService(subs).create(
            parse_request({"queries": ["galactic bars"], "arxiv_ids": [seed.arxiv_id]}),
            False,
            owner=alice,
        )
        before = await subs.get_meta(created["id"])
        assert before.feed_token and "feed_token" not in created
        # Same interests: no new vectors; threshold and filters change in place.
        same = await SubscriptionService(subs).update(
            created["id"],
            parse_request(
                {
                    "queries": ["galactic bars"],
                    "arxiv_ids": [seed.arxiv_id],
                    "threshold": 0.5,
                    "include_terms": ["bar"],
                    "authors": ["Doe, J."],
                    "digest": "weekly",
                    "email": "jane@example.org",
                }
            ),
            False,
        )
        after = await subs.get_meta(created["id"])
        assert (after.id, after.owner, after.feed_token, after.created_at) == (
            before.id,
            before.owner,
            before.feed_token,
            before.created_at,
        )
        assert after.interests == before.interests and same["threshold"] == 0.5
        assert same["digest"] == "weekly" and same["authors"] == ["Doe, J."]
        thresholds = {
            (r.payload or {})["threshold"]
            for r in subs.store.client.scroll(subs.store.subscriptions, limit=100)[0]
        }
        assert thresholds == {0.5} and subs.store.count(subs.store.subscriptions) == 3
        # Fewer interests: re-embedded, the surplus vectors are gone.
        fewer = await SubscriptionService(subs).update(
            created["id"], parse_request({"queries": ["dark matter"]}), False
        )
        assert fewer["interest_vectors"] == 1
        assert subs.store.count(subs.store.subscriptions) == 1
        # Only followed authors: no vectors at all.
        await SubscriptionService(subs).update(
            created["id"], parse_request({"authors": ["Jane Doe"]}), False
        )
        assert subs.store.count(subs.store.subscriptions) == 0
        token = await SubscriptionService(subs).rotate_feed_token(created["id"])
        assert token != before.feed_token
        assert (await subs.get_meta(created["id"])).feed_token == token
        with pytest.raises(NotFound):
            await SubscriptionService(subs).update(
                uuid.uuid4().hex, parse_request({"queries": ["x"]}), False
            )
        with pytest.raises(UnknownPaper):
            await SubscriptionService(subs).update(
                created["id"], parse_request({"arxiv_ids": ["2509.99999"]}), False
            )

    asyncio.run(go())


def test_matcher_applies_terms_cross_lists_and_followed_authors(subs: SubscriptionStore) -> None:
    store = subs.store
    seed = paper("2501.00001", "Bars in disc galaxies")
    index(store, seed, ["Bars drive gas inwards."], unit(1)[None, :])

    async def publish(alerts: list[Alert]) -> None:
        return None

    def indexed(p: Paper, vectors: np.ndarray) -> IndexedPaper:
        record = RawRecord("t", 0, 0, None, None)
        sentences = [f"s{i}" for i in range(len(vectors))]
        return IndexedPaper(p, record, sentences, vectors, vectors.mean(axis=0), "d")

    def make(arxiv_id: str, title: str, authors: list[str], categories: list[str]) -> Paper:
        return Paper(
            arxiv_id=arxiv_id,
            title=title,
            abstract="We study it.",
            authors=authors,
            categories=categories,
        )

    async def go() -> None:
        base = {"arxiv_ids": [seed.arxiv_id], "threshold": 0.01}
        include = await SubscriptionService(subs).create(
            parse_request({**base, "include_terms": ["gas"]}), False
        )
        exclude = await SubscriptionService(subs).create(
            parse_request({**base, "exclude_terms": ["Gas"]}), False
        )
        primary = await SubscriptionService(subs).create(
            parse_request({**base, "categories": ["astro-ph.GA"], "cross_lists": False}), False
        )
        follower = await SubscriptionService(subs).create(
            parse_request({"authors": ["Doe, Jane"], "exclude_terms": ["erratum"]}), False
        )
        both = await SubscriptionService(subs).create(
            parse_request({**base, "threshold": 1.0, "authors": ["J. Doe"]}), False
        )
        matcher = AlertMatcher(subs, publish, WebhookSender())
        near = unit(1, 0.1)[None, :]
        far = unit(0, 0, 0, 1)[None, :]
        # Related, cross-listed into GA, mentions gas, no followed author.
        gas = make(
            "2502.00001", "Gas inflow along bars", ["A. Author"], ["astro-ph.CO", "astro-ph.GA"]
        )
        got = {a.subscription_id: a for a in await matcher.match([indexed(gas, near)])}
        assert set(got) == {include["id"], exclude["id"]} - {exclude["id"]}
        assert got[include["id"]].reason == "related to your interests"
        # A followed author's unrelated paper: alerts the followers, whatever the threshold.
        doe = make("2502.00002", "Stellar flares", ["Jane Doe", "B. Other"], ["astro-ph.SR"])
        got = {a.subscription_id: a for a in await matcher.match([indexed(doe, far)])}
        assert set(got) == {follower["id"], both["id"]}
        assert {a.reason for a in got.values()} == {"author you follow"}
        assert got[follower["id"]].matches == [] and got[follower["id"]].score == 0.0
        # Primary category in GA: the cross_lists=False subscription accepts it.
        ga = make("2502.00003", "Bars again", ["C. Third"], ["astro-ph.GA", "astro-ph.CO"])
        got = {a.subscription_id: a for a in await matcher.match([indexed(ga, near)])}
        assert primary["id"] in got and include["id"] not in got  # no "gas" in the text
        # An exclude term wins even over a followed author.
        erratum = make("2502.00004", "Erratum: flares", ["Doe, J."], ["astro-ph.SR"])
        got = {a.subscription_id: a for a in await matcher.match([indexed(erratum, far)])}
        assert set(got) == {both["id"]}

    asyncio.run(go())
