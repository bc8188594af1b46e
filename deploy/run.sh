#!/usr/bin/env bash
# dripfeed on one machine against Postgres: the code server, the daemon, the webserver and the
# metrics endpoint. Run it from the directory that should hold DAGSTER_HOME and workspace.yaml; every
# setting comes from the environment (docs/deployment.md). Stops them all when one of the first three exits,
# or on TERM.
set -euo pipefail
# Job control: background jobs of a script otherwise ignore SIGINT, and Dagster's processes then
# ignore SIGTERM too (Dagster handles TERM as INT), so they would outlive this script.
set -m
here="$(cd "$(dirname "$0")" && pwd)"
bin="${DRIPFEED_BIN:-$here/../.venv/bin}"

for variable in DAGSTER_PG_HOST DAGSTER_PG_PORT DAGSTER_PG_USER DAGSTER_PG_PASSWORD DAGSTER_PG_DB \
  DRIPFEED_WAREHOUSE DRIPFEED_STATE DRIPFEED_TENANTS_FILE TASKLANE_BASE_URL; do
  if [ -z "${!variable+set}" ]; then
    echo "deploy/run.sh: set $variable (docs/deployment.md says what it is)" >&2
    exit 2
  fi
done

export DAGSTER_HOME="${DAGSTER_HOME:-$PWD/dagster_home}"
mkdir -p "$DAGSTER_HOME"
cp "$here/dagster.yaml" "$DAGSTER_HOME/dagster.yaml"
# The instance's storage, created once before its four processes open it at the same moment.
"$bin/python" -c "import dagster; dagster.DagsterInstance.get().dispose()"
code_server_port="${DRIPFEED_CODE_SERVER_PORT:-4266}"
sed "s/port: 4266/port: $code_server_port/" "$here/workspace.yaml" > workspace.yaml

pids=()
stop() {
  trap - EXIT INT TERM
  [ -n "${metrics:-}" ] && pids+=("$metrics")
  kill -TERM "${pids[@]}" 2>/dev/null || true
  for _ in $(seq 30); do
    kill -0 "${pids[@]}" 2>/dev/null || return 0
    sleep 1
  done
  kill -KILL "${pids[@]}" 2>/dev/null || true
}
trap stop EXIT INT TERM

"$bin/dagster" code-server start -m dripfeed.definitions -h 127.0.0.1 -p "$code_server_port" &
pids+=($!)
for _ in $(seq 120); do  # the daemon and the webserver load the code from it: wait until it serves
  kill -0 "${pids[0]}" 2>/dev/null || { echo "deploy/run.sh: the code server did not start" >&2; exit 1; }
  "$bin/dagster" api grpc-health-check -p "$code_server_port" >/dev/null 2>&1 && break
  sleep 1
done
"$bin/dagster-daemon" run -w workspace.yaml &
pids+=($!)
"$bin/dagster-webserver" -w workspace.yaml -h "${DRIPFEED_WEBSERVER_HOST:-0.0.0.0}" \
  -p "${DRIPFEED_WEBSERVER_PORT:-3000}" &
pids+=($!)
# Stopped with the rest, but not waited on: the endpoint exiting stops no sync (DripfeedMetricsDown pages).
"$bin/python" -m dripfeed.metrics &  # DRIPFEED_METRICS_HOST (127.0.0.1), DRIPFEED_METRICS_PORT (9464)
metrics=$!
wait -n "${pids[@]}"
