"""A backfill over tenant partitions from the CLI, run by the real daemon: one sync per tenant."""

from __future__ import annotations

import os
import subprocess
import time

import dagster as dg
import pytest

from resources.warehouse import Warehouse
from tests.support.dagster_daemon import BIN, running_daemon, scratch_instance
from tests.support.ground_truth import assert_equals_ground_truth
from tests.support.simulator import workspace_config

pytestmark = pytest.mark.e2e  # the real dagster-daemon and the dagster CLI


def test_a_cli_backfill_over_two_tenants_runs_one_sync_per_tenant(
    make_sim, tasklane_for, tmp_path, monkeypatch
) -> None:
    sim = make_sim(workspace_config("acme"), workspace_config("globex"))
    tasklane = tasklane_for(sim, "acme", "globex")
    home = scratch_instance(tmp_path)
    env = {
        **os.environ,
        "DAGSTER_HOME": str(home),
        "DRIPFEED_TENANTS_FILE": tasklane.registry.tenants_file,
        "DRIPFEED_STATE": tasklane.state.url,
        "DRIPFEED_WAREHOUSE": str(tmp_path / "warehouse.duckdb"),
        "TASKLANE_BASE_URL": sim.base_url,
    }
    subprocess.run(
        [str(BIN / "python"), "-m", "dripfeed.register_tenants"], cwd=tmp_path, env=env, check=True, timeout=120
    )
    with running_daemon(tmp_path, env):
        backfill = [
            str(BIN / "dagster"),
            "job",
            "backfill",
            "-w",
            "workspace.yaml",
            "-j",
            "sync_tenant",
            "--partitions",
            "acme,globex",
            "--noprompt",
        ]
        launched = subprocess.run(backfill, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
        assert launched.returncode == 0 and "Launched backfill" in launched.stdout, launched.stderr[-2000:]
        monkeypatch.setenv("DAGSTER_HOME", str(home))
        with dg.DagsterInstance.get() as instance:
            deadline = time.monotonic() + 240
            while time.monotonic() < deadline:
                # the backfill's runs only: a schedule tick at the top of the hour may launch its own
                runs = [run for run in instance.get_runs() if "dagster/backfill" in run.tags]
                if len(runs) == 2 and all(r.is_finished for r in runs):
                    break
                time.sleep(1)
            assert sorted(r.tags["dagster/partition"] for r in runs) == ["acme", "globex"]
            assert all(r.status == dg.DagsterRunStatus.SUCCESS for r in runs), [r.status for r in runs]
    warehouse = Warehouse(url=env["DRIPFEED_WAREHOUSE"])
    for tenant in ("acme", "globex"):
        assert_equals_ground_truth(sim, warehouse, tenant)
