"""GPU check of the trainer and the encoder: a few hundred training steps, then 50k sentences.

Prints steps/s and sentences/s, and a JSON summary as the last line. Runs on CPU too (with
tiny numbers: ``--steps 5 --sentences 500``), saying so; ``--require-cuda`` makes that an error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
import sys
import tempfile
import time
from contextlib import redirect_stdout
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

DATA_CANDIDATES = (
    ROOT.parent / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz",
    ROOT / "shared" / "data" / "astro-ph" / "astro-ph-train.jsonl.gz",
    ROOT / "tests" / "data" / "papers-sample.jsonl",
)


def parse_args() -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--base", default="bundled", help="model: hub id, directory or 'bundled'")
    parser.add_argument(
        "--papers", type=Path, help="Paper JSONL(.gz); default: shared data or sample"
    )
    parser.add_argument("--steps", type=int, default=300, help="training steps")
    parser.add_argument("--sentences", type=int, default=50_000, help="sentences to embed")
    parser.add_argument("--batch-size", type=int, default=32, help="training batch (pairs)")
    parser.add_argument("--encode-batch-size", type=int, default=256)
    parser.add_argument("--precision", default="auto", choices=["auto", "fp32", "fp16", "bf16"])
    parser.add_argument("--require-cuda", action="store_true", help="fail without a CUDA GPU")
    return parser.parse_args()


def main() -> int:
    args = parse_args()
    os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
    import torch

    from services.models.encoder import resolve_model
    from trainer.data import DEFAULT_MINING, load_papers, mine_pairs, paper_sentences
    from trainer.train import TrainConfig, fine_tune, load_model

    cuda = torch.cuda.is_available()
    if not cuda:
        if args.require_cuda:
            print("gpu_check: no CUDA device visible (--require-cuda)", file=sys.stderr)
            return 2
        print("gpu_check: no CUDA device: measuring the CPU", file=sys.stderr)
    device_name = torch.cuda.get_device_name(0) if cuda else "cpu"
    papers_path = args.papers or next(p for p in DATA_CANDIDATES if p.exists())
    papers = load_papers(papers_path)
    pairs = mine_pairs(papers, DEFAULT_MINING)
    sentences = [s for p in papers for s in paper_sentences(p)]
    print(f"device {device_name}; {len(papers)} papers from {papers_path}, {len(pairs)} pairs")

    model = load_model(resolve_model(args.base), 256)
    config = TrainConfig(max_steps=args.steps, batch_size=args.batch_size, precision=args.precision)
    # The trainer logs each step on stdout; keep stdout for the numbers.
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work, redirect_stdout(sys.stderr):
        result = fine_tune(model, pairs, config, Path(work))
    print(
        f"train: {result.steps} steps in {result.runtime_s:.1f} s = {result.steps_per_s:.2f} "
        f"steps/s ({result.steps_per_s * args.batch_size:.0f} pairs/s, {result.precision})"
    )

    texts = list(itertools.islice(itertools.cycle(sentences), args.sentences))
    model.eval()
    if cuda:
        model.half()  # as the workers embed
        torch.cuda.synchronize()
        torch.cuda.reset_peak_memory_stats()
    model.encode(texts[: args.encode_batch_size], batch_size=args.encode_batch_size)  # warm-up
    started = time.perf_counter()
    vectors = model.encode(texts, batch_size=args.encode_batch_size, show_progress_bar=True)
    if cuda:
        torch.cuda.synchronize()
    elapsed = time.perf_counter() - started
    rate = len(texts) / elapsed
    print(f"encode: {len(texts)} sentences in {elapsed:.1f} s = {rate:.0f} sentences/s")
    summary = {
        "device": device_name,
        "base": args.base,
        "train_steps": result.steps,
        "train_steps_per_s": round(result.steps_per_s, 3),
        "train_precision": result.precision,
        "batch_size": args.batch_size,
        "sentences": len(texts),
        "sentences_per_s": round(rate, 1),
        "dim": int(vectors.shape[1]),
        "peak_gpu_mem_gib": round(torch.cuda.max_memory_allocated() / 2**30, 2) if cuda else None,
    }
    print(json.dumps(summary))
    return 0


if __name__ == "__main__":
    sys.exit(main())
