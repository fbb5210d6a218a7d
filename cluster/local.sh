#!/usr/bin/env bash
# A multi-node Ray cluster on one machine: a head node with no CPUs (it only schedules and
# runs job drivers) and N worker nodes, each a separate raylet. Worker nodes may declare GPUs
# or custom resources they do not have, so GPU sharding can be rehearsed on a laptop.
#
#   cluster/local.sh up [--workers N] [--worker-cpus C] [--worker-gpus G] [--resources JSON]
#                       [--dashboard-port P] [--object-store-mb M] [--dir DIR]
#   cluster/local.sh status [--dir DIR]
#   cluster/local.sh down [--dir DIR]
#
# Every process of a cluster carries SKELRAY_LOCAL_CLUSTER=<DIR> in its environment; `down`
# stops exactly those processes by id. It never runs `ray stop`, which would kill every Ray
# process on the machine, other people's included.
#
# Token authentication stays on: the token comes from RAY_AUTH_TOKEN, RAY_AUTH_TOKEN_PATH or
# ~/.ray/auth_token (created with `ray get-auth-token --generate` when none exists).
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
if [[ -x "$ROOT/.venv/bin/ray" ]]; then
  BIN="$ROOT/.venv/bin"
  export PATH="$BIN:$PATH"  # job drivers run `python -m skelray.cli`: make it this venv's python
else
  BIN="$(dirname "$(command -v ray || echo /usr/bin/ray)")"
fi
RAY="$BIN/ray"
PY="$BIN/python"

DIR="${SKELRAY_CLUSTER_DIR:-/tmp/skelray-local-${USER:-$(id -u)}}"
WORKERS=2
WORKER_CPUS=1
WORKER_GPUS=0
RESOURCES=""
DASHBOARD_PORT=8265
OBJECT_STORE_MB=200

usage() { sed -n '2,16p' "$0" | sed 's/^# \{0,1\}//'; exit "${1:-0}"; }
die() { echo "local.sh: $*" >&2; exit 2; }

CMD="${1:-}"; [[ -n "$CMD" ]] || usage 2; shift
while [[ $# -gt 0 ]]; do
  case "$1" in
    --workers) WORKERS="$2"; shift 2 ;;
    --worker-cpus) WORKER_CPUS="$2"; shift 2 ;;
    --worker-gpus) WORKER_GPUS="$2"; shift 2 ;;
    --resources) RESOURCES="$2"; shift 2 ;;
    --dashboard-port) DASHBOARD_PORT="$2"; shift 2 ;;
    --object-store-mb) OBJECT_STORE_MB="$2"; shift 2 ;;
    --dir) DIR="$2"; shift 2 ;;
    -h|--help) usage 0 ;;
    *) die "unknown option $1 (see: cluster/local.sh --help)" ;;
  esac
done
# Ray's Unix sockets live under the temp dir, and a socket path may not exceed 107 bytes.
[[ ${#DIR} -le 32 ]] || die "--dir $DIR is too long for Ray's socket paths: use a path of 32 characters or less"
STATE="$DIR/cluster.env"

free_port() { "$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])'; }

cluster_pids() {
  # Processes whose environment holds this cluster's marker: the ones `up` started and their children.
  grep -lzxF "SKELRAY_LOCAL_CLUSTER=$DIR" /proc/[0-9]*/environ 2> /dev/null | cut -d/ -f3 || true
}

token_setup() {
  export RAY_AUTH_MODE=token
  if [[ -n "${RAY_AUTH_TOKEN:-}" ]]; then
    TOKEN_FROM="RAY_AUTH_TOKEN"
  elif [[ -n "${RAY_AUTH_TOKEN_PATH:-}" ]]; then
    [[ -s "$RAY_AUTH_TOKEN_PATH" ]] || die "RAY_AUTH_TOKEN_PATH=$RAY_AUTH_TOKEN_PATH is missing or empty"
    TOKEN_FROM="$RAY_AUTH_TOKEN_PATH"
  else
    if [[ ! -s "$HOME/.ray/auth_token" ]]; then
      "$RAY" get-auth-token --generate > /dev/null  # prints the token: keep it off the terminal
    fi
    TOKEN_FROM="$HOME/.ray/auth_token"
  fi
}

up() {
  [[ -f "$STATE" ]] && [[ -n "$(cluster_pids)" ]] && die "a cluster is already running in $DIR (cluster/local.sh down --dir $DIR)"
  mkdir -p "$DIR"
  token_setup
  export SKELRAY_LOCAL_CLUSTER="$DIR"
  export RAY_DISABLE_USAGE_STATS=1
  local gcs_port client_port agent_port store=$((OBJECT_STORE_MB * 1024 * 1024))
  gcs_port="$(free_port)"; client_port="$(free_port)"; agent_port="$(free_port)"
  # Head: no CPUs, so trials land on the workers; the dashboard serves the Jobs API.
  "$RAY" start --head --num-cpus 0 --port "$gcs_port" --temp-dir "$DIR/head" \
    --include-dashboard=true --dashboard-host 127.0.0.1 --dashboard-port "$DASHBOARD_PORT" \
    --dashboard-agent-listen-port "$agent_port" --ray-client-server-port "$client_port" \
    --object-store-memory "$store" --disable-usage-stats --log-style record > "$DIR/head.log" 2>&1 \
    || { tail -20 "$DIR/head.log" >&2; down > /dev/null; die "the head node did not start (log: $DIR/head.log)"; }
  local i args
  for ((i = 1; i <= WORKERS; i++)); do
    # Each raylet on this host gets its own temp dir: nodes sharing one would unpack a job's
    # working_dir into the same folder, and a later unpack pulls it from under the driver's cwd.
    # Each also needs its own dashboard agent port.
    args=(--address "127.0.0.1:$gcs_port" --temp-dir "$DIR/w$i" --num-cpus "$WORKER_CPUS" --num-gpus "$WORKER_GPUS"
          --object-store-memory "$store" --dashboard-agent-listen-port "$(free_port)" --disable-usage-stats)
    [[ -n "$RESOURCES" ]] && args+=(--resources "$RESOURCES")
    "$RAY" start "${args[@]}" > "$DIR/worker-$i.log" 2>&1 \
      || { tail -20 "$DIR/worker-$i.log" >&2; down > /dev/null; die "worker $i did not start (log: $DIR/worker-$i.log)"; }
  done
  cat > "$STATE" <<EOF
GCS_ADDRESS=127.0.0.1:$gcs_port
DASHBOARD=http://127.0.0.1:$DASHBOARD_PORT
WORKERS=$WORKERS
TOKEN_FROM="$TOKEN_FROM"
EOF
  echo "Ray cluster up in $DIR: head (0 CPUs) + $WORKERS worker(s) x {CPU: $WORKER_CPUS, GPU: $WORKER_GPUS${RESOURCES:+, $RESOURCES}}"
  echo "dashboard and Jobs API: http://127.0.0.1:$DASHBOARD_PORT   (token from $TOKEN_FROM)"
  echo "submit a sweep:  skelray sweep submit sweeps/demo.yaml --address http://127.0.0.1:$DASHBOARD_PORT --storage $DIR/runs --wait"
  echo "stop it:         cluster/local.sh down${DIR:+ --dir $DIR}"
}

status() {
  [[ -f "$STATE" ]] || die "no cluster in $DIR (start one with: cluster/local.sh up)"
  # shellcheck disable=SC1090
  source "$STATE"
  local pids; pids="$(cluster_pids | wc -l)"
  echo "cluster in $DIR: $pids processes; dashboard $DASHBOARD; GCS $GCS_ADDRESS"
  [[ "$pids" -gt 0 ]] || exit 1
  local started_with="$TOKEN_FROM"
  token_setup
  "$RAY" status --address "$GCS_ADDRESS" 2> "$DIR/status.err" || {
    grep -m1 -o "AuthenticationError.*incorrect" "$DIR/status.err" >&2 || tail -3 "$DIR/status.err" >&2
    die "ray status failed; the cluster was started with the token from $started_with: give this shell the same"
  }
}

down() {
  local pids; pids="$(cluster_pids)"
  if [[ -z "$pids" ]]; then echo "no processes of a cluster in $DIR"; rm -f "$STATE"; return 0; fi
  # shellcheck disable=SC2086
  kill -TERM $pids 2> /dev/null || true
  for _ in $(seq 20); do
    sleep 0.5
    pids="$(cluster_pids)"; [[ -z "$pids" ]] && break
  done
  # What is left is killed, again until none is left: a worker forked during the shutdown
  # carries the marker too, and a killed process takes a moment to go.
  for _ in $(seq 40); do
    [[ -z "$pids" ]] && break
    # shellcheck disable=SC2086
    kill -KILL $pids 2> /dev/null || true
    sleep 0.25
    pids="$(cluster_pids)"
  done
  [[ -z "$pids" ]] || die "processes $pids of the cluster in $DIR did not stop"
  rm -f "$STATE"
  echo "stopped the cluster in $DIR"
}

case "$CMD" in
  up) up ;;
  down) down ;;
  status) status ;;
  -h|--help|help) usage 0 ;;
  *) die "unknown command $CMD (up, down or status)" ;;
esac
