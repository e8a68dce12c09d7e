#!/usr/bin/env bash
# The SRWM paper's 6-game ProcGen easy multi-task setup (IMPALA, docs/design.md#procgen-easy-6-games).
# Usage: launch/procgen_easy_multitask.sh CORE [extra launch.train flags...]
# Environment overrides: NUM_ACTORS (48), ENVS_PER_ACTOR (1), TOTAL_STEPS (300000000),
# DEVICE (auto), NAME (procgen-easy-CORE-<date>), PYTHON (.venv/bin/python if present).
set -euo pipefail
cd "$(dirname "$0")/.."
CORE=${1:?usage: $0 CORE [flags...]}; shift
source launch/impala_paper_flags.sh
exec "$PYTHON" -m launch.train \
  --core "$CORE" \
  --env procgen:bigfish,fruitbot,maze,leaper,plunder,starpilot \
  --distribution-mode easy --start-level 0 --num-levels 200 \
  "${PAPER_FLAGS[@]}" \
  --total-steps "${TOTAL_STEPS:-300000000}" \
  --name "${NAME:-procgen-easy-$CORE-$(date +%Y%m%d-%H%M%S)}" "$@"
