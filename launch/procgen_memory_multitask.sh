#!/usr/bin/env bash
# The SRWM paper's 4-game ProcGen memory-mode multi-task setup: dodgeball, heist, maze,
# miner, training levels 0-499 (DESIGN.md section 7).
# Usage: launch/procgen_memory_multitask.sh CORE [extra launch.train flags...]
# Environment overrides: NUM_ACTORS (48), ENVS_PER_ACTOR (1), TOTAL_STEPS (300000000),
# DEVICE (auto), NAME (procgen-memory-CORE-<date>), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
CORE=${1:?usage: $0 CORE [flags...]}; shift
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PYTHON" -m launch.train \
  --core "$CORE" \
  --env procgen:dodgeball,heist,maze,miner \
  --distribution-mode memory --start-level 0 --num-levels 500 \
  --num-actors "${NUM_ACTORS:-48}" --envs-per-actor "${ENVS_PER_ACTOR:-1}" \
  --batch-size 32 --unroll-length 50 \
  --learning-rate 6e-4 --rmsprop-alpha 0.99 --rmsprop-eps 0.01 --rmsprop-momentum 0 \
  --grad-norm-clip 40 --entropy-cost 0.01 --baseline-cost 0.5 --discount 0.99 --reward-clip 1 \
  --num-layers 2 --hidden-size 128 --num-heads 8 --head-size 16 --d-ff 512 \
  --total-steps "${TOTAL_STEPS:-300000000}" --device "${DEVICE:-auto}" \
  --name "${NAME:-procgen-memory-$CORE-$(date +%Y%m%d-%H%M%S)}" "$@"
