#!/usr/bin/env bash
# Evaluate a ProcGen run on the SRWM paper's four level splits (docs/design.md#level-splits):
# train (levels 0-199), test1 (1000-1199), test2 (1200-1399), test3 (1400-1599),
# every game the checkpoint was trained on, and print one table per split plus the
# generalisation gap (train minus test).
# Usage: launch/eval_procgen_splits.sh RUN_DIR_OR_CHECKPOINT [extra launch.evaluate flags...]
# Paths are taken relative to the current directory.
# Environment overrides: EPISODES (200 per game and split), ACTORS (4), ENVS (8),
# SEED (0), DEVICE (cpu), PYTHON (the repository's .venv/bin/python if present).
set -euo pipefail
ROOT=$(cd "$(dirname "$0")/.." && pwd)
TARGET=${1:?usage: $0 RUN_DIR_OR_CHECKPOINT [flags...]}; shift
PYTHON=${PYTHON:-$( [ -x "$ROOT/.venv/bin/python" ] && echo "$ROOT/.venv/bin/python" || echo python3 )}
export PYTHONPATH="$ROOT${PYTHONPATH:+:$PYTHONPATH}"
exec "$PYTHON" -m launch.evaluate "$TARGET" \
  --split train test1 test2 test3 \
  --episodes "${EPISODES:-200}" \
  --actors "${ACTORS:-4}" --envs "${ENVS:-8}" \
  --seed "${SEED:-0}" --device "${DEVICE:-cpu}" "$@"
