#!/usr/bin/env bash
# Atari with the recurrent fast-weight paper's IMPALA settings (docs/design.md#atari):
# 84x84 grey, action repeat 4 with max-pool, stack of 4, 30 no-op starts, a lost life
# ends the training episode, rewards clipped to [-1, 1], 48 actors, batch 32, unroll 50.
# The five cores of that paper (Irie et al., NeurIPS 2021: --use_lstm, --use_lt, --use_delta,
# --use_rec_delta, --use_delta_rnn) run with its model sizes: 2 layers, hidden 128 = 4 heads
# of 32, feed-forward 512 (LSTM: 256 units). Any other registered core keeps the shared
# defaults of launch/impala_paper_flags.sh (8 heads of 16, the SRWM paper's).
# Usage: launch/atari.sh GAME CORE [extra launch.train flags...]
#   CORE: lstm | linear_transformer | deltanet | rec_delta | delta_rnn (the paper's), or any core
# Environment overrides: NUM_ACTORS (48), ENVS_PER_ACTOR (1), TOTAL_STEPS (200000000),
# DEVICE (auto), NAME (atari-GAME-CORE-<date>), PYTHON.
set -euo pipefail
cd "$(dirname "$0")/.."
GAME=${1:?usage: $0 GAME CORE [flags...]}; CORE=${2:?usage: $0 GAME CORE [flags...]}; shift 2
source launch/impala_paper_flags.sh
case "$CORE" in
  lstm) ATARI_PAPER_SIZES=(--hidden-size 256) ;;
  linear_transformer|deltanet|rec_delta|delta_rnn)
    ATARI_PAPER_SIZES=(--num-layers 2 --hidden-size 128 --num-heads 4 --head-size 32 --d-ff 512) ;;
  *) ATARI_PAPER_SIZES=() ;;
esac
exec "$PYTHON" -m launch.train \
  --core "$CORE" --env "atari:$GAME" --sticky-action-prob 0 --noop-max 30 \
  "${PAPER_FLAGS[@]}" ${ATARI_PAPER_SIZES[@]+"${ATARI_PAPER_SIZES[@]}"} \
  --total-steps "${TOTAL_STEPS:-200000000}" \
  --name "${NAME:-atari-$GAME-$CORE-$(date +%Y%m%d-%H%M%S)}" "$@"
