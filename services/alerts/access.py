"""Who may reach a subscription: the operator token, its owner's secret, or its feed token.

Pure decisions, no I/O; the HTTP views (and the web app) ask :func:`may_read` and answer 404
when it says no, exactly as for an unknown id, so a stranger cannot tell which ids exist.
Every comparison is constant-time.
"""

from __future__ import annotations

import hmac
from dataclasses import dataclass

from services.alerts.owners import MIN_SECRET_CHARS, is_owner, owner_id
from services.alerts.subscriptions import SubscriptionMeta


@dataclass(frozen=True)
class Caller:
    """Who sends a request: the operator, the holder of a (would-be) owner secret, or nobody."""

    operator: bool = False
    secret: str | None = None  # a bearer that is not the operator token

    @property
    def anonymous(self) -> bool:
        return not self.operator and self.secret is None

    @property
    def valid_secret(self) -> bool:
        """A secret long enough to own subscriptions (a short one is refused, not hashed)."""
        return self.secret is not None and len(self.secret) >= MIN_SECRET_CHARS

    @property
    def owner(self) -> str | None:
        """The ``owner_id`` this caller's subscriptions are stored under."""
        return owner_id(self.secret) if self.secret is not None and self.valid_secret else None


def bearer(header: str) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header, or None."""
    scheme, _, value = header.strip().partition(" ")
    value = value.strip()
    return value if scheme.lower() == "bearer" and value else None


def caller_of(token: str | None, operator_token: str | None) -> Caller:
    """Classify a bearer token: the operator's (constant-time compare), else an owner secret."""
    if token is None:
        return Caller()
    if operator_token and hmac.compare_digest(token.encode(), operator_token.encode()):
        return Caller(operator=True)
    return Caller(secret=token)


def may_read(meta: SubscriptionMeta, caller: Caller) -> bool:
    """Operator: every subscription; an owner: theirs; a subscription without owner: operator only."""
    return caller.operator or (caller.valid_secret and is_owner(meta.owner, caller.secret))


def feed_token_ok(meta: SubscriptionMeta, token: str | None) -> bool:
    """Whether ``token`` is the subscription's current feed token (rotated ones fail)."""
    if not token or not meta.feed_token:
        return False
    return hmac.compare_digest(token.encode(), meta.feed_token.encode())


def feed_url(base: str, meta: SubscriptionMeta) -> str | None:
    """The capability URL of a subscription's Atom feed (None before it has a feed token)."""
    if not meta.feed_token:
        return None
    return f"{base}/subscriptions/{meta.id}/feed.atom?token={meta.feed_token}"


def unsubscribe_url(base: str, meta: SubscriptionMeta) -> str | None:
    """The one-click unsubscribe URL of a subscription's digests (RFC 8058)."""
    if not meta.feed_token:
        return None
    return f"{base}/subscriptions/{meta.id}/unsubscribe?token={meta.feed_token}"
