"""ASTRO_BACKEND: the ONNX encoders against the torch one (parity, not timing), cache, tags.

Parity on the full 2,000-sentence sample is measured by ``benchmarks/performance.py``
(int8: min cosine 0.98); here 50 real sentences with a margin.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from services.core.errors import ConfigError
from services.core.settings import Settings
from services.core.text import sentences_for_embedding
from services.models import onnx_backend
from services.models.encoder import Encoder, backend_version, pick_backend
from services.models.onnx_backend import native_bf16

SAMPLE = Path(__file__).resolve().parents[1] / "data" / "papers-sample.jsonl"


def sample_sentences(n: int = 50) -> list[str]:
    texts: list[str] = []
    with SAMPLE.open() as handle:
        for line in handle:
            texts += [model for _, model in sentences_for_embedding(json.loads(line)["abstract"])]
            if len(texts) >= n:
                break
    return texts[:n]


@pytest.fixture(scope="module")
def cache(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("onnx")


@pytest.fixture(scope="module")
def reference() -> tuple[list[str], np.ndarray]:
    torch = Encoder("bundled", "cpu", 16, 256, backend="torch")
    texts = sample_sentences()
    try:
        return texts, torch.encode(texts)
    finally:
        torch.close()


NO_BF16 = "this CPU has no native bf16 (OpenVINO lists no BF16: no AMX / AVX512-BF16)"


@pytest.mark.parametrize(
    ("backend", "floor"),
    [
        ("onnx", 0.9999),
        ("onnx-int8", 0.95),
        ("openvino", 0.9999),
        # measured min 0.99997 on 2,000 sentences (docs/performance.md)
        pytest.param(
            "openvino-bf16",
            0.9995,
            marks=pytest.mark.skipif(not native_bf16(), reason=NO_BF16),
        ),
    ],
)
def test_onnx_vectors_match_torch(
    backend: str, floor: float, cache: Path, reference: tuple[list[str], np.ndarray]
) -> None:
    texts, expected = reference
    encoder = Encoder("bundled", "cpu", 16, 256, backend=backend, cache_dir=cache)
    try:
        got = encoder.encode(texts)
    finally:
        encoder.close()
    assert got.shape == expected.shape and got.dtype == np.float32
    assert np.allclose(np.linalg.norm(got, axis=1), 1.0, atol=1e-5)
    cosine = (got * expected).sum(axis=1)  # row by row: a batch put back out of order fails here
    assert cosine.min() >= floor, f"{backend}: min cosine {cosine.min():.4f} < {floor}"


def test_export_is_cached(cache: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    first = Encoder("bundled", "cpu", 16, 256, backend="onnx-int8", cache_dir=cache)
    first.close()
    files = sorted(p.name for p in cache.rglob("*.onnx"))
    assert files == ["model-int8.onnx", "model.onnx"]

    def fail(*args: object) -> None:
        raise AssertionError("exported again")

    monkeypatch.setattr(onnx_backend, "export", fail)
    monkeypatch.setattr(onnx_backend, "quantize", fail)
    second = Encoder("bundled", "cpu", 16, 256, backend="onnx-int8", cache_dir=cache)
    try:
        assert second.encode([]).shape == (0, second.dim)
        assert second.dim == 384  # read from the exported graph and checked against the model
    finally:
        second.close()
    assert not list(cache.rglob("*.tmp-*"))


def test_each_backend_has_its_own_version_tag() -> None:
    backends = ("torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
    tags = [backend_version("all-minilm-l6-v2", b) for b in backends]
    assert tags[0] == "all-minilm-l6-v2" and len(set(tags)) == len(backends)
    assert tags[2] == "all-minilm-l6-v2-onnx-int8"


def test_backend_choice() -> None:
    # auto: bf16 where the CPU has it natively, else int8; torch on a GPU, bf16 or not
    assert pick_backend("auto", "cpu", bf16=True) == "openvino-bf16"
    assert pick_backend("auto", "cpu", bf16=False) == "onnx-int8"
    assert pick_backend("auto", "cuda", bf16=True) == "torch"
    assert pick_backend("auto", "cuda") == "torch"
    assert pick_backend("auto", "cpu") == ("openvino-bf16" if native_bf16() else "onnx-int8")
    assert pick_backend("openvino-bf16", "cpu", bf16=False) == "openvino-bf16"  # refused at load
    with pytest.raises(ConfigError, match="ASTRO_DEVICE=cpu"):
        pick_backend("openvino-bf16", "cuda")
    assert pick_backend("onnx", "cpu") == "onnx"
    with pytest.raises(ConfigError, match="ASTRO_DEVICE=cpu"):
        pick_backend("onnx-int8", "cuda")
    with pytest.raises(ConfigError, match="expected one of"):
        pick_backend("tensorrt", "cpu")
    assert Settings(backend="onnx-int8").backend == "onnx-int8"
    assert Settings(backend="openvino-bf16").backend == "openvino-bf16"
    with pytest.raises(ValueError):
        Settings(backend="int4")


def test_a_cached_model_that_disagrees_is_refused(cache: Path) -> None:
    """A wrong export (here: one weight matrix of the cached file shuffled) fails at start."""
    Encoder("bundled", "cpu", 16, 256, backend="onnx", cache_dir=cache).close()
    [fp32] = cache.rglob("model.onnx")
    original = fp32.read_bytes()
    fp32.write_bytes(perturbed(fp32))
    try:
        with pytest.raises(ConfigError, match="disagrees with the model"):
            Encoder("bundled", "cpu", 16, 256, backend="onnx", cache_dir=cache)
    finally:
        fp32.write_bytes(original)


def perturbed(path: Path) -> bytes:
    """The ONNX model at ``path`` with its first large weight matrix shuffled."""
    import onnx
    from onnx import numpy_helper

    graph = onnx.load(str(path))
    for init in graph.graph.initializer:
        weights = numpy_helper.to_array(init)
        if weights.ndim == 2 and weights.size > 10_000 and weights.dtype == np.float32:
            shuffled = np.random.default_rng(0).permutation(weights.ravel()).reshape(weights.shape)
            init.CopyFrom(numpy_helper.from_array(shuffled, init.name))
            break
    return graph.SerializeToString()


def test_bf16_is_refused_where_the_cpu_lacks_it(
    cache: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Where OpenVINO lists no BF16 the bf16 hint would be emulated or ignored: refused."""
    monkeypatch.setattr(onnx_backend, "native_bf16", lambda: False)
    with pytest.raises(ConfigError, match="no native bf16"):
        Encoder("bundled", "cpu", 16, 256, backend="openvino-bf16", cache_dir=cache)
