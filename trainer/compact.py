"""Export a trained static model (``astrostream train --architecture static``) compactly, for
shipping in the repository: the rows of only the token ids that occur in a corpus, int8 with
one scale per row, plus the tokenizer (gzipped) and a JSON of provenance.

A static model's vector is the mean of its tokens' rows, normalised; a token that never occurs
in the training corpus kept its random initial row (no gradient reached it), so dropping it
drops noise. The loader is ``services.alerts.dense.StaticModel`` (numpy + ``tokenizers``):

    nice -n 10 .venv/bin/python -m trainer.compact /tmp/models/astro-static-256-… \\
        --papers /work/shared/data/astro-ph/astro-ph-train.jsonl.gz --out services/alerts/data
"""

from __future__ import annotations

import argparse
import gzip
import json
from collections.abc import Iterable, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from services.core.text import normalise, sentences_for_embedding

FORMAT = 1  # services.alerts.dense.FORMAT reads this


def corpus_texts(rows: Iterable[dict[str, Any]]) -> Iterable[str]:
    """Each paper as the trainer saw it (normalised title + sentences) and as the benchmark and
    the worker embed it (normalised title + abstract): the union of their tokens is kept."""
    for paper in rows:
        title, abstract = str(paper.get("title", "")), str(paper.get("abstract", ""))
        yield " ".join([normalise(title), *(m for _, m in sentences_for_embedding(abstract))])
        yield normalise(f"{title} {abstract}")


def quantise(rows: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """int8 rows and a float32 scale per row (``rows ≈ q * scale``)."""
    peak = np.abs(rows).max(axis=1)
    scale = np.where(peak > 0, peak / 127.0, 1.0).astype(np.float32)
    q = np.clip(np.rint(rows / scale[:, None]), -127, 127).astype(np.int8)
    return q, scale


def export(model_dir: Path, papers: Path, out: Path, name: str | None = None) -> dict[str, Any]:
    from safetensors.numpy import load_file
    from tokenizers import Tokenizer

    table = next(iter(load_file(str(model_dir / "model.safetensors")).values()))
    tokenizer_text = (model_dir / "tokenizer.json").read_text(encoding="utf-8")
    tokenizer = Tokenizer.from_str(tokenizer_text)
    tokenizer.no_padding()
    with gzip.open(papers, "rt", encoding="utf-8") as handle:
        rows = [json.loads(line) for line in handle if line.strip()]
    seen = np.zeros(table.shape[0], dtype=bool)
    texts = list(corpus_texts(rows))
    for start in range(0, len(texts), 4096):
        for encoding in tokenizer.encode_batch(
            texts[start : start + 4096], add_special_tokens=False
        ):
            seen[encoding.ids] = True
    ids = np.flatnonzero(seen).astype(np.int32)
    q, scale = quantise(table[ids].astype(np.float32))
    args = json.loads((model_dir / "train_args.json").read_text(encoding="utf-8"))
    name = name or f"{args.get('name', model_dir.name)}-{args.get('version', '')}".rstrip("-")
    stem = out / str(args.get("name", name))  # the files: <stem>.npz, .tokenizer.json.gz, .json
    out.mkdir(parents=True, exist_ok=True)
    np.savez_compressed(f"{stem}.npz", ids=ids, rows=q, scales=scale)
    with gzip.open(f"{stem}.tokenizer.json.gz", "wt", encoding="utf-8") as f:
        f.write(tokenizer_text)
    meta = {
        "format": FORMAT,
        "version": name,
        "dim": int(table.shape[1]),
        "vocab_size": int(table.shape[0]),
        "kept_tokens": int(ids.size),
        "kept": (
            f"token ids occurring in {papers.name} ({len(rows)} papers), each paper tokenised "
            "as normalised title + sentences (the trainer) and normalised title + abstract "
            "(the benchmark, the worker); the other rows were never trained"
        ),
        "quantisation": "int8 per row, scale = max |x| / 127",
        "tokenisation": "tokenizer.json, no special tokens, no truncation (StaticEmbedding)",
        "train_args": args,
    }
    Path(f"{stem}.json").write_text(json.dumps(meta, indent=2) + "\n", encoding="utf-8")
    return meta


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").split("\n\n")[0])
    parser.add_argument("model", type=Path, help="a static model directory")
    parser.add_argument("--papers", type=Path, required=True, help="the training corpus (jsonl.gz)")
    parser.add_argument("--out", type=Path, required=True)
    args = parser.parse_args(argv)
    meta = export(args.model, args.papers, args.out)
    print(json.dumps({k: v for k, v in meta.items() if k != "train_args"}, indent=2))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
