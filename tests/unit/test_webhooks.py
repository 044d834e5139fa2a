"""Unit tests of services.alerts.webhooks: signatures, the SSRF guard, retries against a real local server."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Awaitable, Callable
from typing import Any

import pytest
from aiohttp import web

from services.alerts.webhooks import (
    SIGNATURE_HEADER,
    GuardedResolver,
    UnsafeUrl,
    WebhookSender,
    check_url,
    private_address,
    sign,
    verify,
)

SECRET = "0123456789abcdef0123456789abcdef"


def test_signature_round_trip() -> None:
    body = b'{"alert_id": "a"}'
    header = sign(body, SECRET)
    assert header.startswith("sha256=") and len(header) == 7 + 64
    assert verify(body, SECRET, header)
    assert not verify(body + b" ", SECRET, header)
    assert not verify(body, "another secret!!", header)


@pytest.mark.parametrize(
    ("address", "private"),
    [
        ("127.0.0.1", True),
        ("10.1.2.3", True),
        ("172.16.0.1", True),
        ("192.168.1.1", True),
        ("169.254.169.254", True),  # cloud metadata
        ("0.0.0.0", True),
        ("224.0.0.1", True),
        ("::1", True),
        ("fe80::1%eth0", True),
        ("::ffff:127.0.0.1", True),
        ("fd00::1", True),
        ("93.184.216.34", False),
        ("2606:4700::1111", False),
        # IPv6 addresses that embed an IPv4 one are judged by it too.
        ("64:ff9b::7f00:1", True),  # NAT64 of 127.0.0.1
        ("64:ff9b::a9fe:a9fe", True),  # NAT64 of 169.254.169.254
        ("64:ff9b:1::a00:1", True),  # NAT64 local-use prefix
        ("::127.0.0.1", True),  # IPv4-compatible
        ("::10.0.0.1", True),
        ("::ffff:0:7f00:1", True),  # IPv4-translated (SIIT)
        ("2002:7f00:1::", True),  # 6to4 of 127.0.0.1
        ("2002:c0a8:101::1", True),  # 6to4 of 192.168.1.1
        ("::ffff:a00:1", True),  # IPv4-mapped, hex form
        ("64:ff9b::5db8:d822", False),  # NAT64 of a public address
        ("2002:5db8:d822::1", False),  # 6to4 of a public address
    ],
)
def test_private_addresses(address: str, private: bool) -> None:
    assert private_address(address) is private


@pytest.mark.parametrize(
    "url",
    ["http://127.0.0.1:8080/hook", "http://localhost/hook", "http://[::1]/", "http://10.0.0.5/"],
)
def test_check_url_refuses_internal_hosts(url: str) -> None:
    with pytest.raises(UnsafeUrl, match="private or loopback"):
        asyncio.run(check_url(url, allow_private=False))
    asyncio.run(check_url(url, allow_private=True))


@pytest.mark.parametrize(
    "host", ["[64:ff9b::7f00:1]", "[::127.0.0.1]", "[2002:7f00:1::]", "[::ffff:127.0.0.1]"]
)
def test_check_url_refuses_ipv6_forms_of_loopback(host: str) -> None:
    with pytest.raises(UnsafeUrl, match="ASTRO_WEBHOOK_ALLOW_PRIVATE"):
        asyncio.run(check_url(f"http://{host}:8080/hook", allow_private=False))


@pytest.mark.parametrize("host", ["127.0.0.1", "::127.0.0.1", "64:ff9b::7f00:1", "2002:7f00:1::"])
def test_resolver_drops_internal_addresses_at_connect_time(host: str) -> None:
    async def go(allow_private: bool) -> list[Any]:
        resolver = GuardedResolver(allow_private)
        try:
            return await resolver.resolve(host, 80, socket.AF_UNSPEC)
        finally:
            await resolver.close()

    with pytest.raises(OSError, match=r"internal addresses.*ASTRO_WEBHOOK_ALLOW_PRIVATE"):
        asyncio.run(go(False))
    assert [r["host"] for r in asyncio.run(go(True))] == [host]


def test_check_url_refuses_other_schemes_and_accepts_public_ips() -> None:
    with pytest.raises(UnsafeUrl, match="http"):
        asyncio.run(check_url("file:///etc/passwd", allow_private=True))
    asyncio.run(check_url("https://93.184.216.34/hook", allow_private=False))


Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]


async def _serve(handler: Handler) -> tuple[web.AppRunner, str]:
    app = web.Application()
    app.router.add_post("/hook", handler)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    return runner, f"http://127.0.0.1:{port}/hook"


def _deliver(statuses: list[int], allow_private: bool = True) -> tuple[bool, list[dict[str, Any]]]:
    """Deliver one alert to a local server answering ``statuses`` in turn."""
    seen: list[dict[str, Any]] = []

    async def handler(request: web.Request) -> web.Response:
        body = await request.read()
        seen.append({"body": body, "signature": request.headers.get(SIGNATURE_HEADER)})
        return web.Response(status=statuses[min(len(seen), len(statuses)) - 1])

    async def go() -> bool:
        runner, url = await _serve(handler)
        sender = WebhookSender(allow_private, retries=3, backoff_s=0.01)
        try:
            task = sender.submit(url, SECRET, b'{"alert_id": "x"}', "x")
            assert task is not None
            return await task
        finally:
            await sender.close()
            await runner.cleanup()

    return asyncio.run(go()), seen


def test_delivery_is_signed() -> None:
    ok, seen = _deliver([204])
    assert ok and len(seen) == 1
    assert verify(seen[0]["body"], SECRET, seen[0]["signature"])


def test_delivery_retries_server_errors_then_succeeds() -> None:
    ok, seen = _deliver([500, 503, 200])
    assert ok and len(seen) == 3


def test_delivery_gives_up_after_retries() -> None:
    ok, seen = _deliver([500])
    assert not ok and len(seen) == 4  # first attempt + 3 retries


def test_client_errors_are_not_retried() -> None:
    ok, seen = _deliver([400])
    assert not ok and len(seen) == 1


def test_loopback_receiver_is_refused_unless_allowed() -> None:
    ok, seen = _deliver([200], allow_private=False)
    assert not ok and seen == []


def test_unreachable_receiver_fails_without_raising() -> None:
    async def go() -> bool:
        sender = WebhookSender(True, retries=1, backoff_s=0.01, timeout_s=2)
        try:
            return await sender.deliver("http://127.0.0.1:9/hook", SECRET, b"{}", "y")
        finally:
            await sender.close()

    assert asyncio.run(go()) is False
