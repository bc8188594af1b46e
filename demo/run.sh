#!/usr/bin/env bash
# `make dev`: the simulator with the demo workspaces, then `dg dev` (Dagster's webserver and daemon) against it, and the
# metrics endpoint. Stops them all when the simulator or Dagster exits, or on TERM or INT (a terminal's Ctrl-C, or
# `kill` of a background `make dev`).
set -euo pipefail
# Job control: background jobs of a script otherwise ignore SIGINT, and Dagster's processes then
# ignore SIGTERM too (Dagster handles TERM as INT), so they would outlive this script.
set -m
cd "$(dirname "$0")/.."

SIM_PORT="${SIM_PORT:-8750}"
DAGSTER_PORT="${DAGSTER_PORT:-3000}"
export DRIPFEED_METRICS_PORT="${DRIPFEED_METRICS_PORT:-9464}"
export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/.dev/dagster_home}"
export TASKLANE_BASE_URL="http://127.0.0.1:$SIM_PORT"  # the demo syncs from its own simulator

if [ ! -f .env ]; then
  # Random demo tokens, shared by the simulator and dripfeed; never committed.
  .venv/bin/python - <<'PY' > .env
import secrets
for name in ("SIM_ADMIN", "ACME", "GLOBEX", "INITECH", "UMBRELLA", "HOOLI"):
    var = "TASKLANE_SIM_ADMIN_TOKEN" if name == "SIM_ADMIN" else f"TASKLANE_TOKEN_{name}"
    print(f"{var}={secrets.token_urlsafe(24)}")
PY
  echo "wrote .env with fresh demo tokens"
fi
# Where the demo's Tasklane and tenants are, also for dagster commands run from this directory
# (the dagster CLI reads ./.env): rewritten at every start, since SIM_PORT may change.
sed -i '/^TASKLANE_BASE_URL=/d; /^DRIPFEED_TENANTS_FILE=/d' .env
printf 'TASKLANE_BASE_URL=%s\nDRIPFEED_TENANTS_FILE=%s\n' "$TASKLANE_BASE_URL" "$PWD/demo/tenants.yaml" >> .env
# The demo's other settings (demo/settings.env), replacing what an earlier start wrote.
for name in $(grep -o '^[A-Z_]*=' demo/settings.env | tr -d =); do sed -i "/^$name=/d" .env; done
grep '^[A-Z_]*=' demo/settings.env >> .env
set -a; . ./.env; set +a

mkdir -p "$DAGSTER_HOME"
cp demo/dagster.yaml "$DAGSTER_HOME/dagster.yaml"  # the demo's run queue limits, kept current
# The instance's storage, created here before its processes start: dg dev and the metrics endpoint
# opening a new SQLite instance at once can stamp its schema twice (dagster-io/dagster#27390).
.venv/bin/python -c "import dagster; dagster.DagsterInstance.get().dispose()"
# No registration step: on its first tick the tenant_registry sensor makes the demo tenants
# partitions and starts their first syncs; the hourly and daily schedules take over from there.

pids=()
stop() {
  # What a terminal's Ctrl-C does: SIGINT to each process group (dg dev stops its webserver,
  # daemon and code server on SIGINT, not on SIGTERM).
  trap - EXIT INT TERM
  [ -n "${metrics:-}" ] && pids+=("$metrics")
  for pid in "${pids[@]}"; do kill -INT -- "-$pid" 2>/dev/null || true; done
  for _ in $(seq 60); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 1
  done
  for pid in "${pids[@]}"; do kill -KILL -- "-$pid" 2>/dev/null || true; done
}
trap stop EXIT INT TERM

env --default-signal=INT .venv/bin/tasklane-sim --config demo/sim.yaml --port "$SIM_PORT" &
pids+=($!)
.venv/bin/python -c "from tasklane_sim.server import wait_until_healthy; wait_until_healthy('$TASKLANE_BASE_URL', 180)"
echo "Tasklane simulator: $TASKLANE_BASE_URL (admin API: $TASKLANE_BASE_URL/_sim/docs)"
echo "Dagster UI:         http://127.0.0.1:$DAGSTER_PORT"
env --default-signal=INT .venv/bin/dg dev -w workspace.yaml -h 127.0.0.1 -p "$DAGSTER_PORT" &
pids+=($!)
echo "Prometheus metrics: http://127.0.0.1:$DRIPFEED_METRICS_PORT/metrics"
# Stopped with the rest, but not waited on: the metrics endpoint exiting (its port taken) stops no sync.
env --default-signal=INT .venv/bin/python -m dripfeed.metrics &
metrics=$!
wait -n "${pids[@]}"
