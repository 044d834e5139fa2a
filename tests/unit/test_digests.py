"""Unit tests of the digest schedule, message and delivery protocol (in-memory Qdrant, fake clock)."""

from __future__ import annotations

import asyncio
import datetime as dt
import email
from email.message import EmailMessage
from email.policy import default
from typing import Any

import numpy as np
import pytest

from services.alerts.digests import Digester, backoff_s, is_due, last_slot
from services.alerts.lifecycle import SubscriptionService
from services.alerts.mail import SmtpConfig
from services.alerts.request import parse_request
from services.alerts.subscriptions import SubscriptionStore
from services.core.settings import load_settings
from services.store.binding import Binding
from services.store.vectorstore import VectorStore

UTC = dt.UTC


def t(day: int, hour: int, minute: int = 0) -> dt.datetime:
    return dt.datetime(2026, 6, day, hour, minute, tzinfo=UTC)  # 2026-06-01 is a Monday


def test_last_slot_daily_and_weekly() -> None:
    assert last_slot("daily", t(3, 9), 7) == t(3, 7)
    assert last_slot("daily", t(3, 6), 7) == t(2, 7)
    assert last_slot("weekly", t(3, 9), 7, "monday") == t(1, 7)
    assert last_slot("weekly", t(1, 6), 7, "monday") == t(1, 7) - dt.timedelta(days=7)
    assert last_slot("weekly", t(5, 8), 7, "friday") == t(5, 7)


def test_is_due() -> None:
    # Created after today's slot: nothing until tomorrow 07:00.
    assert not is_due("daily", t(3, 10), t(3, 23), hour=7)
    assert is_due("daily", t(3, 10), t(4, 7), hour=7)
    assert not is_due("daily", t(4, 7), t(4, 8), hour=7)  # already sent this slot
    assert not is_due("weekly", t(1, 8), t(7, 23), hour=7)
    assert is_due("weekly", t(1, 8), t(8, 7, 1), hour=7)
    assert not is_due("off", t(1, 0), t(30, 0))
    assert is_due("daily", t(1, 0, 0), t(1, 0, 5), interval_s=301) is False
    assert is_due("daily", t(1, 0, 0), t(1, 0, 5), interval_s=60)


def test_backoff_doubles_up_to_a_cap() -> None:
    assert [backoff_s(n, 10, 50) for n in (1, 2, 3, 4)] == [10, 20, 40, 50]


def test_smtp_url() -> None:
    c = SmtpConfig.parse("smtp://me%40x.org:p%3Ass@mail.example.org:587?starttls=1")
    assert (c.host, c.port, c.tls, c.starttls, c.user, c.password) == (
        "mail.example.org",
        587,
        False,
        True,
        "me@x.org",
        "p:ss",
    )
    assert SmtpConfig.parse("smtps://h").port == 465 and SmtpConfig.parse("smtp://h").port == 25
    with pytest.raises(ValueError):
        SmtpConfig.parse("http://h")


class Clock:
    def __init__(self, now: dt.datetime) -> None:
        self.now = now

    def __call__(self) -> dt.datetime:
        return self.now


class Outbox:
    """Delivers into a list; fails the first ``failures`` times."""

    def __init__(self, failures: int = 0) -> None:
        self.failures = failures
        self.messages: list[EmailMessage] = []
        self.attempts = 0

    async def __call__(self, message: EmailMessage) -> None:
        self.attempts += 1
        if self.failures > 0:
            self.failures -= 1
            raise OSError("451 try again later")
        # Round-trip through bytes, as an SMTP server would see it.
        self.messages.append(email.message_from_bytes(bytes(message), policy=default))  # type: ignore[arg-type]


class NoEncoder:
    dim = 4

    async def aencode(self, texts: list[str]) -> np.ndarray:
        return np.ones((len(texts), 4), dtype=np.float32) / 2


def alert(sub_id: str, n: int, ts: float, relevance: float) -> dict[str, Any]:
    return {
        "alert_id": f"{n:032x}",
        "subscription_id": sub_id,
        "arxiv_id": f"2601.{n:05d}",
        "title": f"Paper {n} <&>",
        "score": 0.1,
        "relevance": relevance,
        "reason": "related to your interests",
        "matches": [{"sentence": f"Sentence of paper {n}.", "interest": "bars", "score": 0.5}],
        "model_version": "test",
        "created_at": dt.datetime.fromtimestamp(ts, UTC).isoformat(),
        "created_ts": ts,
    }


def digest_ids(message: EmailMessage) -> set[str]:
    text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
    return {
        line.split("Paper ")[1].split(" ")[0] for line in text.splitlines() if ". Paper " in line
    }


def test_two_digests_no_paper_twice_and_a_failure_is_retried_not_lost() -> None:
    settings = load_settings(qdrant_path=":memory:", public_url="https://astro.example.org")
    store = VectorStore(settings, 4, "test")
    store.ensure_collections()
    subs = SubscriptionStore(Binding(NoEncoder(), store))
    subs.ensure_sync()
    clock = Clock(t(1, 6))
    outbox = Outbox()
    digester = Digester(subs, settings, send=outbox, clock=clock)
    digester.ensure_sync()

    async def go() -> None:
        created = await SubscriptionService(subs).create(
            parse_request(
                {"name": "bars", "queries": ["bars"], "digest": "daily", "email": "a@example.org"}
            ),
            False,
        )
        sub_id = created["id"]
        meta = await subs.get_meta(sub_id)
        # Made "yesterday" so that today's 07:00 is the first slot.
        store.client.set_payload(subs.meta, {"created_at": t(1, 0).isoformat()}, points=[sub_id])
        base = t(1, 1).timestamp()
        subs.put_alerts_sync([alert(sub_id, n, base + n, 0.5 + n / 10) for n in (1, 2, 3)])
        assert await digester.run_once() == 0  # 06:00: not due
        clock.now = t(1, 7, 1)
        assert await digester.run_once() == 1
        assert await digester.run_once() == 0  # sent for this slot
        first = outbox.messages[0]
        assert digest_ids(first) == {"1", "2", "3"}
        assert first["To"] == "a@example.org"
        assert first["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"
        assert first["List-Unsubscribe"] == (
            f"<https://astro.example.org/subscriptions/{sub_id}/unsubscribe"
            f"?token={meta.feed_token}>"
        )
        text = first.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert text.index("Paper 3") < text.index("Paper 1")  # ranked by relevance
        assert "Sentence of paper 3." in text and "https://arxiv.org/abs/2601.00003" in text
        html = first.get_body(("html",)).get_content()  # type: ignore[union-attr]
        assert "Paper 3 &lt;&amp;&gt;" in html

        # New alerts (and one that was stored late, with an older created_at), then a failing
        # server: the digest waits with backoff and goes out once, complete.
        subs.put_alerts_sync(
            [alert(sub_id, 4, t(1, 12).timestamp(), 0.9), alert(sub_id, 5, base, 0.2)]
        )
        outbox.failures = 2
        clock.now = t(2, 7, 1)
        assert await digester.run_once() == 0 and outbox.attempts == 2
        state = await store.run(digester.state_sync, sub_id)
        assert state.pending is not None and state.pending.attempts == 1
        assert set(state.pending.alert_ids) == {f"{4:032x}", f"{5:032x}"}
        assert await digester.run_once() == 0 and outbox.attempts == 2  # backing off
        clock.now += dt.timedelta(seconds=61)
        assert await digester.run_once() == 0 and outbox.attempts == 3  # failed again
        # A new alert meanwhile waits for the next digest, not this one.
        subs.put_alerts_sync([alert(sub_id, 6, t(2, 7, 2).timestamp(), 0.9)])
        # A restart: a fresh Digester on the same collections continues the pending digest.
        restarted = Digester(subs, settings, send=outbox, clock=clock)
        clock.now += dt.timedelta(seconds=121)
        assert await restarted.run_once() == 1
        assert digest_ids(outbox.messages[1]) == {"4", "5"}
        assert outbox.messages[1]["Message-ID"] == f"<digest-{state.pending.digest_id}@astrostream>"
        clock.now = t(3, 7, 1)
        assert await restarted.run_once() == 1
        assert digest_ids(outbox.messages[2]) == {"6"}
        clock.now = t(4, 7, 1)
        assert await restarted.run_once() == 0  # nothing new: no empty e-mail
        assert len(outbox.messages) == 3
        # Unsubscribed: no more digests.
        subs.put_alerts_sync([alert(sub_id, 7, t(4, 8).timestamp(), 0.9)])
        await SubscriptionService(subs).set_digest(sub_id, "off")
        clock.now = t(5, 7, 1)
        assert await restarted.run_once() == 0 and len(outbox.messages) == 3

    asyncio.run(go())
