#!/usr/bin/env bash
# dripfeed on one machine against Postgres: the code server, the daemon and the webserver.
# Run it from the directory that should hold DAGSTER_HOME; every setting comes from the
# environment (docs/deployment.md). Stops all three when any of them exits.
set -euo pipefail
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
cp "$here/workspace.yaml" ./workspace.yaml
CODE_SERVER_PORT=4266
WEBSERVER_PORT="${DRIPFEED_WEBSERVER_PORT:-3000}"

pids=()
trap 'kill "${pids[@]}" 2>/dev/null || true; wait' EXIT INT TERM
"$bin/dagster" code-server start -m dripfeed.definitions -h 127.0.0.1 -p "$CODE_SERVER_PORT" &
pids+=($!)
for _ in $(seq 120); do  # the daemon and the webserver load the code from it: wait until it serves
  "$bin/dagster" api grpc-health-check -p "$CODE_SERVER_PORT" >/dev/null 2>&1 && break
  sleep 1
done
"$bin/dagster-daemon" run -w workspace.yaml &
pids+=($!)
"$bin/dagster-webserver" -w workspace.yaml -h "${DRIPFEED_WEBSERVER_HOST:-0.0.0.0}" -p "$WEBSERVER_PORT" &
pids+=($!)
wait -n "${pids[@]}"
