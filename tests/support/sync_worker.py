"""A separate process that materializes one tenant's three assets (kill and parallel tests), in the
instance of DAGSTER_HOME when it is set, else in a scratch one."""

from __future__ import annotations

import os
import subprocess
import sys
from contextlib import AbstractContextManager
from pathlib import Path

import dagster as dg

from resources.warehouse import Warehouse
from tasklane_sim import SimServer
from tests.support.resources import make_api
from tests.support.runs import materialize_tenant

ROOT = Path(__file__).resolve().parents[2]


def start_sync_worker(
    sim: SimServer,
    directory: Path,
    warehouse_url: str,
    tenant: str,
    pages_per_checkpoint: int,
    dagster_home: str | None = None,
) -> subprocess.Popen:
    """This module in a process of its own, with the tenants file and control store of `directory`."""
    command = [
        sys.executable,
        "-m",
        "tests.support.sync_worker",
        sim.base_url,
        str(directory / "tenants.yaml"),
        str(directory / "control.sqlite3"),
        warehouse_url,
        tenant,
        str(pages_per_checkpoint),
    ]
    env = {**os.environ, "DAGSTER_HOME": dagster_home} if dagster_home else {**os.environ}
    if not dagster_home:
        env.pop("DAGSTER_HOME", None)
    return subprocess.Popen(command, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def main() -> None:
    base_url, tenants_file, state, warehouse_url, tenant, pages_per_checkpoint = sys.argv[1:]
    tasklane = make_api(base_url=base_url, tenants_file=tenants_file, state=state)
    config = {
        "ops": {
            name: {"config": {"pages_per_checkpoint": int(pages_per_checkpoint)}}
            for name in ("users", "projects", "tasks")
        }
    }
    opened: AbstractContextManager[dg.DagsterInstance] = (
        dg.DagsterInstance.get() if os.environ.get("DAGSTER_HOME") else dg.instance_for_test()
    )
    with opened as instance:
        result = materialize_tenant(instance, tenant, tasklane, Warehouse(url=warehouse_url), run_config=config)
    sys.exit(0 if result.success else 1)


if __name__ == "__main__":
    main()
