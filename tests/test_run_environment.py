"""Where a run's settings come from under a container-per-run launcher (Docker, Kubernetes): a
variable set only in the run's environment reaches the run's resources, although the code server
that launched it never saw it. definitions.py's `env_or` chooses between `dg.EnvVar` and the embedded
default when the code location loads, and a run loads the code location again in its own process
(`dagster api execute_run`): so the run's choice is made with the run's environment, and a setting
meant for runs does not silently fall back to the default there. (Sensors and schedules run in the
code server, which needs the settings too: docs/deployment.md.)"""

from __future__ import annotations

import os
import subprocess
import time
from pathlib import Path

import dagster as dg
import duckdb
import pytest

from tests.support.dagster_daemon import BIN
from tests.support.simulator import workspace_config

pytestmark = pytest.mark.e2e  # the dagster CLI, a code server and a run in processes of their own

INSTANCE = """
telemetry:
  enabled: false
run_coordinator:  # launched at once, as the daemon's run queue would once a slot is free
  module: dagster._core.run_coordinator
  class: DefaultRunCoordinator
run_launcher:
  module: tests.support.container_run_launcher
  class: ContainerLikeRunLauncher
  config:
    env_vars:
      DRIPFEED_WAREHOUSE: {warehouse}
      DRIPFEED_STATE: {state}
      DRIPFEED_TENANTS_FILE: {tenants}
      TASKLANE_BASE_URL: {base_url}
"""


def test_a_setting_given_only_to_the_run_reaches_the_runs_resources(make_sim, tasklane_for, tmp_path: Path) -> None:
    sim = make_sim(workspace_config("acme", records={"tasks": 40}))
    tasklane = tasklane_for(sim, "acme")
    run_warehouse = tmp_path / "run-only" / "warehouse.duckdb"
    run_warehouse.parent.mkdir()
    home = tmp_path / "dagster_home"
    home.mkdir()
    (home / "dagster.yaml").write_text(
        INSTANCE.format(
            warehouse=run_warehouse,
            state=tasklane.state.url,
            tenants=tasklane.registry.tenants_file,
            base_url=sim.base_url,
        )
    )
    # The launching side (CLI and code server) has the settings a code location needs to load, but no
    # DRIPFEED_WAREHOUSE: there, env_or picks the embedded default, .dev/warehouse.duckdb.
    launcher_env = {name: value for name, value in os.environ.items() if not name.startswith("DRIPFEED_")}
    launcher_env.update(
        DAGSTER_HOME=str(home),
        DRIPFEED_TENANTS_FILE=tasklane.registry.tenants_file,
        DRIPFEED_STATE=tasklane.state.url,
        TASKLANE_BASE_URL=sim.base_url,
        PATH=f"{BIN}{os.pathsep}{os.environ['PATH']}",  # the run's `dagster api execute_run`, as in an image
        PYTHONPATH=os.pathsep.join(
            filter(None, [str(Path(__file__).resolve().parents[1]), os.environ.get("PYTHONPATH")])
        ),
    )
    with dg.DagsterInstance.from_config(str(home)) as instance:
        instance.add_dynamic_partitions("tenants", ["acme"])
        launch = [
            str(BIN / "dagster"),
            "job",
            "launch",
            "-m",
            "dripfeed.definitions",
            "-j",
            "sync_tenant",
            "--tags",
            '{"dagster/partition": "acme"}',
        ]
        launched = subprocess.run(launch, cwd=tmp_path, env=launcher_env, capture_output=True, text=True, timeout=300)
        assert launched.returncode == 0, launched.stdout[-2000:] + launched.stderr[-3000:]
        deadline = time.monotonic() + 240
        while time.monotonic() < deadline:
            runs = instance.get_runs()
            if runs and runs[0].is_finished:
                break
            time.sleep(0.5)
        assert runs and runs[0].status == dg.DagsterRunStatus.SUCCESS, [r.status for r in runs]
    with duckdb.connect(str(run_warehouse), read_only=True) as warehouse:
        assert warehouse.execute("SELECT count(*) FROM tasks WHERE tenant_id = 'acme'").fetchone()[0] == 40
    assert not (tmp_path / ".dev" / "warehouse.duckdb").exists(), "the run fell back to the embedded default"
