"""The CPU path: a sentence-transformers model exported to ONNX (fp32 or int8), run by onnxruntime.

sentence-transformers' own ``backend="onnx"`` needs ``optimum-onnx``, whose transformers pin
conflicts with ours, so the export is done here: ``torch.onnx.export`` of the transformer
(token embeddings out), onnxruntime's BERT fusions, then dynamic int8 quantisation with
per-channel weight scales (per-tensor scales cost ~0.1 of cosine on MiniLM; per-channel
keeps it above 0.98). ``openvino`` runs the fp32 ONNX file with OpenVINO's CPU plugin
instead (the same vectors as torch, at 1.05-1.3x less CPU). Tokenisation is the model's own
tokenizer; pooling (read from the model's ``Pooling`` module) and normalisation are done
in numpy.

The exported files are cached under ``<cache_dir>/<model slug>-<hash>/`` where the hash
covers the model's weights and config and the exporter's versions: a worker exports once
(~5 s for MiniLM), later starts load the file. Files are written under a temporary name and
renamed, so two workers starting together never read a half-written model.
"""

from __future__ import annotations

import functools
import hashlib
import json
import logging
import os
import re
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from services.core.errors import ConfigError
from services.models.batching import token_batches

if TYPE_CHECKING:
    from sentence_transformers import SentenceTransformer

log = logging.getLogger(__name__)

ONNX_BACKENDS = ("onnx", "onnx-int8", "openvino", "openvino-bf16")
POOLING = ("mean", "cls", "max")
OPSET = 17


def model_parts(model: SentenceTransformer) -> tuple[Any, Any, str]:
    """(transformer, tokenizer, pooling mode) of a Transformer → Pooling [→ Normalize] model."""
    kinds = [type(module).__name__ for module in model]
    if kinds[:2] != ["Transformer", "Pooling"] or any(k != "Normalize" for k in kinds[2:]):
        raise ConfigError(
            f"ASTRO_BACKEND=onnx supports Transformer → Pooling [→ Normalize] models; this one is "
            f"{' → '.join(kinds)}: use ASTRO_BACKEND=torch"
        )
    pooling: Any = model[1]
    mode = pooling.get_config_dict().get("pooling_mode")
    if mode not in POOLING:
        raise ConfigError(
            f"ASTRO_BACKEND=onnx: pooling {mode!r} is not supported ({', '.join(POOLING)}); "
            "use ASTRO_BACKEND=torch"
        )
    return model[0].auto_model, model[0].tokenizer, str(mode)


def cache_key(name: str, transformer: Any) -> str:
    """``<slug>-<16 hex>``: the model's name, and a hash of its weights, config and exporters."""
    import onnxruntime
    import torch

    digest = hashlib.sha256()
    digest.update(f"{torch.__version__}|{onnxruntime.__version__}|{OPSET}".encode())
    digest.update(json.dumps(transformer.config.to_dict(), sort_keys=True, default=str).encode())
    for key, tensor in sorted(transformer.state_dict().items()):
        digest.update(key.encode())
        digest.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    slug = re.sub(r"[^a-z0-9_.-]+", "-", Path(name.rstrip("/")).name.lower()).strip("-.")
    return f"{slug[:60] or 'model'}-{digest.hexdigest()[:16]}"


def _replace(tmp: Path, final: Path) -> None:
    os.replace(tmp, final)  # atomic: a concurrent reader sees the old file or the whole new one


def export(transformer: Any, input_names: list[str], path: Path) -> None:
    """``torch.onnx.export`` of the transformer's last hidden state, dynamic batch and length."""
    import torch

    class TokenEmbeddings(torch.nn.Module):
        def __init__(self, model: Any) -> None:
            super().__init__()
            self.model = model

        def forward(self, *inputs: torch.Tensor) -> torch.Tensor:
            return self.model(**dict(zip(input_names, inputs, strict=True))).last_hidden_state

    dummy = tuple(torch.ones((2, 8), dtype=torch.long) for _ in input_names)
    axes = {name: {0: "batch", 1: "tokens"} for name in [*input_names, "token_embeddings"]}
    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    was_training = transformer.training
    transformer.eval()
    try:
        # The tracer's warnings (Python booleans of tensors, advanced indexing) are expected for
        # BERT-style models, whose traced graph is checked by the parity tests: not for a
        # person's console.
        with torch.no_grad(), warnings.catch_warnings():
            warnings.simplefilter("ignore")
            torch.onnx.export(
                TokenEmbeddings(transformer),
                dummy,
                str(tmp),
                input_names=input_names,
                output_names=["token_embeddings"],
                dynamic_axes=axes,
                opset_version=OPSET,
                dynamo=False,  # the TorchScript exporter: no onnxscript, and BERT traces cleanly
            )
        try:  # SkipLayerNormalization / BiasGelu fusions; a model they do not fit stays as is
            from onnxruntime.transformers.optimizer import optimize_model

            optimize_model(str(tmp), model_type="bert", opt_level=1).save_model_to_file(str(tmp))
        except Exception as exc:  # the unfused graph is correct, only slower
            log.warning("onnxruntime fusions skipped (%s: %s)", type(exc).__name__, exc)
        _replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
        transformer.train(was_training)


def quantize(fp32: Path, path: Path) -> None:
    """Dynamic int8 quantisation (weights per output channel, activations per batch)."""
    import onnx
    from onnxruntime.quantization import QuantType, quantize_dynamic

    tmp = path.with_name(f"{path.name}.tmp-{os.getpid()}")
    # onnxruntime logs "Please consider to run pre-processing" on the root logger: advice
    # for static quantisation, which this is not.
    quiet = _DropMessage("Please consider to run pre-processing")
    logging.getLogger().addFilter(quiet)
    try:
        quantize_dynamic(
            str(fp32),
            str(tmp),
            weight_type=QuantType.QInt8,
            per_channel=True,
            extra_options={"DefaultTensorType": onnx.TensorProto.FLOAT},  # fused ops' outputs
        )
        _replace(tmp, path)
    finally:
        logging.getLogger().removeFilter(quiet)
        tmp.unlink(missing_ok=True)


class _DropMessage(logging.Filter):
    """Drops log records whose message starts with ``prefix``."""

    def __init__(self, prefix: str) -> None:
        super().__init__()
        self.prefix = prefix

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith(self.prefix)


Runner = Callable[[dict[str, np.ndarray]], np.ndarray]


def _onnxruntime(path: Path, threads: int) -> tuple[Runner, list[str], int]:
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    # Idle threads sleep instead of spinning: the CPU is shared with the event loop and Qdrant.
    options.add_session_config_entry("session.intra_op.allow_spinning", "0")
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(session.run(None, feeds)[0])

    dim = int(session.get_outputs()[0].shape[-1])
    return run, [i.name for i in session.get_inputs()], dim


@functools.cache
def native_bf16() -> bool:
    """Whether OpenVINO's CPU plugin computes bf16 natively here (AVX512-BF16 or AMX).

    False where openvino is not installed; OpenVINO lists ``BF16`` in the CPU's
    ``OPTIMIZATION_CAPABILITIES`` only where the instructions exist (elsewhere a bf16 hint
    would be emulated or ignored).
    """
    try:
        import openvino
    except ImportError:
        return False
    try:
        return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    except Exception:  # no CPU plugin: nothing runs on OpenVINO here
        return False


def _openvino(path: Path, threads: int, precision: str = "f32") -> tuple[Runner, list[str], int]:
    """OpenVINO's CPU plugin on the fp32 ONNX file, computing in ``precision`` (f32 or bf16).

    bf16 keeps fp32's range with an 8-bit mantissa; on a CPU with AMX / AVX512-BF16 it costs
    about half of onnxruntime int8's CPU per sentence (docs/performance.md).
    """
    backend = "openvino" if precision == "f32" else f"openvino-{precision}"
    try:
        import openvino
    except ImportError as exc:
        raise ConfigError(
            f"ASTRO_BACKEND={backend} needs the openvino package (pip install openvino)"
        ) from exc
    core = openvino.Core()
    if precision == "bf16" and not native_bf16():
        raise ConfigError(
            f"ASTRO_BACKEND={backend}: this CPU has no native bf16 (OpenVINO lists "
            f"{core.get_property('CPU', 'OPTIMIZATION_CAPABILITIES')}; bf16 needs AVX512-BF16 "
            "or AMX): use ASTRO_BACKEND=onnx-int8 or auto"
        )
    # Threads not pinned to cores: the worker's event loop and Qdrant thread share those
    # cores, and a pinned thread cannot move off a busy one (bf16, 640 sentences under
    # load, two runs: 4.0-4.1 against 4.8-5.2 CPU s per 1,000 sentences pinned).
    compiled = core.compile_model(
        core.read_model(str(path)),
        "CPU",
        {
            "INFERENCE_PRECISION_HINT": precision,
            "INFERENCE_NUM_THREADS": threads,
            "ENABLE_CPU_PINNING": False,
        },
    )
    request = compiled.create_infer_request()
    output = compiled.outputs[0]

    def run(feeds: dict[str, np.ndarray]) -> np.ndarray:
        return np.asarray(request.infer(feeds)[output])

    dim = int(output.get_partial_shape()[-1].get_length())
    return run, [i.get_any_name() for i in compiled.inputs], dim


def prepare(model: SentenceTransformer, name: str, backend: str, cache_dir: Path) -> Path:
    """The ONNX file of ``backend`` for ``model``: from the cache, or exported now."""
    transformer, tokenizer, _ = model_parts(model)
    folder = cache_dir / cache_key(name, transformer)
    fp32 = folder / "model.onnx"
    target = folder / "model-int8.onnx" if backend == "onnx-int8" else fp32
    if target.exists():
        log.info("ONNX model from cache %s", target)
        return target
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise ConfigError(f"ASTRO_BACKEND={backend}: cannot create {folder} ({exc})") from exc
    if not fp32.exists():
        log.info("exporting %s to ONNX at %s (once per model)", name, fp32)
        export(transformer, list(tokenizer.model_input_names), fp32)
    if target != fp32:
        log.info("quantising %s to int8 at %s (once per model)", fp32, target)
        quantize(fp32, target)
    return target


class OnnxSentenceModel:
    """Tokenise → onnxruntime or OpenVINO → pool → normalise: a SentenceTransformer's ``encode``.

    Sentences are sorted by length before batching (as sentence-transformers does), so a
    batch pads to its own longest sentence, not the input's.
    """

    def __init__(
        self, model: SentenceTransformer, path: Path, max_seq_length: int, runtime: str
    ) -> None:
        _, self.tokenizer, self.pooling = model_parts(model)
        self.max_seq_length = max_seq_length
        threads = min(os.cpu_count() or 1, 8)
        if runtime in ("openvino", "openvino-bf16"):
            precision = "bf16" if runtime == "openvino-bf16" else "f32"
            self._run, self.inputs, self.dim = _openvino(path, threads, precision)
        else:
            self._run, self.inputs, self.dim = _onnxruntime(path, threads)

    def encode(
        self, texts: list[str], batch_size: int, max_tokens: int | None = None
    ) -> np.ndarray:
        """Tokenise every text once, then run batches of :func:`token_batches` (longest first,
        at most ``batch_size`` texts and ``max_tokens`` padded tokens each)."""
        out = np.empty((len(texts), self.dim), dtype=np.float32)
        tokens = self.tokenizer(texts, truncation=True, max_length=self.max_seq_length)
        lengths = [len(ids) for ids in tokens["input_ids"]]
        pad = self.tokenizer.pad_token_id or 0
        for rows in token_batches(lengths, batch_size, max_tokens):
            width = max(lengths[i] for i in rows)
            feeds = {}
            for name in self.inputs:
                fill = pad if name == "input_ids" else 0
                array = np.full((len(rows), width), fill, dtype=np.int64)
                for row, i in enumerate(rows):
                    array[row, : lengths[i]] = tokens[name][i]
                feeds[name] = array
            out[rows] = self._forward(feeds)
        return out

    def encode_batch(self, texts: list[str]) -> np.ndarray:
        """One forward pass over ``texts`` (padded to the longest)."""
        batch = self.tokenizer(
            texts,
            padding=True,
            truncation=True,
            max_length=self.max_seq_length,
            return_tensors="np",
        )
        return self._forward(
            {name: np.asarray(batch[name], dtype=np.int64) for name in self.inputs}
        )

    def _forward(self, feeds: dict[str, np.ndarray]) -> np.ndarray:
        tokens = np.asarray(self._run(feeds), dtype=np.float32)
        mask = feeds["attention_mask"][..., None].astype(np.float32)
        if self.pooling == "mean":
            pooled = (tokens * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        elif self.pooling == "cls":
            pooled = tokens[:, 0]
        else:
            pooled = np.where(mask > 0, tokens, -1e9).max(axis=1)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)
