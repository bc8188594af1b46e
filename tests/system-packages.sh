#!/usr/bin/env bash
# What the tests need from the system, beside Python: a PostgreSQL server (initdb, pg_ctl; the
# tests start their own in a temporary directory), Debian's Chromium (the UI test drives it
# with Playwright; no browser is downloaded) and Prometheus with promtool (the metrics tests start
# their own server; the alert rules' tests run promtool). Installs whichever is missing with apt-get, as root
# or through sudo; otherwise says what to install. `make test` and `.ci/run` both run it.
set -euo pipefail

missing=()
ls /usr/lib/postgresql/*/bin/initdb >/dev/null 2>&1 || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || missing+=(chromium)
{ command -v prometheus && command -v promtool; } >/dev/null 2>&1 || missing+=(prometheus)
python3 -c "import venv, ensurepip" 2>/dev/null || missing+=(python3-venv)
[ ${#missing[@]} -eq 0 ] && exit 0

if [ "$(id -u)" -eq 0 ]; then
  as_root=()
elif command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then
  as_root=(sudo)
else
  echo "The tests need these Debian packages: ${missing[*]}." >&2
  echo "Install them (sudo apt-get install ${missing[*]}), then run make test again." >&2
  exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
  echo "The tests need PostgreSQL (initdb under /usr/lib/postgresql), Chromium and Prometheus: install ${missing[*]}." >&2
  exit 1
fi
echo "installing for the tests: ${missing[*]}"
"${as_root[@]}" apt-get update -qq
DEBIAN_FRONTEND=noninteractive "${as_root[@]}" apt-get install -y -qq "${missing[@]}"
