#!/usr/bin/env bash
# The SRWM paper's 6-game ProcGen easy multi-task run (docs/design.md#procgen-easy-6-games) with its actors
# spread over a Ray cluster: the learner on the head (GPU) node, actors on every node.
# See docs/ray.md for the details (token authentication, networking, failures).
#
#   on the GPU node:          launch/ray_procgen_easy_multinode.sh head
#   copy the token:           scp ~/.ray/auth_token WORKER:~/.ray/auth_token   (mode 600)
#   on every CPU node:        launch/ray_procgen_easy_multinode.sh worker HEAD_IP:6379
#   on the GPU node:          launch/ray_procgen_easy_multinode.sh train CORE [launch.train flags...]
#   afterwards, every node:   launch/ray_procgen_easy_multinode.sh stop
#
# Environment overrides:
#   NODE_IP          this node's address on the cluster network (default: first of hostname -I)
#   RAY_PORT         the head's GCS port (6379)
#   HEAD_CPUS        CPUs the head offers to actors (default: nproc - 4, at least 1; the rest
#                    stay with the learner process and its data loading)
#   WORKER_CPUS      CPUs a worker offers to actors (default: nproc)
#   NUM_ACTORS       actors in total (default: the cluster's CPUs / CPUS_PER_ACTOR)
#   CPUS_PER_ACTOR   --ray-cpus-per-actor (1)
#   BROADCAST_EVERY  --ray-broadcast-every: parameters to the actors every K updates (1)
#   RAY_ADDRESS_ARG  --ray-address for train (auto: the cluster this node belongs to)
#   plus everything launch/procgen_easy_multitask.sh reads (ENVS_PER_ACTOR, TOTAL_STEPS,
#   DEVICE, NAME, PYTHON).
set -euo pipefail
cd "$(dirname "$0")/.."
PYTHON=${PYTHON:-$( [ -x .venv/bin/python ] && echo .venv/bin/python || echo python3 )}
RAY=${RAY:-$( [ -x .venv/bin/ray ] && echo .venv/bin/ray || echo ray )}
export PYTHON
export RAY_AUTH_MODE=${RAY_AUTH_MODE:-token}      # every RPC carries the cluster's shared token
[ "$RAY_AUTH_MODE" = token ] || echo "warning: RAY_AUTH_MODE=$RAY_AUTH_MODE: token authentication is off" >&2

usage() { sed -n '2,23p' "$0" | sed 's/^# \{0,1\}//' >&2; exit 2; }
node_ip() { echo "${NODE_IP:-$(hostname -I 2>/dev/null | awk '{print $1}')}"; }
need_token() {
  if [ "$RAY_AUTH_MODE" = token ] && ! "$RAY" get-auth-token >/dev/null 2>&1; then
    echo "error: no Ray auth token on this node: copy the head's ~/.ray/auth_token here (mode 600)" \
         "or set RAY_AUTH_TOKEN / RAY_AUTH_TOKEN_PATH" >&2
    exit 2
  fi
}

cmd=${1:-}; [ -n "$cmd" ] || usage; shift
case "$cmd" in
  head)
    ip=$(node_ip); [ -n "$ip" ] || { echo "error: set NODE_IP" >&2; exit 2; }
    if [ "$RAY_AUTH_MODE" = token ]; then
      "$RAY" get-auth-token --generate >/dev/null      # creates ~/.ray/auth_token if missing
      [ -f "$HOME/.ray/auth_token" ] && chmod 600 "$HOME/.ray/auth_token"
    fi
    cpus=${HEAD_CPUS:-$(( $(nproc) > 5 ? $(nproc) - 4 : 1 ))}
    exec "$RAY" start --head --node-ip-address "$ip" --port "${RAY_PORT:-6379}" \
      --num-cpus "$cpus" --include-dashboard false --disable-usage-stats "$@"
    ;;
  worker)
    head=${1:?usage: $0 worker HEAD_IP:PORT [ray start flags...]}; shift
    need_token
    ip=$(node_ip); [ -n "$ip" ] || { echo "error: set NODE_IP" >&2; exit 2; }
    exec "$RAY" start --address "$head" --node-ip-address "$ip" \
      --num-cpus "${WORKER_CPUS:-$(nproc)}" --disable-usage-stats "$@"
    ;;
  train)
    core=${1:?usage: $0 train CORE [launch.train flags...]}; shift
    need_token
    cpa=${CPUS_PER_ACTOR:-1}
    if [ -z "${NUM_ACTORS:-}" ]; then
      NUM_ACTORS=$("$PYTHON" - "$cpa" "${RAY_ADDRESS_ARG:-auto}" <<'EOF'
import sys, ray
ray.init(address=sys.argv[2], logging_level="ERROR")
print(max(1, int(ray.cluster_resources().get("CPU", 0) / float(sys.argv[1]))))
EOF
)
    fi
    export NUM_ACTORS
    echo "training with $NUM_ACTORS actors x $cpa CPU(s) on the Ray cluster" >&2
    exec launch/procgen_easy_multitask.sh "$core" --backend ray \
      --ray-address "${RAY_ADDRESS_ARG:-auto}" --ray-cpus-per-actor "$cpa" \
      --ray-broadcast-every "${BROADCAST_EVERY:-1}" \
      --name "${NAME:-procgen-easy-ray-$core-$(date +%Y%m%d-%H%M%S)}" "$@"
    ;;
  stop)
    exec "$RAY" stop "$@"
    ;;
  *)
    usage
    ;;
esac
