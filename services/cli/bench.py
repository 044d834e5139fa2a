"""``astrostream bench``: run a benchmark driver of ``benchmarks/`` (prints numbers; not a test).

The drivers start real brokers and workers and read real data, so they live with the
source checkout, not in the installed package: run them from the repository root.
"""

from __future__ import annotations

import runpy
import sys
from pathlib import Path

import click

DRIVERS = {
    "pipeline": "Time bare model encoding against the whole pipeline. It publishes papers "
    "through an embed worker into Qdrant and encodes the same sentences with the bare model.",
    "alerts": "Measure alert quality on real authorship against baselines. The baselines are "
    "TF-IDF and whole-abstract embeddings.",
    "performance": "Measure encode speed per backend, search and alert costs. The backends "
    "are torch, ONNX and ONNX int8, with the parity of their vectors.",
    "growth": "Measure the embedded store from 10k to 1M sentence points. Real vectors, a real "
    "worker's /search, filtered /search and /similar latency, RSS, restart, recall@10.",
    "matching": "Measure alert matching at 10 to 100,000 subscriptions. The "
    "embedded store's CPU and wall time per paper of a 150-paper burst, and reach against a "
    "full scan.",
}


def driver(name: str) -> Path:
    """``benchmarks/<name>.py`` of the checkout this package was installed from, or of the cwd."""
    for root in (Path(__file__).resolve().parents[2], Path.cwd()):
        script = root / "benchmarks" / f"{name}.py"
        if script.exists():
            return script
    raise click.ClickException(
        f"benchmarks/{name}.py not found: `astrostream bench` needs a source checkout "
        "(git clone, then run it from the repository root)"
    )


@click.group()
def bench() -> None:
    """Measure throughput and quality; the drivers print numbers.

    The drivers live in benchmarks/ of a source checkout: run them from its root.

    \b
    Example: astrostream bench pipeline -n 200
    """


def _add(name: str, summary: str) -> None:
    @bench.command(
        name,
        help=f"{summary} Extra arguments go to benchmarks/{name}.py; its --help lists them."
        f"\n\n\b\nExample: astrostream bench {name} --help",
        context_settings={"ignore_unknown_options": True, "allow_extra_args": True},
        add_help_option=False,
    )
    @click.pass_context
    def run(ctx: click.Context) -> None:
        script = driver(name)
        root = str(script.parent.parent)
        if root not in sys.path:
            sys.path.insert(0, root)  # the drivers import ``benchmarks.stack``
        sys.argv = [f"astrostream bench {name}", *ctx.args]
        runpy.run_path(str(script), run_name="__main__")


for _name, _summary in DRIVERS.items():
    _add(_name, _summary)
