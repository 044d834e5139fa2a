"""E-mail digests end to end: a real worker and model, a real SMTP server (aiosmtpd).

Two digests in a row with a worker restart between them (the second holds only new papers),
then a server that answers 451 before it accepts (the digest arrives exactly once), then
the one-click unsubscribe link.
"""

from __future__ import annotations

import email
import re
import time
import urllib.request
from collections import Counter
from collections.abc import Iterator
from email.message import EmailMessage
from email.policy import default
from pathlib import Path
from typing import Any

import pytest
from aiosmtpd.controller import Controller
from helpers import isolated_env, paper_bytes, produce, unique

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker, free_port

pytestmark = pytest.mark.integration

INTERVAL_S = 2


class Mailbox:
    """An aiosmtpd handler that keeps messages and refuses the next ``fail`` with a 451."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        self.fail = 0
        self.attempts = 0

    async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:
        self.attempts += 1
        if self.fail > 0:
            self.fail -= 1
            return "451 4.3.0 try again later"
        self.messages.append(email.message_from_bytes(envelope.content, policy=default))  # type: ignore[arg-type]
        return "250 OK"

    def papers(self, message: EmailMessage) -> list[str]:
        text = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        return re.findall(r"https://arxiv\.org/abs/(\S+)", text)

    def wait(self, predicate: Any, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if predicate():
                return
            time.sleep(0.2)
        raise TimeoutError(f"mailbox: {[self.papers(m) for m in self.messages]}")


@pytest.fixture
def mailbox() -> Iterator[Mailbox]:
    box = Mailbox()
    controller = Controller(box, hostname="127.0.0.1", port=free_port())
    controller.start()
    box.port = controller.port  # type: ignore[attr-defined]
    yield box
    controller.stop()


def test_digests_across_a_restart_and_a_failing_server(
    broker: EmbeddedBroker,
    tmp_path: Path,
    sample_records: list[dict[str, Any]],
    mailbox: Mailbox,
) -> None:
    env = isolated_env(
        broker.url,
        tmp_path,
        unique("digests"),
        ASTRO_SMTP_URL=f"smtp://127.0.0.1:{mailbox.port}",  # type: ignore[attr-defined]
        ASTRO_SMTP_FROM="alerts@astro.example.org",
        ASTRO_DIGEST_INTERVAL_S=str(INTERVAL_S),
    )
    seeds, first, second, third = (
        sample_records[:4],
        sample_records[4:8],
        sample_records[8:12],
        sample_records[12:16],
    )
    topic = env["ASTRO_TOPIC_PAPERS"]

    def ids(records: list[dict[str, Any]]) -> set[str]:
        return {r["arxiv_id"] for r in records}

    def mailed() -> Counter[str]:
        return Counter(p for m in mailbox.messages for p in mailbox.papers(m))

    with WorkerProcess(env, tmp_path / "w1.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in seeds])
        worker.wait_for(lambda s: s["papers"] == len(seeds))
        status, sub = worker.request(
            "POST", "/subscriptions", {"queries": ["galaxies stars and planets"], "threshold": 0}
        )
        assert status == 201, sub
        path = f"/subscriptions/{sub['id']}"
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in first])
        worker.wait_for(lambda b: len(b["alerts"]) == len(first), path=f"{path}/alerts")
        # Digests on once the first alerts are stored: the first digest holds exactly them.
        status, _ = worker.request(
            "PATCH", path, {"digest": "daily", "email": "reader@example.org"}
        )
        assert status == 200
        mailbox.wait(lambda: len(mailbox.messages) == 1)
        assert set(mailbox.papers(mailbox.messages[0])) == ids(first)
        message = mailbox.messages[0]
        assert message.get_content_type() == "multipart/alternative"
        assert message["To"] == "reader@example.org"
        assert message["From"] == "alerts@astro.example.org"
        assert message["List-Unsubscribe-Post"] == "List-Unsubscribe=One-Click"

    with WorkerProcess(env, tmp_path / "w2.log") as worker:
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in second])
        mailbox.wait(lambda: ids(second) <= set(mailed()))
        assert set(mailed()) == ids(first) | ids(second)
        assert max(mailed().values()) == 1  # no paper twice

        # A server that refuses twice: retried with backoff, delivered once, nothing lost.
        attempts = mailbox.attempts
        mailbox.fail = 2
        produce(broker.bootstrap, topic, [paper_bytes(r) for r in third])
        mailbox.wait(lambda: ids(third) <= set(mailed()))
        assert mailbox.attempts - attempts >= 3  # two refusals, then accepted
        time.sleep(3 * INTERVAL_S)  # a few more rounds: nothing is sent again
        counts = mailed()
        assert set(counts) == ids(first) | ids(second) | ids(third)
        assert max(counts.values()) == 1

        # One-click unsubscribe (RFC 8058): a POST to the List-Unsubscribe URL.
        link = mailbox.messages[-1]["List-Unsubscribe"].strip("<>")
        assert link.startswith(worker.base + path + "/unsubscribe?token=")
        with urllib.request.urlopen(urllib.request.Request(link, method="GET")) as page:
            assert page.status == 200 and b"<form" in page.read()
        request = urllib.request.Request(
            link,
            data=b"List-Unsubscribe=One-Click",
            method="POST",
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        with urllib.request.urlopen(request) as answer:
            assert answer.status == 200
        assert worker.get(path)[1]["digest"] == "off"
