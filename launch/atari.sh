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
source launch/impala_paper_flags.sh
exec "$PYTHON" -m launch.train \
  --core "$CORE" --env "atari:$GAME" --sticky-action-prob 0 --noop-max 30 \
  "${PAPER_FLAGS[@]}" \
  --total-steps "${TOTAL_STEPS:-200000000}" \
  --name "${NAME:-atari-$GAME-$CORE-$(date +%Y%m%d-%H%M%S)}" "$@"
