"""Run one sync in its own process, so its peak memory is its own: prints records/s and VmHWM."""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path

from pipeline_assets.incremental_sync import sync_stream
from resources.warehouse import Warehouse
from tests.support.resources import make_api


def main() -> None:
    base_url, tenants_file, state, warehouse_url = sys.argv[1:]
    api = make_api(base_url=base_url, tenants_file=tenants_file, state=state)
    client = api.client("big")
    started = time.perf_counter()
    report = sync_stream(
        client, Warehouse(url=warehouse_url), api.state.stream_checks, "tasks", pages_per_checkpoint=50
    )
    seconds = time.perf_counter() - started
    peak = next(
        int(line.split()[1]) for line in Path("/proc/self/status").read_text().splitlines() if line.startswith("VmHWM")
    )
    print(json.dumps({"records": report.records, "seconds": seconds, "peak_mb": peak / 1024}))


if __name__ == "__main__":
    main()
