"""Benchmarks (``astrostream bench``): bare model encode vs. the whole streaming pipeline."""

from __future__ import annotations

import asyncio
import os
import random
import tempfile
import time
from pathlib import Path

import click

from services.settings import load_settings

REPO = Path(__file__).resolve().parent.parent
DEFAULT_SOURCES = (
    REPO.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz",
    REPO / "tests" / "data" / "papers-sample.jsonl",
)


def default_papers() -> Path:
    for path in DEFAULT_SOURCES:
        if path.exists():
            return path
    raise click.ClickException("no papers file found: pass --papers FILE.jsonl[.gz]")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@click.group()
def bench() -> None:
    """Measure throughput (prints numbers; not a test)."""


@bench.command()
@click.option(
    "--papers",
    "papers_path",
    type=click.Path(exists=True, path_type=Path),
    help="Paper JSONL(.gz) to use (default: the shared astro-ph set, else the test sample).",
)
@click.option("-n", "--count", default=300, show_default=True, type=click.IntRange(1))
@click.option(
    "--batch-size", type=click.IntRange(1), help="Sentences per encode (ASTRO_BATCH_SIZE)."
)
@click.option("--seed", default=0, show_default=True)
@click.option(
    "--qdrant-memory",
    is_flag=True,
    help="Worker's local Qdrant in memory (no on-disk persistence cost).",
)
def pipeline(
    papers_path: Path | None, count: int, batch_size: int | None, seed: int, qdrant_memory: bool
) -> None:
    """Bare ``model.encode`` vs. publish → embed worker → Qdrant over the same sentences."""
    from services.broker import EmbeddedBroker, free_port
    from services.encoder import Encoder
    from services.publisher import Publisher, read_papers_jsonl
    from services.stack import WorkerProcess, metric_sum
    from services.text import normalise, sentences_for_embedding

    settings = load_settings(**({"batch_size": batch_size} if batch_size else {}))
    path = papers_path or default_papers()
    papers = list(read_papers_jsonl(path))
    random.Random(seed).shuffle(papers)
    papers = papers[:count]
    texts: list[str] = []
    for paper in papers:
        texts.append(normalise(paper.title))
        texts.extend(model_text for _, model_text in sentences_for_embedding(paper.abstract))
    click.echo(f"{len(papers)} papers from {path}: {len(texts)} texts (titles + sentences)")

    encoder = Encoder(settings.model, settings.device, settings.batch_size, settings.max_seq_length)
    encoder.encode(texts[: settings.batch_size])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    encoder.encode(texts)
    bare_s, bare_cpu = time.perf_counter() - t0, time.process_time() - c0
    encoder.close()
    del encoder

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        env = {
            "ASTRO_KAFKA_URL": broker.url,
            "ASTRO_QDRANT_PATH": ":memory:" if qdrant_memory else f"{tmp}/qdrant",
            "ASTRO_DATA_DIR": f"{tmp}/data",
            "ASTRO_ROLES": "embed,api",
            "ASTRO_BATCH_SIZE": str(settings.batch_size),
            "ASTRO_MODEL": settings.model,
            "ASTRO_DEVICE": settings.device,
            "ASTRO_LOG_LEVEL": "warning",
        }
        with WorkerProcess(env, Path(tmp) / "worker.log") as worker:
            worker_settings = load_settings(kafka_url=broker.url)

            async def publish() -> None:
                async with Publisher(worker_settings) as publisher:
                    await publisher.publish_papers(papers)

            t0, c0 = time.perf_counter(), process_cpu_seconds(worker.pid)
            asyncio.run(publish())
            worker.wait_for(lambda s: s["papers"] == len(papers), timeout=3600)
            pipe_s = time.perf_counter() - t0
            pipe_cpu = process_cpu_seconds(worker.pid) - c0
            _, text = worker.get("/metrics")
    encode_s = metric_sum(text, "astrostream_stage_seconds_sum", 'stage="encode"')
    upsert_s = metric_sum(text, "astrostream_stage_seconds_sum", 'stage="upsert"')
    batches = metric_sum(text, "astrostream_batch_papers_count")
    n = len(texts)
    where = "in memory" if qdrant_memory else "local mode on disk"
    click.echo(f"model {settings.model} batch_size {settings.batch_size}, Qdrant {where}")
    click.echo(f"bare encode     : {n / bare_s:8.1f} sentences/s ({bare_s:.1f} s)")
    click.echo(
        f"full pipeline   : {n / pipe_s:8.1f} sentences/s ({pipe_s:.1f} s, publish → all upserted)"
    )
    click.echo(f"ratio           : {bare_s / pipe_s:8.2f} (target ≥ 0.8)")
    click.echo(
        f"CPU seconds     : bare {bare_cpu:.1f}, worker {pipe_cpu:.1f} "
        f"(ratio {bare_cpu / pipe_cpu:.2f}; wall-clock numbers suffer from other load, CPU less)"
    )
    click.echo(
        f"worker breakdown: encode {encode_s:.1f} s, upsert {upsert_s:.1f} s, "
        f"{batches:.0f} micro-batches"
    )


@bench.command(context_settings={"ignore_unknown_options": True, "allow_extra_args": True})
@click.pass_context
def alerts(ctx: click.Context) -> None:
    """Alert quality on real authorship vs TF-IDF and whole-abstract baselines.

    Runs ``benchmarks/alerts.py`` (a source checkout is needed); extra arguments go to it,
    e.g. ``astrostream bench alerts --subscriptions 20 --candidates 200``.
    """
    import runpy
    import sys

    script = REPO / "benchmarks" / "alerts.py"
    if not script.exists():
        raise click.ClickException(f"{script} not found: run from a source checkout")
    sys.argv = [str(script), *ctx.args]
    runpy.run_path(str(script), run_name="__main__")
