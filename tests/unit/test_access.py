"""Unit tests of who may reach a subscription, and of the generated operator token."""

from __future__ import annotations

import stat
from pathlib import Path

from services.alerts import owners
from services.alerts.access import Caller, bearer, caller_of, feed_token_ok, may_read
from services.alerts.subscriptions import SubscriptionMeta
from services.core.apitoken import client_token, operator_token
from services.core.settings import load_settings

SECRET = owners.mint_secret()


def meta(owner: str | None, feed_token: str | None = "f" * 32) -> SubscriptionMeta:
    return SubscriptionMeta(
        id="0" * 32, created_at="2026-01-01T00:00:00+00:00", owner=owner, feed_token=feed_token
    )


def test_bearer_header() -> None:
    assert bearer("Bearer abc") == "abc"
    assert bearer("bearer   abc ") == "abc"
    assert bearer("Basic abc") is None and bearer("Bearer ") is None and bearer("") is None


def test_who_may_read() -> None:
    mine = meta(owners.owner_id(SECRET))
    operator = caller_of("op-token", "op-token")
    assert operator == Caller(operator=True)
    assert may_read(mine, operator) and may_read(meta(None), operator)
    assert may_read(mine, caller_of(SECRET, "op-token"))
    assert not may_read(mine, caller_of(owners.mint_secret(), "op-token"))
    assert not may_read(mine, Caller())
    assert not may_read(meta(None), caller_of(SECRET, "op-token"))  # ownerless: operator only
    short = SECRET[: owners.MIN_SECRET_CHARS - 1]
    assert not caller_of(short, "op-token").valid_secret
    assert not may_read(meta(owners.owner_id(short)), caller_of(short, "op-token"))
    assert caller_of("op-token", None) == Caller(secret="op-token")  # no operator configured


def test_feed_tokens() -> None:
    assert feed_token_ok(meta(None), "f" * 32)
    assert not feed_token_ok(meta(None), "f" * 31 + "e")
    assert not feed_token_ok(meta(None), None) and not feed_token_ok(meta(None, None), "")


def test_generated_operator_token_is_private_and_shared_with_the_cli(tmp_path: Path) -> None:
    settings = load_settings(data_dir=tmp_path / "data")
    assert client_token(settings) is None
    token = operator_token(settings)
    path = tmp_path / "data" / "api-token"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(token.get_secret_value()) >= 32
    assert operator_token(settings).get_secret_value() == token.get_secret_value()  # kept
    seen = client_token(settings)
    assert seen is not None and seen.get_secret_value() == token.get_secret_value()
    chosen = load_settings(data_dir=tmp_path / "data", api_token="chosen-token")
    assert operator_token(chosen).get_secret_value() == "chosen-token"
    seen = client_token(chosen)
    assert seen is not None and seen.get_secret_value() == "chosen-token"
