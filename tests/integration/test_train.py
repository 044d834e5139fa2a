"""The real ``python -m trainer`` command on a tiny BERT and real papers: artefacts, promotion,
the ModelUpdate on the broker, and clear errors for bad inputs."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
import uuid
from pathlib import Path

import numpy as np
import pytest
from helpers import consume_all

from services.core.schemas import ModelUpdate
from services.kafka.broker import EmbeddedBroker
from trainer.data import load_papers, mine_pairs

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
SAMPLE = ROOT / "tests" / "data" / "papers-sample.jsonl"
# A run on the tiny model: a few steps, a handful of eval papers, one thread (shared CPUs).
FAST = ["--max-steps", "3", "--batch-size", "8", "--eval-papers", "8", "--threads", "1"]


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A plain transformers BertModel (2 layers, hidden 32) with a WordPiece vocab of the sample.

    No sentence-transformers files: loading it must add mean pooling.
    """
    import torch
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertConfig, BertModel, BertTokenizerFast

    path = tmp_path_factory.mktemp("tiny-bert")
    wordpiece = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    wordpiece.normalizer = normalizers.BertNormalizer(lowercase=True)
    wordpiece.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    texts = [json.loads(line)["abstract"] for line in SAMPLE.read_text().splitlines()]
    wordpiece.train_from_iterator(
        texts, trainers.WordPieceTrainer(vocab_size=600, special_tokens=specials)
    )
    wordpiece.model.save(str(path))  # vocab.txt
    tokenizer = BertTokenizerFast(vocab_file=str(path / "vocab.txt"), do_lower_case=True)
    config = BertConfig(
        vocab_size=tokenizer.vocab_size,
        hidden_size=32,
        num_hidden_layers=2,
        num_attention_heads=2,
        intermediate_size=64,
        max_position_embeddings=128,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(path)
    tokenizer.save_pretrained(path)
    assert not (path / "modules.json").exists()
    return path


@pytest.fixture(scope="session")
def papers_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """40 real papers spread over the sample's dates."""
    lines = SAMPLE.read_text().splitlines()[::3][:40]
    path = tmp_path_factory.mktemp("papers") / "papers.jsonl"
    path.write_text("\n".join(lines) + "\n")
    return path


@pytest.fixture(scope="session")
def pairs_file(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A seed-format pairs file (CSV, sentence_0/sentence_1) of adjacent sample sentences."""
    import pandas as pd

    pairs = mine_pairs(load_papers(SAMPLE)[:30], "adjacent")
    path = tmp_path_factory.mktemp("pairs") / "pairs.csv"
    pd.DataFrame(pairs, columns=["sentence_0", "sentence_1"]).to_csv(path, index=False)
    return path


def run_train(
    *args: str | Path, env: dict[str, str] | None = None
) -> subprocess.CompletedProcess[str]:
    environ = {k: v for k, v in os.environ.items() if not k.startswith("ASTRO_")}
    environ.update(
        HF_HUB_OFFLINE="1",
        TOKENIZERS_PARALLELISM="false",
        OMP_NUM_THREADS="1",
        ASTRO_EMBEDDED_BROKER_PORT="1",  # nothing listens there: no accidental publishing
    )
    environ.update(env or {})
    return subprocess.run(
        [sys.executable, "-m", "trainer", *map(str, args)],
        cwd=ROOT,
        env=environ,
        capture_output=True,
        text=True,
        timeout=300,
    )


def test_train_writes_a_complete_loadable_version(
    tiny_bert: Path, papers_file: Path, tmp_path: Path
) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "models"
    proc = run_train(
        "--papers", papers_file, "--base", tiny_bert, "--name", "tiny", "--out", out, *FAST
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert proc.stdout.strip() == str(path)  # libraries' chatter goes to stderr
    assert path.parent == out.resolve() and re.fullmatch(r"tiny-\d{14}", path.name)
    assert "%" in proc.stderr  # the progress bar

    for name in ("README.md", "metrics.json", "loss-curve.png", "train_args.json", "modules.json"):
        assert (path / name).is_file(), name
    assert (path / "loss-curve.png").read_bytes()[:4] == b"\x89PNG"
    model = SentenceTransformer(str(path), device="cpu")
    assert model.encode(["A galaxy cluster at z=0.5."]).shape == (1, 32)
    pooling = json.loads((path / "1_Pooling" / "config.json").read_text())
    assert pooling["pooling_mode"] == "mean"  # added to the plain BERT checkpoint

    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["primary_metric"] == "ndcg@10"
    assert metrics["eval"]["cutoff"] > "2025-06-01" and 0 < metrics["eval"]["eval_papers"] <= 8
    for side in ("base", "fine_tuned"):
        assert {"ndcg@10", "mrr@10", "recall@1", "recall@5", "recall@10"} <= set(metrics[side])
        assert {"title/ndcg@10", "sentence/ndcg@10"} <= set(metrics[side])
    assert metrics["train"]["steps"] == 3

    args = json.loads((path / "train_args.json").read_text())
    assert (args["max_steps"], args["batch_size"], args["lr"], args["seed"]) == (3, 8, 5e-5, 42)
    assert (args["mining"], args["batch_sampler"], args["loss"]) == (
        "mixed",
        "no_duplicates",
        "MultipleNegativesRankingLoss",
    )
    card = (path / "README.md").read_text()
    assert f"## Evaluation (astrostream `{path.name}`)" in card
    assert "| fine-tuned |" in card and "MultipleNegativesRankingLoss" in card

    registry = json.loads((out / "registry.json").read_text())
    assert registry["models"][-1]["path"] == str(path)
    promoted = registry["models"][-1]["promoted"]
    assert promoted == metrics["promotion"]["promoted"]
    assert promoted == (metrics["fine_tuned"]["ndcg@10"] > metrics["base"]["ndcg@10"])


def test_forced_promotion_moves_current_and_announces_the_model(
    tiny_bert: Path, pairs_file: Path, tmp_path: Path, broker: EmbeddedBroker
) -> None:
    from sentence_transformers import SentenceTransformer

    out = tmp_path / "models"
    topic = f"models-{uuid.uuid4().hex[:8]}"
    env = {"ASTRO_KAFKA_URL": broker.url, "ASTRO_TOPIC_MODELS": topic}
    proc = run_train(
        "--pairs", pairs_file, "--base", tiny_bert, "--out", out, "--force", *FAST, env=env
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert (out / "current").resolve() == path
    assert SentenceTransformer(str(out / "current"), device="cpu").get_embedding_dimension() == 32
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["eval"]["eval_pairs"] == 8 and "pairs/ndcg@10" in metrics["fine_tuned"]

    (record,) = consume_all(broker.bootstrap, topic, expect=1)
    update = ModelUpdate.model_validate_json(record.value)
    assert record.key.decode() == update.name == path.name.rsplit("-", 1)[0]
    assert (update.path, update.version) == (str(path), path.name.rsplit("-", 1)[1])
    assert update.metrics["ndcg@10"] == metrics["fine_tuned"]["ndcg@10"]


def _write(path: Path, text: str) -> Path:
    path.write_text(text)
    return path


@pytest.mark.parametrize(
    ("case", "message"),
    [
        ("missing-column", "lacks column(s) sentence_1"),
        ("empty-papers", "is empty"),
        ("no-base", "no such directory"),
        ("broken-base", "cannot load base model"),
    ],
)
def test_bad_inputs_fail_with_a_clear_message(
    case: str, message: str, tmp_path: Path, tiny_bert: Path, pairs_file: Path
) -> None:
    base: Path = tiny_bert
    data = ["--pairs", str(pairs_file)]
    if case == "missing-column":
        data = ["--pairs", str(_write(tmp_path / "p.csv", "sentence_0,other\na b c,d e f\n"))]
    elif case == "empty-papers":
        data = ["--papers", str(_write(tmp_path / "p.jsonl", ""))]
    elif case == "no-base":
        base = tmp_path / "nowhere"
    else:
        base = tmp_path / "broken"
        base.mkdir()
        _write(base / "config.json", "{ not json")
    proc = run_train(*data, "--base", base, "--out", tmp_path / "models", *FAST)
    assert proc.returncode == 1
    assert message in proc.stderr and "Error: " in proc.stderr
    assert "Traceback" not in proc.stderr
    assert proc.stdout == ""
    assert not list((tmp_path / "models").glob("*"))  # no half-written version


def test_static_architecture_trains_a_model_the_encoder_loads(tmp_path: Path) -> None:
    """``--architecture static`` on real papers: a sentence-transformers folder that the
    workers' ``load_encoder`` loads (on torch, whatever ASTRO_BACKEND=auto picks for a
    transformer) with the model's own dimension; versioned, never made current."""
    from services.core.settings import load_settings
    from services.models.encoder import load_encoder

    out = tmp_path / "models"
    papers = ROOT / "tests" / "data" / "papers-1k.jsonl.gz"
    proc = run_train(
        "--architecture", "static", "--papers", papers, "--cutoff", "2026-01-15",
        "--exclude-authors", "test", "--embedding-dim", "48", "--epochs", "1",
        "--max-pairs", "96", "--batch-size", "16", "--eval-papers", "8", "--threads", "1",
        "--out", out,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stderr[-3000:]
    path = Path(proc.stdout.strip().splitlines()[-1])
    assert re.fullmatch(r"astro-static-48-\d{14}", path.name)
    assert "%" in proc.stderr  # the progress bar
    for name in ("README.md", "metrics.json", "loss-curve.png", "train_args.json", "modules.json"):
        assert (path / name).is_file(), name

    args = json.loads((path / "train_args.json").read_text())
    assert (args["architecture"], args["embedding_dim"], args["training_pairs"]) == (
        "static",
        48,
        96,
    )
    assert (args["cutoff"], args["exclude_author_half"]) == ("2026-01-15", "test")
    metrics = json.loads((path / "metrics.json").read_text())
    assert metrics["eval"]["cutoff"] == "2026-01-15" and metrics["train"]["steps"] == 6
    assert metrics["promotion"]["promoted"] is False
    registry = json.loads((out / "registry.json").read_text())
    assert registry["current"] is None and registry["models"][-1]["path"] == str(path)
    assert not (out / "current").exists()

    settings = load_settings(data_dir=tmp_path / "data", backend="auto", device="cpu")
    encoder = load_encoder(settings, str(path))
    try:
        assert (encoder.dim, encoder.backend) == (48, "torch")
        long = "We observe the dust of nearby galaxies with JWST. " * 100  # no 256-token cut
        vectors = encoder.encode(["A galaxy cluster at z=0.5.", long])
        assert vectors.shape == (2, 48)
        assert np.allclose(np.linalg.norm(vectors, axis=1), 1.0, atol=1e-5)
    finally:
        encoder.close()


def test_a_rerun_resumes_from_the_newest_checkpoint(
    tiny_bert: Path, papers_file: Path, tmp_path: Path
) -> None:
    """``--checkpoint-dir``: a run cut short after its step-2 checkpoint, run again with the same
    command, resumes at step 2 (not 0) and ends with the weights and the loss log of the
    uninterrupted run; the folder refuses a run with other options."""
    from sentence_transformers import SentenceTransformer

    out, checkpoints = tmp_path / "models", tmp_path / "checkpoints"
    command: list[str | Path] = [
        "--papers", papers_file, "--base", tiny_bert, "--name", "tiny", "--out", out,
        "--max-steps", "4", "--batch-size", "8", "--eval-papers", "8", "--threads", "1",
        "--no-promote", "--checkpoint-dir", checkpoints, "--save-steps", "2",
    ]  # fmt: skip
    whole = run_train(*command)
    assert whole.returncode == 0, whole.stderr[-3000:]
    assert "no checkpoint yet: a fresh run" in whole.stderr
    assert sorted(p.name for p in checkpoints.glob("checkpoint-*")) == [
        "checkpoint-2",
        "checkpoint-4",  # the last step is saved too
    ]
    state = json.loads((checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    losses = [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]
    assert [step for step, _ in losses] == [1, 2, 3, 4]
    clock = json.loads((checkpoints / "checkpoint-4" / "astrostream-clock.json").read_text())
    assert clock["seconds"] > 0

    # Killed after the step-2 checkpoint: only that one is left.
    shutil.rmtree(checkpoints / "checkpoint-4")
    resumed = run_train(*command)
    assert resumed.returncode == 0, resumed.stderr[-3000:]
    assert "resuming from checkpoint-2" in resumed.stderr
    assert re.search(r"Loading SentenceTransformer model from \S+/checkpoint-2\b", resumed.stderr)
    # Only steps 3 and 4 are trained (and log their loss) in the second session.
    assert (whole.stderr.count("{'loss'"), resumed.stderr.count("{'loss'")) == (4, 2)
    first, second = (Path(p.stdout.strip().splitlines()[-1]) for p in (whole, resumed))
    metrics = json.loads((second / "metrics.json").read_text())
    assert (metrics["train"]["steps"], metrics["train"]["resumed_from"]) == (4, 2)
    before = json.loads((first / "metrics.json").read_text())["train"]
    assert before["resumed_from"] == 0
    # The mean loss counts the steps of both sessions, as the uninterrupted run's does.
    assert metrics["train"]["train_loss"] == pytest.approx(before["train_loss"], rel=1e-4)
    assert "resumed from a checkpoint at step 2" in (second / "README.md").read_text()
    state = json.loads((checkpoints / "checkpoint-4" / "trainer_state.json").read_text())
    again = [(e["step"], e["loss"]) for e in state["log_history"] if "loss" in e]
    assert [s for s, _ in again] == [1, 2, 3, 4]  # steps 1-2 from the checkpoint's log
    assert np.allclose([v for _, v in again], [v for _, v in losses], rtol=1e-5)
    text = ["A galaxy cluster at z=0.5.", "Dust in protoplanetary discs."]
    a = SentenceTransformer(str(first), device="cpu").encode(text)
    b = SentenceTransformer(str(second), device="cpu").encode(text)
    assert np.allclose(a, b, atol=1e-5)  # the same weights as the uninterrupted run

    other = run_train(*command, "--lr", "1e-4")
    assert other.returncode == 1
    assert "belongs to another run (differs in: config.lr)" in other.stderr
    assert "Traceback" not in other.stderr
