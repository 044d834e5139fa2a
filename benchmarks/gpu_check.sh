#!/usr/bin/env bash
# GPU check (< 5 min on one GPU): ~300 training steps of the trainer, then 50k sentences embedded.
# Prints steps/s and sentences/s. On CPU, pass tiny numbers: benchmarks/gpu_check.sh --steps 5 --sentences 500
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON="${PYTHON:-.venv/bin/python}"
[ -x "$PYTHON" ] || PYTHON=python3
export HF_HUB_OFFLINE="${HF_HUB_OFFLINE:-1}" TOKENIZERS_PARALLELISM=false
exec timeout "${GPU_CHECK_TIMEOUT_S:-290}" "$PYTHON" benchmarks/gpu_check.py "$@"
