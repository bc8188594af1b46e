"""The sync: end-to-end records/s into DuckDB and peak memory, and counted calls per sync."""

from __future__ import annotations

import json
import math
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

import yaml

from pipeline_assets.incremental_sync import sync_resource
from resources.tasklane_api import TasklaneAPI
from resources.warehouse import SyncState, Warehouse
from tasklane_sim import SimServer

from .api_resource_bench import TOKEN, _bare_listing, _resource_listing
from .report import Section, run_parts

TASKS = 200_000
ROUNDS = 3
ROOT = Path(__file__).resolve().parents[1]


def _tenants(scratch: Path, *ids: str) -> str:
    for tenant in ids:
        os.environ[f"TASKLANE_TOKEN_{tenant.upper()}"] = TOKEN if tenant == "big" else f"token-{tenant}"
    path = scratch / "tenants.yaml"
    path.write_text(
        yaml.safe_dump(
            {"tenants": [{"id": t, "tier": "daily", "token_env": f"TASKLANE_TOKEN_{t.upper()}"} for t in ids]}
        )
    )
    return str(path)


def end_to_end(section: Section, scratch: Path) -> None:
    config = {
        "admin_token": "bench-admin",
        "seed": 1,
        "workspaces": [
            {
                "id": "big",
                "tokens": [TOKEN],
                "records": {"tasks": TASKS},
                "rate_limit": 10**9,
                "visibility_lag_seconds": 0,
            }
        ],
    }
    rates: dict[str, list[float]] = {"ceiling": [], "listing": [], "sync": []}
    peaks = []
    with SimServer(config, subprocess_mode=True) as sim:
        tenants = _tenants(scratch, "big")
        write_rate = _write_only(sim, tenants, scratch)
        for round_ in range(ROUNDS):  # interleaved, so drift on a busy machine hits all alike
            records, seconds = _bare_listing(sim.base_url)
            rates["ceiling"].append(records / seconds)
            api = TasklaneAPI(base_url=sim.base_url, tenants_file=tenants, state=str(scratch / f"listing{round_}.db"))
            records, seconds = _resource_listing(api)
            rates["listing"].append(records / seconds)
            command = [
                sys.executable,
                "-m",
                "benchmarks.sync_worker",
                sim.base_url,
                tenants,
                str(scratch / f"state{round_}.db"),
                str(scratch / f"warehouse{round_}.duckdb"),
            ]
            run = json.loads(subprocess.run(command, cwd=ROOT, capture_output=True, text=True, check=True).stdout)
            rates["sync"].append(run["records"] / run["seconds"])
            peaks.append(run["peak_mb"])
    ceiling, listing, sync_rate = (statistics.median(rates[name]) for name in ("ceiling", "listing", "sync"))
    section.table(
        [f"{TASKS:,} tasks, first sync, no rate limit (median of {ROUNDS}, interleaved)", "records/s", "vs. ceiling"],
        [
            ["bare `requests` loop over the simulator (the ceiling)", f"{ceiling:,.0f}", "1.00"],
            [
                "TasklaneAPI listing only (budget, ledger, retries)",
                f"{listing:,.0f}",
                f"{listing / ceiling:.2f}",
            ],
            [
                "warehouse writes alone: the same pages from memory, 50 per transaction, one held connection",
                f"{write_rate:,.0f}",
                f"{write_rate / ceiling:.2f}",
            ],
            [
                "**sync into DuckDB** (shaped in SQL, upsert, checkpoint every 50 pages)",
                f"**{sync_rate:,.0f}**",
                f"**{sync_rate / ceiling:.2f}**",
            ],
        ],
    )
    section.row(
        "end-to-end sync ÷ simulator ceiling",
        f"{sync_rate / ceiling:.2f}",
        "≥ 0.7 (not met yet)" if sync_rate / ceiling < 0.7 else "≥ 0.7",
    )
    section.row("peak memory of the syncing process (RSS high-water mark)", f"{max(peaks):.0f} MB", "< 400 MB")
    section.note(
        "The warehouse holds its DuckDB connection across a sync's batches (handing the file back every 3 s), so "
        "writing alone runs close to the ceiling. The sync itself is bound by the writing thread, which runs about "
        "a fifth slower than alone: it shares the 2 cores with the fetching thread (requests costs the client about "
        "13 µs of CPU per record) and with the simulator. Profiled per 5,000-record batch, alone: about 33 ms to "
        "unpack and cast, 24 ms to upsert, 9 ms to commit, and the checkpoint each hand-back writes."
    )


def _write_only(sim: SimServer, tenants: str, scratch: Path) -> float:
    """Records/s of the warehouse on its own: how fast DuckDB shapes and stores what a sync hands it."""
    client = TasklaneAPI(base_url=sim.base_url, tenants_file=tenants, state=str(scratch / "write.db")).client("big")
    bodies = [page.body for page in client.list_pages("tasks", None)]
    warehouse = Warehouse(url=str(scratch / "write_only.duckdb"))
    started = time.perf_counter()
    with warehouse.writer() as batches:
        for first in range(0, len(bodies), 50):
            batches.write("big", "tasks", bodies[first : first + 50], SyncState())
    return TASKS / (time.perf_counter() - started)


def calls_per_sync(section: Section, scratch: Path) -> None:
    """Each case on its own workspace whose history ends in the past, so only its changes are new."""
    changes = {"n0": 0, "n1": 1, "n250": 250, "n1000": 1000}
    config = {
        "admin_token": "bench-admin",
        "seed": 1,
        "as_of": "2026-01-01T00:00:00Z",
        "workspaces": [
            {"id": t, "tokens": [f"token-{t}"], "records": {"tasks": 3000}, "visibility_lag_seconds": 0}
            for t in changes
        ],
    }
    rows = []
    with SimServer(config) as sim:
        api = TasklaneAPI(
            base_url=sim.base_url, tenants_file=_tenants(scratch, *changes), state=str(scratch / "calls.db")
        )
        warehouse = Warehouse(url=str(scratch / "calls.duckdb"))
        for tenant, n in changes.items():
            client = api.client(tenant)
            sync_resource(client, warehouse, "tasks")
            second = _counted(sim, tenant, lambda c=client: sync_resource(c, warehouse, "tasks"))
            if n:
                sim.admin.mutate(tenant, updates=n, resource="tasks")
            counted = _counted(sim, tenant, lambda c=client: sync_resource(c, warehouse, "tasks"))
            bound = math.ceil(n / 100) + 1
            rows.append(
                [
                    f"{n:,}",
                    str(counted),
                    f"≤ {bound}" if n else "0",
                    "yes" if (counted <= bound if n else counted == 0) else "**no**",
                    str(second),
                ]
            )
    section.table(
        ["records changed since the last sync", "counted calls", "target", "met", "(the sync before, unchanged)"], rows
    )
    section.note(
        "A sync right after the first one re-reads the 60-second overlap once (1 call, a single page whose ETag is "
        "then remembered); from then on an unchanged tenant answers 304 on every listing and costs nothing."
    )


def _counted(sim: SimServer, tenant: str, sync: callable) -> int:
    sim.admin.reset_counters(tenant)
    sync()
    return sim.admin.counters(tenant)["endpoints"].get("tasks.list", {}).get("counted", 0)


def run() -> Section:
    return run_parts("Sync: end to end into DuckDB, and calls per sync", end_to_end, calls_per_sync)
