#!/usr/bin/env bash
# The seed recipe of issue #21 on this CPU, from the bundled MiniLM: starts the run, or resumes
# it from the newest checkpoint (trainer/README.md, "Long runs on a CPU"). It takes hours to
# days on 2 cores, so it runs in the background at the lowest priority and can be stopped at
# any time; running this again goes on from the last checkpoint.
#   RUN=/work/astro-train trainer/seed_run.sh      # log: $RUN/train.log, PID: $RUN/train.pid
set -euo pipefail
cd "$(dirname "$0")/.."
RUN=${RUN:-$PWD/data/seed-run}
DATA=${DATA:-../shared/data/astro-ph/astro-ph-train.jsonl.gz}
mkdir -p "$RUN"
if [ -s "$RUN/train.pid" ] && tr '\0' ' ' < "/proc/$(cat "$RUN/train.pid")/cmdline" 2>/dev/null \
    | grep -q -- "--checkpoint-dir $RUN/checkpoints"; then
  echo "already running: PID $(cat "$RUN/train.pid")" >&2
  exit 1
fi
echo "=== $(date -u +%FT%TZ) seed_run.sh on $(git rev-parse --short HEAD)" >> "$RUN/train.log"
HF_HUB_OFFLINE=1 TOKENIZERS_PARALLELISM=false setsid nohup nice -n 19 \
  .venv/bin/python -m trainer --papers "$DATA" \
  --mining mixed --max-pairs 34208 --epochs 8 --batch-size 32 --lr 5e-5 --seed 42 \
  --cutoff 2025-12-01 --threads 2 --no-promote --no-publish \
  --out "$RUN/models" --checkpoint-dir "$RUN/checkpoints" --save-steps 42 \
  >> "$RUN/train.log" 2>&1 < /dev/null &
echo $! > "$RUN/train.pid"
# setsid starts a new scheduler autogroup, in which nice alone does not yield to other
# sessions' work (CONFIG_SCHED_AUTOGROUP): lower the group's weight too.
echo 19 > "/proc/$!/autogroup" 2>/dev/null || true
echo "PID $(cat "$RUN/train.pid"); log $RUN/train.log; checkpoints $RUN/checkpoints"
