"""Pipeline benchmark (``astrostream bench pipeline``): bare model encode vs. publish → worker → Qdrant."""

from __future__ import annotations

import asyncio
import os
import random
import sys
import tempfile
import time
from pathlib import Path

import click

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))  # run as a script: ``benchmarks.stack`` and ``services`` import

from services.core.settings import load_settings  # noqa: E402

DEFAULT_SOURCES = (
    ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz",
    ROOT / "tests" / "data" / "papers-sample.jsonl",
)


def default_papers() -> Path:
    for path in DEFAULT_SOURCES:
        if path.exists():
            return path
    tried = ", ".join(str(p) for p in DEFAULT_SOURCES)
    raise click.ClickException(f"no papers file at {tried}: pass --papers FILE.jsonl[.gz]")


def process_cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process (all its threads), from /proc."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


@click.command()
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
    from benchmarks.stack import WorkerProcess, metric_sum
    from services.core.papers import read_papers_jsonl
    from services.core.text import normalise, sentences_for_embedding
    from services.kafka.broker import EmbeddedBroker, free_port
    from services.kafka.publisher import Publisher
    from services.models.encoder import Encoder

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

    # Bare: PyTorch fp32, as sentence-transformers runs it (the worker uses ASTRO_BACKEND).
    encoder = Encoder(settings.model, settings.device, settings.batch_size, settings.max_seq_length)
    encoder.encode(texts[: encoder.batch_size])  # warm-up
    t0, c0 = time.perf_counter(), time.process_time()
    encoder.encode(texts)
    bare_s, bare_cpu = time.perf_counter() - t0, time.process_time() - c0
    bare_batch = encoder.batch_size
    encoder.close()
    del encoder

    with tempfile.TemporaryDirectory() as tmp, EmbeddedBroker(free_port()) as broker:
        env = {
            "ASTRO_KAFKA_URL": broker.url,
            "ASTRO_QDRANT_PATH": ":memory:" if qdrant_memory else f"{tmp}/qdrant",
            "ASTRO_DATA_DIR": f"{tmp}/data",
            "ASTRO_ROLES": "embed,api",
            **({"ASTRO_BATCH_SIZE": str(batch_size)} if batch_size else {}),
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
    click.echo(
        f"model {settings.model}, bare torch batch {bare_batch}, worker ASTRO_BACKEND="
        f"{settings.backend}, Qdrant {where} (astrostream bench performance compares batches)"
    )
    click.echo(f"bare encode     : {n / bare_s:8.1f} sentences/s ({bare_s:.1f} s)")
    click.echo(
        f"full pipeline   : {n / pipe_s:8.1f} sentences/s ({pipe_s:.1f} s, publish → all upserted)"
    )
    click.echo(f"ratio           : {bare_s / pipe_s:8.2f} (pipeline / bare torch)")
    click.echo(
        f"CPU seconds     : bare {bare_cpu:.1f}, worker {pipe_cpu:.1f} "
        f"(ratio {bare_cpu / pipe_cpu:.2f}; wall-clock numbers suffer from other load, CPU less)"
    )
    click.echo(
        f"worker breakdown: encode {encode_s:.1f} s, upsert {upsert_s:.1f} s, "
        f"{batches:.0f} micro-batches"
    )


if __name__ == "__main__":
    pipeline(prog_name="astrostream bench pipeline")
