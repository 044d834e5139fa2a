"""The README's "Querying Qdrant from another tool" runs as written, the way it tells people to:
take the model path from the running stack (``astrostream stats --json`` → ``model_path``),
stop the stack (local-mode Qdrant lets one process open the folder), run the snippet.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from helpers import paper_bytes, produce

from benchmarks.stack import WorkerProcess
from services.kafka.broker import EmbeddedBroker

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BEGIN, END = "<!-- qdrant-snippet:begin -->", "<!-- qdrant-snippet:end -->"


def snippet() -> tuple[str, str]:
    """The bash and the python block between the README's markers."""
    text = (ROOT / "README.md").read_text()
    block = text[text.index(BEGIN) : text.index(END)]
    bash = re.search(r"```bash\n(.*?)```", block, re.S)
    python = re.search(r"```python\n(.*?)```", block, re.S)
    assert bash and python, "the README's snippet lost a code block"
    return bash.group(1), python.group(1)


def test_readme_qdrant_snippet_runs_as_written(
    broker: EmbeddedBroker,
    stack_env: dict[str, str],
    start_worker: Callable[..., WorkerProcess],
    sample_records: list[dict[str, Any]],
    tmp_path: Path,
) -> None:
    bash, python = snippet()
    worker = start_worker(stack_env)
    produce(
        broker.bootstrap, stack_env["ASTRO_TOPIC_PAPERS"], [paper_bytes(r) for r in sample_records]
    )
    worker.wait_for(lambda s: s["papers"] == len(sample_records), timeout=300)

    # 1. While the stack runs: the bash line, with this checkout's python for `.venv/bin/`.
    ours = {"astrostream": f"{sys.executable} -m services.cli", "python": sys.executable}
    line = re.sub(r"\.venv/bin/(astrostream|python)\b", lambda m: ours[m.group(1)], bash)
    env = {**os.environ, **stack_env, "ASTRO_WEB_PORT": str(worker.port)}
    shell = subprocess.run(
        ["bash", "-euc", f'{line}\nprintf %s "$ASTRO_MODEL_PATH"'],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    model_path = shell.stdout.strip()
    assert shell.returncode == 0 and model_path, shell.stderr
    assert Path(model_path).is_absolute() and Path(model_path).is_dir(), model_path

    # 2. Stop the stack: local mode lets one process open the Qdrant folder.
    worker.stop()

    # 3. The snippet, saved as query_qdrant.py and run from the repository root, in a clean
    #    environment but for the model path and where this stack's Qdrant folder is
    #    (data/qdrant in the README's case).
    script = tmp_path / "query_qdrant.py"
    script.write_text(python)
    clean = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    run = subprocess.run(
        [sys.executable, str(script)],
        cwd=ROOT,
        env={
            **clean,
            "HF_HUB_OFFLINE": "1",
            "ASTRO_MODEL_PATH": model_path,
            "ASTRO_QDRANT_PATH": stack_env["ASTRO_QDRANT_PATH"],
        },
        capture_output=True,
        text=True,
        timeout=180,
    )
    print(run.stdout, run.stderr, sep="\n--- stderr\n")
    assert run.returncode == 0, f"{model_path!r} {sorted(os.listdir(tmp_path))}\n{run.stderr}"
    assert "Traceback" not in run.stderr
    hits = [line.split(" ", 2) for line in run.stdout.splitlines()]
    assert len(hits) == 10 and all(len(h) == 3 for h in hits)
    assert all(0.0 < float(score) <= 1.0 for score, _, _ in hits)
    by_id = {r["arxiv_id"]: r for r in sample_records}
    assert all("astro-ph.GA" in by_id[arxiv_id]["categories"] for _, arxiv_id, _ in hits)
    assert hits[0][1] == "2505.21107", "the sample's ram-pressure stripping paper comes first"
