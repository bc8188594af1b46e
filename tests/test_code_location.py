"""The code location loads only what a sync or a tick uses: no pandas, no simulator, and only the
warehouse driver its URL names."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from dotenv import dotenv_values

from tests.support.dagster_daemon import ROOT
from tests.support.simulator import workspace_config
from tests.support.tenants_files import tenant_entry, write_tenants

SYNC_AND_TICK = """
import json, os, sys
from datetime import UTC, datetime
import dagster as dg
from dripfeed.definitions import defs
from sensors.tenant_registry import tenant_registry

with dg.instance_for_test() as instance:
    instance.add_dynamic_partitions("tenants", ["acme"])
    sync = defs.resolve_job_def("sync_tenant").execute_in_process(partition_key="acme", instance=instance)
    assert sync.success and len(sync.get_asset_materialization_events()) == 3
    resources = dict(defs.resources)  # what definitions.py wires, from the same environment
    with dg.build_sensor_context(instance=instance, resources=resources) as context:
        tenant_registry(context)
    with dg.build_schedule_context(
        instance=instance, resources=resources, scheduled_execution_time=datetime.now(UTC)
    ) as context:
        defs.resolve_schedule_def("hourly_tenants").evaluate_tick(context)
print(json.dumps(sorted(m for m in sys.argv[1:] if m in sys.modules)))
"""
UNUSED = ["pandas", "numpy", "tasklane_sim", "fastapi", "uvicorn"]


@pytest.mark.e2e  # a sync and a tick in a separate Python process
@pytest.mark.parametrize(("backend", "unused_driver"), [("duckdb", "psycopg2"), ("postgres", "duckdb")])
def test_a_sync_and_a_tick_import_nothing_they_do_not_use(
    make_sim, tmp_path: Path, postgres_url: str, backend: str, unused_driver: str
) -> None:
    from tests.support.postgres_server import fresh_database

    sim = make_sim(workspace_config("acme"))
    warehouse = str(tmp_path / "w.duckdb") if backend == "duckdb" else fresh_database(postgres_url, "warehouse")
    env = {
        "PATH": "/usr/bin:/bin",
        "DRIPFEED_TENANTS_FILE": str(write_tenants(tmp_path / "tenants.yaml", tenant_entry("acme"))),
        "DRIPFEED_STATE": str(tmp_path / "control.sqlite3"),
        "DRIPFEED_WAREHOUSE": warehouse,
        "TASKLANE_BASE_URL": sim.base_url,
        "TASKLANE_TOKEN_ACME": "token-acme",
    }
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", SYNC_AND_TICK, *UNUSED, unused_driver],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == []


@pytest.mark.parametrize("missing", ["TASKLANE_BASE_URL", "DRIPFEED_TENANTS_FILE"])
def test_the_code_location_refuses_to_load_without_a_setting_that_has_no_safe_default(
    tmp_path: Path, missing: str
) -> None:
    env = {name: value for name, value in os.environ.items() if name != missing}
    validate = [str(ROOT / ".venv" / "bin" / "dagster"), "definitions", "validate", "-m", "dripfeed.definitions"]
    # Not from the repository root: the dagster CLI reads ./.env, where make dev keeps the demo's settings.
    done = subprocess.run(validate, cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120)
    output = done.stdout + done.stderr
    assert done.returncode != 0
    assert f"dripfeed cannot load: set {missing} (" in output, output[-2000:]


USAGE_SCHEDULE = """
import json
from datetime import UTC, datetime
import dagster as dg
from dripfeed.definitions import defs

schedule = defs.resolve_schedule_def("api_usage_refresh")
job = defs.resolve_job_def(schedule.job_name)
with dg.instance_for_test() as instance, dg.build_schedule_context(
    instance=instance, scheduled_execution_time=datetime.now(UTC)
) as context:
    requests = schedule.evaluate_tick(context).run_requests or []
print(json.dumps({
    "cron": schedule.cron_schedule,
    "running": schedule.default_status == dg.DefaultScheduleStatus.RUNNING,
    "runs": len(requests),
    "assets": sorted(k.to_user_string() for k in job.asset_layer.executable_asset_keys),
}))
"""


@pytest.mark.parametrize(
    ("settings", "cron"),
    [({}, "15 0 * * *"), (dotenv_values(ROOT / "demo" / "settings.env"), "*/5 * * * *")],
    ids=["production", "demo"],
)
def test_api_usage_is_refreshed_daily_and_in_the_demo_from_its_first_minutes(
    tmp_path: Path, settings: dict[str, str | None], cron: str
) -> None:
    env = {name: value for name, value in os.environ.items() if name != "DRIPFEED_API_USAGE_CRON"}
    env.update({name: value for name, value in settings.items() if value is not None})
    done = subprocess.run(
        [sys.executable, "-W", "ignore", "-c", USAGE_SCHEDULE],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1]) == {
        "cron": cron,
        "running": True,
        "runs": 1,
        "assets": ["api_usage"],
    }


def test_a_bad_api_usage_cron_fails_the_load_naming_the_variable(tmp_path: Path) -> None:
    env = {**os.environ, "DRIPFEED_API_USAGE_CRON": "every day"}
    done = subprocess.run(
        [sys.executable, "-c", "import dripfeed.definitions"],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode != 0
    assert "DRIPFEED_API_USAGE_CRON='every day' is not a cron schedule" in done.stderr
