#!/usr/bin/env bash
# Atari with the recurrent fast-weight paper's IMPALA settings (DESIGN.md section 7):
# 84x84 grey, action repeat 4 with max-pool, stack of 4, 30 no-op starts, a lost life
# ends the training episode, rewards clipped to [-1, 1], 48 actors, batch 32, unroll 50.
# Usage: launch/atari.sh GAME CORE [extra launch.train flags...]
# Environment overrides: NUM_ACTORS (48), ENVS_PER_ACTOR (1), TOTAL_STEPS (200000000),
# DEVICE (auto), NAME (atari-GAME-CORE-<date>), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
GAME=${1:?usage: $0 GAME CORE [flags...]}; CORE=${2:?usage: $0 GAME CORE [flags...]}; shift 2
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
exec "$PYTHON" -m launch.train \
  --core "$CORE" --env "atari:$GAME" --sticky-action-prob 0 --noop-max 30 \
  --num-actors "${NUM_ACTORS:-48}" --envs-per-actor "${ENVS_PER_ACTOR:-1}" \
  --batch-size 32 --unroll-length 50 \
  --learning-rate 6e-4 --rmsprop-alpha 0.99 --rmsprop-eps 0.01 --rmsprop-momentum 0 \
  --grad-norm-clip 40 --entropy-cost 0.01 --baseline-cost 0.5 --discount 0.99 --reward-clip 1 \
  --num-layers 2 --hidden-size 128 --num-heads 8 --head-size 16 --d-ff 512 \
  --total-steps "${TOTAL_STEPS:-200000000}" --device "${DEVICE:-auto}" \
  --name "${NAME:-atari-$GAME-$CORE-$(date +%Y%m%d-%H%M%S)}" "$@"
