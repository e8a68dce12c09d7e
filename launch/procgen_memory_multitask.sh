#!/usr/bin/env bash
# The SRWM paper's 4-game ProcGen memory-mode multi-task setup: dodgeball, heist, maze,
# miner, training levels 0-499 (docs/design.md#procgen-memory-4-games).
# Usage: launch/procgen_memory_multitask.sh CORE [extra launch.train flags...]
# Environment overrides: NUM_ACTORS (48), ENVS_PER_ACTOR (1), TOTAL_STEPS (300000000),
# DEVICE (auto), NAME (procgen-memory-CORE-<date>), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
CORE=${1:?usage: $0 CORE [flags...]}; shift
source launch/impala_paper_flags.sh
exec "$PYTHON" -m launch.train \
  --core "$CORE" \
  --env procgen:dodgeball,heist,maze,miner \
  --distribution-mode memory --start-level 0 --num-levels 500 \
  "${PAPER_FLAGS[@]}" \
  --total-steps "${TOTAL_STEPS:-300000000}" \
  --name "${NAME:-procgen-memory-$CORE-$(date +%Y%m%d-%H%M%S)}" "$@"
