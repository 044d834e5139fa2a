"""``astrostream up`` speaks to a person, on a real process: a start summary with the web app's
URL and the e-mail switch, a ready line, progress lines read from the worker's metrics and
Qdrant, warnings cut short; and Ctrl-C (SIGINT) while a batch is being encoded ends it within
seconds with one ``stopped:`` line and no traceback.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from services.kafka.broker import free_port

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
PAPERS = ROOT / "tests" / "data" / "papers-1k.jsonl.gz"  # more than a Ctrl-C lets it finish
STOP_WITHIN_S = 20.0
PROGRESS = re.compile(
    r"^indexed ([\d,]+) papers \([\d.]+/s\) · [\d,]+ sentences · "
    r"(lag [\d.]+ s|encoding…|idle) · [\d,]+ alerts sent"
)


def console_env(tmp_path: Path) -> dict[str, str]:
    """``make run``'s environment: no ASTRO_* but an own data folder, ports and a dead arXiv."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    dead = free_port()  # ingest retries against it: the long-URL warnings of a missing network
    env.update(
        HF_HUB_OFFLINE="1",
        ASTRO_DATA_DIR=str(tmp_path / "data"),
        ASTRO_EMBEDDED_BROKER_PORT=str(free_port()),
        ASTRO_WEB_PORT=str(free_port()),
        ASTRO_BROKER_STORAGE="memory",
        ASTRO_ARXIV_API_URL=f"http://127.0.0.1:{dead}/api/query",
        ASTRO_ARXIV_RSS_URL=f"http://127.0.0.1:{dead}/rss",
        ASTRO_ARXIV_OAI_URL=f"http://127.0.0.1:{dead}/oai",
    )
    return env


def wait_for_line(
    path: Path, pattern: re.Pattern[str], proc: subprocess.Popen[bytes], timeout: float
) -> re.Match[str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for line in path.read_text(errors="replace").splitlines():
            found = pattern.search(line)
            if found:
                return found
        assert proc.poll() is None, f"up exited {proc.returncode}:\n{path.read_text()}"
        time.sleep(0.5)
    raise TimeoutError(f"no line matching {pattern.pattern} in {timeout:.0f}s:\n{path.read_text()}")


@pytest.fixture
def up(tmp_path: Path) -> Iterator[tuple[subprocess.Popen[bytes], dict[str, str]]]:
    env = console_env(tmp_path)
    with (tmp_path / "out").open("wb") as out, (tmp_path / "err").open("wb") as err:
        proc = subprocess.Popen(
            [sys.executable, "-m", "services.cli", "up"],
            cwd=ROOT,
            env=env,
            stdout=out,
            stderr=err,
            start_new_session=True,  # its own process group, as a terminal's foreground job
        )
    try:
        yield proc, env
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)


def test_up_shows_progress_and_stops_on_ctrl_c_with_one_line(
    up: tuple[subprocess.Popen[bytes], dict[str, str]], tmp_path: Path
) -> None:
    proc, env = up
    out, err = tmp_path / "out", tmp_path / "err"
    wait_for_line(out, re.compile(r"^ready in \d+ s"), proc, timeout=240)
    published = subprocess.run(
        [sys.executable, "-m", "services.cli", "publish", str(PAPERS)],
        cwd=ROOT,
        env=env,
        capture_output=True,
        timeout=120,
    )
    assert published.returncode == 0, published.stderr.decode()
    progress = wait_for_line(out, PROGRESS, proc, timeout=240)
    assert int(progress.group(1).replace(",", "")) < 1000, "all indexed: Ctrl-C would be idle"

    os.killpg(proc.pid, signal.SIGINT)  # what Ctrl-C in a terminal does
    started = time.monotonic()
    proc.wait(timeout=STOP_WITHIN_S + 30)
    took = time.monotonic() - started
    stdout, stderr = out.read_text(), err.read_text()
    print(f"stopped {took:.1f} s after SIGINT\n{stdout}\n--- stderr\n{stderr}")
    assert took < STOP_WITHIN_S, f"Ctrl-C took {took:.1f}s"
    assert proc.returncode == 0
    assert "Traceback" not in stdout + stderr

    lines = stdout.splitlines()
    port = env["ASTRO_WEB_PORT"]
    assert f"web app and API on http://127.0.0.1:{port}/" in lines[0]
    assert str(tmp_path / "data") in stdout
    assert "e-mail digests: off (set ASTRO_SMTP_URL=smtp://… to turn them on)" in stdout
    assert lines[-1].startswith("stopped: Ctrl-C after ")
    assert sum(line.startswith("stopped:") for line in lines) == 1
    # No Faust banners or INFO lines; every line short enough to read (URLs cut to the path).
    assert "[^Worker]" not in stdout + stderr and " INFO " not in stderr
    assert all(len(line) <= 320 for line in (stdout + stderr).splitlines()), stderr
    assert "api/query?…" in stderr, "the ingest retry warning, with its URL cut short"
