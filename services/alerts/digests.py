"""E-mail digests: when each is due, what it holds, and durable state so none is lost or doubled.

State lives in a payload-only Qdrant collection ``<prefix>_digests``, one point per
subscription: when its last digest went out, which alerts it has already mailed (with their
``created_ts``, pruned below a watermark), and the digest being sent, if any.

Delivery protocol, per subscription:

1. pick the new alerts (created after the watermark minus a slack, not already mailed);
2. record them as ``pending`` (the "sending" intent) with a digest id, *then* talk SMTP;
3. on success record them as sent and clear ``pending``; on failure keep ``pending`` with an
   exponential backoff and try the same digest again later (also after a restart).

A paper therefore appears in at most one digest. The one window left is a crash (or a lost
Qdrant write) between the SMTP server accepting the message and step 3: the same digest is
sent again, with the same ``Message-ID`` (at-least-once, deduplicable by the receiver).
"""

from __future__ import annotations

import asyncio
import datetime as dt
import logging
import uuid
from collections.abc import Awaitable, Callable
from email.message import EmailMessage
from typing import Any

from pydantic import BaseModel, ConfigDict

from services.alerts.access import feed_url, unsubscribe_url
from services.alerts.mail import SmtpConfig, digest_message, send_sync
from services.alerts.records import per_subscription
from services.alerts.subscriptions import SubscriptionMeta, SubscriptionStore
from services.core.clock import utcnow
from services.core.settings import Settings
from services.store import models as qm
from services.store.tables import PayloadTable
from services.store.vectorstore import VectorStore

log = logging.getLogger(__name__)

WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
SLACK_S = 3600.0  # alerts stored up to this late (after their created_at) still make a digest
MAX_ALERTS = 100  # per digest; the rest wait for the next one
MAX_SCAN = 5000  # candidate alerts read per subscription and digest
RETRY_BASE_S = 60.0
RETRY_MAX_S = 3600.0

Send = Callable[[EmailMessage], Awaitable[None]]


# when --------------------------------------------------------------------------------------
def last_slot(cadence: str, now: dt.datetime, hour: int, weekday: str = "monday") -> dt.datetime:
    """The latest scheduled digest time at or before ``now`` (UTC).

    Daily: today at ``hour`` (or yesterday if that is still ahead); weekly: the latest
    ``weekday`` at ``hour``.
    """
    now = now.astimezone(dt.UTC)
    slot = now.replace(hour=hour, minute=0, second=0, microsecond=0)
    if cadence == "weekly":
        slot -= dt.timedelta(days=(slot.weekday() - WEEKDAYS.index(weekday)) % 7)
        if slot > now:
            slot -= dt.timedelta(days=7)
    elif slot > now:
        slot -= dt.timedelta(days=1)
    return slot


def is_due(
    cadence: str,
    last: dt.datetime,
    now: dt.datetime,
    *,
    hour: int = 7,
    weekday: str = "monday",
    interval_s: float | None = None,
) -> bool:
    """Whether a digest is due: a scheduled time has passed since ``last`` (the previous
    digest, or the subscription's creation). ``interval_s`` (testing aid) replaces the
    schedule by a fixed period."""
    if cadence not in ("daily", "weekly"):
        return False
    if interval_s is not None:
        return (now - last).total_seconds() >= interval_s
    return last < last_slot(cadence, now, hour, weekday) <= now


def backoff_s(attempts: int, base: float = RETRY_BASE_S, cap: float = RETRY_MAX_S) -> float:
    """Seconds before retry number ``attempts`` (1, 2, …): base, 2·base, 4·base, … up to cap."""
    return float(min(cap, base * 2 ** max(0, attempts - 1)))


# state -------------------------------------------------------------------------------------
class Pending(BaseModel):
    """A digest recorded before it is sent: retried as is until the server accepts it."""

    model_config = ConfigDict(extra="ignore")

    digest_id: str
    alert_ids: list[str]
    created_ts: dict[str, float]  # alert_id -> its created_ts (kept in ``sent`` afterwards)
    attempts: int = 0
    next_try: float = 0.0  # unix time
    error: str | None = None


class DigestState(BaseModel):
    """One subscription's digest state (the point payload)."""

    model_config = ConfigDict(extra="ignore")

    subscription_id: str
    last_at: str | None = None  # ISO time of the last digest (sent, or found empty)
    sent: dict[str, float] = {}  # alert_id -> created_ts, of alerts already mailed
    pending: Pending | None = None
    delivered: int = 0  # digests accepted by the SMTP server

    @property
    def watermark(self) -> float:
        return max(self.sent.values(), default=0.0)

    def prune(self) -> None:
        """Forget mailed alerts too old to be picked again (bounded state)."""
        floor = self.watermark - 2 * SLACK_S
        self.sent = {k: v for k, v in self.sent.items() if v >= floor}


def digests_collection(settings: Settings) -> str:
    return f"{settings.collection_prefix}_digests"


@per_subscription("digest state")
def forget_digest_state(store: VectorStore, subscription_id: str) -> None:
    table = PayloadTable(store, digests_collection(store.settings))
    if table.exists():
        table.delete([subscription_id])


class Digester:
    """Sends the digests that are due; call :meth:`run_once` periodically (one process).

    Args:
        subs: the subscriptions and their alerts.
        settings: schedule, sender address, public base URL.
        send: delivers a message (raises on failure); default: SMTP from ``ASTRO_SMTP_URL``.
        clock: the current time (tests inject one).
    """

    def __init__(
        self,
        subs: SubscriptionStore,
        settings: Settings,
        send: Send | None = None,
        clock: Callable[[], dt.datetime] = utcnow,
    ) -> None:
        self.subs = subs
        self.settings = settings
        self.collection = digests_collection(settings)
        self.table = PayloadTable(lambda: subs.store, self.collection)
        self.clock = clock
        if send is None:
            if settings.smtp_url is None:
                raise ValueError("no ASTRO_SMTP_URL: digests are off")
            config = SmtpConfig.parse(settings.smtp_url.get_secret_value())

            async def smtp(message: EmailMessage) -> None:
                await asyncio.to_thread(send_sync, config, message)

            send = smtp
        self.send = send
        interval = settings.digest_interval_s
        self.retry_base_s = min(RETRY_BASE_S, interval) if interval else RETRY_BASE_S

    def ensure_sync(self) -> None:
        self.table.ensure()

    async def run_once(self) -> int:
        """Send every digest that is due (or due for a retry); returns how many went out."""
        store = self.subs.store
        metas = await store.run(self._digest_subscriptions_sync)
        sent = 0
        for meta in metas:
            try:
                sent += await self._one(meta)
            except asyncio.CancelledError:
                raise
            except Exception:  # one subscription's problem must not stop the others
                log.exception("digest for subscription %s failed", meta.id)
        return sent

    async def _one(self, meta: SubscriptionMeta) -> int:
        store = self.subs.store
        now = self.clock()
        state = await store.run(self.state_sync, meta.id)
        if state.pending is None:
            last = dt.datetime.fromisoformat(state.last_at or meta.created_at)
            settings = self.settings
            if not is_due(
                meta.digest,
                last,
                now,
                hour=settings.digest_hour,
                weekday=settings.digest_weekday,
                interval_s=settings.digest_interval_s,
            ):
                return 0
            fresh = await store.run(self._new_alerts_sync, meta.id, state)
            if not fresh:
                state.last_at = now.isoformat()
                await store.run(self.put_state_sync, state)
                return 0
            state.pending = Pending(
                digest_id=uuid.uuid4().hex,
                alert_ids=[a["alert_id"] for a in fresh],
                created_ts={a["alert_id"]: float(a.get("created_ts", 0.0)) for a in fresh},
            )
            await store.run(self.put_state_sync, state)  # the intent, before any SMTP
        pending = state.pending
        if pending.next_try > now.timestamp():
            return 0
        message = await self._message(meta, pending)
        try:
            await self.send(message)
        except Exception as exc:
            pending.attempts += 1
            pending.error = f"{type(exc).__name__}: {exc}"[:500]
            pending.next_try = now.timestamp() + backoff_s(pending.attempts, self.retry_base_s)
            await store.run(self.put_state_sync, state)
            log.warning(
                "digest %s for subscription %s not sent (attempt %d, next in %.0fs): %s",
                pending.digest_id,
                meta.id,
                pending.attempts,
                pending.next_try - now.timestamp(),
                pending.error,
            )
            return 0
        state.sent.update(pending.created_ts)
        state.pending = None
        state.last_at = now.isoformat()
        state.delivered += 1
        state.prune()
        await store.run(self.put_state_sync, state)
        log.info(
            "digest %s sent to subscription %s: %d papers",
            pending.digest_id,
            meta.id,
            len(pending.alert_ids),
        )
        return 1

    async def _message(self, meta: SubscriptionMeta, pending: Pending) -> EmailMessage:
        store = self.subs.store
        found = await store.run(self.subs.existing_alerts_sync, pending.alert_ids)
        alerts = [found[a] for a in pending.alert_ids if a in found]  # deleted ones drop out
        papers = await store.run(store.papers_by_id, [a["arxiv_id"] for a in alerts])
        base = self.settings.public_base
        return digest_message(
            name=meta.name,
            to=meta.email or "",
            sender=self.settings.smtp_from,
            alerts=alerts,
            papers={k: r.payload or {} for k, r in papers.items()},
            unsubscribe_url=unsubscribe_url(base, meta) or f"{base}/subscriptions/{meta.id}",
            feed_url=feed_url(base, meta),
            digest_id=pending.digest_id,
        )

    # Qdrant (blocking, on the store thread) -----------------------------------------------
    def _digest_subscriptions_sync(self) -> list[SubscriptionMeta]:
        metas = self.subs.meta_table
        if not metas.exists():
            return []
        return [
            SubscriptionMeta.model_validate(payload)
            for payload in metas.scan()
            if payload.get("digest") in ("daily", "weekly") and payload.get("email")
        ]

    def _new_alerts_sync(self, sub_id: str, state: DigestState) -> list[dict[str, Any]]:
        since = state.watermark - SLACK_S if state.sent else None
        conditions: list[Any] = [
            qm.FieldCondition(key="subscription_id", match=qm.MatchValue(value=sub_id))
        ]
        if since is not None:
            conditions.append(qm.FieldCondition(key="created_ts", range=qm.Range(gt=since)))
        payloads, _ = self.subs.alerts_table.page(
            qm.Filter(must=conditions), limit=MAX_SCAN, order_by="created_ts"
        )
        fresh = [p for p in payloads if p]
        fresh = [a for a in fresh if a.get("alert_id") not in state.sent]
        return fresh[:MAX_ALERTS]

    def state_sync(self, sub_id: str) -> DigestState:
        payload = self.table.get(sub_id)
        if payload:
            return DigestState.model_validate(payload)
        return DigestState(subscription_id=sub_id)

    def put_state_sync(self, state: DigestState) -> None:
        """Write the state, unless the subscription was deleted since this round read it.

        A round reads the subscriptions once, then works through them: without the check, a
        subscription deleted meanwhile would get its digest state back. (The check and the
        write run in one call on the store's one thread, as a delete does.)
        """
        if not self.subs.meta_table.get(state.subscription_id):
            return
        self.table.put(state.subscription_id, state.model_dump(mode="json"))
