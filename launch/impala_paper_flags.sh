# Sourced by the paper's launch scripts: the IMPALA settings they share (docs/design.md#reference-configurations)
# and the environment overrides every script reads. The hidden size is each core's default:
# 128 = 8 heads of 16 for the fast-weight cores and ff, 256 units for the LSTM.
#   NUM_ACTORS (48), ENVS_PER_ACTOR (1), DEVICE (auto), PYTHON (.venv/bin/python if present)
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
PAPER_FLAGS=(
  --num-actors "${NUM_ACTORS:-48}" --envs-per-actor "${ENVS_PER_ACTOR:-1}"
  --batch-size 32 --unroll-length 50
  --learning-rate 6e-4 --rmsprop-alpha 0.99 --rmsprop-eps 0.01 --rmsprop-momentum 0
  --grad-norm-clip 40 --entropy-cost 0.01 --baseline-cost 0.5 --discount 0.99 --reward-clip 1
  --num-layers 2 --num-heads 8 --head-size 16 --d-ff 512
  --device "${DEVICE:-auto}"
)
