"""Deleting a subscription end to end: through the API and through the web app, a real worker,
broker, model and SMTP server; afterwards no collection of the store names the subscription.

Three subscriptions of one owner get a record in every per-subscription table the way a user
makes them: interests (create), alerts (papers arrive), feedback (the API), a read mark (the
web app), a fitted model (the matcher), digest state (the digester, which mails them). One is
deleted with ``DELETE /subscriptions/{id}``, one with the web app's delete form, one is kept:
it shows the scan would have found what a delete left behind.
"""

from __future__ import annotations

import email
import re
import time
from collections.abc import Iterator
from email.policy import default
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiosmtpd.controller import Controller
from helpers import isolated_env, paper_bytes, produce, records_naming, unique

from benchmarks.stack import WorkerProcess
from services.core.settings import load_settings
from services.kafka.broker import EmbeddedBroker, free_port
from services.store.vectorstore import open_client

pytestmark = pytest.mark.integration

TOKEN = re.compile(r'name="csrf" value="([0-9a-f]+)"')
FITS = "astrostream_subscription_model_fits_total"
DIGEST_INTERVAL_S = 2


class Mailbox:
    """An aiosmtpd handler that keeps the ``List-Unsubscribe`` link of every message."""

    def __init__(self) -> None:
        self.links: list[str] = []

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        message = email.message_from_bytes(envelope.content, policy=default)
        self.links.append(str(message["List-Unsubscribe"] or ""))
        return "250 OK"


@pytest.fixture
def mailbox() -> Iterator[tuple[Mailbox, int]]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    yield box, controller.port
    controller.stop()


def token(browser: httpx.Client, path: str) -> str:
    page = browser.get(path)
    assert page.status_code == 200, page.text[:300]
    return TOKEN.findall(page.text)[0]


def test_a_deleted_subscription_leaves_no_record_through_the_api_or_the_web(
    broker: EmbeddedBroker,
    tmp_path: Path,
    sample_records: list[dict[str, Any]],
    mailbox: tuple[Mailbox, int],
) -> None:
    box, port = mailbox
    env = isolated_env(
        broker.url,
        tmp_path,
        unique("lifecycle"),
        ASTRO_SMTP_URL=f"smtp://127.0.0.1:{port}",
        ASTRO_SMTP_FROM="alerts@astro.example.org",
        ASTRO_DIGEST_INTERVAL_S=str(DIGEST_INTERVAL_S),
    )
    sample, news = sample_records[:50], sample_records[50:56]  # a model needs a sample
    topic = env["ASTRO_TOPIC_PAPERS"]
    with WorkerProcess(env, tmp_path / "w.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in sample])
        worker.wait_for(lambda s: s["papers"] == len(sample), timeout=300)
        body = {
            "queries": ["galaxies stars and planets"],
            "threshold": 0,
            "min_relevance": 0,
            "digest": "daily",
            "email": "reader@example.org",
        }
        status, first = worker.request("POST", "/subscriptions", body, auth=False)
        assert status == 201, first
        owner = {"Authorization": f"Bearer {first['owner_secret']}"}
        subs = {"api": first["id"]}
        for name in ("web", "kept"):
            status, made = worker.request("POST", "/subscriptions", body, owner, auth=False)
            assert status == 201, made
            subs[name] = made["id"]

        produce(broker.bootstrap, topic, [paper_bytes(r) for r in news])
        for sub_id in subs.values():
            worker.wait_for(
                lambda b: len(b["alerts"]) == len(news), path=f"/subscriptions/{sub_id}/alerts"
            )
            label = {"arxiv_id": news[0]["arxiv_id"], "label": "relevant"}
            path = f"/subscriptions/{sub_id}/feedback"
            assert worker.request("POST", path, label, owner, auth=False)[0] == 200
        assert worker.metric(FITS) >= len(subs)  # a stored model each

        with httpx.Client(base_url=worker.base, timeout=30) as browser:
            key = {"key": first["owner_secret"], "csrf": token(browser, "/")}
            assert browser.post("/app/key", data=key).status_code == 303
            for sub_id in subs.values():
                read = {"arxiv_id": news[1]["arxiv_id"], "label": "read"}
                read["csrf"] = token(browser, f"/app/subscriptions/{sub_id}")
                answer = browser.post(f"/app/subscriptions/{sub_id}/feedback", data=read)
                assert answer.status_code == 303, answer.text[:300]
            worker.wait_for(  # a digest each: their state is stored
                lambda _: all(any(s in link for link in box.links) for s in subs.values()),
            )

            status, _ = worker.request(
                "DELETE", f"/subscriptions/{subs['api']}", None, owner, False
            )
            assert status == 200
            page = f"/app/subscriptions/{subs['web']}/delete"
            answer = browser.post(page, data={"csrf": token(browser, page)})
            assert answer.status_code == 303 and answer.headers["Location"] == "/"
        for name in ("api", "web"):
            assert worker.get(f"/subscriptions/{subs[name]}")[0] == 404
        assert worker.get(f"/subscriptions/{subs['kept']}")[0] == 200
        time.sleep(2 * DIGEST_INTERVAL_S)  # digest rounds after the deletes write no state back

    settings = load_settings(qdrant_path=tmp_path / "qdrant", data_dir=tmp_path / "data")
    client = open_client(settings)
    try:
        found = records_naming(client, list(subs.values()))
    finally:
        client.close()
    assert found[subs["api"]] == {}, found
    assert found[subs["web"]] == {}, found
    prefix = settings.collection_prefix
    tables = ["subscription_meta", "alerts", "feedback", "read", "digests", "subscription_models"]
    kept = set(found[subs["kept"]])
    assert {f"{prefix}_{t}" for t in tables} <= kept, kept
    assert any(c.startswith(f"{prefix}_subscriptions__") for c in kept), kept
