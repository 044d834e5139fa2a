"""Webhook delivery of alerts: signed POSTs, retries with backoff, and a guard against SSRF.

Each alert is POSTed as JSON with ``X-Astrostream-Signature: sha256=<hex HMAC-SHA256 of the
body with the subscription's secret>``. Deliveries run in background tasks (bounded
concurrency) so a slow receiver never holds up the embed stream; they are best effort: a
delivery still pending when the worker stops is lost (the alert stays on ``astro.alerts``
and in ``GET /subscriptions/{id}/alerts``).

Unless private addresses are allowed, a webhook may not reach loopback, private,
link-local, multicast or reserved addresses: the host is checked when the subscription is
created, and again by the resolver at connection time, so DNS rebinding and redirects
cannot reach an internal service either.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import ipaddress
import logging
import socket
from typing import Any
from urllib.parse import urlsplit

import aiohttp
from aiohttp.abc import AbstractResolver, ResolveResult
from prometheus_client import Counter

from services.core.errors import InvalidRequest

log = logging.getLogger(__name__)

SIGNATURE_HEADER = "X-Astrostream-Signature"
RETRIES = 3  # after the first attempt
BACKOFF_S = 0.5  # 0.5 s, 1 s, 2 s
TIMEOUT_S = 10.0
CONCURRENCY = 8
MAX_PENDING = 1000

WEBHOOK_DELIVERIES = Counter(
    "astrostream_webhook_deliveries", "Alerts delivered to a webhook (2xx answer)."
)
WEBHOOK_FAILURES = Counter(
    "astrostream_webhook_failures",
    "Webhook deliveries given up: refused (unsafe address), rejected (4xx), error (after retries), overflow.",
    ["reason"],
)


class UnsafeUrl(InvalidRequest):
    """A webhook URL that may not be called (bad scheme, unresolvable, internal address)."""


def sign(body: bytes, secret: str) -> str:
    """The signature header value: ``sha256=<hex HMAC-SHA256 of body>``."""
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


def verify(body: bytes, secret: str, header: str) -> bool:
    """What a receiver does: recompute the signature and compare in constant time."""
    return hmac.compare_digest(sign(body, secret), header)


# IPv6 ranges that carry an IPv4 address in their last 32 bits: a connection to one of them
# reaches that IPv4 address (through the kernel, a NAT64 gateway or the SIIT translator).
EMBEDS_IPV4_LOW32 = (
    ipaddress.IPv6Network("::/96"),  # IPv4-compatible (deprecated): ::127.0.0.1
    ipaddress.IPv6Network("::ffff:0:0:0/96"),  # IPv4-translated (SIIT)
    ipaddress.IPv6Network("64:ff9b::/96"),  # NAT64 well-known prefix
)
# NAT64 local-use prefix (RFC 8215): where the IPv4 address sits is a local choice.
NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")


def embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for (mapped, compatible, NAT64, 6to4), if any."""
    if ip.ipv4_mapped is not None:
        return ip.ipv4_mapped
    if ip.sixtofour is not None:
        return ip.sixtofour
    if any(ip in net for net in EMBEDS_IPV4_LOW32):
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def private_address(address: str) -> bool:
    """Whether an IP is loopback, private, link-local, multicast, reserved or unspecified.

    An IPv6 address that embeds an IPv4 address (``::ffff:127.0.0.1``, ``::127.0.0.1``,
    ``64:ff9b::7f00:1``, ``2002:7f00:1::``) is judged by that IPv4 address too.
    """
    ip = ipaddress.ip_address(address.split("%", 1)[0])
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in NAT64_LOCAL:
            return True
        inner = embedded_ipv4(ip)
        if inner is not None and (not inner.is_global or inner.is_multicast):
            return True
        if ip.ipv4_mapped is not None:
            ip = ip.ipv4_mapped
    return not ip.is_global or ip.is_multicast


async def check_url(url: str, allow_private: bool) -> None:
    """Refuse a URL that is not http(s) or whose host resolves to an internal address.

    Raises:
        UnsafeUrl: saying why.
    """
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise UnsafeUrl(f"{url!r} is not an http(s) URL with a host")
    if allow_private:
        return
    port = parts.port or (443 if parts.scheme == "https" else 80)
    try:
        infos = await asyncio.get_running_loop().getaddrinfo(
            parts.hostname, port, type=socket.SOCK_STREAM
        )
    except OSError as exc:
        raise UnsafeUrl(f"cannot resolve {parts.hostname}: {exc}") from None
    internal = sorted({str(info[4][0]) for info in infos if private_address(str(info[4][0]))})
    if internal:
        raise UnsafeUrl(
            f"{parts.hostname} resolves to a private or loopback address ({', '.join(internal)}); "
            "webhooks may only call public addresses (set ASTRO_WEBHOOK_ALLOW_PRIVATE=true "
            "to allow internal receivers)"
        )


class GuardedResolver(AbstractResolver):
    """aiohttp resolver that drops internal addresses at connection time (DNS rebinding)."""

    def __init__(self, allow_private: bool) -> None:
        self.allow_private = allow_private
        self.inner = aiohttp.ThreadedResolver()

    async def resolve(
        self, host: str, port: int = 0, family: socket.AddressFamily = socket.AF_INET
    ) -> list[ResolveResult]:
        results = await self.inner.resolve(host, port, family)
        if self.allow_private:
            return results
        safe = [r for r in results if not private_address(r["host"])]
        if not safe:
            raise OSError(
                f"{host} resolves only to internal addresses; refused "
                "(ASTRO_WEBHOOK_ALLOW_PRIVATE=true allows them)"
            )
        return safe

    async def close(self) -> None:
        await self.inner.close()


class WebhookSender:
    """Delivers alerts in background tasks, at most ``concurrency`` at a time.

    Args:
        allow_private: allow loopback/private targets (tests, trusted internal receivers).
        retries: attempts after the first one, on network errors, 5xx, 408 and 429.
        backoff_s: first wait between attempts, doubled each time.
    """

    def __init__(
        self,
        allow_private: bool = False,
        *,
        retries: int = RETRIES,
        backoff_s: float = BACKOFF_S,
        timeout_s: float = TIMEOUT_S,
        concurrency: int = CONCURRENCY,
    ) -> None:
        self.allow_private = allow_private
        self.retries = retries
        self.backoff_s = backoff_s
        self.timeout_s = timeout_s
        self._slots = asyncio.Semaphore(concurrency)
        self._tasks: set[asyncio.Task[bool]] = set()
        self._session: aiohttp.ClientSession | None = None

    def session(self) -> aiohttp.ClientSession:
        if self._session is None or self._session.closed:
            connector = aiohttp.TCPConnector(resolver=GuardedResolver(self.allow_private))
            self._session = aiohttp.ClientSession(
                connector=connector, timeout=aiohttp.ClientTimeout(total=self.timeout_s)
            )
        return self._session

    def submit(
        self, url: str, secret: str, body: bytes, alert_id: str
    ) -> asyncio.Task[bool] | None:
        """Deliver in the background; returns the task, or None when too many are pending."""
        if len(self._tasks) >= MAX_PENDING:
            WEBHOOK_FAILURES.labels("overflow").inc()
            log.error(
                "webhook backlog full (%d pending): alert %s not delivered", MAX_PENDING, alert_id
            )
            return None
        task = asyncio.create_task(self._bounded(url, secret, body, alert_id))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task

    async def _bounded(self, url: str, secret: str, body: bytes, alert_id: str) -> bool:
        async with self._slots:
            return await self.deliver(url, secret, body, alert_id)

    async def deliver(self, url: str, secret: str, body: bytes, alert_id: str) -> bool:
        """POST one alert, retrying with exponential backoff; True once a 2xx came back."""
        try:
            await check_url(url, self.allow_private)
        except UnsafeUrl as exc:
            WEBHOOK_FAILURES.labels("refused").inc()
            log.warning("webhook for alert %s refused: %s", alert_id, exc)
            return False
        headers = {
            "Content-Type": "application/json",
            "User-Agent": "astrostream-webhook/1",
            SIGNATURE_HEADER: sign(body, secret),
            "X-Astrostream-Alert-Id": alert_id,
        }
        problem = ""
        for attempt in range(self.retries + 1):
            if attempt:
                await asyncio.sleep(self.backoff_s * 2 ** (attempt - 1))
            try:
                async with self.session().post(
                    url, data=body, headers=headers, allow_redirects=False
                ) as response:
                    status = response.status
            except (aiohttp.ClientError, OSError, TimeoutError) as exc:
                problem = f"{type(exc).__name__}: {exc}"
                continue
            if 200 <= status < 300:
                WEBHOOK_DELIVERIES.inc()
                return True
            problem = f"HTTP {status}"
            if status < 500 and status not in (408, 429):
                WEBHOOK_FAILURES.labels("rejected").inc()
                log.warning("webhook %s rejected alert %s: %s", url, alert_id, problem)
                return False
        WEBHOOK_FAILURES.labels("error").inc()
        log.warning(
            "webhook %s failed for alert %s after %d attempts: %s",
            url,
            alert_id,
            self.retries + 1,
            problem,
        )
        return False

    async def drain(self, timeout: float | None = None) -> None:
        """Wait for the pending deliveries (tests, shutdown)."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=timeout)

    async def close(self) -> None:
        for task in list(self._tasks):
            task.cancel()
        if self._session is not None:
            await self._session.close()


def webhook_body(alert: Any) -> bytes:
    """The JSON body POSTed for an alert (the same document as on ``astro.alerts``)."""
    return alert.model_dump_json().encode()
